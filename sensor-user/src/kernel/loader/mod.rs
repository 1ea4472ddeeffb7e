//! Loading the eBPF object, and the one table of programs and their hooks that both
//! `aiwatch run` (attach) and `aiwatch check` (attach, then detach) read.

pub mod btf;
pub mod tracefs;

use anyhow::{bail, Context as _};
use aya::{
    programs::{trace_point::TracePointLinkId, FEntry, Lsm, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use sensor_common::{
    tracepoints::{
        inet_sock_set_state, kernel_offsets, sched_process_exec, sched_process_exit, sys, task_newtask,
        Field, SYS_EXIT_RET,
    },
    Syscall,
};

pub use self::tracefs::ensure as ensure_tracefs;
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
    /// Only attached (and at once detached) by `aiwatch check`, to tell whether the host offers
    /// the hook's feature.
    CheckOnly,
}

/// What the loader is for: `run` keeps the programs attached; `check` attaches every program it
/// reports, the check-only ones too, and the caller detaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    Check,
}

/// A job some kernels let one program do and others another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// What the programs of the job do, e.g. "thread-group exit".
    pub name: &'static str,
    /// How this program does it, for `aiwatch check`.
    pub how: &'static str,
}

#[derive(Debug, Clone)]
pub struct ProgramSpec {
    pub name: &'static str,
    pub hooks: Vec<Hook>,
    pub usage: Usage,
    pub purpose: &'static str,
    /// Record fields the program reads: checked in the format file of each of its tracepoints
    /// before it is attached.
    pub fields: Vec<Field>,
    /// Programs sharing a job are tried in table order; the first whose needs this kernel meets
    /// does it and the others are not loaded.
    pub job: Option<Job>,
    /// Reads kernel structs at offsets found in the kernel's BTF ([`btf::GroupOffsets`]).
    pub needs_btf_offsets: bool,
}

fn tp(category: &'static str, name: impl Into<String>) -> Hook {
    Hook::Tracepoint { category, name: name.into() }
}

fn spec(name: &'static str, hooks: Vec<Hook>, usage: Usage, purpose: &'static str) -> ProgramSpec {
    ProgramSpec { name, hooks, usage, purpose, fields: Vec::new(), job: None, needs_btf_offsets: false }
}

impl ProgramSpec {
    fn reads(mut self, fields: &[Field]) -> Self {
        self.fields.extend_from_slice(fields);
        self
    }

    fn job(mut self, name: &'static str, how: &'static str) -> Self {
        self.job = Some(Job { name, how });
        self
    }
}

/// The socket syscalls the net programs enter, with what each is for.
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

