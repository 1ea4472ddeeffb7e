//! `cargo xtask vmtest`: the real-kernel integration tests inside other Linux kernels (Debian's
//! cloud kernels, booted under qemu), the test binaries built on the host and run from the
//! host's filesystem shared read-only. See docs/vmtest.md.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

mod guest;
mod kernels;
mod report;
mod suite;

use guest::{Boot, Outcome, Transport};
use kernels::{Kernel, KEYS};
use report::{KernelResult, Status};
use suite::{BinResult, Suite, TestBin};

/// Kernels run when none is named: the oldest two the sensor supports.
const DEFAULT_KERNELS: [&str; 2] = ["5.10", "6.1"];

/// Wall-time limit of one boot (tests under TCG run about 2.5 times slower than on the host).
const TIMEOUT_CORE: Duration = Duration::from_secs(15 * 60);
const TIMEOUT_FULL: Duration = Duration::from_secs(40 * 60);

/// Boots per kernel when the guest produces no exit status.
const BOOTS: u32 = 2;

/// Run dirs kept per kernel (older ones are removed as new ones are made).
const RUNS_KEPT: usize = 6;

#[derive(clap::Args)]
pub struct Args {
    /// Kernels to boot (repeatable or comma-separated). Default: 5.10 and 6.1.
    #[arg(
        long = "kernel",
        value_name = "VERSION",
        num_args = 1..,
        value_delimiter = ',',
        value_parser = clap::builder::PossibleValuesParser::new(KEYS),
        conflicts_with = "all"
    )]
    kernels: Vec<String>,
    /// Every known kernel: 5.10, 6.1, 6.12, 6.16, 7 (the newest 7.x).
    #[arg(long)]
    all: bool,
    /// Which test binaries. Default: full with --all, core otherwise.
    #[arg(long, value_enum)]
    suite: Option<Suite>,
    /// Threads per test binary (libtest's --test-threads).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    test_threads: u32,
    /// After `--`: passed to every test binary (a name filter, `--exact`, …).
    #[arg(last = true, value_name = "FILTER")]
    filter: Vec<String>,
}

/// What `cargo xtask test` runs: the default kernels (5.10, 6.1), the core suite, one thread.
impl Default for Args {
    fn default() -> Self {
        Self { kernels: Vec::new(), all: false, suite: None, test_threads: 1, filter: Vec::new() }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::require_root("cargo xtask vmtest")?;
    let keys: Vec<String> = if args.all {
        KEYS.iter().map(|k| k.to_string()).collect()
    } else if args.kernels.is_empty() {
        DEFAULT_KERNELS.iter().map(|k| k.to_string()).collect()
    } else {
        let mut keys = Vec::new();
        for k in args.kernels {
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        keys
    };
    let suite = args.suite.unwrap_or(if args.all { Suite::Full } else { Suite::Core });

    // What this needs installed (setup::Step::VmPackages and what the tests use) the caller's
    // setup steps installed: `cargo xtask vmtest`'s, or `cargo xtask test`'s.
    let aiwatch = crate::build()?;
    let bins = suite::select(&suite::build_tests()?, suite)?;
    eprintln!(
        "xtask: vmtest: suite {}: {}",
        suite.name(),
        bins.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", ")
    );
    let kernels = kernels::fetch(&keys)?;

    let plan = Plan {
        bins: &bins,
        aiwatch: &aiwatch,
        suite,
        threads: args.test_threads,
        filter: &args.filter,
        timeout: if suite == Suite::Full { TIMEOUT_FULL } else { TIMEOUT_CORE },
    };
    let mut results = Vec::new();
    for k in &kernels {
        let r = run_kernel(k, &plan);
        eprintln!("{}", report::line(&r));
        results.push(r);
    }
    let json = crate::root().join("target/vmtest/results.json");
    report::write_json(&json, &results)?;
    eprintln!("\nxtask: vmtest: results (also in {}):\n{}", json.display(), report::table(&results));
    if results.iter().all(KernelResult::ok) {
        if results.iter().all(|r| r.passed + r.failed == 0) {
            eprintln!("xtask: vmtest: note: no test ran (does the filter match any test name?)");
        }
        Ok(())
    } else {
        let bad: Vec<&str> = results.iter().filter(|r| !r.ok()).map(|r| r.kernel.as_str()).collect();
        bail!("vmtest failed on kernel(s) {}", bad.join(", "))
    }
}

/// What every kernel runs.
struct Plan<'a> {
    bins: &'a [TestBin],
    aiwatch: &'a Path,
    suite: Suite,
    threads: u32,
    filter: &'a [String],
    timeout: Duration,
}

