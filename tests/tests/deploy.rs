//! The live view, deployment assets, and the docs' commands.

use std::{path::Path, process::Command, time::Duration};

use clap::Parser as _;
use integration_tests::*;
use serde_json::Value;

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

#[test]
fn status_shows_active_sessions_with_signals() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("status"));
    let agent = probe_as(&dir, AGENT);
    let go = dir.path("go");
    let mut g = spawn(
        &agent,
        &["openat=/etc/localtime", "open=/etc/machine-id", &format!("waitfile={}", go.display())],
    );
    let root = g.pid();
    sensor.wait_for("reads", |r| {
        r["type"] == "fingerprint_read"
            && r["process"]["pid"] == root
            && r["resolved_path"] == "/etc/machine-id"
    });
    std::thread::sleep(Duration::from_millis(1500)); // the snapshot is refreshed every second
    let addr = sensor.metrics.to_string();
    let out = Command::new(aiwatch_bin()).args(["status", "--address", &addr, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = v["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["root_pid"] == root)
        .expect("session listed")
        .clone();
    assert_eq!(s["assistant"], "test-agent");
    assert_eq!(s["user"], "root");
    assert!(
        s["signals"]["timezone"].as_u64().unwrap() >= 1
            && s["signals"]["host_identity"].as_u64().unwrap() >= 1,
        "{s}"
    );
    let human = Command::new(aiwatch_bin()).args(["status", "--address", &addr]).output().unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains(&format!("test-agent (pid {root}, user root")) && text.contains("timezone"),
        "{text}"
    );
    std::fs::write(&go, "").unwrap();
    assert!(g.wait(Duration::from_secs(10)).is_some());
    // Nothing listening: a clear error.
    let out = Command::new(aiwatch_bin())
        .args(["status", "--address", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach aiwatch"));
}

#[test]
fn completions_and_man_page_come_from_the_cli() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(aiwatch_bin()).args(["completions", shell]).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("aiwatch") && text.contains("status") && text.contains("schema"), "{shell}");
    }
    let man = Command::new(aiwatch_bin()).arg("man").output().unwrap();
    let text = String::from_utf8_lossy(&man.stdout);
    assert!(text.contains(".TH aiwatch 1") && text.contains("check") && text.contains("config"));
}

#[test]
fn install_stages_binary_unit_config_man_and_completions() {
    let dest = TempDir::new("install");
    let out = Command::new(env!("CARGO"))
        .args(["xtask", "install", "--destdir"])
        .arg(&dest.0)
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in [
        "usr/local/bin/aiwatch",
        "etc/systemd/system/aiwatch.service",
        "etc/aiwatch/config.toml",
        "usr/local/share/man/man1/aiwatch.1",
        "usr/local/share/bash-completion/completions/aiwatch",
        "usr/local/share/zsh/site-functions/_aiwatch",
        "usr/local/share/fish/vendor_completions.d/aiwatch.fish",
    ] {
        assert!(dest.0.join(f).is_file(), "{f} not installed");
    }
    // The installed default config is valid and passes the permission check.
    let cfg = dest.0.join("etc/aiwatch/config.toml");
    let out =
        Command::new(aiwatch_bin()).args(["--config", cfg.to_str().unwrap(), "config"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // The unit passes systemd's own check (pointed at the binary just built).
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let unit = std::fs::read_to_string(dest.0.join("etc/systemd/system/aiwatch.service"))
            .unwrap()
            .replace("/usr/local/bin/aiwatch", aiwatch_bin().canonicalize().unwrap().to_str().unwrap());
        let copy = dest.path("aiwatch.service");
        std::fs::write(&copy, unit).unwrap();
        let out = Command::new("systemd-analyze").args(["verify"]).arg(&copy).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        // The man page is not installed on this machine; everything else must be clean.
        let problems: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("aiwatch.service") && !l.contains("'man aiwatch(1)'"))
            .collect();
        assert!(problems.is_empty(), "systemd-analyze: {err}");
    }
}

