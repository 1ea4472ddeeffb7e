//! What the sensor costs the processes it watches: the driver times each workload with no sensor
//! and with each condition active, interleaved A/B, so both sides of a pair share the machine's
//! state.

use std::{collections::BTreeMap, path::Path, process::Command, time::Duration};

use anyhow::{bail, Context as _};

use super::{
    daemon::{pin, start_aiwatch, Stopper},
    median,
    observe::rss_kib,
    peers::{bpftrace_seen, programs_during, start_bpftrace, Audit, Seen},
    Env,
};

/// (workload, iterations per measurement): about 0.1-0.3 s each on these VMs. `open_watched`
/// opens `/etc/localtime`, a symbolic link to the zone file; `open_watched_regular` a regular
/// watched file (`/etc/machine-id`). `open_raw_hostname` and `open_raw_localtime` are issue 18's
/// independent loop (`syscall(SYS_openat, …, O_RDONLY | O_CLOEXEC)`, then `syscall(SYS_close)`,
/// no allocation per operation) for about 0.4 s, as it ran.
pub const WORKLOADS: [(&str, u64); 14] = [
    ("open_watched", 100_000),
    ("open_watched_regular", 100_000),
    ("open_raw_hostname", 200_000),
    ("open_raw_localtime", 200_000),
    ("open_unwatched", 100_000),
    ("readlink", 100_000),
    ("stat", 100_000),
    ("getpid", 1_000_000),
    ("connect_closed", 25_000),
    // Tracked, each call costs microseconds: 1M keeps that measurement near 2 s.
    ("getenv", 1_000_000),
    ("fork_exit", 1_000),
    ("exec_true", 300),
    // Through the system's libssl, what the prompt-marker scan probes: a 1 KiB HTTP request per
    // SSL_write, and a 1 MiB request in 16 KiB SSL_writes per operation (ns per MiB).
    ("ssl_write", 50_000),
    ("ssl_write_mib", 100),
];

pub const CONDITIONS: [&str; 4] = ["aiwatch_untracked", "aiwatch_tracked", "bpftrace_filter", "auditd_watch"];

/// The peers whose observations are counted.
pub const PEERS: [&str; 2] = ["bpftrace_filter", "auditd_watch"];

/// Whether `peer` must be shown to have observed `workload`: auditd's watches cover the files
/// the opens and the readlink read; bpftrace's programs are on every syscall the workloads make
/// but getpid (and getenv makes none).
pub fn expected(peer: &str, workload: &str) -> bool {
    match peer {
        "auditd_watch" => matches!(
            workload,
            "open_watched" | "open_watched_regular" | "open_raw_hostname" | "open_raw_localtime" | "readlink"
        ),
        "bpftrace_filter" => !matches!(workload, "getpid" | "getenv"),
        _ => false,
    }
}

/// Operations a driver run of `n` does: its warm-up (a tenth of up to 1,000), then `n`.
pub fn ops(n: u64) -> u64 {
    n + n.min(1000) / 10
}

/// Operations of the run in which bpftrace's program runs are counted (not a measured run: the
/// kernel's statistics are on).
const BPFTRACE_COUNTED: u64 = 10_000;

/// The baseline's name among the samples.
pub const NONE: &str = "none";

/// CPUs of the overhead rounds: the driver on one, every sensor's user-space process on the
/// other, as on a many-core host where a sensor's own work seldom lands on the workload's core.
/// (Unpinned on two cores, the daemon's per-event work shares the driver's core part of the
/// time and shows up in its wall time, run to run differently.)
pub const WORKLOAD_CPU: usize = 1;
pub const SENSOR_CPU: usize = 0;

/// Whether a machine with `cpus` CPUs runs the driver and the sensors on CPUs of their own.
pub fn pinned(cpus: usize) -> bool {
    [WORKLOAD_CPU, SENSOR_CPU].iter().all(|c| cpus > *c)
}

/// Milliseconds a tracked driver waits before measuring: the daemon attaches a session's getenv
/// probes on a worker a few (at worst tens of) milliseconds after exec.
pub const TRACKED_SETTLE_MS: u64 = 250;

/// How long an aiwatch condition idles before its RSS is read.
const IDLE_BEFORE_RSS: Duration = Duration::from_millis(300);

