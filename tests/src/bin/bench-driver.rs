//! Benchmark workloads: `bench-driver WORKLOAD ITERATIONS [SETTLE_MS]` waits SETTLE_MS, runs the
//! workload ITERATIONS times and prints the mean nanoseconds per operation, wall-clock then CPU
//! time (its own and its reaped children's: a fork's child pays the exit). Each workload is one
//! thing a sensor may hook.
//!
//! Other modes, for the throughput, soak and scan benchmarks:
//! - `bench-driver gen`: reads `RATE MILLIS [THREADS]` lines from stdin and, for each, opens and
//!   closes a watched file at RATE per second for MILLIS ms (paced against the clock, sleeping when
//!   ahead), then prints `OPS ELAPSED_NS`. Idle between lines, so a reader of counters sees only the step's events.
//! - `bench-driver finding HOST PORT`: reads timezone and host identity, then sends an HTTP request
//!   naming HOST to 127.0.0.1:PORT — with that address as its `ANTHROPIC_BASE_URL`, what the
//!   built-in relay rule reports, once per run.
//! - `bench-driver hold N`: forks N children that wait until stdin closes; prints `ready`.
//!
//! The TLS workloads write HTTP requests through the system's libssl (`SSL_write`, what aiwatch
//! probes for the prompt-marker scan): `ssl_write` one 1 KiB request per call, `ssl_write_mib`
//! a 1 MiB request in 16 KiB calls per operation.

#[path = "driver/tls.rs"]
mod tls;

use std::{
    ffi::CString,
    io::{BufRead, Read, Write},
    process::ExitCode,
    time::{Duration, Instant},
};

/// CPU time (user + system) of this process and of its reaped children, in ns.
fn cpu_ns() -> u128 {
    let tv = |t: libc::timeval| t.tv_sec as u128 * 1_000_000_000 + t.tv_usec as u128 * 1000;
    [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN]
        .into_iter()
        .map(|who| {
            // SAFETY: a zeroed rusage filled in by the kernel.
            let mut r: libc::rusage = unsafe { std::mem::zeroed() };
            unsafe { libc::getrusage(who, &mut r) };
            tv(r.ru_utime) + tv(r.ru_stime)
        })
        .sum()
}

/// The measured span: wall-clock and CPU time from its start.
struct Span {
    wall: Instant,
    cpu: u128,
}

impl Span {
    fn start() -> Self {
        Span { wall: Instant::now(), cpu: cpu_ns() }
    }

    /// `WALL_NS CPU_NS` per operation of `n`.
    fn per_op(&self, n: u64) -> String {
        let wall = self.wall.elapsed().as_nanos() as f64 / n as f64;
        let cpu = cpu_ns().saturating_sub(self.cpu) as f64 / n as f64;
        format!("{wall:.1} {cpu:.1}")
    }
}

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