/// Every `aiwatch …` command written in the README and docs must parse with the real CLI, so a
/// renamed flag or subcommand cannot leave the docs stale.
#[test]
fn every_aiwatch_command_in_the_docs_parses() {
    let mut files = vec![repo().join("README.md")];
    files.extend(std::fs::read_dir(repo().join("docs")).unwrap().filter_map(Result::ok).map(|e| e.path()));
    let mut checked = 0;
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "md")) {
        let text = std::fs::read_to_string(f).unwrap();
        let mut fenced = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                continue;
            }
            // In code spans and blocks: `aiwatch …` up to the closing backtick or end of line.
            for (i, _) in line.match_indices("aiwatch ") {
                let before = &line[..i];
                let in_span = before.matches('`').count() % 2 == 1 && before.ends_with('`');
                let in_block = fenced && before.trim().is_empty();
                if !in_span && !in_block {
                    continue;
                }
                // A comment or an output redirection ends the command.
                let cmd = line[i..].split('`').next().unwrap_or("");
                let cmd = cmd.split(" #").next().unwrap_or("").split(" > ").next().unwrap_or("").trim();
                // Synopsis lines with alternatives or placeholders are not commands.
                if cmd.contains('[')
                    || cmd.contains('|')
                    || cmd.contains("...")
                    || cmd.contains('…')
                    || cmd.contains('<')
                {
                    continue;
                }
                let words: Vec<&str> = cmd.split_whitespace().collect();
                // Output shown in a block (`aiwatch audit: covert.js`, a report's header) is not a
                // command.
                if words.len() < 2 || words[1].ends_with(':') {
                    continue;
                }
                aiwatch::cmd::Cli::try_parse_from(&words)
                    .unwrap_or_else(|e| panic!("{}: `{cmd}` does not parse: {e}", f.display()));
                checked += 1;
            }
        }
    }
    assert!(checked >= 5, "only {checked} commands found in the docs");
}

/// Every `cargo xtask …` in the README and docs names a task that exists, with flags it takes.
#[test]
fn every_xtask_command_in_the_docs_exists() {
    let help = |args: &[&str]| {
        let out = Command::new(env!("CARGO"))
            .args(["xtask"])
            .args(args)
            .arg("--help")
            .current_dir(repo())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo xtask {args:?} --help: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let top = help(&[]);
    let mut files = vec![repo().join("README.md")];
    files.extend(std::fs::read_dir(repo().join("docs")).unwrap().filter_map(Result::ok).map(|e| e.path()));
    let mut checked = 0;
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "md")) {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            for (i, _) in line.match_indices("cargo xtask ") {
                // A comment or an output redirection ends the command.
                let cmd = line[i..].split('`').next().unwrap_or("");
                let cmd = cmd.split(" #").next().unwrap_or("").split(" > ").next().unwrap_or("").trim();
                let words: Vec<&str> = cmd.split_whitespace().skip(2).collect();
                let Some(task) = words.first() else { continue };
                assert!(top.contains(&format!("  {task} ")), "{}: `{cmd}`: no task {task:?}", f.display());
                let flags = help(&[task]);
                let (own, passed) = match words.iter().position(|w| *w == "--") {
                    Some(p) => (&words[..p], &words[p + 1..]),
                    None => (&words[..], &[][..]),
                };
                if *task == "run" {
                    // What follows `--` goes to `aiwatch run`.
                    let argv: Vec<&str> =
                        ["aiwatch", "run"].into_iter().chain(passed.iter().copied()).collect();
                    aiwatch::cmd::Cli::try_parse_from(&argv)
                        .unwrap_or_else(|e| panic!("{}: `{cmd}`: {e}", f.display()));
                }
                for w in own.iter().skip(1).filter(|w| w.starts_with("--") && !w.contains('[')) {
                    let flag = w.split('=').next().unwrap();
                    assert!(flags.contains(flag), "{}: `{cmd}`: {task} has no {flag}", f.display());
                }
                checked += 1;
            }
        }
    }
    assert!(checked >= 4, "only {checked} xtask commands found");
}

/// The DaemonSet's endpoint (`/metrics` and `/status`) is on the pod's IP, not every interface,
/// with a NetworkPolicy admitting only the monitoring namespace; its arguments parse with the
/// real CLI.
#[test]
fn daemonset_endpoint_is_on_the_pod_ip_behind_a_network_policy() {
    let ds = integration_tests::kube::daemonset();
    let at = ds.args.iter().position(|a| a == "--metrics-listen").expect("--metrics-listen in args");
    assert_eq!(ds.args[at + 1], "$(POD_IP):9464");
    assert!(ds.text.contains("- name: POD_IP") && ds.text.contains("fieldPath: status.podIP"));
    assert!(!ds.text.contains("0.0.0.0") && !ds.text.contains("[::]"), "listens on every interface");
    let argv: Vec<String> = ["aiwatch".to_string()]
        .into_iter()
        .chain(ds.args.iter().map(|a| a.replace("$(POD_IP)", "10.1.2.3")))
        .collect();
    aiwatch::cmd::Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let policy = &ds.text[ds.text.find("kind: NetworkPolicy").expect("a NetworkPolicy")..];
    for want in [
        "matchLabels: { app.kubernetes.io/name: aiwatch }",
        "kubernetes.io/metadata.name: monitoring",
        "{ protocol: TCP, port: 9464 }",
        "\"Ingress\"",
    ] {
        assert!(policy.contains(want), "NetworkPolicy lacks {want}");
    }
    assert!(ds.host_pid && !ds.privileged);
    assert!(ds.host_mounts.iter().any(|(h, _, _)| h == "/sys/kernel/tracing"), "{:?}", ds.host_mounts);
}
