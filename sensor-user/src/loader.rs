//! Loading the eBPF object, and the one table of programs and their hooks that both
//! `aiwatch run` (attach) and `aiwatch check` (verify) read.

use std::path::Path;

use anyhow::{bail, Context as _};
use aya::{
    maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{trace_point::TracePointLinkId, FEntry, Lsm, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use sensor_common::{CandidateKey, SockInfo, SockKey, Stat, Syscall, Tracked, COMM_LEN};

use crate::config::Config;

/// The eBPF object built by build.rs (empty when built without bpf-linker).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sensor-ebpf"));

/// Where a program attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    Tracepoint {
        category: &'static str,
        name: String,
    },
    FEntry(&'static str),
    Lsm(&'static str),
    /// A libc function, attached per session by `uprobes::EnvProbes`.
    Uprobe(&'static str),
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tracepoint { category, name } => write!(f, "tracepoint/{category}/{name}"),
            Self::FEntry(func) => write!(f, "fentry/{func}"),
            Self::Lsm(hook) => write!(f, "lsm/{hook}"),
            Self::Uprobe(func) => write!(f, "uprobe/libc:{func}"),
        }
    }
}

impl Hook {
    /// The kernel feature the hook needs, as `aiwatch check` names it.
    pub fn feature(&self) -> &'static str {
        match self {
            Self::Tracepoint { .. } => "tracepoints",
            Self::FEntry(_) => "fentry",
            Self::Lsm(_) => "bpf_lsm",
            Self::Uprobe(_) => "uprobes",
        }
    }
}

/// How `aiwatch run` uses a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// Attached; the sensor cannot work without it.
    Required,
    /// Attached where the hook exists (some syscalls are missing on some architectures).
    Optional,
    /// Only loaded by `aiwatch check`, to tell whether the host offers the hook's feature.
    CheckOnly,
}

#[derive(Debug, Clone)]
pub struct ProgramSpec {
    pub name: &'static str,
    pub hooks: Vec<Hook>,
    pub usage: Usage,
    pub purpose: &'static str,
}

fn tp(category: &'static str, name: impl Into<String>) -> Hook {
    Hook::Tracepoint { category, name: name.into() }
}