/// Every program in the eBPF object, with its hooks.
pub fn programs() -> Vec<ProgramSpec> {
    use Usage::*;
    const EXIT: &str = "thread-group exit";
    let mut v = vec![
        spec(
            "process_enter_execve",
            vec![tp("syscalls", "sys_enter_execve")],
            Required,
            "exec filename and argv",
        )
        .reads(sys::execve::READ),
        spec(
            "process_enter_execveat",
            vec![tp("syscalls", "sys_enter_execveat")],
            Required,
            "exec filename and argv (execveat, fexecve)",
        )
        .reads(sys::execveat::READ),
        spec(
            "process_exit_execve",
            vec![tp("syscalls", "sys_exit_execve"), tp("syscalls", "sys_exit_execveat")],
            Required,
            "forget the argv of a failed exec",
        )
        .reads(&[SYS_EXIT_RET]),
        spec(
            "process_enter_sched_exec",
            vec![tp("sched", "sched_process_exec")],
            Required,
            "track and report an exec before the new program runs",
        )
        .reads(sched_process_exec::READ),
        spec(
            "process_enter_task_newtask",
            vec![tp("task", "task_newtask")],
            Required,
            "children inherit tracking at fork",
        )
        .reads(task_newtask::READ),
        spec(
            "process_enter_sched_exit",
            vec![tp("sched", "sched_process_exit")],
            Required,
            "untrack a process when its last thread exits",
        )
        .reads(&[sched_process_exit::GROUP_DEAD])
        .job(EXIT, "the record's group_dead field (Linux 6.16 and later)"),
        ProgramSpec {
            needs_btf_offsets: true,
            ..spec(
                "process_enter_sched_exit_live",
                vec![tp("sched", "sched_process_exit")],
                Required,
                "untrack a process when its last thread exits",
            )
            .job(EXIT, "the group's live-thread count (task_struct.signal->live, offsets from BTF)")
        },
    ];
    // One program per syscall, named after it.
    for sc in Syscall::ALL {
        let usage = if sc == Syscall::Openat { Required } else { Optional };
        v.push(
            spec(
                files_enter_name(sc),
                vec![tp("syscalls", format!("sys_enter_{}", sc.name()))],
                usage,
                "path syscall arguments of tracked processes",
            )
            .reads(&sc.layout().fields().collect::<Vec<_>>()),
        );
    }
    v.push(
        spec(
            "files_exit_syscall",
            Syscall::ALL.iter().map(|sc| tp("syscalls", format!("sys_exit_{}", sc.name()))).collect(),
            Required,
            "path and result of tracked path syscalls",
        )
        .reads(&[SYS_EXIT_RET]),
    );
    for (name, sc, purpose) in NET_ENTER {
        let usage = if matches!(sc, "connect" | "close" | "socket") { Required } else { Optional };
        let fields = sys::read(sc).unwrap_or_default();
        v.push(spec(name, vec![tp("syscalls", format!("sys_enter_{sc}"))], usage, purpose).reads(fields));
    }
    v.push(
        spec(
            "net_exit_syscall",
            NET_ENTER
                .iter()
                .filter(|(_, sc, _)| *sc != "close")
                .map(|(_, sc, _)| tp("syscalls", format!("sys_exit_{sc}")))
                .collect(),
            Required,
            "results and data of tracked socket syscalls",
        )
        .reads(&[SYS_EXIT_RET]),
    );
    v.push(
        spec(
            "net_enter_sock_set_state",
            vec![tp("sock", "inet_sock_set_state")],
            Required,
            "result and local port of non-blocking TCP connects",
        )
        .reads(inet_sock_set_state::READ),
    );
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

/// The program that enters `sc` (the eBPF crate names them `files_enter_<syscall>`).
fn files_enter_name(sc: Syscall) -> &'static str {
    match sc {
        Syscall::Open => "files_enter_open",
        Syscall::Openat => "files_enter_openat",
        Syscall::Openat2 => "files_enter_openat2",
        Syscall::Readlink => "files_enter_readlink",
        Syscall::Readlinkat => "files_enter_readlinkat",
        Syscall::Newfstatat => "files_enter_newfstatat",
        Syscall::Statx => "files_enter_statx",
        Syscall::Access => "files_enter_access",
        Syscall::Faccessat => "files_enter_faccessat",
        Syscall::Faccessat2 => "files_enter_faccessat2",
        Syscall::Newstat => "files_enter_newstat",
        Syscall::Newlstat => "files_enter_newlstat",
        Syscall::Chdir => "files_enter_chdir",
        Syscall::Fchdir => "files_enter_fchdir",
    }
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

/// Which program does a [`Job`] on this kernel, and why the ones before it do not.
#[derive(Debug, Clone)]
pub struct JobChoice {
    pub job: &'static str,
    /// The program used, if any could be.
    pub program: Option<&'static str>,
    /// How it does the job, with the kernel facts it relies on.
    pub how: String,
    /// Programs of the job not used, with the reason.
    pub passed_over: Vec<(&'static str, String)>,
}

/// Raises RLIMIT_MEMLOCK; kernels from 5.11 charge BPF memory to the cgroup and do not need it.
/// The error, when it could not be raised.
fn raise_memlock() -> Option<std::io::Error> {
    let unlimited = libc::rlimit { rlim_cur: libc::RLIM_INFINITY, rlim_max: libc::RLIM_INFINITY };
    // SAFETY: plain syscall with a valid pointer.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) } == 0 {
        return None;
    }
    let e = std::io::Error::last_os_error();
    tracing::debug!(error = %e, "cannot raise RLIMIT_MEMLOCK; relying on memcg accounting");
    Some(e)
}

/// Why creating maps may have failed on this kernel: before 5.11 BPF memory counts against
/// RLIMIT_MEMLOCK, which a process without CAP_SYS_RESOURCE cannot raise.
fn memlock_hint(raise_error: Option<&std::io::Error>) -> Option<String> {
    let e = raise_error?;
    let release = nix::sys::utsname::uname().ok()?.release().to_string_lossy().into_owned();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).filter_map(|p| p.parse::<u32>().ok());
    let (major, minor) = (parts.next()?, parts.next()?);
    ((major, minor) < (5, 11)).then(|| {
        format!(
            "Linux {release} charges BPF maps to RLIMIT_MEMLOCK, which could not be raised ({e}): \
             give CAP_SYS_RESOURCE, or raise the limit (systemd: LimitMEMLOCK=infinity)"
        )
    })
}

