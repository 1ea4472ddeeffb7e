//! Installs what a fresh machine lacks, skipping what is present, saying what it does. What
//! there is to install comes in [`Step`]s; each command asks for the steps it needs
//! (`cargo xtask setup` for all of them).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use crate::{display, sh};

/// One thing a command may need installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// The nightly toolchain with rust-src: the eBPF programs are built with it, and cargo-fuzz
    /// runs on it.
    Toolchain,
    /// Debian's LLVM 22 dev packages and bpf-linker built against them: links the eBPF programs.
    BpfLinker,
    /// Debian's prometheus (with promtool) and Alertmanager: the alerting tests; debootstrap and
    /// podman: the container image and its test; rsyslog (and its GnuTLS driver): the syslog
    /// output's tests.
    TestPackages,
    /// The pinned assistants from the npm registry, into target/assistants: the end-to-end tests.
    Assistants,
    /// cargo-fuzz: `cargo xtask fuzz`, and every target briefly in `cargo xtask test`.
    CargoFuzz,
    /// qemu, busybox, kmod and the module decompressors: booting other kernels (`vmtest`).
    VmPackages,
    /// bpftrace and auditd: what `cargo xtask bench` compares the sensor with.
    BenchPeers,
}

impl Step {
    /// Every step, in the order they run.
    pub const ALL: [Step; 7] = [
        Step::Toolchain,
        Step::BpfLinker,
        Step::TestPackages,
        Step::Assistants,
        Step::CargoFuzz,
        Step::VmPackages,
        Step::BenchPeers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Toolchain => "toolchain",
            Step::BpfLinker => "bpf-linker",
            Step::TestPackages => "test packages",
            Step::Assistants => "assistants",
            Step::CargoFuzz => "cargo-fuzz",
            Step::VmPackages => "VM packages",
            Step::BenchPeers => "bench peers",
        }
    }

    fn run(self) -> anyhow::Result<()> {
        match self {
            Step::Toolchain => toolchain(),
            Step::BpfLinker => {
                apt_packages(&LLVM_PACKAGES)?;
                bpf_linker()
            }
            Step::TestPackages => apt_packages(&TEST_PACKAGES),
            Step::Assistants => assistants(),
            Step::CargoFuzz => cargo_fuzz(),
            Step::VmPackages => vm_packages(),
            Step::BenchPeers => apt_packages(&BENCH_PACKAGES),
        }
    }
}

/// `steps` as they run: each once, in [`Step::ALL`]'s order.
fn plan(steps: &[Step]) -> Vec<Step> {
    Step::ALL.into_iter().filter(|s| steps.contains(s)).collect()
}

/// Installs what `steps` need and is missing: each step once, in [`Step::ALL`]'s order.
pub fn ensure(steps: &[Step]) -> anyhow::Result<()> {
    let steps = plan(steps);
    if steps.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = steps.iter().map(|s| s.name()).collect();
    eprintln!("xtask: setup: steps: {}", names.join(", "));
    warn_if_disk_is_short();
    steps.into_iter().try_for_each(Step::run)
}

const LLVM_PACKAGES: [&str; 2] = ["llvm-22-dev", "libpolly-22-dev"];
/// What the tests run besides the sensor: Prometheus and promtool, Alertmanager and amtool for the
/// alerting tests; debootstrap and podman for the container image and its test (runc: crun refuses
/// hybrid cgroups, as on the development machines); rsyslogd (with the gtls stream driver for TLS)
/// as the syslog output's receiver.
const TEST_PACKAGES: [&str; 8] = [
    "prometheus",
    "prometheus-alertmanager",
    "debootstrap",
    "podman",
    "runc",
    "rsyslog",
    "rsyslog-gnutls",
    // tests/tests/audit.rs builds its compiled test assistant (tests/assistants/audit/covert.c).
    "gcc",
];
/// The peers `cargo xtask bench` measures aiwatch against.
const BENCH_PACKAGES: [&str; 2] = ["bpftrace", "auditd"];
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// What a fresh `cargo xtask test` writes: about 4 GB of builds, assistants and kernels, and
/// about 1 GB of packages.
const DISK_NEEDED: u64 = 6 << 30;

/// Says up front when the disk is short: a full disk shows up later only as a linker's bus error.
fn warn_if_disk_is_short() {
    let Some(free) = free_bytes(Path::new(".")) else { return };
    if free < DISK_NEEDED {
        eprintln!(
            "xtask: setup: warning: {:.1} GB free here; a fresh build and test run needs about {} GB",
            free as f64 / (1u64 << 30) as f64,
            DISK_NEEDED >> 30
        );
    }
}

fn free_bytes(dir: &Path) -> Option<u64> {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is NUL-terminated and `st` is a valid statvfs to fill.
    (unsafe { libc::statvfs(path.as_ptr(), &mut st) } == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

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

/// Whether this xtask has run `apt-get update` already (once is enough for every step).
static APT_UPDATED: AtomicBool = AtomicBool::new(false);

/// Installs Debian packages that are missing.
fn apt_packages(packages: &[&str]) -> anyhow::Result<()> {
    let present = packages.iter().all(|p| installed(p));
    step(&format!("Debian packages {}", packages.join(", ")), present, || {
        if !ok(Command::new("apt-get").arg("--version")) {
            bail!("apt-get is not available: install {} by hand", packages.join(" "));
        }
        if !APT_UPDATED.load(Ordering::Relaxed) {
            apt_get(&["update", "-q"])?;
            APT_UPDATED.store(true, Ordering::Relaxed);
        }
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

/// Installs what booting test kernels under qemu needs.
fn vm_packages() -> anyhow::Result<()> {
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

/// The version of `package` installed under `dir` (None if absent or unreadable: reinstalled).
fn installed_version(dir: &Path, package: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("node_modules").join(package).join("package.json")).ok()?;
    let manifest: serde_json::Value = serde_json::from_str(&text).ok()?;
    manifest.get("version")?.as_str().map(str::to_string)
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

fn toolchain() -> anyhow::Result<()> {
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
    })
}

fn cargo_fuzz() -> anyhow::Result<()> {
    let fuzz = ok(Command::new("cargo").args(["fuzz", "--version"]).env("PATH", path_with_cargo_bin()));
    step("cargo-fuzz", fuzz, || sh(crate::cargo().args(["install", "cargo-fuzz", "--locked"])))
}

fn bpf_linker() -> anyhow::Result<()> {
    let linker = ok(Command::new("bpf-linker").arg("--version").env("PATH", path_with_cargo_bin()));
    step("bpf-linker", linker, || {
        // bpf-linker links against Debian's LLVM 22, which matches nightly's LLVM.
        let path = format!("{LLVM_PREFIX}/bin:{}", path_with_cargo_bin());
        sh(crate::cargo()
            .args(["install", "bpf-linker", "--locked", "--no-default-features", "--features", "llvm-22"])
            .env("PATH", path)
            .env("LLVM_PREFIX", LLVM_PREFIX))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_run_once_in_order() {
        let asked = [Step::BenchPeers, Step::Toolchain, Step::BpfLinker, Step::Toolchain];
        assert_eq!(plan(&asked), [Step::Toolchain, Step::BpfLinker, Step::BenchPeers]);
        assert!(plan(&[]).is_empty());
        assert_eq!(plan(&Step::ALL), Step::ALL);
    }

    #[test]
    fn step_names_are_distinct() {
        let mut names: Vec<&str> = Step::ALL.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Step::ALL.len());
    }
}
