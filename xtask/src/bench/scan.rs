//! Start-up `/proc` scan time: the daemon logs how long its first pass took and how many
//! processes /proc listed; the cost per 1,000 processes is the difference made by 1,000 more
//! (held by `bench-driver hold`), untracked and as descendants of a tracked assistant.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    time::Duration,
};

use anyhow::{bail, Context as _};

use super::{
    daemon::{reap, start_aiwatch, Stopper},
    median,
    observe::log_field,
};

/// Daemon starts per measurement (the median is reported).
pub const RUNS: usize = 3;

/// Processes held alive until dropped (closing their stdin ends them all).
struct Held {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Held {
    fn start(driver: &Path, n: u32) -> anyhow::Result<Self> {
        let mut child = Command::new(driver)
            .args(["hold", &n.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting bench-driver hold")?;
        let stdin = child.stdin.take();
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("hold stdout")?).read_line(&mut line)?;
        let held = Self { child, stdin };
        if line.trim() != format!("ready {n}") {
            bail!("bench-driver hold {n}: {line:?}");
        }
        Ok(held)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Closing stdin ends it.
        self.stdin.take();
        reap(&mut self.child, Duration::from_secs(10));
    }
}

/// (processes listed, first-pass scan µs, its CPU µs if logged) of one daemon start.
fn one(bin: &Path, cfg: &Path, log: &Path) -> anyhow::Result<(u64, u64, Option<u64>)> {
    let (daemon, _): (Stopper, u64) =
        start_aiwatch(bin, cfg, log, &["--format", "none", "--no-metrics"], None)?;
    drop(daemon);
    let text = std::fs::read_to_string(log)?;
    let line = text.lines().find(|l| l.contains("start-up scan done")).context("no scan line in the log")?;
    match (log_field(line, "processes"), log_field(line, "scan_us")) {
        (Some(p), Some(us)) => Ok((p, us, log_field(line, "scan_cpu_us"))),
        _ => bail!("scan line without processes/scan_us: {line}"),
    }
}

pub struct Scan {
    /// Processes added (held) for `untracked` and `tracked`.
    pub extra: u32,
    /// Processes listed and median scan µs: baseline, +`extra` untracked, +`extra` tracked.
    pub base: (u64, f64),
    pub untracked: (u64, f64),
    pub tracked: (u64, f64),
    /// Median CPU µs of the pass (the daemon's thread), as `base`, `untracked`, `tracked`: on a
    /// shared machine, the wall time also counts waits for a CPU. NaN if not logged.
    pub cpu: [f64; 3],
}

impl Scan {
    /// Added µs per 1,000 processes over the baseline.
    pub fn per_thousand(&self, with: (u64, f64)) -> f64 {
        let n = with.0.saturating_sub(self.base.0).max(1) as f64;
        (with.1 - self.base.1) / n * 1000.0
    }

    /// Added CPU µs per 1,000 processes over the baseline: `i` 1 untracked, 2 tracked.
    pub fn cpu_per_thousand(&self, i: usize) -> f64 {
        let with = [self.base, self.untracked, self.tracked][i];
        self.per_thousand((with.0, self.cpu[i] - self.cpu[0] + self.base.1))
    }
}

pub fn run(
    bin: &Path,
    untracked: &Path,
    tracked: &Path,
    cfg: &Path,
    work: &Path,
    extra: u32,
) -> anyhow::Result<Scan> {
    let log = work.join("scan.log");
    let measure = |held: Option<(&Path, u32)>| -> anyhow::Result<((u64, f64), f64)> {
        let _held = held.map(|(d, n)| Held::start(d, n)).transpose()?;
        let mut procs = Vec::new();
        let mut us = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..RUNS {
            let (p, t, c) = one(bin, cfg, &log)?;
            procs.push(p as f64);
            us.push(t as f64);
            cpu.push(c.map_or(f64::NAN, |c| c as f64));
        }
        let cpu = if cpu.iter().any(|c| c.is_nan()) { f64::NAN } else { median(&mut cpu) };
        Ok(((median(&mut procs) as u64, median(&mut us)), cpu))
    };
    let (base, c0) = measure(None)?;
    let (untracked, c1) = measure(Some((untracked, extra)))?;
    let (tracked, c2) = measure(Some((tracked, extra)))?;
    Ok(Scan { extra, base, untracked, tracked, cpu: [c0, c1, c2] })
}