/// One operation of `workload`.
fn op(workload: &str) -> Result<(), String> {
    // SAFETY (all libc calls): valid NUL-terminated strings and buffers; results are ignored.
    unsafe {
        match workload {
            "open_watched" => {
                let fd = libc::openat(libc::AT_FDCWD, c("/etc/localtime").as_ptr(), libc::O_RDONLY);
                libc::close(fd);
            }
            // A regular file (/etc/localtime is a symbolic link on most systems).
            "open_watched_regular" => {
                let fd = libc::openat(libc::AT_FDCWD, c("/etc/machine-id").as_ptr(), libc::O_RDONLY);
                libc::close(fd);
            }
            // The independent side-by-side loop of issue 18: syscall(2) itself, O_CLOEXEC, and a
            // path made once (no allocation per operation), on a regular watched file and on the
            // link to the zone file.
            "open_raw_hostname" => raw_open_close(c"/etc/hostname"),
            "open_raw_localtime" => raw_open_close(c"/etc/localtime"),
            "open_unwatched" => {
                let fd = libc::openat(libc::AT_FDCWD, c("/etc/passwd").as_ptr(), libc::O_RDONLY);
                libc::close(fd);
            }
            "readlink" => {
                let mut b = [0u8; 256];
                libc::readlink(c("/etc/localtime").as_ptr(), b.as_mut_ptr().cast(), b.len());
            }
            "stat" => {
                let mut st: libc::stat = std::mem::zeroed();
                libc::stat(c("/etc/hostname").as_ptr(), &mut st);
            }
            "getpid" => {
                libc::syscall(libc::SYS_getpid);
            }
            "connect_closed" => {
                let s = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
                let addr = libc::sockaddr_in {
                    sin_family: libc::AF_INET as u16,
                    sin_port: 1u16.to_be(),
                    sin_addr: libc::in_addr { s_addr: u32::from_be_bytes([127, 0, 0, 1]).to_be() },
                    sin_zero: [0; 8],
                };
                libc::connect(
                    s,
                    (&addr as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as u32,
                );
                libc::close(s);
            }
            "getenv" => {
                libc::getenv(c("HTTPS_PROXY").as_ptr());
            }
            "fork_exit" => {
                let pid = libc::fork();
                if pid == 0 {
                    libc::_exit(0);
                }
                let mut st = 0;
                libc::waitpid(pid, &mut st, 0);
            }
            "exec_true" => {
                let (t, a) = (c("/bin/true"), [c("true")]);
                let argv = [a[0].as_ptr(), std::ptr::null()];
                let pid = libc::fork();
                if pid == 0 {
                    libc::execv(t.as_ptr(), argv.as_ptr());
                    libc::_exit(127);
                }
                let mut st = 0;
                libc::waitpid(pid, &mut st, 0);
            }
            other => return Err(format!("unknown workload {other:?}")),
        }
    }
    Ok(())
}

/// `syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC)`, then `syscall(SYS_close, fd)`.
fn raw_open_close(path: &std::ffi::CStr) {
    // SAFETY: a NUL-terminated path; the fd is our own; results are ignored.
    unsafe {
        let fd =
            libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        libc::syscall(libc::SYS_close, fd);
    }
}

/// `total` watched reads at `rate` per second, paced against the clock from `start`. Ahead of
/// the pace, the thread sleeps until its next 64 are due: a load of 50,000 reads/s is not two
/// CPUs spinning, and a spinning generator made the daemon's wake-ups wait for a CPU (the soak's
/// detection latency measured the scheduler's slices).
fn paced(rate: u64, total: u64, start: Instant) -> u64 {
    let mut done = 0u64;
    while done < total {
        // Operations due by now; checked every 64 so the clock read stays cheap.
        let now = start.elapsed().as_nanos() as u64;
        let due = now.saturating_mul(rate) / 1_000_000_000;
        if done >= due {
            let next = (done + 64).min(total).saturating_mul(1_000_000_000) / rate.max(1);
            match next.saturating_sub(now) {
                // Shorter than a sleep's own cost: spin.
                0..PACE_MIN_SLEEP_NS => std::hint::spin_loop(),
                wait => std::thread::sleep(Duration::from_nanos(wait)),
            }
            continue;
        }
        for _ in 0..(due - done).min(64).min(total - done) {
            let _ = op("open_watched");
            done += 1;
        }
    }
    done
}

/// Waits shorter than this are spun, longer ones slept.
const PACE_MIN_SLEEP_NS: u64 = 50_000;

/// Paced generator of watched reads; see the module comment. `THREADS` (default 1) share the
/// rate: one thread alone tops out below 200,000 tracked open+close pairs per second here.
fn generate() -> ExitCode {
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let mut it = line.split_whitespace().map(str::parse::<u64>);
        let (Some(Ok(rate)), Some(Ok(ms))) = (it.next(), it.next()) else {
            eprintln!("gen: expected `RATE MILLIS [THREADS]`, got {line:?}");
            return ExitCode::from(2);
        };
        let threads = it.next().and_then(Result::ok).unwrap_or(1).clamp(1, 16);
        let total = rate * ms / 1000;
        let start = Instant::now();
        let done: u64 = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads)
                .map(|i| {
                    // Thread i does its share; the first takes the remainder.
                    let share = total / threads + if i == 0 { total % threads } else { 0 };
                    let r = (rate / threads).max(1);
                    s.spawn(move || paced(r, share, start))
                })
                .collect();
            workers.into_iter().map(|w| w.join().unwrap_or(0)).sum()
        });
        println!("{done} {}", start.elapsed().as_nanos());
        let _ = std::io::stdout().flush();
    }
    ExitCode::SUCCESS
}

