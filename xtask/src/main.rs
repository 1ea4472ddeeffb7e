//! `cargo xtask setup | build | run | test | lint | vmtest`: everything a fresh machine needs, in
//! one place.

mod bench;
mod setup;
mod vmtest;

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
    /// Set up, build, lint, and run every test: unit tests, root integration tests that load the
    /// real probes into this kernel, the core integration tests in Debian's 5.10 and 6.1 kernels
    /// under qemu (`vmtest`), and each fuzz target briefly.
    Test {
        /// Only tests whose name contains this.
        filter: Option<String>,
    },
    /// cargo fmt --check and clippy -D warnings on every crate, the eBPF one included.
    Lint,
    /// Build and install aiwatch: binary, systemd unit, default config (kept if present), man
    /// page, shell completions.
    Install {
        /// Installation prefix for the binary, man page and completions.
        #[arg(long, default_value = "/usr/local")]
        prefix: PathBuf,
        /// Stage under this directory instead of / (for packaging).
        #[arg(long)]
        destdir: Option<PathBuf>,
    },
    /// Measure what the sensor costs, against no sensor and against bpftrace and auditd, and
    /// its throughput, memory, scan time and detection latency; writes BENCHMARKS.md,
    /// bench/results.json and bench/overhead.svg.
    Bench {
        /// Interleaved A/B rounds per condition.
        #[arg(long, default_value_t = 5)]
        pairs: usize,
        /// Length of the soak at load (memory growth, detection latency).
        #[arg(long, default_value_t = 600)]
        soak_seconds: u64,
    },
    /// Run every fuzz target (or one) for a bounded time, with the seed corpora.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only this target.
        target: Option<String>,
    },
    /// Run the real-kernel integration tests inside other Linux kernels (Debian's 5.10, 6.1,
    /// 6.12, 6.16, 7.x) under qemu; writes target/vmtest/results.json.
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

/// Copies `bytes` to `dest` with `mode`, creating directories; an existing `dest` is kept when
/// `keep` (a config the admin edited).
fn put(dest: &Path, bytes: &[u8], mode: u32, keep: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if keep && dest.exists() {
        eprintln!("xtask: install: {} exists, kept", dest.display());
        return Ok(());
    }
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(dest, bytes).with_context(|| format!("writing {}", dest.display()))?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(mode))?;
    eprintln!("xtask: install: {}", dest.display());
    Ok(())
}

fn output_of(bin: &Path, args: &[&str]) -> anyhow::Result<Vec<u8>> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .with_context(|| format!("running {} {args:?}", bin.display()))?;
    if !out.status.success() {
        bail!("{} {args:?} failed: {}", bin.display(), String::from_utf8_lossy(&out.stderr));
    }
    Ok(out.stdout)
}

fn install(bin: &Path, prefix: &Path, destdir: Option<&Path>) -> anyhow::Result<()> {
    let at = |p: &Path| match destdir {
        Some(d) => d.join(p.strip_prefix("/").unwrap_or(p)),
        None => p.to_path_buf(),
    };
    let binary = std::fs::read(bin)?;
    put(&at(&prefix.join("bin/aiwatch")), &binary, 0o755, false)?;
    let unit = std::fs::read_to_string(root().join("deploy/systemd/aiwatch.service"))?
        .replace("/usr/local/bin/aiwatch", &prefix.join("bin/aiwatch").display().to_string());
    put(&at(Path::new("/etc/systemd/system/aiwatch.service")), unit.as_bytes(), 0o644, false)?;
    put(&at(Path::new("/etc/aiwatch/config.toml")), &output_of(bin, &["config"])?, 0o644, true)?;
    put(&at(&prefix.join("share/man/man1/aiwatch.1")), &output_of(bin, &["man"])?, 0o644, false)?;
    for (shell, path) in [
        ("bash", "share/bash-completion/completions/aiwatch"),
        ("zsh", "share/zsh/site-functions/_aiwatch"),
        ("fish", "share/fish/vendor_completions.d/aiwatch.fish"),
    ] {
        put(&at(&prefix.join(path)), &output_of(bin, &["completions", shell])?, 0o644, false)?;
    }
    if destdir.is_none() {
        eprintln!(
            "xtask: install: done; start it with: systemctl daemon-reload && systemctl enable --now aiwatch"
        );
    }
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
        Cmd::Install { prefix, destdir } => {
            setup::setup()?;
            let bin = build()?;
            install(&bin, &prefix, destdir.as_deref())
        }
        Cmd::Bench { pairs, soak_seconds } => {
            setup::setup()?;
            require_root("cargo xtask bench")?;
            bench::run(pairs, soak_seconds)
        }
        Cmd::Fuzz { seconds, target } => {
            setup::setup()?;
            fuzz(seconds, target.as_deref())
        }
        Cmd::Vmtest(args) => vmtest::run(args),
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
            if filter.is_none() {
                // The oldest kernels the sensor supports, under qemu: what differs there (verifier,
                // tracepoint records) shows up before a user's machine finds it.
                vmtest::run(vmtest::Args::default())?;
                // Every parser of untrusted bytes, briefly: regressions show up here.
                fuzz(5, None)?;
            }
            Ok(())
        }
    }
}