/// Median, min and max of one condition's samples of one workload (NaN and infinities when
/// there are none).
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    fn of(samples: &BTreeMap<String, BTreeMap<String, Vec<f64>>>, cond: &str, workload: &str) -> Self {
        let mut v = samples.get(cond).and_then(|m| m.get(workload)).cloned().unwrap_or_default();
        let (min, max) =
            v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(*x), b.max(*x)));
        Stats { median: median(&mut v), min, max }
    }
}

/// The rounds' samples, and what the aiwatch starts among them showed.
#[derive(Default)]
pub struct Overhead {
    pub pairs: usize,
    /// ns/op per round: samples[condition][workload]; [`NONE`] collects every pair's baseline.
    samples: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
    /// The driver's CPU time (its own and its reaped children's), ns/op, the same way: what the
    /// workload paid on its CPU, without the time another task held that CPU.
    cpu: BTreeMap<String, BTreeMap<String, Vec<f64>>>,
    /// Milliseconds each aiwatch start took to attach every probe.
    pub attach_ms: Vec<f64>,
    /// The daemon's RSS (KiB) shortly after each start.
    pub rss_idle_kib: Vec<f64>,
    /// Conditions that could not be started, and why.
    pub skipped: BTreeMap<&'static str, String>,
    /// What each peer was shown to observe, per round: seen[peer][workload].
    seen: BTreeMap<String, BTreeMap<String, Vec<Seen>>>,
    /// aiwatch's BPF programs per operation, per round (a separate run with the kernel's
    /// statistics on): programs[condition][workload] = (ns, runs).
    programs: BTreeMap<String, BTreeMap<String, Vec<(f64, f64)>>>,
    /// The workloads measured: all of [`WORKLOADS`] unless a partial run chose some.
    pub workloads: Vec<(&'static str, u64)>,
}

impl Overhead {
    pub fn new(pairs: usize) -> Self {
        Self { pairs, workloads: WORKLOADS.to_vec(), ..Default::default() }
    }

    pub fn push_seen(&mut self, peer: &str, workload: &str, s: Seen) {
        self.seen.entry(peer.into()).or_default().entry(workload.into()).or_default().push(s);
    }

    /// What `peer` was shown to observe of `workload`, over the rounds.
    pub fn observed(&self, peer: &str, workload: &str) -> Observed {
        let v = self.seen.get(peer).and_then(|m| m.get(workload)).map_or(&[][..], Vec::as_slice);
        Observed::of(v)
    }

    pub fn push_programs(&mut self, cond: &str, workload: &str, ns_per_op: f64, runs_per_op: f64) {
        self.programs
            .entry(cond.into())
            .or_default()
            .entry(workload.into())
            .or_default()
            .push((ns_per_op, runs_per_op));
    }

    /// Median ns and runs per operation of aiwatch's programs under `cond` (NaN: not measured).
    pub fn programs(&self, cond: &str, workload: &str) -> (f64, f64) {
        let v = self.programs.get(cond).and_then(|m| m.get(workload)).map_or(&[][..], Vec::as_slice);
        let (mut ns, mut runs): (Vec<f64>, Vec<f64>) = v.iter().copied().unzip();
        (median(&mut ns), median(&mut runs))
    }

    pub fn push(&mut self, cond: &str, workload: &str, ns: f64) {
        self.samples.entry(cond.into()).or_default().entry(workload.into()).or_default().push(ns);
    }

    pub fn push_cpu(&mut self, cond: &str, workload: &str, ns: f64) {
        self.cpu.entry(cond.into()).or_default().entry(workload.into()).or_default().push(ns);
    }

    pub fn stats(&self, cond: &str, workload: &str) -> Stats {
        Stats::of(&self.samples, cond, workload)
    }

    /// The driver's CPU time per operation under `cond`.
    pub fn cpu_stats(&self, cond: &str, workload: &str) -> Stats {
        Stats::of(&self.cpu, cond, workload)
    }

    /// CPU ns/op `cond` adds to `workload` (medians).
    pub fn cpu_added(&self, cond: &str, workload: &str) -> f64 {
        self.cpu_stats(cond, workload).median - self.cpu_stats(NONE, workload).median
    }

    /// The no-sensor median of `workload`.
    pub fn none(&self, workload: &str) -> f64 {
        self.stats(NONE, workload).median
    }

    /// ns/op `cond` adds to `workload` (medians).
    pub fn added(&self, cond: &str, workload: &str) -> f64 {
        self.stats(cond, workload).median - self.none(workload)
    }