/// One session that the relay rule reports (given the base URL): host identity, then its egress.
fn finding(host: &str, port: u16) -> ExitCode {
    let _ = std::fs::read("/etc/localtime");
    let _ = std::fs::read("/etc/machine-id");
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        eprintln!("finding: cannot connect to 127.0.0.1:{port}");
        return ExitCode::from(1);
    };
    let _ = s.write_all(
        format!("POST /v1/messages HTTP/1.1\r\nHost: {host}\r\nContent-Length: 2\r\n\r\n{{}}").as_bytes(),
    );
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.read(&mut [0u8; 512]);
    ExitCode::SUCCESS
}

/// Many live processes for the /proc scan benchmark.
fn hold(n: u32) -> ExitCode {
    let mut pids = Vec::new();
    for _ in 0..n {
        // SAFETY: the child only reads stdin (inherited) until EOF, then exits.
        match unsafe { libc::fork() } {
            0 => {
                let _ = std::io::stdin().read(&mut [0u8; 1]);
                unsafe { libc::_exit(0) };
            }
            -1 => {
                eprintln!("hold: fork failed after {} children", pids.len());
                break;
            }
            pid => pids.push(pid),
        }
    }
    println!("ready {}", pids.len());
    let _ = std::io::stdout().flush();
    let _ = std::io::stdin().read_to_end(&mut Vec::new());
    for pid in pids {
        let mut st = 0;
        // SAFETY: our own child.
        unsafe { libc::waitpid(pid, &mut st, 0) };
    }
    ExitCode::SUCCESS
}

/// A TLS workload (`ssl_write`, `ssl_write_mib`), timed like the others; None for another name.
fn tls_workload(workload: &str, n: u64) -> Option<ExitCode> {
    let (req, chunk) = match workload {
        "ssl_write" => (tls::request(1024), 1 << 14),
        "ssl_write_mib" => (tls::request(1 << 20), 1 << 14),
        _ => return None,
    };
    let run = || -> Result<String, String> {
        let mut pair = tls::Pair::new()?;
        for _ in 0..n.min(1000) / 10 {
            pair.send(&req, chunk)?;
        }
        let span = Span::start();
        for _ in 0..n {
            pair.send(&req, chunk)?;
        }
        Ok(span.per_op(n))
    };
    Some(match run() {
        Ok(ns) => {
            println!("{ns}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{workload}: {e}");
            ExitCode::from(2)
        }
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("gen") => return generate(),
        Some("finding") => {
            let port = args.get(3).and_then(|p| p.parse().ok());
            let (Some(host), Some(port)) = (args.get(2), port) else {
                eprintln!("usage: bench-driver finding HOST PORT");
                return ExitCode::from(2);
            };
            return finding(host, port);
        }
        Some("hold") => {
            let Some(n) = args.get(2).and_then(|n| n.parse().ok()) else {
                eprintln!("usage: bench-driver hold N");
                return ExitCode::from(2);
            };
            return hold(n);
        }
        _ => {}
    }
    let (Some(workload), Some(n)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok())) else {
        eprintln!("usage: bench-driver WORKLOAD ITERATIONS [SETTLE_MS]");
        return ExitCode::from(2);
    };
    // A tracked driver waits for the daemon to follow it fully (getenv probes are attached a few
    // milliseconds after exec, on the daemon's worker), so the run measures the steady state.
    if let Some(ms) = args.get(3).and_then(|m| m.parse().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
    if let Some(r) = tls_workload(workload, n) {
        return r;
    }
    // Warm-up, then the measured run.
    for _ in 0..n.min(1000) / 10 {
        if let Err(e) = op(workload) {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    }
    let span = Span::start();
    for _ in 0..n {
        let _ = op(workload);
    }
    println!("{}", span.per_op(n));
    ExitCode::SUCCESS
}
