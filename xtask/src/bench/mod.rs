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

mod agree;
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
    /// The commit measured (`git describe --always --dirty`).
    pub commit: String,
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

/// The commit the bench measures, `-dirty` when the tree has changes.
fn commit() -> String {
    Command::new("git")
        .args(["describe", "--always", "--dirty"])
        .current_dir(root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
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
fn loads(env: &Env, opt: &Options, started: Instant) -> anyhow::Result<Loads> {
    let soak_seconds = opt.soak_seconds;
    eprintln!("xtask: bench: throughput at stepped rates ({} s in)", started.elapsed().as_secs());
    let counted = load::throughput(env, load::Output::Counted)?;
    let json_file = load::throughput(env, load::Output::JsonFile)?;
    eprintln!("xtask: bench: /proc scan time ({} s in)", started.elapsed().as_secs());
    let scan = scan(env, opt.scan_extra.first().copied().unwrap_or(1000))?;
    eprintln!("xtask: bench: soak, {soak_seconds} s at {SOAK_RATE}/s ({} s in)", started.elapsed().as_secs());
    let soak = load::soak(env, SOAK_RATE, soak_seconds)?;
    Ok(Loads { throughput: [counted, json_file], scan, soak })
}

/// The start-up scan with `extra` more processes.
fn scan(env: &Env, extra: u32) -> anyhow::Result<scan::Scan> {
    // The scan is timed alone: without getenv probes, a start with 1,000 tracked processes does
    // not also open (and at stop close) thousands of perf events, which the scan time excludes.
    let scan_cfg = env.work.join("scan.toml");
    std::fs::write(&scan_cfg, agent_config("[variables]\ngetenv_probes = \"off\"\n"))?;
    scan::run(&env.bin, &env.untracked, &env.tracked, &scan_cfg, &env.work, extra)
}

/// Parts of the bench a partial run (`--only`) runs.
#[derive(Clone, Copy, PartialEq, Debug, clap::ValueEnum)]
pub enum Part {
    Overhead,
    Throughput,
    Scan,
    Soak,
}

/// What `cargo xtask bench` was asked for.
pub struct Options {
    pub pairs: usize,
    pub soak_seconds: u64,
    /// Only these parts; their sections go to target/bench/partial.md, and BENCHMARKS.md and
    /// bench/results.json are left alone. Everything when empty.
    pub only: Vec<Part>,
    /// Overhead conditions and workloads to run (all when empty).
    pub conditions: Vec<String>,
    pub workloads: Vec<String>,
    /// Processes added for the scan measurement: the first in a full run, each in a partial one.
    pub scan_extra: Vec<u32>,
}

/// The parts in `opt.only`, their sections written to target/bench/partial.md (and printed): a
/// quicker look at one figure on a machine others share, which the full report is not.
fn partial(opt: &Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let env = prepare()?;
    let m = machine();
    let mut md = format!(
        "# Partial benchmark: {:?}\n\nBy `cargo xtask bench --only`; not the full report (BENCHMARKS.md). Machine: {} CPUs ({}), kernel {}.\n\n",
        opt.only, m.cpus, m.cpu, m.kernel
    );
    if opt.only.contains(&Part::Overhead) {
        let o = overhead::rounds(&env, opt.pairs, &opt.conditions, &opt.workloads)?;
        md += &report::overhead_table(&o);
        md += &report::cpu_table(&o);
        md += &report::programs_table(&o);
        md += &report::peer_records(&o);
        if !o.skipped.is_empty() {
            md += &format!("Conditions not measured: {:?}\n\n", o.skipped);
        }
    }
    if opt.only.contains(&Part::Throughput) {
        for output in [load::Output::Counted, load::Output::JsonFile] {
            md += &summary::throughput_section(&load::throughput(&env, output)?);
        }
    }
    if opt.only.contains(&Part::Scan) {
        for extra in &opt.scan_extra {
            md += &summary::scan_section(&scan(&env, *extra)?);
        }
    }
    if opt.only.contains(&Part::Soak) {
        md += &summary::soak_section(&load::soak(&env, SOAK_RATE, opt.soak_seconds)?);
    }
    md += &format!("\nTook {:.0} s.\n", started.elapsed().as_secs_f64());
    std::fs::write(env.work.join("partial.md"), &md)?;
    println!("{md}");
    eprintln!("xtask: bench: wrote target/bench/partial.md");
    Ok(())
}

pub fn run(opt: Options) -> anyhow::Result<()> {
    if !opt.only.is_empty() {
        return partial(&opt);
    }
    let started = Instant::now();
    let env = prepare()?;
    let overhead = overhead::rounds(&env, opt.pairs, &opt.conditions, &opt.workloads)?;
    let loads = loads(&env, &opt, started)?;
    let run = Run {
        machine: machine(),
        overhead,
        loads,
        took: started.elapsed(),
        bpftrace: peers::bpftrace_version(),
        commit: commit(),
    };
    std::fs::create_dir_all(root().join("bench"))?;
    let json_path = root().join("bench/results.json");
    // The results this run replaces, for the report's agreement section.
    let before: Option<serde_json::Value> =
        std::fs::read_to_string(&json_path).ok().and_then(|t| serde_json::from_str(&t).ok());
    let json = results::Results::of(&run).to_json()?;
    let now: serde_json::Value = serde_json::from_str(&json)?;
    std::fs::write(root().join("bench/overhead.svg"), chart::svg(&run.overhead))?;
    std::fs::write(&json_path, json)?;
    let md = report::markdown(&run) + &agree::section(before.as_ref(), &now);
    std::fs::write(root().join("BENCHMARKS.md"), md)?;
    eprintln!(
        "xtask: bench: wrote BENCHMARKS.md, bench/results.json, bench/overhead.svg in {:?}",
        started.elapsed()
    );
    Ok(())
}