    /// One A/B pair: every workload with no sensor, then with `cond` active. A condition that
    /// cannot start is recorded as skipped.
    fn pair(&mut self, env: &Env, cond: &'static str) -> anyhow::Result<()> {
        let mut base = Vec::new();
        for (w, n) in self.workloads.clone() {
            base.push(measure(&env.untracked, w, n, false)?);
        }
        let active = match self.start(env, cond) {
            Ok(a) => a,
            Err(e) => {
                self.skipped.insert(cond, format!("{e:#}"));
                return Ok(());
            }
        };
        let tracked = cond == "aiwatch_tracked";
        let driver = if tracked { &env.tracked } else { &env.untracked };
        for ((w, n), b) in self.workloads.clone().iter().zip(base) {
            let mark = match &active {
                Active::Audit(a) => Some(a.mark()?),
                _ => None,
            };
            let x = measure(driver, w, *n, tracked)?;
            if let (Active::Audit(a), Some(m)) = (&active, mark) {
                self.push_seen(cond, w, a.seen_since(&m, ops(*n))?);
            }
            self.push(NONE, w, b.wall);
            self.push(cond, w, x.wall);
            self.push_cpu(NONE, w, b.cpu);
            self.push_cpu(cond, w, x.cpu);
        }
        if let Active::Aiwatch(a) = &active {
            // Not during the measured runs: the statistics add two clock reads to every run.
            // They count every process's runs: what ran meanwhile with no workload (the daemon's
            // own system calls, the machine's) is measured first and taken off by duration.
            let idle_for = Duration::from_millis(500);
            let idle = programs_during(a.id(), || {
                std::thread::sleep(idle_for);
                Ok(())
            })?;
            let per_s = |x: u64| x as f64 / idle_for.as_secs_f64();
            // Whole runs: a tracked driver's start-up (its session's start, the daemon's work
            // on it) is a fixed cost that a short run would spread over too few operations.
            for (w, n) in self.workloads.clone() {
                let started = std::time::Instant::now();
                let p = programs_during(a.id(), || measure(driver, w, n, tracked).map(drop))?;
                let t = started.elapsed().as_secs_f64();
                let ops = ops(n) as f64;
                let ns = (p.ns as f64 - per_s(idle.ns) * t).max(0.0) / ops;
                let runs = (p.runs as f64 - per_s(idle.runs) * t).max(0.0) / ops;
                self.push_programs(cond, w, ns, runs);
            }
        }
        if let Active::Bpftrace(b) = &active {
            for (w, n) in self.workloads.clone() {
                let n = n.min(BPFTRACE_COUNTED);
                let seen = bpftrace_seen(b.id(), ops(n), || measure(driver, w, n, false).map(drop))?;
                self.push_seen(cond, w, seen);
            }
        }
        drop(active);
        Ok(())
    }

    fn start(&mut self, env: &Env, cond: &str) -> anyhow::Result<Active> {
        Ok(match cond {
            "aiwatch_untracked" | "aiwatch_tracked" => {
                let args = ["--format", "json", "--detail", "all", "--output", "/dev/null", "--no-metrics"];
                let (s, ms) = start_aiwatch(
                    &env.bin,
                    &env.cfg,
                    &env.work.join("aiwatch.log"),
                    &args,
                    Some(SENSOR_CPU),
                )?;
                self.attach_ms.push(ms as f64);
                std::thread::sleep(IDLE_BEFORE_RSS);
                self.rss_idle_kib.push(rss_kib(s.id()) as f64);
                Active::Aiwatch(s)
            }
            "bpftrace_filter" => {
                Active::Bpftrace(start_bpftrace(&env.work.join("bpftrace.log"), SENSOR_CPU)?)
            }
            _ => Active::Audit(Audit::start(SENSOR_CPU, &env.work)?),
        })
    }
}

/// What a condition keeps running while it is measured (stopped on drop).
#[allow(dead_code)] // held only for their Drop
enum Active {
    Aiwatch(Stopper),
    Bpftrace(Stopper),
    Audit(Audit),
}

/// What a peer was shown to observe of a workload over the rounds.
#[derive(Debug, Default, PartialEq)]
pub struct Observed {
    pub rounds: usize,
    /// Totals over the rounds whose records were counted.
    pub ops: u64,
    pub records: u64,
    pub lost: u64,
    /// Rounds whose records could not be counted.
    pub uncounted: usize,
    /// The fewest records per operation in one round.
    pub min_per_op: Option<f64>,
}

impl Observed {
    fn of(v: &[Seen]) -> Self {
        let mut o = Observed { rounds: v.len(), ..Default::default() };
        for s in v {
            o.lost += s.lost;
            let Some(r) = s.records else {
                o.uncounted += 1;
                continue;
            };
            o.ops += s.ops;
            o.records += r;
            let per = r as f64 / s.ops.max(1) as f64;
            o.min_per_op = Some(o.min_per_op.map_or(per, |m: f64| m.min(per)));
        }
        o
    }

