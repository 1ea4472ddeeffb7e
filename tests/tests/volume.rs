//! Volume (`output.detail`): a tracked shell looping over `git --version; ps aux; date` sends
//! every read at `all` and a handful of records at `summary`, whose session rollup still holds
//! every artifact (pattern) the `all` stream had. Needs root; run through `cargo xtask test`.

use std::{
    collections::BTreeSet,
    time::{Duration, Instant},
};

use integration_tests::*;
use serde_json::Value;

const LOOPS: u32 = 150;

/// Sum of every series of the metric `name` in `text`.
fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.strip_prefix(name).is_some_and(|r| r.starts_with(' ') || r.starts_with('{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Runs the loop in a tracked shell (once its getenv probes are attached); returns the records
/// of its session, up to and including its end.
fn run_loop(sensor: &Sensor, tag: &str) -> Vec<Value> {
    let dir = TempDir::new(tag);
    let agent = probe_as(&dir, AGENT);
    let gate = dir.path("go");
    let script = format!("sh=for i in $(seq {LOOPS}); do git --version; ps aux; date; done >/dev/null 2>&1");
    let started = Instant::now();
    let mut g = spawn_cmd(
        std::process::Command::new(&agent)
            .args([format!("waitfile={}", gate.display()).as_str(), &script])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    let root = g.pid();
    let start = sensor
        .wait_for("session start", |r| r["type"] == "session_start" && r["session"]["root_pid"] == root);
    let id = start["session"]["id"].clone();
    let end = deadline(Duration::from_secs(15));
    loop {
        let text = sensor.scrape();
        let attached = sum(&text, "aiwatch_getenv_attach_seconds_count")
            + sum(&text, "aiwatch_getenv_attach_errors_total");
        if attached >= sum(&text, "aiwatch_sessions_started_total") {
            break;
        }
        assert!(Instant::now() < end, "getenv probes not attached\n{text}");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::write(&gate, "").expect("open the gate");
    let status = g.wait(patience(Duration::from_secs(300))).expect("loop finished");
    assert!(status.success(), "{status}");
    eprintln!("{tag}: the loop took {:?}", started.elapsed());
    let end = deadline(Duration::from_secs(30));
    loop {
        let records: Vec<Value> = sensor.records().into_iter().filter(|r| r["session"]["id"] == id).collect();
        if records.iter().any(|r| r["type"] == "session_end") {
            return records;
        }
        assert!(Instant::now() < end, "no session end for {id}: {} records", records.len());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `artifact` with every all-digit path segment replaced by `*` (docs/events.md).
fn pattern(artifact: &str) -> String {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    artifact.split('/').map(|s| if digits(s) { "*" } else { s }).collect::<Vec<_>>().join("/")
}

/// (kind, artifact, success) of a record that reads something, as the rollup lists it.
fn artifact(r: &Value) -> Option<(String, String, bool)> {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let (kind, what, ok) = match r["type"].as_str()? {
        "fingerprint_read" => ("file", s(&r["resolved_path"]), r["success"] == true),
        "env_read" => {
            let v = s(&r["variable"]);
            ("variable", if v.starts_with("LC_") { "LC_*".to_string() } else { v }, r["set"] == true)
        }
        "process_exec" => ("exec", s(&r["process"]["exe"]), true),
        "host_query" => ("host_query", s(&r["request"]), true),
        "unix_connect" => ("unix_socket", s(&r["path"]), r["result"] == 0),
        "dns_lookup" => ("dns", s(&r["dns"]["name"]), r["dns"]["rcode"] == 0),
        "interface_query" => {
            let mut a = format!("{} {}", s(&r["method"]), s(&r["request"]));
            if let Some(i) = r["interface"].as_str() {
                a = format!("{a} {i}");
            }
            ("interface", a, r["result"].as_i64().unwrap_or(0) >= 0)
        }
        _ => return None,
    };
    Some((kind.to_string(), pattern(&what), ok))
}

fn final_rollup(records: &[Value]) -> &Value {
    let rollups: Vec<&Value> =
        records.iter().filter(|r| r["type"] == "session_rollup" && r["final"] == true).collect();
    assert_eq!(rollups.len(), 1, "one final rollup");
    rollups[0]
}

fn listed(rollup: &Value) -> BTreeSet<(String, String, bool)> {
    rollup["artifacts"]
        .as_array()
        .expect("artifacts")
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap().to_string(),
                a["artifact"].as_str().unwrap().to_string(),
                a["success"] == true,
            )
        })
        .collect()
}

#[test]
fn summary_sends_ten_times_fewer_records_and_the_rollup_keeps_every_artifact() {
    let sensor = Sensor::start_with(AGENT_CONFIG, &["--detail", "all"]);
    let all = run_loop(&sensor, "all");
    assert_eq!(sensor.metric("aiwatch_sink_dropped_total"), Some(0.0), "the all stream is complete");
    drop(sensor);
    let sensor = Sensor::start_with(AGENT_CONFIG, &["--detail", "summary"]);
    let summary = run_loop(&sensor, "summary");
    let summarized = sum(&sensor.scrape(), "aiwatch_records_summarized_total");

    let count = |rs: &[Value], kind: &str| rs.iter().filter(|r| r["type"] == kind).count();
    eprintln!(
        "records: all {} (fingerprint_read {}, env_read {}, process_exec {}), summary {} ({summarized} summarized)",
        all.len(),
        count(&all, "fingerprint_read"),
        count(&all, "env_read"),
        count(&all, "process_exec"),
        summary.len()
    );
    assert!(summary.len() <= 200, "summary sent {} records", summary.len());
    assert!(all.len() >= 10 * summary.len(), "all {} vs summary {}", all.len(), summary.len());
    assert!(summarized as usize + summary.len() >= all.len() / 2, "summarized {summarized}");

    // The loop's processes have this test's environment: every variable in it is reported set,
    // whenever its read was handled (one exiting as the daemon read its /proc environment gave
    // part of it, which made LANG "unset" now and then).
    for run in [&all, &summary] {
        let unset: Vec<_> = run
            .iter()
            .filter(|r| r["type"] == "env_read" && r["set"] == false)
            .filter(|r| r["variable"].as_str().is_some_and(|v| std::env::var_os(v).is_some()))
            .map(|r| (r["variable"].clone(), r["process"]["comm"].clone()))
            .collect();
        assert!(unset.is_empty(), "set in the environment, reported unset: {unset:?}");
    }
    // Every artifact (pattern) of the all stream is in the summary run's rollup, and in the all
    // run's own rollup.
    let in_stream: BTreeSet<_> = all.iter().filter_map(artifact).collect();
    assert!(in_stream.iter().any(|(_, a, _)| a == "/proc/*/environ"), "ps read environ: {in_stream:?}");
    assert!(in_stream.iter().any(|(k, a, _)| k == "variable" && a == "LC_*"), "{in_stream:?}");
    let summary_rollup = final_rollup(&summary);
    let in_rollup = listed(summary_rollup);
    let missing: Vec<_> = in_stream.difference(&in_rollup).collect();
    assert!(missing.is_empty(), "not in the summary rollup: {missing:?}\n{summary_rollup}");
    let all_rollup = final_rollup(&all);
    let in_all_rollup = listed(all_rollup);
    let missing: Vec<_> = in_stream.difference(&in_all_rollup).collect();
    assert!(missing.is_empty(), "not in the all rollup: {missing:?}");
    // Counted in full: as many environ reads as the all stream sent, one record for them here.
    let environ = |rollup: &Value| -> u64 {
        rollup["artifacts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["artifact"] == "/proc/*/environ")
            .map(|a| a["count"].as_u64().unwrap())
            .sum()
    };
    let is_environ =
        |r: &&Value| r["resolved_path"].as_str().is_some_and(|p| pattern(p) == "/proc/*/environ");
    let in_all = all.iter().filter(is_environ).count();
    assert_eq!(environ(all_rollup), in_all as u64);
    assert!(environ(summary_rollup) >= LOOPS as u64, "{}", environ(summary_rollup));
    let sent_environ = summary.iter().filter(is_environ);
    assert!(sent_environ.count() <= 2, "first reads only");
    // Each artifact's first read was sent at summary.
    let sent: BTreeSet<_> = summary.iter().filter_map(artifact).collect();
    assert_eq!(sent, listed(summary_rollup));
}
