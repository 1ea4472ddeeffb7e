//! The kernel's maps stay in step with the processes that exist (issue 14, item 11): entries
//! written for processes that are already gone do not stay. Needs root; run through
//! `cargo xtask test`.

use std::time::{Duration, Instant};

use integration_tests::*;

const TRACKED: &str = r#"aiwatch_kernel_map_entries{map="tracked"}"#;

#[test]
fn tracked_map_returns_to_its_baseline_after_a_storm_of_short_sessions() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("maps"));
    let agent = probe_as(&dir, AGENT);
    // The gauge is refreshed each second.
    std::thread::sleep(Duration::from_millis(1500));
    let baseline = sensor.metric(TRACKED).expect("the tracked-map gauge");
    // Assistants that exit at once, started from an untracked shell: each is classified after
    // its exit has already removed its kernel entry.
    let script = format!("for i in $(seq 300); do {}; done", agent.display());
    let mut g = spawn_cmd(std::process::Command::new("/bin/sh").args(["-c", &script]));
    assert!(g.wait(Duration::from_secs(120)).is_some_and(|s| s.success()));
    sensor.wait_n(300, "the sessions' ends", |r| r["type"] == "session_end");
    let end = Instant::now() + Duration::from_secs(10);
    let mut now = sensor.metric(TRACKED).unwrap_or(f64::NAN);
    while now != baseline && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(500));
        now = sensor.metric(TRACKED).unwrap_or(f64::NAN);
    }
    assert_eq!(now, baseline, "tracked-map entries after 300 short sessions (baseline {baseline})");
}
