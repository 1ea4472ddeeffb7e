//! Loading the eBPF object, and the one table of programs and their hooks that both
//! `aiwatch run` (attach) and `aiwatch check` (attach, then detach) read.

pub mod btf;
mod table;
pub mod tracefs;

use anyhow::{bail, Context as _};
use aya::{
    programs::{trace_point::TracePointLinkId, FEntry, Lsm, RawTracePoint, TracePoint},
    Btf, Ebpf, EbpfLoader,
};
use sensor_common::tracepoints::kernel_offsets;

pub use self::{
    table::{programs, Hook, Job, ProgramSpec, Usage},
    tracefs::ensure as ensure_tracefs,
};
use crate::config::Config;

/// The eBPF object built by build.rs (empty when built without bpf-linker).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sensor-ebpf"));

/// What the loader is for: `run` keeps the programs attached; `check` attaches every program it
/// reports, the check-only ones too, and the caller detaches them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Run,
    Check,
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
    /// `task_struct.thread_info.status`, for the compat-syscall program, or why unknown.
    pub status_offset: Result<u32, String>,
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
    let (offsets, status_offset) = btf::kernel_offsets();
    let (signal, live) = offsets.as_ref().map_or((0, 0), |o| (o.task_signal, o.signal_live));
    let status = *status_offset.as_ref().unwrap_or(&0);
    let level = cfg.log.kernel_level.ebpf_level();
    let content_budget = cfg.content.kernel_budget();
    let ring_bytes = u64::from(cfg.sensor.ring_buffer_bytes.0);
    #[allow(deprecated)] // the replacements are not in every 0.14 patch release
    let ebpf = EbpfLoader::new()
        .set_max_entries("TRACKED", cfg.sensor.max_tracked.0)
        .set_max_entries("SOCKS", cfg.sensor.max_sockets.0)
        // An entry per tracked process with a followed socket, at most.
        .set_max_entries("SOCK_FDS", cfg.sensor.max_tracked.0)
        .set_max_entries("EVENTS", cfg.sensor.ring_buffer_bytes.0)
        .set_global("AYA_LOG_LEVEL", &level, false)
        .set_global(kernel_offsets::TASK_SIGNAL, &signal, true)
        .set_global(kernel_offsets::SIGNAL_LIVE, &live, true)
        .set_global(kernel_offsets::TASK_STATUS, &status, true)
        .set_global(kernel_offsets::CONTENT_BUDGET, &content_budget, true)
        .set_global(kernel_offsets::RING_BYTES, &ring_bytes, true)
        .load(EBPF_OBJECT)
        .with_context(|| match memlock_hint(memlock.as_ref()) {
            Some(hint) => format!("loading the eBPF object: {hint}"),
            None => "loading the eBPF object (are you root, or do you have CAP_BPF and CAP_PERFMON?)".into(),
        })?;
    Ok(Object { ebpf, offsets, status_offset, tracefs })
}

