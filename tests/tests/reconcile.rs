//! Lost records are recovered (issue 14, item 10): with the ring buffer full, a session's fork,
//! exec and exit records are lost; reconciliation with the kernel's map and /proc brings the
//! daemon's view back to what runs. Needs root; run through `cargo xtask test`.

use std::{
    io::{Read, Write},
    path::Path,
    time::{Duration, Instant},
};

use integration_tests::*;
use serde_json::Value;

/// `GET /status` of `sensor`.
fn status(sensor: &Sensor) -> Value {
    let mut s = std::net::TcpStream::connect(sensor.metrics).expect("connect to /status");
    s.set_read_timeout(Some(patience(Duration::from_secs(10)))).unwrap();
    write!(s, "GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {out}"))
}

/// Processes of the session of `root` in `/status` (None: no such session).
fn session_processes(sensor: &Sensor, root: u32) -> Option<u64> {
    let s = status(sensor);
    let sessions = s["sessions"].as_array()?;
    sessions.iter().find(|x| x["root_pid"] == root).and_then(|x| x["processes"].as_u64())
}

fn read_pid(path: &Path) -> u32 {
    let end = deadline(Duration::from_secs(10));
    loop {
        if let Some(pid) = std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()) {
            return pid;
        }
        assert!(Instant::now() < end, "{} not written", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `cond` holds (15 s at most), then returns; `what` names it in the failure.
fn wait_until(sensor: &Sensor, what: &str, cond: impl Fn() -> bool) {
    let end = deadline(Duration::from_secs(15));
    while !cond() {
        assert!(
            Instant::now() < end,
            "timed out waiting for {what}\nmetrics:\n{}\nlog:\n{}",
            sensor.scrape(),
            sensor.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: signalling the daemon this test started, by PID.
    unsafe { libc::kill(pid as i32, sig) };
}

#[test]
fn lost_fork_exec_and_exit_records_are_reconciled() {
    let dir = TempDir::new("reconcile");
    // Its own assistant name, so other tests' sensors do not follow it; the smallest ring.
    let config = "[[assistants]]\nname = \"recon\"\nexe = [\"aiwatch-recon-agent\"]\n[sensor]\nring_buffer_bytes = 65536\n";
    let sensor = Sensor::start(config);
    let agent = probe_as(&dir, "aiwatch-recon-agent");
    let (c1, c2) = (dir.path("c1.pid"), dir.path("c2.pid"));
    let (go1, go2, go3) = (dir.path("go1"), dir.path("go2"), dir.path("go3"));
    // A session whose child C1 lives until go1; then a child C2 reads /etc/hosts at go2 and
    // ends at go3.
    let mut root = spawn(
        &agent,
        &[
            &format!("child=pid={};waitfile={}", c1.display(), go1.display()),
            &format!(
                "child=pid={};waitfile={};openat=/etc/hosts;waitfile={}",
                c2.display(),
                go2.display(),
                go3.display()
            ),
        ],
    );
    let r = root.pid();
    sensor.wait_for("session", |v| v["type"] == "session_start" && v["session"]["root_pid"] == r);
    read_pid(&c1);
    wait_until(&sensor, "C1 followed", || session_processes(&sensor, r) == Some(2));
    let kernel = |outcome: &str| {
        sensor.metric(&format!("aiwatch_kernel_events_total{{outcome=\"{outcome}\"}}")).unwrap_or(0.0)
    };
    let repairs = |kind: &str| {
        sensor.metric(&format!("aiwatch_reconcile_repairs_total{{kind=\"{kind}\"}}")).unwrap_or(0.0)
    };
    // (A ring this small may overflow at exec already: records with an environment are large.)
    let lost_before = kernel("ringbuf_full");

    // The daemon stopped: nothing is read, and a flood fills the ring: reads (large records)
    // first, then forks and exits (small ones) fill what space is left. The flood's exec, first
    // in, still fits; every record after the flood is lost.
    signal(sensor.pid(), libc::SIGSTOP);
    let mut flood = spawn(&agent, &["spin=300,/etc/localtime", "storm=300"]);
    assert!(flood.wait(Duration::from_secs(20)).is_some_and(|s| s.success()), "the flood ended");
    // Lost: the flood's exit, C1's exit, C2's fork and exec, the exec of a new session's root.
    std::fs::write(&go1, "").unwrap();
    let c2_pid = read_pid(&c2);
    let mut late = spawn(
        &agent,
        &[
            &format!("waitfile={}", go2.display()),
            "openat=/etc/hosts",
            &format!("waitfile={}", go3.display()),
        ],
    );
    signal(sensor.pid(), libc::SIGCONT);

    // The ring really overflowed, and reconciliation repaired each loss.
    wait_until(&sensor, "lost records counted", || kernel("ringbuf_full") > lost_before);
    wait_until(&sensor, "repairs", || {
        repairs("exit") >= 2.0 && repairs("fork") >= 1.0 && repairs("exec") >= 1.0
    });
    let s = sensor.wait_for("the late root's session", |v| {
        v["type"] == "session_start" && v["session"]["root_pid"] == late.pid()
    });
    assert_eq!(s["found_by"], "reconcile");
    // The flood's session ended with its root; the first session has its root and C2.
    let f = flood.pid();
    sensor.wait_for("the flood's session ended", |v| {
        v["type"] == "session_end" && v["session"]["root_pid"] == f
    });
    wait_until(&sensor, "the session's processes as they run", || session_processes(&sensor, r) == Some(2));
    assert_eq!(session_processes(&sensor, f), None);
    assert_eq!(kernel("tracked_map_full"), 0.0);

    // What the repaired processes do now is attributed to their sessions.
    std::fs::write(&go2, "").unwrap();
    let read = sensor.wait_for("C2's read", read_of(c2_pid, "/etc/hosts"));
    assert_eq!(read["session"]["root_pid"], r, "{read}");
    assert_eq!(read["reader"], "descendant");
    let read = sensor.wait_for("the late root's read", read_of(late.pid(), "/etc/hosts"));
    assert_eq!(read["reader"], "assistant");
    std::fs::write(&go3, "").unwrap();
    assert!(root.wait(Duration::from_secs(10)).is_some_and(|s| s.success()));
    assert!(late.wait(Duration::from_secs(10)).is_some_and(|s| s.success()));
    let l = late.pid();
    for root in [r, l] {
        sensor.wait_for("session end", |v| v["type"] == "session_end" && v["session"]["root_pid"] == root);
    }
    let log = sensor.stop();
    assert!(log.contains("reconciled"), "{log}");
}
