//! `cargo xtask setup | build | run | test | lint | install | image | bench | fuzz | vmtest`: everything
//! a fresh machine needs, in one place. Each command first installs what it needs and is missing
//! (its [`setup::Step`]s, see [`Cmd::steps`]); `setup` installs everything.

mod bench;
mod fuzz;
mod image;
mod install;
mod setup;
mod vmtest;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use setup::Step;

#[derive(Parser)]
#[command(name = "xtask", about = "aiwatch development tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what every other command needs and is missing: nightly rust-src, LLVM 22 dev
    /// packages and bpf-linker, the tests' prometheus, assistants and cargo-fuzz, the VM
    /// packages of vmtest, the bench's peers.
    Setup,
    /// Install what building needs (nightly rust-src, LLVM 22, bpf-linker), then build the release
    /// `aiwatch` binary (with its eBPF programs).
    Build,
    /// Install what building needs, build, and run the sensor with its built-in default config
    /// (extra args go to `aiwatch run`).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Install what building and the tests need, build, lint, and run every test: unit tests,
    /// root integration tests that load the real probes into this kernel, the core integration
    /// tests in Debian's 5.10 and 6.1 kernels under qemu (`vmtest`), and each fuzz target briefly
    /// (with a filter: only the matching unit and integration tests).
    Test {
        /// Only tests whose name contains this.
        filter: Option<String>,
    },
    /// cargo fmt --check and clippy -D warnings on every crate, the eBPF one included (installs
    /// nothing).
    Lint,
    /// Install what building needs, build, and install aiwatch: binary, systemd unit, default
    /// config (kept if present), man page, shell completions.
    Install {
        /// Installation prefix for the binary, man page and completions.
        #[arg(long, default_value = "/usr/local")]
        prefix: PathBuf,
        /// Stage under this directory instead of / (for packaging).
        #[arg(long)]
        destdir: Option<PathBuf>,
    },
    /// Build the container image (podman) from a Debian root filesystem made with debootstrap
    /// from this host's Debian mirror (cached under target/image) and the release binary.
    Image(image::Args),
    /// Measure what the sensor costs, against no sensor and against bpftrace and auditd
    /// (installed if missing), and its throughput, memory, scan time and detection latency;
    /// writes BENCHMARKS.md, bench/results.json and bench/overhead.svg.
    Bench {
        /// Interleaved A/B rounds per condition.
        #[arg(long, default_value_t = 5)]
        pairs: usize,
        /// Length of the soak at load (memory growth, detection latency).
        #[arg(long, default_value_t = 600)]
        soak_seconds: u64,
        /// Run only these parts (comma-separated) and write their sections to
        /// target/bench/partial.md, leaving BENCHMARKS.md and bench/results.json alone.
        #[arg(long, value_delimiter = ',')]
        only: Vec<bench::Part>,
        /// Only these overhead conditions (comma-separated; all by default).
        #[arg(long, value_delimiter = ',')]
        conditions: Vec<String>,
        /// Only these overhead workloads (comma-separated; all by default).
        #[arg(long, value_delimiter = ',')]
        workloads: Vec<String>,
        /// Processes added for the start-up scan measurement (with --only scan, a measurement for
        /// each of a comma-separated list).
        #[arg(long, value_delimiter = ',', default_value = "1000")]
        scan_extra: Vec<u32>,
    },
    /// Run every fuzz target (or one) for a bounded time, with the seed corpora (installs
    /// cargo-fuzz if missing).
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only this target.
        target: Option<String>,
    },
    /// Run the real-kernel integration tests inside other Linux kernels (Debian's 5.10, 6.1,
    /// 6.12, 6.16, 7.x) under qemu (installed if missing, with what the tests need); writes
    /// target/vmtest/results.json.
    Vmtest(vmtest::Args),
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask is inside the workspace").to_path_buf()
}

/// Runs a command (in the workspace root unless it has a directory of its own), echoing it;
/// fails with its exit status.
pub fn sh(cmd: &mut Command) -> anyhow::Result<()> {
    if cmd.get_current_dir().is_none() {
        cmd.current_dir(root());
    }
    eprintln!("xtask: $ {}", display(cmd));
    let status = cmd.status().with_context(|| format!("cannot start {}", display(cmd)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", display(cmd));
    }
    Ok(())
}

pub fn display(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    // bpf-linker is installed into cargo's bin directory; make sure the build script finds it.
    c.env("PATH", setup::path_with_cargo_bin());
    c
}

fn build() -> anyhow::Result<PathBuf> {
    sh(cargo().args(["build", "--release", "--package", "sensor-user", "--bin", "aiwatch"]))?;
    let bin = root().join("target/release/aiwatch");
    if !bin.exists() {
        bail!("{} was not produced", bin.display());
    }
    Ok(bin)
}

fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} loads eBPF programs into the kernel and must run as root");
    }
    Ok(())
}

