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

pub const EXTRA: u32 = 1000;
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

/// (processes listed, first-pass scan µs) of one daemon start.
fn one(bin: &Path, cfg: &Path, log: &Path) -> anyhow::Result<(u64, u64)> {
    let (daemon, _): (Stopper, u64) =
        start_aiwatch(bin, cfg, log, &["--format", "none", "--no-metrics"], None)?;
    drop(daemon);
    let text = std::fs::read_to_string(log)?;
    let line = text.lines().find(|l| l.contains("start-up scan done")).context("no scan line in the log")?;
    match (log_field(line, "processes"), log_field(line, "scan_us")) {
        (Some(p), Some(us)) => Ok((p, us)),
        _ => bail!("scan line without processes/scan_us: {line}"),
    }
}

pub struct Scan {
    /// Processes listed and median scan µs: baseline, +1,000 untracked, +1,000 tracked.
    pub base: (u64, f64),
    pub untracked: (u64, f64),
    pub tracked: (u64, f64),
}

impl Scan {
    /// Added µs per 1,000 processes over the baseline.
    pub fn per_thousand(&self, with: (u64, f64)) -> f64 {
        let n = with.0.saturating_sub(self.base.0).max(1) as f64;
        (with.1 - self.base.1) / n * 1000.0
    }
}

pub fn run(bin: &Path, untracked: &Path, tracked: &Path, cfg: &Path, work: &Path) -> anyhow::Result<Scan> {
    let log = work.join("scan.log");
    let measure = |held: Option<(&Path, u32)>| -> anyhow::Result<(u64, f64)> {
        let _held = held.map(|(d, n)| Held::start(d, n)).transpose()?;
        let mut procs = Vec::new();
        let mut us = Vec::new();
        for _ in 0..RUNS {
            let (p, t) = one(bin, cfg, &log)?;
            procs.push(p as f64);
            us.push(t as f64);
        }
        Ok((median(&mut procs) as u64, median(&mut us)))
    };
    Ok(Scan {
        base: measure(None)?,
        untracked: measure(Some((untracked, EXTRA)))?,
        tracked: measure(Some((tracked, EXTRA)))?,
    })
}
