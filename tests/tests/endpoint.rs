//! The `/metrics` and `/status` endpoint cannot cost the sensor its sensing: idle connections
//! by the thousand, or a taken port (issue 14, item 5). Needs root; run through
//! `cargo xtask test`.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use integration_tests::{observe::parse_metrics, *};

/// Idle connections the first test holds.
const IDLE: usize = 2000;
/// `metrics.max_connections` by default.
const CAP: usize = 64;

/// The body of `GET path` at `addr`, if the answer is a 200 within `patience`.
fn get(addr: SocketAddr, path: &str, patience: Duration) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, patience).ok()?;
    s.set_read_timeout(Some(patience)).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// `/metrics` as parsed series, retried until a scrape succeeds or `within` has passed.
fn scrape_within(addr: SocketAddr, within: Duration) -> Option<std::collections::BTreeMap<String, f64>> {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Some(body) = get(addr, "/metrics", Duration::from_secs(2)) {
            return Some(parse_metrics(&body));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// Open sockets of `pid` (not its other descriptors: perf events come and go with sessions,
/// other tests' included).
fn sockets(pid: u32) -> usize {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return 0 };
    dir.filter_map(Result::ok)
        .filter(|e| std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:")))
        .count()
}

/// Lets this process hold `n` more descriptors (as root, raising the hard limit if needed).
fn raise_nofile(n: u64) {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit on this process with a valid struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut r), 0);
        r.rlim_cur = r.rlim_cur.max(n);
        r.rlim_max = r.rlim_max.max(n);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &r), 0, "cannot raise RLIMIT_NOFILE to {n}");
    }
}

#[test]
fn idle_connections_by_the_thousand_neither_blind_the_sensor_nor_stop_scraping() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("idle"));
    let agent = probe_as(&dir, AGENT);
    let addr = sensor.metrics;
    assert!(scrape_within(addr, patience(Duration::from_secs(5))).is_some(), "{}", sensor.log());
    let before = sockets(sensor.pid());
    raise_nofile(IDLE as u64 + 256);
    let idle: Vec<TcpStream> = (0..IDLE)
        .map(|i| {
            TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                .unwrap_or_else(|e| panic!("idle connection {i}: {e}"))
        })
        .collect();
    // The slots the first idle ones free when they time out go to idle ones still arriving:
    // the endpoint's time runs from the last of them.
    let flooded = Instant::now();
    // Past the cap, connections are closed at once: the daemon holds at most CAP of them.
    let held = sockets(sensor.pid()).saturating_sub(before);
    assert!(held <= CAP + 4, "the daemon holds {held} more sockets with {IDLE} idle connections");
    // Sensing goes on meanwhile.
    let root = run(&agent, &["openat=/etc/localtime"]);
    sensor.wait_for("a read while the endpoint is flooded", read_of(root, "/etc/localtime"));
    // Scraping comes back once the idle ones time out (5 s), with the idle ones still open here.
    let m = scrape_within(addr, patience(Duration::from_secs(8)).saturating_sub(flooded.elapsed()))
        .unwrap_or_else(|| panic!("no scrape within 8 s of {IDLE} idle connections\n{}", sensor.log()));
    let rejected = m.get("aiwatch_metrics_connections_rejected_total").copied().unwrap_or(0.0);
    assert!(rejected >= (IDLE - CAP) as f64, "rejected {rejected}");
    assert_eq!(m.get("aiwatch_metrics_listener_up"), Some(&1.0));
    drop(idle);
    assert!(scrape_within(addr, patience(Duration::from_secs(3))).is_some(), "no scrape after closing");
    let root = run(&agent, &["openat=/etc/timezone"]);
    sensor.wait_for("a read afterwards", read_of(root, "/etc/timezone"));
    sensor.stop();
}

#[test]
fn a_taken_metrics_port_costs_the_endpoint_not_the_sensor() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind a port");
    let addr = taken.local_addr().expect("address").to_string();
    let (sensor, dir) =
        (Sensor::start_with(AGENT_CONFIG, &["--metrics-listen", &addr]), TempDir::new("taken"));
    let log = sensor.log();
    assert!(log.contains("cannot listen for metrics on") && log.contains("bind is retried"), "{log}");
    let agent = probe_as(&dir, AGENT);
    let root = run(&agent, &["openat=/etc/localtime"]);
    sensor.wait_for("a read without the endpoint", read_of(root, "/etc/localtime"));
    // The retries fail while the port is taken, and say so in the log.
    let end = deadline(Duration::from_secs(10));
    while !sensor.log().contains("metrics endpoint still unavailable") {
        assert!(Instant::now() < end, "no retry logged:\n{}", sensor.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(taken);
    let m = scrape_within(sensor.metrics, patience(Duration::from_secs(10)))
        .unwrap_or_else(|| panic!("not bound after the port was released:\n{}", sensor.log()));
    assert_eq!(m.get("aiwatch_metrics_listener_up"), Some(&1.0));
    let failures = m.get("aiwatch_metrics_bind_failures_total").copied().unwrap_or(0.0);
    assert!(failures >= 2.0, "bind failures {failures}");
    let status = get(sensor.metrics, "/status", Duration::from_secs(5)).expect("GET /status");
    let status: serde_json::Value = serde_json::from_str(&status).expect("/status is JSON");
    assert!(status["endpoint"]["bind_failures"].as_u64() >= Some(2), "{status}");
    assert!(status["endpoint"]["last_bind_error"].as_str().is_some_and(|e| e.contains(&addr)), "{status}");
    assert!(sensor.log().contains("metrics endpoint bound on retry"));
    let root = run(&agent, &["openat=/etc/timezone"]);
    sensor.wait_for("a read afterwards", read_of(root, "/etc/timezone"));
    sensor.stop();
}
