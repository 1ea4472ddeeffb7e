//! `cargo xtask setup | build | run | test | lint`: everything a fresh machine needs, in one place.

mod setup;

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "aiwatch development tasks")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing: nightly rust-src, LLVM 22 dev packages, bpf-linker.
    Setup,
    /// Set up, then build the release `aiwatch` binary (with its eBPF programs).
    Build,
    /// Set up, build, and run the sensor with its built-in default config (extra args go to
    /// `aiwatch run`).
    Run {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Set up, build, lint, and run every test: unit tests and root integration tests that load
    /// the real probes.
    Test {
        /// Only tests whose name contains this.
        filter: Option<String>,
    },
    /// cargo fmt --check and clippy -D warnings on every crate, the eBPF one included.
    Lint,
    /// Run every fuzz target (or one) for a bounded time, with the seed corpora.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only this target.
        target: Option<String>,
    },
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

/// Runs a command in the workspace root, echoing it; fails with its exit status.
pub fn sh(cmd: &mut Command) -> anyhow::Result<()> {
    cmd.current_dir(root());
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

const FUZZ_TARGETS: [&str; 7] = [
    "kernel_event",
    "tls_client_hello",
    "http_request",
    "dns_message",
    "netlink_request",
    "config",
    "redact",
];

/// `cargo fuzz run` each target for `seconds`, new inputs kept under target/ (the committed
/// seed corpus stays as it is).
fn fuzz(seconds: u64, only: Option<&str>) -> anyhow::Result<()> {
    let dir = root().join("fuzz");
    let targets: Vec<&str> = FUZZ_TARGETS.iter().copied().filter(|t| only.is_none_or(|o| o == *t)).collect();
    if targets.is_empty() {
        bail!("no fuzz target named {:?}; targets: {}", only.unwrap_or(""), FUZZ_TARGETS.join(", "));
    }
    for t in targets {
        let work = root().join("target/fuzz-corpus").join(t);
        std::fs::create_dir_all(&work)?;
        let mut c = Command::new("cargo");
        c.current_dir(&dir)
            .env("PATH", setup::path_with_cargo_bin())
            // The parsers do not need the eBPF object; skip building it with sanitizers.
            .env("AYA_BUILD_SKIP", "1")
            .args(["+nightly", "fuzz", "run", t])
            .arg(&work)
            .arg(dir.join("corpus").join(t))
            .args([
                "--",
                &format!("-max_total_time={seconds}"),
                "-rss_limit_mb=2048",
                "-print_final_stats=1",
            ]);
        eprintln!("xtask: $ {}", display(&c));
        let status = c.status().context("cannot run cargo fuzz")?;
        if !status.success() {
            bail!("fuzz target {t} failed ({status}); the crashing input is under fuzz/artifacts/{t}");
        }
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Setup => setup::setup(),
        Cmd::Build => {
            setup::setup()?;
            build().map(drop)
        }
        Cmd::Run { args } => {
            setup::setup()?;
            require_root("cargo xtask run")?;
            let bin = build()?;
            sh(Command::new(bin).arg("run").args(args))
        }
        Cmd::Lint => {
            setup::setup()?;
            lint()
        }
        Cmd::Fuzz { seconds, target } => {
            setup::setup()?;
            fuzz(seconds, target.as_deref())
        }
        Cmd::Test { filter } => {
            setup::setup()?;
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
            // Every parser of untrusted bytes, briefly: regressions show up here.
            if filter.is_none() {
                fuzz(5, None)?;
            }
            Ok(())
        }
    }
}
