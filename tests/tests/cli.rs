//! The CLI as a user meets it: `check`, `config`, and bad input refused before anything loads.

use std::process::Command;

use integration_tests::*;
use serde_json::Value;

fn aiwatch(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(aiwatch_bin()).args(args).output().expect("run aiwatch");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_reports_features_and_every_required_program_ready() {
    let (code, out, err) = aiwatch(&["check", "--json"]);
    assert_eq!(code, 0, "{out}\n{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON report");
    let features: Vec<&str> =
        report["features"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(features, ["btf", "ring_buffer", "tracepoints", "uprobes", "fentry", "bpf_lsm"]);
    let tp = report["features"].as_array().unwrap().iter().find(|f| f["name"] == "tracepoints").unwrap();
    assert_eq!(tp["available"], true);
    assert_eq!(report["ready"], true);
    for p in report["programs"].as_array().unwrap() {
        if p["usage"] == "required" {
            assert_eq!(p["ok"], true, "{p}");
        }
    }
    // Human form names the same things.
    let (code, out, _) = aiwatch(&["check"]);
    assert_eq!(code, 0);
    assert!(out.contains("tracepoints") && out.contains("process_enter_sched_exec") && out.contains("Ready"));
}

#[test]
fn config_prints_the_effective_config_which_parses_back() {
    let (code, out, err) = aiwatch(&["config"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[metrics]") && out.contains("listen = \"127.0.0.1:9464\""), "{out}");
    assert!(out.contains("name = \"claude-code\"") && out.contains("/usr/share/zoneinfo/**"));
    let dir = TempDir::new("cfg");
    let file = dir.path("printed.toml");
    std::fs::write(&file, &out).unwrap();
    let (code, again, err) = aiwatch(&["--config", file.to_str().unwrap(), "config"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(again, out);
}

#[test]
fn bad_config_or_flag_is_a_clear_error_and_nothing_starts() {
    let dir = TempDir::new("badcfg");
    let file = dir.path("bad.toml");
    std::fs::write(&file, "[metrics]\nenabled = true\nlisten = \"not-an-address\"\n").unwrap();
    let (code, out, err) = aiwatch(&["--config", file.to_str().unwrap(), "run"]);
    assert_ne!(code, 0);
    assert!(out.is_empty());
    let want = format!("{}:3:10: metrics.listen:", file.display());
    assert!(err.contains(&want), "{err}");
    assert!(!err.contains("probes attached"), "{err}");

    std::fs::write(&file, "[sensor]\nmax_trackd = 5\n").unwrap();
    let (code, _, err) = aiwatch(&["--config", file.to_str().unwrap(), "check"]);
    assert_ne!(code, 0);
    assert!(err.contains(":2:1: sensor.max_trackd: unknown field `max_trackd`"), "{err}");

    let (code, _, err) = aiwatch(&["--config", "/nonexistent/aiwatch.toml", "run"]);
    assert_ne!(code, 0);
    assert!(err.contains("cannot read config file /nonexistent/aiwatch.toml"), "{err}");

    let (code, _, err) = aiwatch(&["run", "--format", "yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("--format") && err.contains("yaml"), "{err}");
}