fn lint() -> anyhow::Result<()> {
    sh(cargo().args(["fmt", "--all", "--check"]))?;
    sh(cargo().args(["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    Ok(())
}

impl Cmd {
    /// What the command needs installed before it runs.
    fn steps(&self) -> &'static [Step] {
        use Step::*;
        match self {
            Cmd::Setup => &Step::ALL,
            Cmd::Build | Cmd::Run { .. } | Cmd::Install { .. } => &[Toolchain, BpfLinker],
            // clippy builds sensor-user with an empty eBPF object (its build script skips the
            // eBPF build under clippy) and the eBPF crate as a host stub, with the default
            // toolchain: neither nightly nor bpf-linker.
            Cmd::Lint => &[],
            // debootstrap and podman are test packages (the container test builds the image).
            Cmd::Image(image::Args { binary: Some(_), .. }) => &[TestPackages],
            Cmd::Image(_) => &[Toolchain, BpfLinker, TestPackages],
            // Without a filter the test command also boots other kernels and fuzzes.
            Cmd::Test { filter: None } => {
                &[Toolchain, BpfLinker, TestPackages, Assistants, CargoFuzz, VmPackages]
            }
            Cmd::Test { filter: Some(_) } => &[Toolchain, BpfLinker, TestPackages, Assistants],
            Cmd::Bench { .. } => &[Toolchain, BpfLinker, BenchPeers],
            // The parsers are fuzzed without the eBPF object, with cargo-fuzz on nightly.
            Cmd::Fuzz { .. } => &[Toolchain, CargoFuzz],
            Cmd::Vmtest(_) => &[Toolchain, BpfLinker, TestPackages, Assistants, VmPackages],
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    setup::ensure(cli.cmd.steps())?;
    match cli.cmd {
        Cmd::Setup => Ok(()),
        Cmd::Build => build().map(drop),
        Cmd::Run { args } => {
            require_root("cargo xtask run")?;
            let bin = build()?;
            sh(Command::new(bin).arg("run").args(args))
        }
        Cmd::Lint => lint(),
        Cmd::Install { prefix, destdir } => {
            let bin = build()?;
            install::install(&bin, &prefix, destdir.as_deref())
        }
        Cmd::Bench { pairs, soak_seconds, only, conditions, workloads, scan_extra } => {
            require_root("cargo xtask bench")?;
            bench::run(bench::Options { pairs, soak_seconds, only, conditions, workloads, scan_extra })
        }
        Cmd::Image(args) => image::run(args),
        Cmd::Fuzz { seconds, target } => fuzz::run(seconds, target.as_deref()),
        Cmd::Vmtest(args) => vmtest::run(args),
        Cmd::Test { filter } => test(filter),
    }
}

/// Build, lint, unit tests, integration tests; without a filter also the core tests in the
/// oldest supported kernels and every fuzz target briefly.
fn test(filter: Option<String>) -> anyhow::Result<()> {
    require_root("cargo xtask test")?;
    let bin = build()?;
    lint()?;
    let mut unit = cargo();
    unit.args(["test", "--workspace", "--exclude", "integration-tests", "--exclude", "sensor-ebpf"]);
    unit.args(filter.iter());
    sh(&mut unit)?;
    let mut integ = cargo();
    integ.args(["test", "--package", "integration-tests"]).env("AIWATCH_BIN", &bin);
    integ.args(["--"]).args(filter.iter());
    sh(&mut integ)?;
    if filter.is_none() {
        // The oldest kernels the sensor supports, under qemu: what differs there (verifier,
        // tracepoint records) shows up before a user's machine finds it.
        vmtest::run(vmtest::Args::default())?;
        // Every parser of untrusted bytes, briefly: regressions show up here.
        fuzz::run(5, None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(args: &[&str]) -> &'static [Step] {
        Cli::parse_from(std::iter::once("xtask").chain(args.iter().copied())).cmd.steps()
    }

    #[test]
    fn setup_installs_every_step() {
        assert_eq!(steps(&["setup"]), Step::ALL);
    }

    #[test]
    fn building_and_linting_install_no_test_tools() {
        let test_only =
            [Step::TestPackages, Step::Assistants, Step::CargoFuzz, Step::VmPackages, Step::BenchPeers];
        for cmd in [&["build"][..], &["run"], &["install"], &["lint"], &["bench"], &["fuzz"]] {
            let s = steps(cmd);
            for t in test_only {
                let wanted =
                    (cmd == ["bench"] && t == Step::BenchPeers) || (cmd == ["fuzz"] && t == Step::CargoFuzz);
                assert_eq!(s.contains(&t), wanted, "{cmd:?} and {t:?}: {s:?}");
            }
        }
        assert_eq!(steps(&["build"]), [Step::Toolchain, Step::BpfLinker]);
        assert!(steps(&["lint"]).is_empty());
    }

    #[test]
    fn test_installs_what_the_tests_use() {
        // Everything but the bench's peers.
        let all = steps(&["test"]);
        for s in Step::ALL {
            assert_eq!(all.contains(&s), s != Step::BenchPeers, "{s:?}");
        }
        // A filtered run neither boots kernels nor fuzzes.
        let filtered = steps(&["test", "core"]);
        assert!(!filtered.contains(&Step::VmPackages) && !filtered.contains(&Step::CargoFuzz));
        assert!(filtered.contains(&Step::Assistants) && filtered.contains(&Step::TestPackages));
    }

    #[test]
    fn vmtest_installs_the_test_needs_and_the_vm_packages() {
        let vm = steps(&["vmtest"]);
        for s in steps(&["test", "core"]) {
            assert!(vm.contains(s), "{s:?}");
        }
        assert!(vm.contains(&Step::VmPackages));
    }

    #[test]
    fn every_command_but_lint_and_setup_builds_with_the_toolchain() {
        for cmd in [&["build"][..], &["run"], &["install"], &["test"], &["bench"], &["fuzz"], &["vmtest"]] {
            assert!(steps(cmd).contains(&Step::Toolchain), "{cmd:?}");
        }
    }
}
