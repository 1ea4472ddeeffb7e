//! The kernel's maps stay in step with the processes that exist (issue 14, item 11): entries
//! written for processes that are already gone do not stay; a full map counts what it refuses
//! (item 12). Needs root; run through
//! `cargo xtask test`.

use std::time::{Duration, Instant};

use integration_tests::*;

const TRACKED: &str = r#"aiwatch_kernel_map_entries{map="tracked"}"#;

#[test]
fn tracked_map_returns_to_its_baseline_after_a_storm_of_short_sessions() {
    // An assistant of its own: the other tests of this file run at the same time, and their
    // agents would be in this daemon's map too, moving the baseline while the storm runs.
    let config = "[[assistants]]\nname = \"storm\"\nexe = [\"aiwatch-storm-agent\"]\n";
    let (sensor, dir) = (Sensor::start(config), TempDir::new("maps"));
    let agent = probe_as(&dir, "aiwatch-storm-agent");
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

const FILE_ARGS: &str = r#"aiwatch_kernel_map_entries{map="file_args"}"#;
const SOCKETS: &str = r#"aiwatch_kernel_map_entries{map="sockets"}"#;
const SOCKETS_FULL: &str = r#"aiwatch_kernel_events_total{outcome="socket_map_full"}"#;

/// Waits until `series` reads `want` (the gauges are refreshed each second).
fn settle(sensor: &Sensor, series: &str, want: f64, secs: u64) -> f64 {
    let end = Instant::now() + Duration::from_secs(secs);
    let mut now = sensor.metric(series).unwrap_or(f64::NAN);
    while now != want && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(250));
        now = sensor.metric(series).unwrap_or(f64::NAN);
    }
    now
}

/// Issue 14, item 12: the socket map used to be an LRU map, which evicted without a trace. Now a
/// full map refuses and counts every socket it cannot follow, and what a process leaves behind
/// goes when it does (here: sockets never connected, which user space never learns of).
#[test]
fn a_full_socket_map_counts_every_socket_it_cannot_follow_and_empties_again() {
    const SIZE: u32 = 64;
    const N: u32 = 100;
    let config = format!("{AGENT_CONFIG}[sensor]\nmax_sockets = {SIZE}\n");
    let (sensor, dir) = (Sensor::start(&config), TempDir::new("socks-full"));
    let agent = probe_as(&dir, AGENT);
    std::thread::sleep(Duration::from_millis(1500));
    let baseline = sensor.metric(SOCKETS).expect("the socket-map gauge");
    let refused = || sensor.metric(SOCKETS_FULL).unwrap_or(0.0);
    let refused_before = refused();
    let room = f64::from(SIZE) - baseline;
    let wait = dir.path("go");
    let mut g = spawn(&agent, &[&format!("sock=hold,{N},{}", wait.display())]);
    // Every socket is in the map or counted: none is dropped unseen.
    let end = Instant::now() + Duration::from_secs(10);
    while refused() - refused_before < f64::from(N) - room && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(settle(&sensor, SOCKETS, f64::from(SIZE), 5), f64::from(SIZE), "a full map");
    let counted = refused() - refused_before;
    assert_eq!(room + counted, f64::from(N), "{N} sockets: {room} in the map, {counted} counted");
    std::fs::write(&wait, "").unwrap();
    assert!(g.wait(Duration::from_secs(10)).is_some_and(|s| s.success()));
    // The owner is gone: its entries go too, and the map takes a full set again.
    assert_eq!(settle(&sensor, SOCKETS, baseline, 10), baseline, "socket-map entries after the exit");
    let wait2 = dir.path("go2");
    let mut g = spawn(&agent, &[&format!("sock=hold,{room},{}", wait2.display())]);
    assert_eq!(
        settle(&sensor, SOCKETS, f64::from(SIZE), 10),
        f64::from(SIZE),
        "the freed room is used again"
    );
    assert_eq!(refused() - refused_before, counted, "nothing more refused");
    std::fs::write(&wait2, "").unwrap();
    assert!(g.wait(Duration::from_secs(10)).is_some_and(|s| s.success()));
}

/// The per-thread slots of syscalls in flight are reused in place and never deleted per call;
/// now that their maps are plain hash maps, a thread's slot must go when the thread does (not
/// only when its process does), or threads that come and go would fill the map.
#[test]
fn a_threads_syscall_slot_goes_with_the_thread() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("thread-slots"));
    let agent = probe_as(&dir, AGENT);
    std::thread::sleep(Duration::from_millis(1500));
    let baseline = sensor.metric(FILE_ARGS).expect("the file_args gauge");
    let wait = dir.path("go");
    // 200 threads open a file and exit; the process stays, waiting for a file.
    let mut g = spawn(&agent, &["threads=200,openat=/etc/hostname", &format!("waitfile={}", wait.display())]);
    let root = g.pid();
    sensor.wait_for("the threads' reads", |r| {
        r["type"] == "fingerprint_read" && r["session"]["root_pid"] == root && r["path"] == "/etc/hostname"
    });
    // The main thread's waitfile stat keeps one slot.
    let left = settle(&sensor, FILE_ARGS, baseline + 1.0, 10);
    assert!(left <= baseline + 1.0, "slots of exited threads remain: {left} (baseline {baseline})");
    std::fs::write(&wait, "").unwrap();
    assert!(g.wait(Duration::from_secs(10)).is_some_and(|s| s.success()));
    assert_eq!(settle(&sensor, FILE_ARGS, baseline, 10), baseline, "slots after the process exited");
}
