//! The peers aiwatch is measured against: bpftrace attached to the same tracepoints with a filter
//! that never matches, and auditd with read watches on the watched files.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use super::daemon::{pin, Stopper};

/// Files the auditd condition watches: what aiwatch's categories cover among the workloads.
const AUDIT_WATCHES: [&str; 6] =
    ["/etc/localtime", "/etc/hostname", "/etc/resolv.conf", "/etc/hosts", "/etc/machine-id", "/etc/timezone"];

/// Syscalls whose enter and exit tracepoints bpftrace attaches: those aiwatch hooks for the
/// workloads.
const BPFTRACE_SYSCALLS: [&str; 8] =
    ["openat", "readlink", "newfstatat", "statx", "connect", "socket", "close", "execve"];

/// `bpftrace --version`'s answer ("bpftrace v0.17.0"), if it runs.
pub fn bpftrace_version() -> Option<String> {
    let out = Command::new("bpftrace").arg("--version").output().ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !v.is_empty()).then_some(v)
}

/// bpftrace on `cpu` with the same syscall tracepoints aiwatch hooks for these workloads, each
/// with a filter that never matches: what an equivalent always-attached tool costs untracked
/// processes. Returns once it has attached.
pub fn start_bpftrace(log: &Path, cpu: usize) -> anyhow::Result<Stopper> {
    let hooks: Vec<String> = BPFTRACE_SYSCALLS
        .iter()
        .flat_map(|s| {
            [format!("tracepoint:syscalls:sys_enter_{s}"), format!("tracepoint:syscalls:sys_exit_{s}")]
        })
        .chain(["tracepoint:sched:sched_process_exec".into(), "tracepoint:sched:sched_process_exit".into()])
        .collect();
    let prog = format!("{} /pid == 1/ {{ @n = count(); }}", hooks.join(","));
    let child = pin(&mut Command::new("bpftrace"), cpu)
        .args(["-e", &prog])
        .stdout(std::fs::File::create(log)?)
        .stderr(Stdio::null())
        .spawn()
        .context("starting bpftrace")?;
    let s = Stopper(child);
    let end = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(log).unwrap_or_default().contains("Attaching") {
        if Instant::now() > end {
            bail!("bpftrace did not attach");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    Ok(s)
}

fn auditctl(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("auditctl").args(args).output().context("running auditctl")?;
    if !out.status.success() {
        bail!("auditctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn auditd_pid() -> Option<i32> {
    let pid: i32 = std::fs::read_to_string("/run/auditd.pid").ok()?.trim().parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

/// auditd with read watches on the watched files; the rules are removed on drop, and auditd
/// stopped (by the PID in its pid file) if this started it.
pub struct Audit {
    started: bool,
}

impl Audit {
    /// Starts auditd on `cpu` unless it runs, and adds the watches.
    pub fn start(cpu: usize) -> anyhow::Result<Self> {
        let mut started = false;
        if auditd_pid().is_none() {
            let st = pin(&mut Command::new("auditd"), cpu).status().context("starting auditd")?;
            if !st.success() {
                bail!("auditd did not start ({st})");
            }
            started = true;
            std::thread::sleep(Duration::from_millis(500));
        }
        // Made before the rules so that an error from here on still stops what was started.
        let me = Self { started };
        auditctl(&["-e", "1"])?;
        for f in AUDIT_WATCHES {
            if Path::new(f).exists() {
                auditctl(&["-w", f, "-p", "r", "-k", "aiwatch-bench"])?;
            }
        }
        Ok(me)
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        let _ = auditctl(&["-D", "-k", "aiwatch-bench"]);
        if self.started {
            if let Some(pid) = auditd_pid() {
                // SAFETY: signalling the auditd this started, by the PID it recorded.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
    }
}
