//! `cargo xtask bench`: what the sensor costs the processes it watches, against no sensor and
//! against peers (bpftrace with equivalent tracepoints and a filter, auditd with watch rules),
//! interleaved A/B in one run; start-up time and idle memory; throughput at stepped rates; the
//! start-up `/proc` scan; a soak at load. Writes BENCHMARKS.md, bench/results.json and
//! bench/overhead.svg, everything in them from this run.
//!
//! Its setup step ([`crate::setup::Step::BenchPeers`]) installs bpftrace and auditd.

use std::{
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use serde::{Serialize, Serializer};

use crate::{root, sh};

mod chart;
mod daemon;
mod load;
// The test harness's readers of a running daemon, shared as a file: xtask cannot depend on the
// harness's crate (it needs the eBPF toolchain that setup installs).
#[path = "../../../tests/src/observe.rs"]
mod observe;
mod overhead;
mod peers;
mod report;
mod results;
#[cfg(test)]
mod sample;
mod scan;
mod summary;

use overhead::Overhead;
use summary::Loads;

/// Watched reads per second during the soak: the load the memory target is set at.
const SOAK_RATE: u64 = 50_000;

/// Name under which the driver runs as the configured assistant.
const AGENT: &str = "aiwatch-bench-agent";

/// What the benchmarks run: the daemon, the driver under a plain name and as an assistant, the
/// config that makes it one, and the directory for logs.
pub struct Env {
    pub bin: PathBuf,
    pub untracked: PathBuf,
    pub tracked: PathBuf,
    pub cfg: PathBuf,
    pub work: PathBuf,
}

/// What the bench ran on.
#[derive(Serialize)]
pub struct Machine {
    pub cpu: String,
    /// A string in results.json, as it always was.
    #[serde(serialize_with = "as_string")]
    pub cpus: usize,
    pub kernel: String,
    pub memory: String,
}

fn as_string<S: Serializer>(n: &usize, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&n.to_string())
}

/// Everything one run measured.
pub struct Run {
    pub machine: Machine,
    pub overhead: Overhead,
    pub loads: Loads,
    pub took: Duration,
    /// `bpftrace --version`, if it ran.
    pub bpftrace: Option<String>,
}

pub fn median(v: &mut [f64]) -> f64 {
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

fn machine() -> Machine {
    let kernel = Command::new("uname")
        .arg("-rm")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let memory = std::fs::read_to_string("/proc/meminfo")
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
    Machine { cpu, cpus, kernel, memory }
}

/// Builds the daemon and the driver; copies the driver under a plain name and as the assistant.
fn prepare() -> anyhow::Result<Env> {
    sh(crate::cargo().args([
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
    ]))?;
    let work = root().join("target/bench");
    std::fs::create_dir_all(&work)?;
    let untracked = work.join("bench-driver");
    let tracked = work.join(AGENT);
    for d in [&untracked, &tracked] {
        let _ = std::fs::remove_file(d);
        std::fs::copy(root().join("target/release/bench-driver"), d)?;
    }
    let cfg = work.join("config.toml");
    std::fs::write(&cfg, agent_config(""))?;
    Ok(Env { bin: root().join("target/release/aiwatch"), untracked, tracked, cfg, work })
}

/// A config that makes the driver's [`AGENT`] copy an assistant, with `extra` after it.
fn agent_config(extra: &str) -> String {
    format!("[[assistants]]\nname = \"bench-agent\"\nexe = [\"{AGENT}\"]\n{extra}")
}

/// Throughput both ways, the scan, the soak.
fn loads(env: &Env, soak_seconds: u64, started: Instant) -> anyhow::Result<Loads> {
    eprintln!("xtask: bench: throughput at stepped rates ({} s in)", started.elapsed().as_secs());
    let counted = load::throughput(env, load::Output::Counted)?;
    let json_file = load::throughput(env, load::Output::JsonFile)?;
    eprintln!("xtask: bench: /proc scan time ({} s in)", started.elapsed().as_secs());
    // The scan is timed alone: without getenv probes, a start with 1,000 tracked processes does
    // not also open (and at stop close) thousands of perf events, which the scan time excludes.
    let scan_cfg = env.work.join("scan.toml");
    std::fs::write(&scan_cfg, agent_config("[variables]\ngetenv_probes = \"off\"\n"))?;
    let scan = scan::run(&env.bin, &env.untracked, &env.tracked, &scan_cfg, &env.work)?;
    eprintln!("xtask: bench: soak, {soak_seconds} s at {SOAK_RATE}/s ({} s in)", started.elapsed().as_secs());
    let soak = load::soak(env, SOAK_RATE, soak_seconds)?;
    Ok(Loads { throughput: [counted, json_file], scan, soak })
}

pub fn run(pairs: usize, soak_seconds: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let env = prepare()?;
    let overhead = overhead::rounds(&env, pairs)?;
    let loads = loads(&env, soak_seconds, started)?;
    let run = Run {
        machine: machine(),
        overhead,
        loads,
        took: started.elapsed(),
        bpftrace: peers::bpftrace_version(),
    };
    std::fs::create_dir_all(root().join("bench"))?;
    std::fs::write(root().join("bench/overhead.svg"), chart::svg(&run.overhead))?;
    std::fs::write(root().join("bench/results.json"), results::Results::of(&run).to_json()?)?;
    std::fs::write(root().join("BENCHMARKS.md"), report::markdown(&run))?;
    eprintln!(
        "xtask: bench: wrote BENCHMARKS.md, bench/results.json, bench/overhead.svg in {:?}",
        started.elapsed()
    );
    Ok(())
}
