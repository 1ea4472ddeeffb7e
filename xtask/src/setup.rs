//! Installs what a fresh machine lacks, skipping what is present, saying what it does.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::{display, sh};

const LLVM_PACKAGES: [&str; 2] = ["llvm-22-dev", "libpolly-22-dev"];
/// What the tests run besides the sensor: Prometheus and promtool for the alerting tests.
const TEST_PACKAGES: [&str; 1] = ["prometheus"];
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

fn ok(cmd: &mut Command) -> bool {
    cmd.output().is_ok_and(|o| o.status.success())
}

fn output(cmd: &mut Command) -> String {
    cmd.output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
}

fn cargo_bin() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo"));
    home.join("bin")
}

/// PATH with cargo's bin directory in it (where `cargo install` puts bpf-linker).
pub fn path_with_cargo_bin() -> String {
    let path = std::env::var("PATH").unwrap_or_default();
    let bin = cargo_bin().to_string_lossy().into_owned();
    if path.split(':').any(|p| p == bin) {
        path
    } else {
        format!("{bin}:{path}")
    }
}

fn step(what: &str, present: bool, install: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
    if present {
        eprintln!("xtask: setup: {what}: present");
        return Ok(());
    }
    eprintln!("xtask: setup: {what}: installing");
    install().with_context(|| format!("setup step failed: {what}"))
}

fn installed(pkg: &str) -> bool {
    output(Command::new("dpkg-query").args(["-W", "-f", "${Status}", pkg])).contains("install ok installed")
}

/// How long apt-get waits for another apt or dpkg (unattended upgrades, a parallel setup) to
/// release its lock before giving up.
const APT_LOCK_WAIT: Duration = Duration::from_secs(300);

/// Runs `apt-get ARGS`, waiting (bounded) while another process holds the apt or dpkg lock:
/// dpkg's own wait (`DPkg::Lock::Timeout`) does not cover the lists lock `update` takes.
pub fn apt_get(args: &[&str]) -> anyhow::Result<()> {
    let end = Instant::now() + APT_LOCK_WAIT;
    let lock_wait = APT_LOCK_WAIT.as_secs().to_string();
    loop {
        let mut cmd = Command::new("apt-get");
        cmd.args(["-o", &format!("DPkg::Lock::Timeout={lock_wait}")])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stderr(Stdio::piped());
        eprintln!("xtask: $ {}", display(&cmd));
        let out = cmd.spawn().and_then(|c| c.wait_with_output()).context("cannot start apt-get")?;
        let err = String::from_utf8_lossy(&out.stderr);
        eprint!("{err}");
        if out.status.success() {
            return Ok(());
        }
        let locked = err.contains("Could not get lock") || err.contains("Unable to acquire");
        if !locked || Instant::now() > end {
            bail!("`{}` failed ({})", display(&cmd), out.status);
        }
        eprintln!("xtask: setup: another apt or dpkg holds the lock; retrying in 5 s");
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// Installs Debian packages that are missing.
fn apt_packages(packages: &[&str]) -> anyhow::Result<()> {
    let present = packages.iter().all(|p| installed(p));
    step(&format!("Debian packages {}", packages.join(", ")), present, || {
        if !ok(Command::new("apt-get").arg("--version")) {
            bail!("apt-get is not available: install {} by hand", packages.join(" "));
        }
        apt_get(&["update", "-q"])?;
        let mut args = vec!["install", "-y", "-q", "--no-install-recommends"];
        args.extend_from_slice(packages);
        apt_get(&args)
    })
}

/// What `cargo xtask vmtest` needs on the host: qemu (with virtiofsd, in qemu-system-common on
/// Debian 12), a static busybox for the guests' initramfs, kmod's depmod and modprobe to pick
/// the kernel modules it needs, and the decompressors for Debian's `.ko.xz`/`.ko.zst` modules.
const VM_PACKAGES: [&str; 5] = ["qemu-system-x86", "busybox-static", "kmod", "zstd", "xz-utils"];

/// Where Debian 12's qemu-system-common puts virtiofsd.
pub const VIRTIOFSD: &str = "/usr/lib/qemu/virtiofsd";

/// Installs what booting test kernels under qemu needs (only `cargo xtask vmtest` calls this).
pub fn vm_packages() -> anyhow::Result<()> {
    apt_packages(&VM_PACKAGES)?;
    if !Path::new(VIRTIOFSD).exists() {
        bail!(
            "{VIRTIOFSD} is missing (Debian 12's qemu-system-common installs it); the cloud kernels need it"
        );
    }
    Ok(())
}

/// Real assistants the end-to-end tests run, pinned, from the npm registry.
pub const ASSISTANTS: [(&str, &str); 2] =
    [("@google/gemini-cli", "0.61.0"), ("@anthropic-ai/claude-code", "2.1.332")];

fn installed_version(dir: &std::path::Path, package: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("node_modules").join(package).join("package.json")).ok()?;
    let at = text.find("\"version\"")?;
    let rest = &text[at + 9..];
    let start = rest.find('"')? + 1;
    let end = rest[start..].find('"')? + start;
    Some(rest[start..end].to_string())
}

fn assistants() -> anyhow::Result<()> {
    let dir = crate::root().join("target/assistants");
    let present = ASSISTANTS.iter().all(|(p, v)| installed_version(&dir, p).as_deref() == Some(*v));
    let list = ASSISTANTS.iter().map(|(p, v)| format!("{p}@{v}")).collect::<Vec<_>>();
    step(&format!("assistants for the end-to-end tests ({})", list.join(", ")), present, || {
        std::fs::create_dir_all(&dir)?;
        sh(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix"])
            .arg(&dir)
            .args(&list))
    })
}

pub fn setup() -> anyhow::Result<()> {
    let nightly =
        output(Command::new("rustup").args(["toolchain", "list"])).lines().any(|l| l.starts_with("nightly"));
    step("nightly toolchain", nightly, || {
        sh(Command::new("rustup").args(["toolchain", "install", "nightly", "--profile", "minimal"]))
    })?;
    let src =
        output(Command::new("rustup").args(["component", "list", "--installed", "--toolchain", "nightly"]))
            .lines()
            .any(|l| l.starts_with("rust-src"));
    step("rust-src for nightly", src, || {
        sh(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
    })?;
    apt_packages(&LLVM_PACKAGES)?;
    apt_packages(&TEST_PACKAGES)?;
    assistants()?;
    let fuzz = ok(Command::new("cargo").args(["fuzz", "--version"]).env("PATH", path_with_cargo_bin()));
    step("cargo-fuzz", fuzz, || {
        sh(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())).args([
            "install",
            "cargo-fuzz",
            "--locked",
        ]))
    })?;
    let linker = ok(Command::new("bpf-linker").arg("--version").env("PATH", path_with_cargo_bin()));
    step("bpf-linker", linker, || {
        // bpf-linker links against Debian's LLVM 22, which matches nightly's LLVM.
        let path = format!("{LLVM_PREFIX}/bin:{}", path_with_cargo_bin());
        sh(Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["install", "bpf-linker", "--locked", "--no-default-features", "--features", "llvm-22"])
            .env("PATH", path)
            .env("LLVM_PREFIX", LLVM_PREFIX))
    })?;
    Ok(())
}
