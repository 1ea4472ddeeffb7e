//! Reading a running daemon from outside: a free loopback address for its `/metrics`, what
//! `/metrics` says, fields of its log lines, and a process's memory and CPU time from `/proc`.
//!
//! Shared by this harness and `cargo xtask bench`. It uses only `std`, so xtask compiles this
//! file as a module of its own (`#[path]`) instead of depending on this crate, which depends on
//! sensor-user and so needs the eBPF toolchain that `cargo xtask setup` is there to install.

use std::{
    collections::BTreeMap,
    io::{self, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    time::Duration,
};

/// A loopback address nobody listens on now (bound and released).
pub fn free_addr() -> io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// The body of `GET /metrics` at `addr`; connecting, and then reading, each wait at most
/// `patience`.
pub fn metrics_body(addr: SocketAddr, patience: Duration) -> io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, patience)?;
    s.set_read_timeout(Some(patience))?;
    write!(s, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default())
}

/// `series -> value` of a Prometheus text exposition (comments skipped); a series is the whole
/// text before the value, labels included: `aiwatch_events_total{kind="file"}`.
pub fn parse_metrics(body: &str) -> BTreeMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.trim_end().rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The numeric value of `key=` in one daemon log line (`... probes attached elapsed_ms=151`).
pub fn log_field(line: &str, key: &str) -> Option<u64> {
    line.split(&format!(" {key}=")).nth(1)?.split_whitespace().next()?.parse().ok()
}

/// Resident memory of `pid`, KiB (0 when it cannot be read: the process has gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU seconds `pid` has used, all threads (0 when it cannot be read).
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    // `rest` starts at field 3 (state, not a number): utime is the 11th number after it.
    // Clock ticks: USER_HZ is 100 on every Linux architecture the sensor builds for.
    match (f.get(10), f.get(11)) {
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn cpu_time_and_memory_of_this_process_are_read() {
        let me = std::process::id();
        assert!(rss_kib(me) > 0);
        // Spinning shows up as CPU time: on a busy machine later than on an idle one, hence
        // a deadline instead of a fixed spin.
        let start = cpu_seconds(me);
        let t = Instant::now();
        let mut x = 0u64;
        while cpu_seconds(me) - start < 0.2 {
            assert!(t.elapsed() < Duration::from_secs(60), "CPU time did not advance");
            for _ in 0..1_000_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
    }

    #[test]
    fn log_fields_and_metrics_are_parsed() {
        let line = "2025 INFO aiwatch: probes attached elapsed_ms=151 programs=40";
        assert_eq!(log_field(line, "elapsed_ms"), Some(151));
        assert_eq!(log_field(line, "programs"), Some(40));
        assert_eq!(log_field(line, "missing"), None);
        let m = parse_metrics("# HELP x\n# TYPE x counter\nx{outcome=\"a\"} 3\nx{outcome=\"b\"} 4\ny 1.5\n");
        assert_eq!(m.get("x{outcome=\"a\"}"), Some(&3.0));
        assert_eq!(m.get("y"), Some(&1.5));
        assert_eq!(m.len(), 3);
    }
}