/// The eBPF object with its maps created (nothing is loaded into the kernel yet), and the kernel
/// facts the loader chose it with.
pub struct Object {
    pub ebpf: Ebpf,
    /// Struct offsets written into the object for the programs that need them, or why none.
    pub offsets: Result<btf::GroupOffsets, String>,
    /// Where tracefs is mounted.
    pub tracefs: &'static str,
}

/// Parses the object and creates its maps.
pub fn open(cfg: &Config) -> anyhow::Result<Object> {
    if EBPF_OBJECT.is_empty() {
        bail!(
            "this aiwatch binary was built without its eBPF programs (bpf-linker was missing at build time); \
             run `cargo xtask setup` and rebuild"
        );
    }
    let tracefs = ensure_tracefs()?;
    let memlock = raise_memlock();
    let offsets = btf::GroupOffsets::from_sys_fs().map_err(|e| format!("{e:#}"));
    let (signal, live) = offsets.as_ref().map_or((0, 0), |o| (o.task_signal, o.signal_live));
    let level = cfg.log.kernel_level.ebpf_level();
    #[allow(deprecated)] // the replacements are not in every 0.14 patch release
    let ebpf = EbpfLoader::new()
        .set_max_entries("TRACKED", cfg.sensor.max_tracked.0)
        .set_max_entries("EVENTS", cfg.sensor.ring_buffer_bytes.0)
        .set_global("AYA_LOG_LEVEL", &level, false)
        .set_global(kernel_offsets::TASK_SIGNAL, &signal, true)
        .set_global(kernel_offsets::SIGNAL_LIVE, &live, true)
        .load(EBPF_OBJECT)
        .with_context(|| match memlock_hint(memlock.as_ref()) {
            Some(hint) => format!("loading the eBPF object: {hint}"),
            None => "loading the eBPF object (are you root, or do you have CAP_BPF and CAP_PERFMON?)".into(),
        })?;
    Ok(Object { ebpf, offsets, tracefs })
}

/// Why this kernel cannot run `spec`, before loading it: a tracepoint missing or laid out other
/// than the program reads it, or struct offsets it needs not found.
fn unmet_needs(obj: &Object, spec: &ProgramSpec) -> Option<String> {
    if spec.needs_btf_offsets {
        if let Err(e) = &obj.offsets {
            return Some(format!("no struct offsets: {e}"));
        }
    }
    let mut problems = Vec::new();
    for hook in &spec.hooks {
        if let Hook::Tracepoint { category, name } = hook {
            if let Err(e) = tracefs::check_tracepoint(obj.tracefs, category, name, &spec.fields) {
                problems.push(format!("{e:#}"));
            }
        }
    }
    // A program on several hooks (the exits) runs on those that exist; it is unusable only
    // when none does.
    (!problems.is_empty() && problems.len() == spec.hooks.len()).then(|| problems.join("; "))
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
    obj: &mut Object,
    spec: &ProgramSpec,
    category: &str,
    name: &str,
    links: &mut Links,
) -> anyhow::Result<()> {
    tracefs::check_tracepoint(obj.tracefs, category, name, &spec.fields)?;
    let p: &mut TracePoint = obj.ebpf.program_mut(spec.name).context("program missing")?.try_into()?;
    links.0.push((spec.name, p.attach(category, name)?));
    Ok(())
}