/// Why this kernel cannot run `spec`, before loading it: a tracepoint missing or laid out other
/// than the program reads it, or struct offsets it needs not found.
fn unmet_needs(obj: &Object, spec: &ProgramSpec) -> Option<String> {
    if spec.needs_btf_offsets {
        if let Err(e) = &obj.offsets {
            return Some(format!("no struct offsets: {e}"));
        }
    }
    if spec.needs_status_offset {
        if let Err(e) = &obj.status_offset {
            return Some(format!("no thread_info.status offset: {e}"));
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
        // Of its caller's type: a tracepoint's, or a uretprobe's (the TLS copy).
        Some(Hook::TailCall { .. }) => match prog {
            aya::programs::Program::UProbe(p) => p.load()?,
            prog => {
                let p: &mut TracePoint = prog.try_into()?;
                p.load()?;
            }
        },
        Some(Hook::RawTracepoint(_)) => {
            let p: &mut RawTracePoint = prog.try_into()?;
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
        Some(Hook::Uprobe { .. }) => {
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

/// Puts the loaded program `name` in slot `index` of the program array `map`.
fn tail_call_slot(ebpf: &mut Ebpf, name: &str, map: &str, index: u32) -> anyhow::Result<()> {
    let fd = ebpf.program(name).context("program missing")?.fd()?.try_clone()?;
    let mut array = aya::maps::ProgramArray::try_from(
        ebpf.map_mut(map).with_context(|| format!("map {map} is not in the eBPF object"))?,
    )?;
    array.set(index, &fd, 0).with_context(|| format!("{map}[{index}]"))?;
    Ok(())
}

/// Raw tracepoint, fentry and LSM programs: the link stays with the program and goes when the
/// object is dropped (fentry and LSM only `check` attaches).
fn attach_owned(ebpf: &mut Ebpf, spec: &ProgramSpec, hook: &Hook) -> anyhow::Result<()> {
    let prog = ebpf.program_mut(spec.name).context("program missing")?;
    match hook {
        Hook::RawTracepoint(name) => {
            let p: &mut RawTracePoint = prog.try_into()?;
            p.attach(name)?;
        }
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
        let job = spec.job.map(|job| (job, job_slot(&mut out.jobs, job.name)));
        if let Some((_, at)) = job {
            if let Some(done_by) = out.jobs[at].program {
                out.jobs[at].passed_over.push((spec.name, format!("not needed: {done_by} does the job")));
                continue;
            }
        }
        // A later program of the same job may still do it: pass this one over quietly.
        let has_alternative =
            spec.job.is_some_and(|j| specs[i + 1..].iter().any(|s| s.job.is_some_and(|k| k.name == j.name)));
        let load_started = std::time::Instant::now();
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
                _ => out
                    .statuses
                    .extend(spec.hooks.iter().map(|h| status(spec, h, Err(anyhow::anyhow!("{e:#}"))))),
            }
            continue;
        }
        let attach_started = std::time::Instant::now();
        let tried = attach_hooks(obj, spec, &mut out.links);
        let all_ok = tried.iter().all(|s| s.ok);
        // Start-up time is mostly the verifier's: which program costs what.
        tracing::debug!(
            program = spec.name,
            load_us = (attach_started - load_started).as_micros() as u64,
            attach_us = attach_started.elapsed().as_micros() as u64,
            "program loaded"
        );
        match job {
            Some((_, at)) if !all_ok && has_alternative => {
                let errors: Vec<String> = tried.into_iter().filter_map(|s| s.error).collect();
                out.jobs[at].passed_over.push((spec.name, format!("attach: {}", errors.join("; "))));
                continue;
            }
            _ => out.statuses.extend(tried),
        }
        if let Some((j, at)) = job.filter(|_| all_ok) {
            out.jobs[at].program = Some(spec.name);
            out.jobs[at].how = job_how(obj, spec, &j);
        }
    }
    out
}

fn status(spec: &ProgramSpec, hook: &Hook, r: anyhow::Result<()>) -> ProbeStatus {
    ProbeStatus {
        program: spec.name,
        hook: hook.to_string(),
        usage: spec.usage,
        ok: r.is_ok(),
        error: r.err().map(|e| crate::sys::privileges::explain_perf_error(format!("{e:#}"))),
    }
}

/// The index of `job`'s entry in `jobs`, added when first seen.
fn job_slot(jobs: &mut Vec<JobChoice>, job: &'static str) -> usize {
    jobs.iter().position(|c| c.job == job).unwrap_or_else(|| {
        jobs.push(JobChoice { job, program: None, how: String::new(), passed_over: Vec::new() });
        jobs.len() - 1
    })
}

/// Attaches a loaded program to each of its hooks, one status per hook.
fn attach_hooks(obj: &mut Object, spec: &ProgramSpec, links: &mut Links) -> Vec<ProbeStatus> {
    let mut tried = Vec::new();
    for hook in &spec.hooks {
        let r = match hook {
            _ if injected_failure(spec.name).is_err() => injected_failure(spec.name),
            Hook::Tracepoint { category, name } => attach_tracepoint(obj, spec, category, name, links),
            Hook::RawTracepoint(_) | Hook::FEntry(_) | Hook::Lsm(_) => {
                attach_owned(&mut obj.ebpf, spec, hook)
            }
            // Attached per session by uprobes::EnvProbes (and by `check` through it).
            Hook::Uprobe { .. } => Ok(()),
            Hook::TailCall { map, index } => tail_call_slot(&mut obj.ebpf, spec.name, map, *index),
        };
        tried.push(status(spec, hook, r));
    }
    tried
}

/// How the program chosen for a job does it, with the struct offsets it was given.
fn job_how(obj: &Object, spec: &ProgramSpec, job: &Job) -> String {
    match (&obj.offsets, spec.needs_btf_offsets) {
        (Ok(o), true) => {
            format!(
                "{} (task_struct.signal at {}, signal_struct.live at {})",
                job.how, o.task_signal, o.signal_live
            )
        }
        _ => match (&obj.status_offset, spec.needs_status_offset) {
            (Ok(at), true) => format!("{} (task_struct.thread_info.status at {at})", job.how),
            _ => job.how.to_string(),
        },
    }
}
