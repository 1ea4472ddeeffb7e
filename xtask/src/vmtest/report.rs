//! Per-kernel results: one line as each kernel finishes, a table at the end, and
//! `target/vmtest/results.json`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;

use super::suite::{BinResult, Suite};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Every test binary exited 0.
    Passed,
    /// The guest ran the tests and some failed.
    Failed,
    /// No exit status from the guest, twice (kernel panic).
    Died,
    /// No exit status from the guest before the time limit, twice.
    TimedOut,
    /// The kernel could not be prepared or booted.
    Error,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Passed => "ok",
            Status::Failed => "FAILED",
            Status::Died => "DIED",
            Status::TimedOut => "TIMED OUT",
            Status::Error => "ERROR",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct KernelResult {
    /// The `--kernel` value.
    pub kernel: String,
    /// `uname -r` of the guest.
    pub release: String,
    pub package_version: String,
    pub suite: Suite,
    pub filter: Vec<String>,
    pub status: Status,
    pub passed: u32,
    pub failed: u32,
    pub ignored: u32,
    /// Boots (2 when the first guest died: the second runs the binaries that had not finished).
    pub attempts: u32,
    /// Wall time of every attempt together, including boot and power-off.
    pub wall_seconds: f64,
    /// Each boot's run dir: run.sh, console.log, guest.log, `<binary>.out`/`.rc`/`.time`.
    pub run_dirs: Vec<PathBuf>,
    pub binaries: Vec<BinResult>,
    pub error: Option<String>,
}

impl KernelResult {
    pub fn ok(&self) -> bool {
        self.status == Status::Passed
    }
}

fn minutes(s: f64) -> String {
    let s = s.round() as u64;
    format!("{}m{:02}s", s / 60, s % 60)
}

/// One line per kernel, as it finishes.
pub fn line(r: &KernelResult) -> String {
    let mut s = format!(
        "xtask: vmtest: {} ({}, {}) suite {}: {} passed, {} failed, {} ignored in {}{}: {}",
        r.kernel,
        r.release,
        r.package_version,
        r.suite.name(),
        r.passed,
        r.failed,
        r.ignored,
        minutes(r.wall_seconds),
        if r.attempts > 1 { format!(" ({} boots)", r.attempts) } else { String::new() },
        r.status.name()
    );
    for b in r.binaries.iter().filter(|b| !b.ok()) {
        let exit = b.exit.map_or("did not finish".to_string(), |e| format!("exit {e}"));
        s += &format!("\n    {}: {exit}", b.name);
        for f in &b.failures {
            s += &format!("\n      failed: {f}");
        }
    }
    if let Some(e) = &r.error {
        s += &format!("\n    error: {e}");
    }
    s
}

/// The summary table.
pub fn table(results: &[KernelResult]) -> String {
    let head = ["kernel", "release", "package", "suite", "passed", "failed", "ignored", "wall", "result"];
    let rows: Vec<[String; 9]> = results
        .iter()
        .map(|r| {
            [
                r.kernel.clone(),
                r.release.clone(),
                r.package_version.clone(),
                r.suite.name().to_string(),
                r.passed.to_string(),
                r.failed.to_string(),
                r.ignored.to_string(),
                minutes(r.wall_seconds),
                r.status.name().to_string(),
            ]
        })
        .collect();
    let mut width = head.map(str::len);
    for row in &rows {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.len());
        }
    }
    let fmt = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = fmt(head.to_vec()) + "\n";
    for row in &rows {
        out += &fmt(row.iter().map(String::as_str).collect());
        out.push('\n');
    }
    out
}

#[derive(Serialize)]
struct Results<'a> {
    /// Unix time the run finished.
    finished: u64,
    kernels: &'a [KernelResult],
}

pub fn write_json(path: &Path, results: &[KernelResult]) -> anyhow::Result<()> {
    let finished =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let rounded: Vec<KernelResult> = results
        .iter()
        .map(|r| KernelResult { wall_seconds: (r.wall_seconds * 10.0).round() / 10.0, ..r.clone() })
        .collect();
    let text = serde_json::to_string_pretty(&Results { finished, kernels: &rounded })?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
}
