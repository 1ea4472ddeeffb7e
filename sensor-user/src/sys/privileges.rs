//! Least privilege: what aiwatch needs to start, what it keeps once its probes are attached,
//! and dropping the rest (as root or as a non-root user given these capabilities).
//!
//! | capability | start | running | why |
//! | --- | --- | --- | --- |
//! | `CAP_BPF` | yes | yes | load programs, create maps; read and update maps (`unprivileged_bpf_disabled`) |
//! | `CAP_PERFMON` | yes | yes | attach tracepoints; per-session getenv perf events on other users' processes |
//! | `CAP_SYS_PTRACE` | yes | yes | read `/proc/<pid>/exe`, `cwd`, `fd/*` of other users' processes |
//! | `CAP_DAC_READ_SEARCH` | yes | yes | resolve paths in other users' directories; read tracefs ids |
//! | `CAP_DAC_OVERRIDE` | non-root only | no | write tracefs `uprobe_events` (root owns it) |
//! | `CAP_SYS_ADMIN` | if tracefs is not mounted | see below | mount tracefs |
//! | `CAP_SYS_RESOURCE` | optional | no | raise `RLIMIT_MEMLOCK` on kernels before 5.11 |
//!
//! `CAP_SYS_ADMIN` is kept at run time in one case: `kernel.perf_event_paranoid` 3 (Debian's
//! default, see [`perf_restriction`]) with per-session getenv probes, whose perf events are
//! opened as sessions start. Capabilities are per thread: the daemon drops them on its only
//! thread, before it starts any other (runtime workers, sink writer, getenv worker).

use caps::{CapSet, Capability, CapsHashSet};

/// Capabilities kept after start-up.
pub const RUNTIME: [Capability; 4] = [
    Capability::CAP_BPF,
    Capability::CAP_PERFMON,
    Capability::CAP_SYS_PTRACE,
    Capability::CAP_DAC_READ_SEARCH,
];

/// Capabilities needed to start.
pub const STARTUP: [Capability; 7] = [
    Capability::CAP_BPF,
    Capability::CAP_PERFMON,
    Capability::CAP_SYS_PTRACE,
    Capability::CAP_DAC_READ_SEARCH,
    Capability::CAP_DAC_OVERRIDE,
    Capability::CAP_SYS_ADMIN,
    Capability::CAP_SYS_RESOURCE,
];

/// Required start-up capabilities this process lacks (effective set), for a clear warning.
/// `CAP_DAC_OVERRIDE` is needed only by a non-root user; the others in [`STARTUP`] only sometimes.
pub fn missing_for_startup() -> Vec<Capability> {
    let have = caps::read(None, CapSet::Effective).unwrap_or_default();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    RUNTIME
        .iter()
        .chain((!root).then_some(&Capability::CAP_DAC_OVERRIDE))
        .filter(|c| !have.contains(c))
        .copied()
        .collect()
}

/// Keeps only [`RUNTIME`] (and `extra`), those the process has, in every set, empties the
/// bounding set of everything else, and sets `no_new_privs`. Returns what is kept. It changes
/// the calling thread only: call it before any other thread exists.
pub fn drop_to_runtime(extra: &[Capability]) -> anyhow::Result<Vec<Capability>> {
    let threads = std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(1);
    if threads > 1 {
        anyhow::bail!("{threads} threads exist: the others would keep every capability");
    }
    let permitted = caps::read(None, CapSet::Permitted)?;
    let keep: CapsHashSet = RUNTIME.iter().chain(extra).filter(|c| permitted.contains(c)).copied().collect();
    // Ambient and inheritable first: capabilities must not pass to anything exec'd.
    caps::clear(None, CapSet::Ambient)?;
    caps::clear(None, CapSet::Inheritable)?;
    for cap in caps::all() {
        if !keep.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
            // Needs CAP_SETPCAP; without it the bounding set stays, the other sets still shrink.
            let _ = caps::drop(None, CapSet::Bounding, cap);
        }
    }
    caps::set(None, CapSet::Effective, &keep)?;
    caps::set(None, CapSet::Permitted, &keep)?;
    // SAFETY: prctl with constant arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        anyhow::bail!("PR_SET_NO_NEW_PRIVS: {}", std::io::Error::last_os_error());
    }
    let mut kept: Vec<Capability> = keep.into_iter().collect();
    kept.sort_by_key(|c| c.index());
    Ok(kept)
}

/// Why a perf event (tracepoint attach, getenv uprobe) may have been refused: some
/// distributions' kernels (Debian's among them) read `kernel.perf_event_paranoid` 3, their
/// default, as "no perf events without CAP_SYS_ADMIN", whatever CAP_PERFMON allows upstream.
/// None when that is not the case here.
pub fn perf_restriction() -> Option<String> {
    let level: i32 =
        std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid").ok()?.trim().parse().ok()?;
    if level <= 2 || caps::has_cap(None, CapSet::Effective, Capability::CAP_SYS_ADMIN).unwrap_or(false) {
        return None;
    }
    Some(format!(
        "kernel.perf_event_paranoid is {level}: this kernel may allow perf events only with CAP_SYS_ADMIN; \
         set it to 2 (sysctl kernel.perf_event_paranoid=2) or run as root"
    ))
}

/// Whether `kernel.perf_event_paranoid` is above 2, where some kernels (Debian's) allow perf
/// events only with CAP_SYS_ADMIN.
pub fn perf_paranoid_above_2() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .is_some_and(|level| level > 2)
}

/// `error`, with the perf restriction named when it is a refusal that restriction explains.
pub fn explain_perf_error(error: String) -> String {
    let denied = error.contains("Permission denied") || error.contains("os error 13");
    match perf_restriction() {
        Some(why) if denied => format!("{error} ({why})"),
        _ => error,
    }
}