/// Every program in the eBPF object, with its hooks.
pub fn programs() -> Vec<ProgramSpec> {
    use Usage::*;
    let spec = |name, hooks, usage, purpose| ProgramSpec { name, hooks, usage, purpose };
    let mut v = vec![
        spec(
            "process_enter_execve",
            vec![tp("syscalls", "sys_enter_execve")],
            Required,
            "exec filename and argv",
        ),
        spec(
            "process_enter_execveat",
            vec![tp("syscalls", "sys_enter_execveat")],
            Required,
            "exec filename and argv (execveat, fexecve)",
        ),
        spec(
            "process_exit_execve",
            vec![tp("syscalls", "sys_exit_execve"), tp("syscalls", "sys_exit_execveat")],
            Required,
            "forget the argv of a failed exec",
        ),
        spec(
            "process_enter_sched_exec",
            vec![tp("sched", "sched_process_exec")],
            Required,
            "track and report an exec before the new program runs",
        ),
        spec(
            "process_enter_task_newtask",
            vec![tp("task", "task_newtask")],
            Required,
            "children inherit tracking at fork",
        ),
        spec(
            "process_enter_sched_exit",
            vec![tp("sched", "sched_process_exit")],
            Required,
            "untrack a process when its last thread exits",
        ),
    ];
    // The names are static: one program per syscall, named after it.
    const ENTER: [&str; 14] = [
        "files_enter_open",
        "files_enter_openat",
        "files_enter_openat2",
        "files_enter_readlink",
        "files_enter_readlinkat",
        "files_enter_newfstatat",
        "files_enter_statx",
        "files_enter_access",
        "files_enter_faccessat",
        "files_enter_faccessat2",
        "files_enter_newstat",
        "files_enter_newlstat",
        "files_enter_chdir",
        "files_enter_fchdir",
    ];
    for (sc, name) in Syscall::ALL.iter().zip(ENTER) {
        let usage = if *sc == Syscall::Openat { Required } else { Optional };
        v.push(spec(
            name,
            vec![tp("syscalls", format!("sys_enter_{}", sc.name()))],
            usage,
            "path syscall arguments of tracked processes",
        ));
    }
    v.push(spec(
        "files_exit_syscall",
        Syscall::ALL.iter().map(|sc| tp("syscalls", format!("sys_exit_{}", sc.name()))).collect(),
        Required,
        "path and result of tracked path syscalls",
    ));
    const NET_ENTER: [(&str, &str, &str); 14] = [
        ("net_enter_socket", "socket", "inet sockets of tracked processes"),
        ("net_enter_connect", "connect", "destination of connect()"),
        ("net_enter_write", "write", "first bytes sent (SNI, HTTP, DNS)"),
        ("net_enter_writev", "writev", "first bytes sent"),
        ("net_enter_sendto", "sendto", "first bytes sent, unconnected peer"),
        ("net_enter_sendmsg", "sendmsg", "first bytes sent"),
        ("net_enter_sendmmsg", "sendmmsg", "DNS queries as glibc sends them"),
        ("net_enter_read", "read", "bytes received, DNS answers"),
        ("net_enter_readv", "readv", "bytes received"),
        ("net_enter_recvfrom", "recvfrom", "bytes received, DNS answers"),
        ("net_enter_recvmsg", "recvmsg", "bytes received, DNS answers"),
        ("net_enter_recvmmsg", "recvmmsg", "bytes received, DNS answers"),
        ("net_enter_close", "close", "end of a connection, with its byte counts"),
        ("net_enter_ioctl", "ioctl", "interface enumeration (SIOCGIFCONF, SIOCGIFHWADDR, …)"),
    ];
    for (name, sc, purpose) in NET_ENTER {
        let usage = if matches!(sc, "connect" | "close" | "socket") { Required } else { Optional };
        v.push(spec(name, vec![tp("syscalls", format!("sys_enter_{sc}"))], usage, purpose));
    }
    v.push(spec(
        "net_exit_syscall",
        NET_ENTER
            .iter()
            .filter(|(_, sc, _)| *sc != "close")
            .map(|(_, sc, _)| tp("syscalls", format!("sys_exit_{sc}")))
            .collect(),
        Required,
        "results and data of tracked socket syscalls",
    ));
    v.push(spec(
        "net_enter_sock_set_state",
        vec![tp("sock", "inet_sock_set_state")],
        Required,
        "result and local port of non-blocking TCP connects",
    ));
    v.push(spec("env_enter_getenv", vec![Hook::Uprobe("getenv")], Optional, "environment-variable reads"));
    v.push(spec(
        "env_enter_secure_getenv",
        vec![Hook::Uprobe("secure_getenv")],
        Optional,
        "environment-variable reads",
    ));
    v.push(spec(
        "env_exit_getenv",
        vec![Hook::Uprobe("getenv (return)"), Hook::Uprobe("secure_getenv (return)")],
        Optional,
        "whether a read variable was set",
    ));
    v.push(spec(
        "files_enter_fentry_openat2",
        vec![Hook::FEntry("do_sys_openat2")],
        CheckOnly,
        "tests fentry support",
    ));
    v.push(spec(
        "files_enter_lsm_file_open",
        vec![Hook::Lsm("file_open")],
        CheckOnly,
        "tests BPF LSM support",
    ));
    v
}

/// Outcome of one program on one hook.
#[derive(Debug, Clone)]
pub struct ProbeStatus {
    pub program: &'static str,
    pub hook: String,
    pub usage: Usage,
    pub ok: bool,
    pub error: Option<String>,
}

impl ProbeStatus {
    pub fn ok(program: &'static str, hook: String) -> Self {
        Self { program, hook, usage: Usage::Optional, ok: true, error: None }
    }

