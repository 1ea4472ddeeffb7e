//! `cargo xtask bench`: what the sensor costs the processes it watches, against no sensor and
//! against peers (bpftrace with equivalent tracepoints and a filter, auditd with watch rules),
//! interleaved A/B in one run; start-up time and idle memory. Writes BENCHMARKS.md,
//! bench/results.json and bench/overhead.svg.

use std::{
    collections::BTreeMap,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::{root, sh};

mod load;
mod scan;
mod summary;

use summary::Loads;

/// Watched reads per second during the soak: the load the memory target is set at.
const SOAK_RATE: u64 = 50_000;

/// (workload, iterations per measurement): about 0.1-0.3 s each on these VMs.
const WORKLOADS: [(&str, u64); 9] = [
    ("open_watched", 100_000),
    ("open_unwatched", 100_000),
    ("readlink", 100_000),
    ("stat", 100_000),
    ("getpid", 1_000_000),
    ("connect_closed", 25_000),
    // Tracked, each call costs microseconds: 1M keeps that measurement near 2 s.
    ("getenv", 1_000_000),
    ("fork_exit", 1_000),
    ("exec_true", 300),
];

const CONDITIONS: [&str; 4] = ["aiwatch_untracked", "aiwatch_tracked", "bpftrace_filter", "auditd_watch"];

/// Files the auditd condition watches: what aiwatch's categories cover among the workloads.
const AUDIT_WATCHES: [&str; 6] =
    ["/etc/localtime", "/etc/hostname", "/etc/resolv.conf", "/etc/hosts", "/etc/machine-id", "/etc/timezone"];

pub(crate) struct Stopper(pub(crate) Child);

impl Drop for Stopper {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        reap(&mut self.0, Duration::from_secs(10));
    }
}