    /// Shown to have observed every operation of every round (Some(false): some round showed
    /// fewer records than operations; None: nothing was counted).
    pub fn every_op(&self) -> Option<bool> {
        (self.uncounted == 0).then_some(()).and(self.min_per_op).map(|m| m >= 1.0)
    }
}

/// `pairs` interleaved rounds of every condition in `conditions` (all when empty) over the
/// workloads named in `workloads` (all when empty).
pub fn rounds(
    env: &Env,
    pairs: usize,
    conditions: &[String],
    workloads: &[String],
) -> anyhow::Result<Overhead> {
    let mut o = Overhead::new(pairs);
    for w in workloads {
        if !WORKLOADS.iter().any(|(n, _)| n == w) {
            bail!("no workload {w:?}");
        }
    }
    for c in conditions {
        if !CONDITIONS.contains(&c.as_str()) {
            bail!("no condition {c:?}");
        }
    }
    o.workloads.retain(|(w, _)| workloads.is_empty() || workloads.iter().any(|x| x == w));
    for round in 0..pairs {
        eprintln!("xtask: bench: round {} of {pairs}", round + 1);
        for cond in
            CONDITIONS.into_iter().filter(|c| conditions.is_empty() || conditions.iter().any(|x| x == c))
        {
            if !o.skipped.contains_key(cond) {
                o.pair(env, cond)?;
            }
        }
    }
    Ok(o)
}

/// What one driver run measured: mean wall-clock and CPU ns per operation.
pub struct Sample {
    pub wall: f64,
    pub cpu: f64,
}

impl Sample {
    /// The driver's `WALL_NS CPU_NS` line.
    fn parse(line: &str) -> anyhow::Result<Self> {
        let mut it = line.split_whitespace().map(str::parse::<f64>);
        match (it.next(), it.next(), it.next()) {
            (Some(Ok(wall)), Some(Ok(cpu)), None) => Ok(Sample { wall, cpu }),
            _ => bail!("driver output {line:?}: expected `WALL_NS CPU_NS`"),
        }
    }
}

/// Mean ns per operation of `n` runs of `workload` by `driver` (after the settle time when
/// `tracked`).
fn measure(driver: &Path, workload: &str, n: u64, tracked: bool) -> anyhow::Result<Sample> {
    let mut cmd = Command::new(driver);
    pin(&mut cmd, WORKLOAD_CPU).args([workload, &n.to_string()]);
    if tracked {
        cmd.arg(TRACKED_SETTLE_MS.to_string());
    }
    let out = cmd.output().context("running the driver")?;
    if !out.status.success() {
        bail!("driver {workload}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Sample::parse(String::from_utf8_lossy(&out.stdout).trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_needs_a_record_per_op_in_every_counted_round() {
        let seen = |records| Seen { ops: 100, records, lost: 0 };
        assert_eq!(Observed::of(&[]).every_op(), None);
        let o = Observed::of(&[seen(Some(100)), seen(Some(410))]);
        assert_eq!((o.ops, o.records, o.min_per_op, o.every_op()), (200, 510, Some(1.0), Some(true)));
        assert_eq!(Observed::of(&[seen(Some(410)), seen(Some(99))]).every_op(), Some(false));
        let o = Observed::of(&[seen(Some(100)), seen(None)]);
        assert_eq!((o.uncounted, o.every_op()), (1, None));
        assert_eq!(ops(100_000), 100_100);
        assert_eq!(ops(300), 330);
    }

    #[test]
    fn the_drivers_line_is_wall_then_cpu_time() {
        let s = Sample::parse("812.5 640.0").unwrap();
        assert_eq!((s.wall, s.cpu), (812.5, 640.0));
        for bad in ["812.5", "812.5 x", "1 2 3", ""] {
            assert!(Sample::parse(bad).is_err(), "{bad:?}");
        }
    }
}