    pub fn failed(program: &'static str, hook: String, e: impl std::fmt::Display) -> Self {
        Self { program, hook, usage: Usage::Optional, ok: false, error: Some(format!("{e:#}")) }
    }
}

/// Mounts tracefs if it is not mounted (aya finds tracepoint ids there).
pub fn ensure_tracefs() -> anyhow::Result<&'static str> {
    for dir in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        if Path::new(dir).join("events").is_dir() {
            return Ok(dir);
        }
    }
    nix::mount::mount(
        Some("tracefs"),
        "/sys/kernel/tracing",
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .context("tracefs is not mounted and mounting it on /sys/kernel/tracing failed")?;
    tracing::info!("mounted tracefs on /sys/kernel/tracing");
    Ok("/sys/kernel/tracing")
}

/// Raises RLIMIT_MEMLOCK; kernels that charge BPF memory to the cgroup do not need it.
fn raise_memlock() {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "cannot raise RLIMIT_MEMLOCK; relying on memcg accounting");
    }
}

/// Parses the object and creates its maps (nothing is attached yet).
pub fn open(cfg: &Config) -> anyhow::Result<Ebpf> {
    if EBPF_OBJECT.is_empty() {
        bail!(
            "this aiwatch binary was built without its eBPF programs (bpf-linker was missing at build time); \
             run `cargo xtask setup` and rebuild"
        );
    }
    raise_memlock();
    let level = cfg.log.kernel_level.ebpf_level();
    #[allow(deprecated)] // the replacements are not in every 0.14 patch release
    let ebpf = EbpfLoader::new()
        .set_max_entries("TRACKED", cfg.sensor.max_tracked.0)
        .set_max_entries("EVENTS", cfg.sensor.ring_buffer_bytes.0)
        .set_global("AYA_LOG_LEVEL", &level, false)
        .load(EBPF_OBJECT)
        .context("loading the eBPF object (are you root, or do you have CAP_BPF and CAP_PERFMON?)")?;
    Ok(ebpf)
}

/// Loads (verifies) one program for its hook.
fn load_program(ebpf: &mut Ebpf, spec: &ProgramSpec, btf: Option<&Btf>) -> anyhow::Result<()> {
    let prog = ebpf
        .program_mut(spec.name)
        .with_context(|| format!("program {} is not in the eBPF object", spec.name))?;
    match spec.hooks.first() {
        Some(Hook::Tracepoint { .. }) | None => {
            let p: &mut TracePoint = prog.try_into()?;
            p.load()?;
        }
        Some(Hook::FEntry(func)) => {
            let btf = btf.context("kernel BTF is not available")?;
            let p: &mut FEntry = prog.try_into()?;
            p.load(func, btf)?;
        }
        Some(Hook::Lsm(hook)) => {
            let btf = btf.context("kernel BTF is not available")?;
            let p: &mut Lsm = prog.try_into()?;
            p.load(hook, btf)?;
        }
        Some(Hook::Uprobe(_)) => {
            let p: &mut aya::programs::UProbe = prog.try_into()?;
            p.load()?;
        }
    }
    Ok(())
}

fn attach_tracepoint(
    ebpf: &mut Ebpf,
    program: &'static str,
    category: &str,
    name: &str,
    links: &mut Links,
) -> anyhow::Result<()> {
    let p: &mut TracePoint = ebpf.program_mut(program).context("program missing")?.try_into()?;
    links.0.push((program, p.attach(category, name)?));
    Ok(())
}