/// Boots `k` and runs the plan, once more if the guest produced no exit status; an error
/// preparing or booting it is recorded, not returned, so the other kernels still run.
fn run_kernel(k: &Kernel, plan: &Plan) -> KernelResult {
    let mut r = KernelResult {
        kernel: k.key.clone(),
        release: k.release.clone(),
        package_version: k.package_version.clone(),
        suite: plan.suite,
        filter: plan.filter.to_vec(),
        status: Status::Error,
        passed: 0,
        failed: 0,
        ignored: 0,
        attempts: 0,
        wall_seconds: 0.0,
        run_dirs: Vec::new(),
        binaries: Vec::new(),
        error: None,
    };
    if let Err(e) = attempts(k, plan, &mut r) {
        r.status = Status::Error;
        r.error = Some(format!("{e:#}"));
    }
    r
}

fn attempts(k: &Kernel, plan: &Plan, r: &mut KernelResult) -> anyhow::Result<()> {
    let transport = Transport::of(k);
    let initramfs = guest::initramfs(k, transport)?;
    // A guest that dies is booted again for the binaries that had not finished: what finished
    // before the death stands.
    let mut pending: Vec<TestBin> = plan.bins.to_vec();
    let mut finished: Vec<BinResult> = Vec::new();
    for attempt in 1..=BOOTS {
        let run_dir = new_run_dir(k, attempt)?;
        let script = suite::script(&pending, plan.aiwatch, plan.threads as usize, plan.filter);
        std::fs::write(run_dir.join("run.sh"), script).context("writing run.sh")?;
        eprintln!("xtask: vmtest: booting {} ({}), run dir {}", k.key, k.release, run_dir.display());
        let start = Instant::now();
        let outcome = guest::boot(&Boot {
            kernel: k,
            initramfs: &initramfs,
            transport,
            run_dir: &run_dir,
            timeout: plan.timeout,
            label: &k.key,
        });
        r.wall_seconds += start.elapsed().as_secs_f64();
        r.attempts = attempt;
        r.run_dirs.push(run_dir.clone());
        let outcome = outcome?;
        let (done, unfinished): (Vec<BinResult>, Vec<BinResult>) =
            suite::collect(&run_dir, &pending).into_iter().partition(|b| b.exit.is_some());
        finished.extend(done);
        pending.retain(|b| unfinished.iter().any(|u| u.name == b.name));
        // In the plan's order, the unfinished ones as far as they got.
        r.binaries = plan
            .bins
            .iter()
            .filter_map(|b| finished.iter().chain(&unfinished).find(|x| x.name == b.name).cloned())
            .collect();
        r.passed = r.binaries.iter().map(|b| b.passed).sum();
        r.failed = r.binaries.iter().map(|b| b.failed).sum();
        r.ignored = r.binaries.iter().map(|b| b.ignored).sum();
        let console = run_dir.join("console.log");
        r.status = match outcome {
            Outcome::Exited(_) if r.binaries.iter().all(BinResult::ok) => Status::Passed,
            Outcome::Exited(rc) => {
                eprintln!("xtask: vmtest: {}: run.sh exited {rc}; guest console:", k.key);
                eprintln!("{}", guest::console_excerpt(&console));
                Status::Failed
            }
            Outcome::Died => Status::Died,
            Outcome::TimedOut => Status::TimedOut,
        };
        if matches!(outcome, Outcome::Died | Outcome::TimedOut) {
            let what = match outcome {
                Outcome::Died => "the guest died (no exit status)".to_string(),
                _ => format!("the guest did not finish within {} s", plan.timeout.as_secs()),
            };
            eprintln!("xtask: vmtest: {}: {what}; guest console:", k.key);
            eprintln!("{}", guest::console_excerpt(&console));
            let qemu = guest::tail(&run_dir.join("qemu.log"), 10);
            if !qemu.is_empty() {
                eprintln!("xtask: vmtest: qemu said:\n{qemu}");
            }
            // Multi-threaded TCG occasionally panics a guest kernel (a race with the kernel
            // patching its own code as probes attach): once is noise, twice is not.
            if attempt < BOOTS && !pending.is_empty() {
                let names: Vec<&str> = pending.iter().map(|b| b.name.as_str()).collect();
                eprintln!("xtask: vmtest: {}: booting again for {}", k.key, names.join(", "));
                continue;
            }
        }
        break;
    }
    Ok(())
}

/// A fresh `target/vmtest/runs/<release>/<unix time>-<attempt>`, the guest's writable dir;
/// the oldest run dirs of the kernel beyond RUNS_KEPT are removed.
fn new_run_dir(k: &Kernel, attempt: u32) -> anyhow::Result<PathBuf> {
    let parent = crate::root().join("target/vmtest/runs").join(&k.release);
    std::fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let mut old: Vec<PathBuf> =
        std::fs::read_dir(&parent)?.filter_map(Result::ok).map(|e| e.path()).collect();
    old.sort();
    for dir in old.iter().take(old.len().saturating_sub(RUNS_KEPT - 1)) {
        let _ = std::fs::remove_dir_all(dir);
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let dir = parent.join(format!("{now}-{attempt}"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}