/// Waits up to `within` for a child asked to end, then kills it (by its PID, through `Child`).
pub(crate) fn reap(child: &mut Child, within: Duration) {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// CPUs of the overhead rounds: the driver on one, every sensor's user-space process on the
/// other, as on a many-core host where a sensor's own work seldom lands on the workload's core.
/// (Unpinned on two cores, the daemon's per-event work shares the driver's core part of the
/// time and shows up in its wall time, run to run differently.)
const WORKLOAD_CPU: usize = 1;
const SENSOR_CPU: usize = 0;

/// Runs `cmd` on `cpu` only (and what it forks), when the machine has more than one CPU.
pub(crate) fn pin(cmd: &mut Command, cpu: usize) -> &mut Command {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) <= cpu {
        return cmd;
    }
    // SAFETY: sched_setaffinity on the child itself, between fork and exec; no allocation.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(cmd, move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// Milliseconds a tracked driver waits before measuring: the daemon attaches a session's getenv
/// probes on a worker a few (at worst tens of) milliseconds after exec.
const TRACKED_SETTLE_MS: &str = "250";

fn measure(driver: &Path, workload: &str, n: u64, tracked: bool) -> anyhow::Result<f64> {
    let mut cmd = Command::new(driver);
    pin(&mut cmd, WORKLOAD_CPU).args([workload, &n.to_string()]);
    if tracked {
        cmd.arg(TRACKED_SETTLE_MS);
    }
    let out = cmd.output().context("running the driver")?;
    if !out.status.success() {
        bail!("driver {workload}: {}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout).trim().parse().context("driver output")
}

pub(crate) fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn start_aiwatch(bin: &Path, cfg: &Path, log: &Path) -> anyhow::Result<(Stopper, u64)> {
    start_aiwatch_with(
        bin,
        cfg,
        log,
        &["--format", "json", "--output", "/dev/null", "--no-metrics"],
        Some(SENSOR_CPU),
    )
}

/// Starts `aiwatch run ARGS --config CFG` with its log in `log`; returns once it watches, with
/// the milliseconds it took to attach every probe.
pub(crate) fn start_aiwatch_with(
    bin: &Path,
    cfg: &Path,
    log: &Path,
    args: &[&str],
    cpu: Option<usize>,
) -> anyhow::Result<(Stopper, u64)> {
    let mut cmd = Command::new(bin);
    if let Some(cpu) = cpu {
        pin(&mut cmd, cpu);
    }
    let child = cmd
        .arg("run")
        .args(args)
        .arg("--config")
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .context("starting aiwatch")?;
    let s = Stopper(child);
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.contains("probes attached")) {
            let ms = log_field(line, "elapsed_ms").unwrap_or(0);
            if text.contains("watching") {
                return Ok((s, ms));
            }
        }
        if Instant::now() > end {
            bail!("aiwatch did not start:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The numeric value of `key=` in one daemon log line.
pub(crate) fn log_field(line: &str, key: &str) -> Option<u64> {
    line.split(&format!(" {key}=")).nth(1)?.split_whitespace().next()?.parse().ok()
}

fn start_bpftrace(log: &Path) -> anyhow::Result<Stopper> {
    // The same syscall tracepoints aiwatch hooks for these workloads, each with a filter that
    // never matches: what an equivalent always-attached tool costs untracked processes.
    let hooks: Vec<String> =
        ["openat", "readlink", "newfstatat", "statx", "connect", "socket", "close", "execve"]
            .iter()
            .flat_map(|s| {
                [format!("tracepoint:syscalls:sys_enter_{s}"), format!("tracepoint:syscalls:sys_exit_{s}")]
            })
            .chain([
                "tracepoint:sched:sched_process_exec".into(),
                "tracepoint:sched:sched_process_exit".into(),
            ])
            .collect();
    let prog = format!("{} /pid == 1/ {{ @n = count(); }}", hooks.join(","));
    let child = pin(&mut Command::new("bpftrace"), SENSOR_CPU)
        .args(["-e", &prog])
        .stdout(std::fs::File::create(log)?)
        .stderr(Stdio::null())
        .spawn()
        .context("starting bpftrace")?;
    let s = Stopper(child);
    let end = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(log).unwrap_or_default().contains("Attaching") {
        if Instant::now() > end {
            bail!("bpftrace did not attach");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    Ok(s)
}

fn auditctl(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("auditctl").args(args).output().context("running auditctl")?;
    if !out.status.success() {
        bail!("auditctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// auditd with read watches on the watched files; the rules are removed on drop, and auditd
/// stopped (by the PID in its pid file) if this started it.
struct Audit {
    started: bool,
}

fn auditd_pid() -> Option<i32> {
    let pid: i32 = std::fs::read_to_string("/run/auditd.pid").ok()?.trim().parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

impl Audit {
    fn start() -> anyhow::Result<Self> {
        let mut started = false;
        if auditd_pid().is_none() {
            let st = pin(&mut Command::new("auditd"), SENSOR_CPU).status().context("starting auditd")?;
            if !st.success() {
                bail!("auditd did not start ({st})");
            }
            started = true;
            std::thread::sleep(Duration::from_millis(500));
        }
        auditctl(&["-e", "1"])?;
        let me = Self { started };
        for f in AUDIT_WATCHES {
            if Path::new(f).exists() {
                auditctl(&["-w", f, "-p", "r", "-k", "aiwatch-bench"])?;
            }
        }
        Ok(me)
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        let _ = auditctl(&["-D", "-k", "aiwatch-bench"]);
        if self.started {
            if let Some(pid) = auditd_pid() {
                // SAFETY: signalling the auditd this started, by the PID it recorded.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
    }
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn machine() -> BTreeMap<&'static str, String> {
    let uname = Command::new("uname")
        .arg("-rm")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().next().map(str::to_string))
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    [("kernel", uname), ("cpus", cpus.to_string()), ("cpu", cpu), ("memory", mem)].into_iter().collect()
}

/// A bar chart of the added cost per operation (log scale), as SVG.
fn chart(rows: &[(String, Vec<(String, f64)>)]) -> String {
    let colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728"];
    let (w, row_h, left) = (900.0, 26.0 * CONDITIONS.len() as f64 + 14.0, 150.0);
    let h = 40.0 + rows.len() as f64 * row_h + 40.0;
    let scale = |ns: f64| ((ns.max(1.0)).log10() / 6.0) * (w - left - 20.0); // 1 ns .. 1 ms
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    svg +=
        r#"<text x="10" y="18" font-size="13">Added cost per operation vs. no sensor (ns, log scale)</text>"#;
    for (i, (name, bars)) in rows.iter().enumerate() {
        let y0 = 30.0 + i as f64 * row_h;
        svg += &format!(r#"<text x="10" y="{}">{name}</text>"#, y0 + row_h / 2.0);
        for (j, (cond, ns)) in bars.iter().enumerate() {
            let y = y0 + j as f64 * 26.0;
            let len = if ns.is_finite() { scale(*ns) } else { 0.0 };
            svg += &format!(
                r#"<rect x="{left}" y="{y}" width="{len:.1}" height="20" fill="{}"/>"#,
                colors[j % 4]
            );
            let label = if ns.is_finite() { format!("{cond}: {ns:.0} ns") } else { format!("{cond}: n/a") };
            svg += &format!(r#"<text x="{:.1}" y="{}">{label}</text>"#, left + len + 4.0, y + 14.0);
        }
    }
    for (k, t) in ["1 ns", "10", "100", "1 µs", "10", "100", "1 ms"].iter().enumerate() {
        let x = left + k as f64 / 6.0 * (w - left - 20.0);
        svg += &format!(
            r##"<line x1="{x}" y1="28" x2="{x}" y2="{}" stroke="#ccc"/><text x="{x}" y="{}">{t}</text>"##,
            h - 30.0,
            h - 15.0
        );
    }
    svg + "</svg>\n"
}

/// What a condition keeps running while it is measured (stopped on drop).
#[allow(dead_code)] // the peers are held only for their Drop
enum Active {
    Aiwatch(Stopper),
    Bpftrace(Stopper),
    Audit(Audit),
}

pub fn run(pairs: usize, soak_seconds: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    for pkg in ["bpftrace", "auditd"] {
        let present = Command::new("dpkg-query")
            .args(["-W", "-f", "${Status}", pkg])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"));
        if !present {
            eprintln!("xtask: bench: installing {pkg} (a peer to compare with)");
            sh(Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends", pkg])
                .env("DEBIAN_FRONTEND", "noninteractive"))?;
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    sh(Command::new(&cargo)
        .args([
            "build",
            "--release",
            "-p",
            "sensor-user",
            "--bin",
            "aiwatch",
            "-p",
            "integration-tests",
            "--bin",
            "bench-driver",
        ])
        .env("PATH", crate::setup::path_with_cargo_bin()))?;
    let work = root().join("target/bench");
    std::fs::create_dir_all(&work)?;
    let bin = root().join("target/release/aiwatch");
    let untracked = work.join("bench-driver");
    let tracked = work.join("aiwatch-bench-agent");
    for d in [&untracked, &tracked] {
        let _ = std::fs::remove_file(d);
        std::fs::copy(root().join("target/release/bench-driver"), d)?;
    }
    let cfg = work.join("config.toml");
    std::fs::write(&cfg, "[[assistants]]\nname = \"bench-agent\"\nexe = [\"aiwatch-bench-agent\"]\n")?;
    let log = work.join("aiwatch.log");

    // samples[condition][workload]: ns/op per round; "none" collects every round's baselines.
    let mut samples: BTreeMap<String, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    let mut attach_ms = Vec::new();
    let mut rss_idle = Vec::new();
    let mut skipped: BTreeMap<&str, String> = BTreeMap::new();
    for round in 0..pairs {
        eprintln!("xtask: bench: round {} of {pairs}", round + 1);
        for cond in CONDITIONS {
            if skipped.contains_key(cond) {
                continue;
            }
            // A: no sensor, every workload.
            let mut base = Vec::new();
            for (w, n) in WORKLOADS {
                base.push(measure(&untracked, w, n, false)?);
            }
            // B: the condition, every workload.
            let active = match cond {
                "aiwatch_untracked" | "aiwatch_tracked" => start_aiwatch(&bin, &cfg, &log).map(|(s, ms)| {
                    attach_ms.push(ms as f64);
                    Active::Aiwatch(s)
                }),
                "bpftrace_filter" => start_bpftrace(&work.join("bpftrace.log")).map(Active::Bpftrace),
                _ => Audit::start().map(Active::Audit),
            };
            let active = match active {
                Ok(a) => a,
                Err(e) => {
                    skipped.insert(cond, format!("{e:#}"));
                    continue;
                }
            };
            if let Active::Aiwatch(s) = &active {
                std::thread::sleep(Duration::from_millis(300));
                rss_idle.push(rss_kib(s.0.id()) as f64);
            }
            let driver = if cond == "aiwatch_tracked" { &tracked } else { &untracked };
            for ((w, n), b) in WORKLOADS.iter().zip(base) {
                let x = measure(driver, w, *n, cond == "aiwatch_tracked")?;
                samples.entry("none".into()).or_default().entry(w.to_string()).or_default().push(b);
                samples.entry(cond.into()).or_default().entry(w.to_string()).or_default().push(x);
            }
            drop(active);
        }
    }
    let setup = load::Setup { bin: &bin, tracked: &tracked, cfg: &cfg, work: &work };
    eprintln!("xtask: bench: throughput at stepped rates ({} s in)", started.elapsed().as_secs());
    let counted = load::throughput(&setup, load::Output::Counted)?;
    let json_file = load::throughput(&setup, load::Output::JsonFile)?;
    eprintln!("xtask: bench: /proc scan time ({} s in)", started.elapsed().as_secs());
    // The scan is timed alone: without getenv probes, a start with 1,000 tracked processes does
    // not also open (and at stop close) thousands of perf events, which the scan time excludes.
    let scan_cfg = work.join("scan.toml");
    std::fs::write(
        &scan_cfg,
        "[[assistants]]\nname = \"bench-agent\"\nexe = [\"aiwatch-bench-agent\"]\n[variables]\ngetenv_probes = \"off\"\n",
    )?;
    let scan = scan::run(&bin, &untracked, &tracked, &scan_cfg, &work)?;
    eprintln!("xtask: bench: soak, {soak_seconds} s at {SOAK_RATE}/s ({} s in)", started.elapsed().as_secs());
    let soak = load::soak(&setup, SOAK_RATE, soak_seconds)?;
    let loads = Loads { throughput: [counted, json_file], scan, soak };

    let med = |cond: &str, w: &str| {
        median(&mut samples.get(cond).and_then(|m| m.get(w)).cloned().unwrap_or_default())
    };
    let none: BTreeMap<String, f64> =
        WORKLOADS.iter().map(|(w, _)| (w.to_string(), med("none", w))).collect();
    let mut table = Vec::new();
    let mut json_rows = Vec::new();
    let mut chart_rows = Vec::new();
    for (w, _) in WORKLOADS {
        let base = none[w];
        let mut row = format!("| {w} | {base:.0} |");
        let mut jr = format!("{{\"workload\":\"{w}\",\"none_ns\":{}", num(base));
        let mut bars = Vec::new();
        for cond in CONDITIONS {
            let v = samples.get(cond).and_then(|m| m.get(w)).cloned().unwrap_or_default();
            let (lo, hi) =
                v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(*x), b.max(*x)));
            let m = med(cond, w);
            row += &if m.is_finite() {
                format!(" {m:.0} ({lo:.0}–{hi:.0}) ×{:.2} |", m / base)
            } else {
                " n/a |".to_string()
            };
            jr += &format!(
                ",\"{cond}\":{{\"median_ns\":{},\"min_ns\":{},\"max_ns\":{},\"ratio\":{},\"added_ns\":{}}}",
                num(m),
                num(lo),
                num(hi),
                num(m / base),
                num(m - base)
            );
            // A negative difference is noise: shown as no added cost.
            bars.push((cond.to_string(), if m.is_finite() { (m - base).max(0.0) } else { f64::NAN }));
        }
        table.push(row);
        json_rows.push(jr + "}");
        chart_rows.push((w.to_string(), bars));
    }
    std::fs::create_dir_all(root().join("bench"))?;
    std::fs::write(root().join("bench/overhead.svg"), chart(&chart_rows))?;
    let attach = median(&mut attach_ms.clone());
    let rss = median(&mut rss_idle.clone());
    let m = machine();
    let json = format!(
        "{{\"machine\":{{{}}},\"pairs\":{pairs},\"seconds\":{},\"attach_ms_median\":{},\"rss_idle_kib_median\":{},\"skipped\":{{{}}},\"overhead\":[{}],{}}}\n",
        m.iter().map(|(k, v)| format!("\"{k}\":{}", quote(v))).collect::<Vec<_>>().join(","),
        started.elapsed().as_secs(),
        num(attach),
        num(rss),
        skipped.iter().map(|(k, v)| format!("\"{k}\":{}", quote(v))).collect::<Vec<_>>().join(","),
        json_rows.join(","),
        loads.json()
    );
    std::fs::write(root().join("bench/results.json"), &json)?;
    std::fs::write(
        root().join("BENCHMARKS.md"),
        report(&m, pairs, &table, attach, rss, &skipped, &none, &samples, &loads, started.elapsed()),
    )?;
    eprintln!(
        "xtask: bench: wrote BENCHMARKS.md, bench/results.json, bench/overhead.svg in {:?}",
        started.elapsed()
    );
    Ok(())
}

fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2}")
    } else {
        "null".into()
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[allow(clippy::too_many_arguments)]
fn report(
    m: &BTreeMap<&str, String>,
    pairs: usize,
    table: &[String],
    attach: f64,
    rss: f64,
    skipped: &BTreeMap<&str, String>,
    none: &BTreeMap<String, f64>,
    samples: &BTreeMap<String, BTreeMap<String, Vec<f64>>>,
    loads: &Loads,
    took: Duration,
) -> String {
    let med = |cond: &str, w: &str| {
        median(&mut samples.get(cond).and_then(|x| x.get(w)).cloned().unwrap_or_default())
    };
    let added = |cond: &str, w: &str| med(cond, w) - none[w];
    let spread = |cond: &str, w: &str| {
        let v = samples.get(cond).and_then(|x| x.get(w)).cloned().unwrap_or_default();
        v.iter().fold(0.0f64, |a, x| a.max(*x)) - v.iter().fold(f64::INFINITY, |a, x| a.min(*x))
    };
    let mut targets = Vec::new();
    let untracked_open = added("aiwatch_untracked", "open_watched");
    let filter_open = added("bpftrace_filter", "open_watched");
    let audit_open = added("auditd_watch", "open_watched");
    let untracked_readlink = added("aiwatch_untracked", "readlink");
    let audit_readlink = added("auditd_watch", "readlink");
    targets.push(format!(
        "| untracked: added cost per hooked syscall within 1.5× an empty in-kernel filter (bpftrace, same tracepoints, never-true filter) | open+close: aiwatch +{untracked_open:.0} ns, filter +{filter_open:.0} ns (×{:.2}) | {} | Both costs are mostly the kernel's: attaching any syscall tracepoint sends every task through the syscall slow path (getpid, hooked by nobody, pays +{:.0} ns too). |",
        untracked_open / filter_open.max(1.0),
        verdict(untracked_open <= 1.5 * filter_open.max(1.0)),
        added("aiwatch_untracked", "getpid")
    ));
    targets.push(format!(
        "| untracked: at least 100× less than auditd watch rules | watched open: auditd +{audit_open:.0} ns, aiwatch +{untracked_open:.0} ns (×{:.1}); readlink: auditd +{audit_readlink:.0} ns, aiwatch +{untracked_readlink:.0} ns (×{:.0}) | {} | auditd's read watch on an open costs far less here than the ~27 µs assumed when the target was set; where auditd resolves and records a path (readlink) the ratio is {:.0}×. aiwatch's floor is the tracepoint cost above; closing it for open means not hooking open, which is the point of the sensor. |",
        audit_open / untracked_open.max(1.0),
        audit_readlink / untracked_readlink.max(1.0),
        verdict(audit_open.is_finite() && untracked_open.max(1.0) * 100.0 <= audit_open),
        audit_readlink / untracked_readlink.max(1.0)
    ));
    let getenv = added("aiwatch_untracked", "getenv");
    let noise = spread("none", "getenv").max(none["getenv"] * 0.05);
    targets.push(format!(
        "| untracked: getenv costs no more than without aiwatch | {getenv:+.1} ns (no-sensor spread {:.1} ns) | {} | No breakpoint is placed in untracked processes (getenv probes follow sessions only); a difference within the spread is noise from the daemon on the other core. |",
        spread("none", "getenv"),
        verdict(getenv <= noise)
    ));
    let tracked_open = added("aiwatch_tracked", "open_watched");
    targets.push(format!(
        "| tracked: ≤ 1 µs added per reported event | watched open: +{tracked_open:.0} ns{} | {} | Measured separately with `kernel.bpf_stats_enabled`: the programs run about 660 ns per tracked open+close (enter 200, exit 325 with the 256-byte path copy and the ring-buffer record, close 130), down from 1,030 ns before per-thread stashes were reused in place and the exit stopped looking the process up again; the rest is tracepoint dispatch. File events no longer wake the daemon (drained every 5 ms): the same for the traced task here, and the daemon's CPU per event at 10,000 events/s fell from about 20 to 8 µs. Run-to-run spread of this figure is ±300 ns on this VM. What would close it: one program at exit only (the path pointer is still in the exit's `pt_regs`, via a raw tracepoint), a per-process fd bitmap so close() skips the socket lookup, and a shorter first path copy. |",
        if tracked_open > 1000.0 { format!(" (over by {:.0} ns)", tracked_open - 1000.0) } else { String::new() },
        verdict(tracked_open <= 1000.0)
    ));
    let tracked_getenv = added("aiwatch_tracked", "getenv");
    targets.push(format!(
        "| tracked: ≤ 1 µs per reported getenv | +{tracked_getenv:.0} ns{} | {} | Each call traps twice (uprobe and uretprobe: two breakpoint exceptions, each a VM exit here). Variable reads are already sent without waking the daemon (drained every 5 ms: +2.7 µs became about +2.0 µs). To close: drop the return probe (tell set/unset from the exec-time environment and the process's own setenv calls), and de-duplicate in the kernel (an LRU of tgid × name hash) so repeated reads of one variable send nothing. |",
        if tracked_getenv > 1000.0 { format!(" (over by {:.0} ns)", tracked_getenv - 1000.0) } else { String::new() },
        verdict(tracked_getenv <= 1000.0)
    ));
    targets.push(format!(
        "| RSS ≤ 32 MiB idle | {:.1} MiB | {} | |",
        rss / 1024.0,
        verdict(rss <= 32.0 * 1024.0)
    ));
    targets.push(format!(
        "| all probes attached ≤ 300 ms after start | {attach:.0} ms (median) | {} | |",
        verdict(attach <= 300.0)
    ));
    targets.extend(loads.targets());
    format!(
        "# Benchmarks\n\nGenerated by `cargo xtask bench` in {:.0} s. Machine: {} CPUs ({}), {}, kernel {}.\n\n\
         ## Method\n\n\
         A compiled driver (`tests/src/bin/bench-driver.rs`) runs each workload N times and reports the mean ns per\n\
         operation. Conditions are interleaved A/B in {pairs} rounds: within each round every workload is measured\n\
         with no sensor, then with the condition active, so both sides of a pair share the machine's state.\n\
         Figures are medians over the rounds, with min–max, and the ratio to the no-sensor median.\n\n\
         - `aiwatch_untracked`: aiwatch running with its default probes; the driver is not an assistant.\n\
         - `aiwatch_tracked`: the driver runs as a configured assistant: every hooked call is followed and\n  reported (JSON written to /dev/null). It waits 250 ms after exec before measuring, so the session's\n  getenv probes (attached by the daemon's worker within milliseconds) are in place.\n\
         - The driver runs on CPU 1 and each sensor's user-space process (aiwatch, bpftrace, and auditd when\n  started here) on CPU 0, as on a many-core host where a sensor's own work seldom lands on the\n  workload's core. Unpinned on two cores, the daemon's per-event work (see Throughput) shares the\n  driver's core part of the time and adds to its wall time, differently from run to run.\n\
         - `bpftrace_filter`: bpftrace 0.17 attached to the same syscall and sched tracepoints with a filter that\n  never matches — the cost of an equivalent always-attached in-kernel filter.\n\
         - `auditd_watch`: auditd with read watches (`-w FILE -p r`) on the watched files.\n\n\
         ## Overhead (ns/op: median (min–max) ×ratio to no sensor)\n\n\
         | workload | no sensor | aiwatch untracked | aiwatch tracked | bpftrace filter | auditd watch |\n\
         | --- | --- | --- | --- | --- | --- |\n{}\n\n![overhead](bench/overhead.svg)\n\n\
         ## Start-up and memory\n\n- All probes attached after {attach:.0} ms (median of {pairs} starts).\n\
         - Daemon RSS when idle: {:.1} MiB.\n\n\
         ## Targets\n\n| target | measured | verdict | why, and what would close it |\n| --- | --- | --- | --- |\n{}\n\n\
         {}\n{}",
        took.as_secs_f64(),
        m.get("cpus").cloned().unwrap_or_default(),
        m.get("cpu").cloned().unwrap_or_default(),
        m.get("memory").cloned().unwrap_or_default(),
        m.get("kernel").cloned().unwrap_or_default(),
        table.join("\n"),
        rss / 1024.0,
        targets.join("\n"),
        loads.sections(),
        if skipped.is_empty() {
            String::new()
        } else {
            format!("\nConditions not measured: {}\n", skipped.iter().map(|(k, v)| format!("`{k}` ({v})")).collect::<Vec<_>>().join("; "))
        }
    )
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "missed"
    }
}