/// The tracepoint links attached, so that stopping can detach them all at once: each detach
/// waits for an RCU grace period (60-80 ms on these VMs), over 4 s one after another.
#[derive(Default)]
pub struct Links(Vec<(&'static str, TracePointLinkId)>);

/// Detaches every link from its own thread, then the rest with `ebpf`. The kernel serializes much
/// of the work, but the waits partly overlap: about 3 s instead of 4.4 s for ~60 links here.
pub fn detach_all(mut ebpf: Ebpf, links: Links) {
    let owned: Vec<_> = links
        .0
        .into_iter()
        .filter_map(|(program, id)| {
            let p: &mut TracePoint = ebpf.program_mut(program)?.try_into().ok()?;
            p.take_link(id).ok()
        })
        .collect();
    std::thread::scope(|s| {
        for link in owned {
            s.spawn(move || drop(link));
        }
    });
    drop(ebpf);
}

/// Fault injection for tests and drills: `AIWATCH_FAIL_ATTACH=prog1,prog2` makes those programs'
/// hooks fail as if the kernel refused them, in `run` and in `check` alike.
fn injected_failure(program: &str) -> anyhow::Result<()> {
    let listed = std::env::var("AIWATCH_FAIL_ATTACH").unwrap_or_default();
    if listed.split(',').any(|p| p.trim() == program) {
        bail!("attach refused (AIWATCH_FAIL_ATTACH)");
    }
    Ok(())
}

/// Loads every program `usage` selects and, with `attach`, attaches it to its hooks. A failed
/// optional hook is reported and skipped; a failed required one is an error after all have
/// been tried (so the report is complete).
pub fn load_programs(ebpf: &mut Ebpf, attach: bool, include_check_only: bool) -> Vec<ProbeStatus> {
    load_programs_linked(ebpf, attach, include_check_only).0
}

/// [`load_programs`], with the links attached (for [`detach_all`]).
pub fn load_programs_linked(
    ebpf: &mut Ebpf,
    attach: bool,
    include_check_only: bool,
) -> (Vec<ProbeStatus>, Links) {
    let mut links = Links::default();
    let btf = Btf::from_sys_fs().ok();
    let mut out = Vec::new();
    for spec in programs() {
        if spec.usage == Usage::CheckOnly && !include_check_only {
            continue;
        }
        let status = |hook: &Hook, r: anyhow::Result<()>| ProbeStatus {
            program: spec.name,
            hook: hook.to_string(),
            usage: spec.usage,
            ok: r.is_ok(),
            error: r.err().map(|e| format!("{e:#}")),
        };
        if let Err(e) = load_program(ebpf, &spec, btf.as_ref()) {
            let msg = format!("{e:#}");
            out.extend(spec.hooks.iter().map(|h| status(h, Err(anyhow::anyhow!("load: {msg}")))));
            continue;
        }
        for hook in &spec.hooks {
            let r = match hook {
                _ if injected_failure(spec.name).is_err() => injected_failure(spec.name),
                Hook::Tracepoint { category, name } if attach => {
                    attach_tracepoint(ebpf, spec.name, category, name, &mut links)
                }
                Hook::Tracepoint { category, name } => tracepoint_exists(category, name),
                // CheckOnly programs: loading was the test. Uprobes are attached per session.
                Hook::FEntry(_) | Hook::Lsm(_) | Hook::Uprobe(_) => Ok(()),
            };
            out.push(status(hook, r));
        }
    }
    (out, links)
}

fn tracepoint_exists(category: &str, name: &str) -> anyhow::Result<()> {
    let dir = ensure_tracefs()?;
    let path = Path::new(dir).join("events").join(category).join(name);
    if path.is_dir() {
        Ok(())
    } else {
        bail!("{} does not exist", path.display())
    }
}

/// The maps the daemon reads and writes while running.
pub struct KernelMaps {
    pub tracked: BpfHashMap<MapData, u32, Tracked>,
    pub socks: BpfHashMap<MapData, SockKey, SockInfo>,
    pub candidates: BpfHashMap<MapData, CandidateKey, u32>,
    pub stats: PerCpuArray<MapData, u64>,
}

impl KernelMaps {
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<(Self, RingBuf<MapData>)> {
        let tracked = BpfHashMap::try_from(ebpf.take_map("TRACKED").context("map TRACKED missing")?)?;
        let stats = PerCpuArray::try_from(ebpf.take_map("STATS").context("map STATS missing")?)?;
        let socks = BpfHashMap::try_from(ebpf.take_map("SOCKS").context("map SOCKS missing")?)?;
        let candidates =
            BpfHashMap::try_from(ebpf.take_map("CANDIDATES").context("map CANDIDATES missing")?)?;
        let events = RingBuf::try_from(ebpf.take_map("EVENTS").context("map EVENTS missing")?)?;
        Ok((Self { tracked, socks, candidates, stats }, events))
    }

    /// Sums of the per-CPU counters.
    pub fn stats(&self) -> [u64; Stat::COUNT as usize] {
        let mut out = [0u64; Stat::COUNT as usize];
        for stat in Stat::ALL {
            if let Ok(values) = self.stats.get(&(stat as u32), 0) {
                out[stat as usize] = values.iter().sum();
            }
        }
        out
    }

    pub fn track(&mut self, pid: u32, t: Tracked) {
        if let Err(e) = self.tracked.insert(pid, t, 0) {
            tracing::warn!(pid, error = %e, "cannot write the tracked-process map");
        }
    }

    pub fn untrack(&mut self, pid: u32) {
        // Already gone (the process exited) is fine.
        let _ = self.tracked.remove(&pid);
    }

    /// Entries in the tracked-process and socket maps.
    pub fn occupancy(&self) -> (usize, usize) {
        (self.tracked.keys().filter(Result::is_ok).count(), self.socks.keys().filter(Result::is_ok).count())
    }

    /// Byte counts of a socket its process never closed; removes it from the map.
    pub fn take_sock(&mut self, pid: u32, fd: i32) -> (u64, u64) {
        let key = SockKey { tgid: pid, fd: fd as u32 };
        let info = self.socks.get(&key, 0).unwrap_or_default();
        let _ = self.socks.remove(&key);
        (info.bytes_sent, info.bytes_recv)
    }
}

fn candidate_key(name: &str) -> CandidateKey {
    let mut key = [0u8; COMM_LEN];
    let n = name.len().min(COMM_LEN - 1);
    key[..n].copy_from_slice(&name.as_bytes()[..n]);
    key
}

/// Writes the candidate executable names (see `AssistantClassifier::candidate_names`).
pub fn set_candidates(ebpf: &mut Ebpf, names: &[String]) -> anyhow::Result<()> {
    let mut map: BpfHashMap<&mut MapData, CandidateKey, u32> =
        BpfHashMap::try_from(ebpf.map_mut("CANDIDATES").context("map CANDIDATES missing")?)?;
    for name in names {
        map.insert(candidate_key(name), 1, 0)
            .with_context(|| format!("adding candidate {name:?} (at most 512)"))?;
    }
    Ok(())
}

impl KernelMaps {
    /// Replaces the candidate names (config reload): new ones first, then stale ones removed.
    pub fn replace_candidates(&mut self, names: &[String]) -> anyhow::Result<()> {
        let wanted: std::collections::HashSet<CandidateKey> =
            names.iter().map(|n| candidate_key(n)).collect();
        for key in &wanted {
            self.candidates.insert(*key, 1, 0).context("adding a candidate (at most 512)")?;
        }
        let stale: Vec<CandidateKey> =
            self.candidates.keys().filter_map(Result::ok).filter(|k| !wanted.contains(k)).collect();
        for key in stale {
            let _ = self.candidates.remove(&key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_follow_the_convention_and_are_unique() {
        let progs = programs();
        let mut names: Vec<_> = progs.iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), progs.len());
        for p in &progs {
            let mut parts = p.name.splitn(3, '_');
            let (area, phase) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(["process", "files", "net", "env"].contains(&area), "{}", p.name);
            assert!(["enter", "exit"].contains(&phase), "{}", p.name);
            assert!(!p.hooks.is_empty());
        }
        // Every syscall has an enter program and an exit hook.
        for sc in Syscall::ALL {
            assert!(progs.iter().any(|p| p.name == format!("files_enter_{}", sc.name())));
        }
        let exit = progs.iter().find(|p| p.name == "files_exit_syscall").unwrap();
        assert_eq!(exit.hooks.len(), Syscall::ALL.len());
    }
}