/// fentry and LSM programs, which only `check` attaches: the link stays with the program and
/// goes when the object is dropped.
fn attach_check_only(ebpf: &mut Ebpf, spec: &ProgramSpec, hook: &Hook) -> anyhow::Result<()> {
    let prog = ebpf.program_mut(spec.name).context("program missing")?;
    match hook {
        Hook::FEntry(_) => {
            let p: &mut FEntry = prog.try_into()?;
            p.attach()?;
        }
        Hook::Lsm(_) => {
            let p: &mut Lsm = prog.try_into()?;
            p.attach()?;
        }
        _ => {}
    }
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

/// What [`load_programs`] did.
#[derive(Default)]
pub struct Loaded {
    /// One per (program, hook) tried.
    pub statuses: Vec<ProbeStatus>,
    /// The tracepoint links, for [`detach_all`].
    pub links: Links,
    /// Which program does each kernel-dependent job.
    pub jobs: Vec<JobChoice>,
}

/// Loads and attaches every program `mode` selects. A failed optional hook is reported and
/// skipped; a failed required one is reported, and the caller refuses to run (all are tried
/// first, so the report is complete). Of the programs sharing a job, the first this kernel can
/// run is used.
pub fn load_programs(obj: &mut Object, mode: Mode) -> Loaded {
    let btf = Btf::from_sys_fs().ok();
    let mut out = Loaded::default();
    let specs = programs();
    for (i, spec) in specs.iter().enumerate() {
        if spec.usage == Usage::CheckOnly && mode == Mode::Run {
            continue;
        }
        let status = |hook: &Hook, r: anyhow::Result<()>| ProbeStatus {
            program: spec.name,
            hook: hook.to_string(),
            usage: spec.usage,
            ok: r.is_ok(),
            error: r.err().map(|e| crate::sys::privileges::explain_perf_error(format!("{e:#}"))),
        };
        let job = spec.job.map(|job| {
            let at = out.jobs.iter().position(|c| c.job == job.name).unwrap_or_else(|| {
                out.jobs.push(JobChoice {
                    job: job.name,
                    program: None,
                    how: String::new(),
                    passed_over: Vec::new(),
                });
                out.jobs.len() - 1
            });
            (job, at)
        });
        if let Some((_, at)) = job {
            if let Some(done_by) = out.jobs[at].program {
                out.jobs[at].passed_over.push((spec.name, format!("not needed: {done_by} does the job")));
                continue;
            }
        }
        // A later program of the same job may still do it: pass this one over quietly.
        let has_alternative =
            spec.job.is_some_and(|j| specs[i + 1..].iter().any(|s| s.job.is_some_and(|k| k.name == j.name)));
        let loaded = match unmet_needs(obj, spec) {
            Some(why) => Err(anyhow::anyhow!("{why}")),
            None => {
                load_program(&mut obj.ebpf, spec, btf.as_ref()).map_err(|e| anyhow::anyhow!("load: {e:#}"))
            }
        };
        if let Err(e) = loaded {
            match job {
                Some((_, at)) if has_alternative => {
                    out.jobs[at].passed_over.push((spec.name, format!("{e:#}")))
                }
                _ => out.statuses.extend(spec.hooks.iter().map(|h| status(h, Err(anyhow::anyhow!("{e:#}"))))),
            }
            continue;
        }
        let mut tried = Vec::new();
        for hook in &spec.hooks {
            let r = match hook {
                _ if injected_failure(spec.name).is_err() => injected_failure(spec.name),
                Hook::Tracepoint { category, name } => {
                    attach_tracepoint(obj, spec, category, name, &mut out.links)
                }
                Hook::FEntry(_) | Hook::Lsm(_) => attach_check_only(&mut obj.ebpf, spec, hook),
                // Attached per session by uprobes::EnvProbes (and by `check` through it).
                Hook::Uprobe(_) => Ok(()),
            };
            tried.push(status(hook, r));
        }
        let all_ok = tried.iter().all(|s| s.ok);
        match job {
            Some((_, at)) if !all_ok && has_alternative => {
                let errors: Vec<String> = tried.into_iter().filter_map(|s| s.error).collect();
                out.jobs[at].passed_over.push((spec.name, format!("attach: {}", errors.join("; "))));
                continue;
            }
            _ => out.statuses.extend(tried),
        }
        if let Some((j, at)) = job {
            if all_ok {
                out.jobs[at].program = Some(spec.name);
                out.jobs[at].how = match (&obj.offsets, spec.needs_btf_offsets) {
                    (Ok(o), true) => {
                        format!(
                            "{} (task_struct.signal at {}, signal_struct.live at {})",
                            j.how, o.task_signal, o.signal_live
                        )
                    }
                    _ => j.how.to_string(),
                };
            }
        }
    }
    out
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

    #[test]
    fn every_tracepoint_program_declares_the_fields_it_reads() {
        for p in programs() {
            let tracepoint = matches!(p.hooks[0], Hook::Tracepoint { .. });
            // The live-count exit program reads no record field, only kernel memory.
            if tracepoint && p.name != "process_enter_sched_exit_live" {
                assert!(!p.fields.is_empty(), "{} reads no declared field", p.name);
            }
        }
        for sc in Syscall::ALL {
            assert_eq!(files_enter_name(sc), format!("files_enter_{}", sc.name()));
        }
        // Jobs: each has a program that needs nothing special, tried last.
        let exits: Vec<_> = programs().into_iter().filter(|p| p.job.is_some()).collect();
        assert_eq!(
            exits.iter().map(|p| p.name).collect::<Vec<_>>(),
            ["process_enter_sched_exit", "process_enter_sched_exit_live"]
        );
        assert!(exits[1].needs_btf_offsets && !exits[0].needs_btf_offsets);
    }
}
