//! `aiwatch check`: which kernel features this host offers, and what the sensor will use.
//! It attaches (and then detaches) every program of the same table `aiwatch run` attaches from,
//! through the same loader, and the getenv uprobes on this process: "Ready" means `run` starts.

use std::path::Path;

use aya::{maps::MapType, programs::ProgramType};
use serde::Serialize;

use crate::{
    config::{content::ContentMode, Config, GetenvProbes},
    kernel::{
        loader::{self, JobChoice, Mode, ProbeStatus, Usage},
        uprobes::EnvProbes,
    },
    output::metrics::Metrics,
};

#[derive(Debug, Serialize)]
pub struct Feature {
    pub name: &'static str,
    pub available: bool,
    pub detail: String,
    /// How `aiwatch run` uses it.
    pub used: String,
}

#[derive(Debug, Serialize)]
pub struct ProbeRow {
    pub program: &'static str,
    pub hook: String,
    pub usage: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A job kernels do in different ways, and the way this one gets.
#[derive(Debug, Serialize)]
pub struct PathRow {
    pub job: &'static str,
    /// The program that does it here (none: the job cannot be done on this kernel).
    pub program: Option<&'static str>,
    pub how: String,
    /// Programs of the job not used here, and why.
    pub passed_over: Vec<PassedOver>,
}

#[derive(Debug, Serialize)]
pub struct PassedOver {
    pub program: &'static str,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub kernel: String,
    pub features: Vec<Feature>,
    /// Kernel-dependent paths: which program does each job on this kernel.
    pub paths: Vec<PathRow>,
    pub programs: Vec<ProbeRow>,
    /// Every required program loads and attaches.
    pub ready: bool,
}

fn usage_name(u: Usage) -> &'static str {
    match u {
        Usage::Required => "required",
        Usage::Optional => "optional",
        Usage::CheckOnly => "check-only",
    }
}

/// Everything `run` would load and attach, attached and detached again.
struct Attempt {
    statuses: Vec<ProbeStatus>,
    jobs: Vec<JobChoice>,
    tracefs: Result<&'static str, String>,
    load_error: Option<String>,
}

fn attempt(cfg: &Config) -> Attempt {
    let tracefs = loader::ensure_tracefs().map_err(|e| format!("{e:#}"));
    let mut obj = match loader::open(cfg) {
        Ok(o) => o,
        Err(e) => {
            return Attempt {
                statuses: Vec::new(),
                jobs: Vec::new(),
                tracefs,
                load_error: Some(format!("{e:#}")),
            }
        }
    };
    let loaded = loader::load_programs(&mut obj, Mode::Check);
    let mut statuses = loaded.statuses;
    // The getenv uprobes as `run` sets them up, carried by this process; dropped at once.
    match Metrics::new() {
        Ok(metrics) => {
            let v = &cfg.variables;
            match EnvProbes::setup(
                &mut obj.ebpf,
                GetenvProbes::Session,
                &v.libc,
                cfg.content.markers == ContentMode::On,
                obj.tracefs,
                metrics.getenv_attach(),
            ) {
                Ok((probes, st)) => {
                    statuses.extend(st);
                    drop(probes);
                }
                Err(e) => {
                    statuses.push(ProbeStatus::failed("env_enter_getenv", "uprobe/libc:getenv".into(), e))
                }
            }
        }
        Err(e) => statuses.push(ProbeStatus::failed("env_enter_getenv", "uprobe/libc:getenv".into(), e)),
    }
    loader::detach_all(obj.ebpf, loaded.links);
    Attempt { statuses, jobs: loaded.jobs, tracefs, load_error: None }
}

pub fn report(cfg: &Config) -> Report {
    let kernel = nix::sys::utsname::uname()
        .map(|u| format!("{} {}", u.sysname().to_string_lossy(), u.release().to_string_lossy()))
        .unwrap_or_else(|_| "unknown".into());
    let attempt = attempt(cfg);
    let features = features(&attempt);
    let Attempt { statuses, jobs, load_error, .. } = attempt;
    let paths = jobs
        .into_iter()
        .map(|j| PathRow {
            job: j.job,
            program: j.program,
            how: j.how,
            passed_over: j
                .passed_over
                .into_iter()
                .map(|(program, reason)| PassedOver { program, reason })
                .collect(),
        })
        .collect();
    let programs = probe_rows(statuses, load_error);
    let ready = !programs.is_empty() && programs.iter().all(|p| p.ok || p.usage != "required");
    Report { kernel, features, paths, programs, ready }
}

fn of<'a>(statuses: &'a [ProbeStatus], prog: &'a str) -> impl Iterator<Item = &'a ProbeStatus> {
    statuses.iter().filter(move |s| s.program == prog)
}

/// Whether a check-only program loaded and attached, and why not.
fn probe_feature(attempt: &Attempt, prog: &str) -> (bool, String) {
    match (of(&attempt.statuses, prog).next(), &attempt.load_error) {
        (Some(ProbeStatus { ok: true, .. }), _) => (true, "a test program loaded and attached".to_string()),
        (Some(ProbeStatus { error: Some(e), .. }), _) => (false, e.clone()),
        (_, Some(e)) => (false, format!("not tested: {e}")),
        _ => (false, "not tested".to_string()),
    }
}

/// The kernel features the sensor can use, each with what was found and what uses it.
fn features(attempt: &Attempt) -> Vec<Feature> {
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    let ringbuf = aya::sys::is_map_supported(MapType::RingBuf).unwrap_or(false);
    let tp_supported = aya::sys::is_program_supported(ProgramType::TracePoint).unwrap_or(false);
    let btf_exit = attempt.jobs.iter().any(|j| j.program == Some("process_enter_sched_exit_live"));
    let (fentry, fentry_detail) = probe_feature(attempt, "files_enter_fentry_openat2");
    vec![
        Feature {
            name: "btf",
            available: btf,
            detail: if btf { "/sys/kernel/btf/vmlinux".into() } else { "no /sys/kernel/btf/vmlinux".into() },
            used: if btf_exit {
                "yes: struct offsets for the thread-group exit program (this kernel's sched_process_exit has no group_dead)".into()
            } else {
                "no: only on kernels before 6.16, for struct offsets".into()
            },
        },
        Feature {
            name: "ring_buffer",
            available: ringbuf,
            detail: if ringbuf {
                "BPF_MAP_TYPE_RINGBUF".into()
            } else {
                "not supported (needs Linux 5.8)".into()
            },
            used: "yes: every event".into(),
        },
        Feature {
            name: "tracepoints",
            available: tp_supported && attempt.tracefs.is_ok(),
            detail: match &attempt.tracefs {
                Ok(dir) => format!("tracefs at {dir}"),
                Err(e) => e.clone(),
            },
            used: "yes: every kernel hook of the sensor".into(),
        },
        uprobe_feature(attempt),
        Feature {
            name: "fentry",
            available: fentry,
            detail: fentry_detail,
            used: "no: tracepoints cover the same hooks".into(),
        },
        lsm_feature(attempt),
    ]
}

fn uprobe_feature(attempt: &Attempt) -> Feature {
    let uprobe_pmu = Path::new("/sys/bus/event_source/devices/uprobe").exists();
    let getenv: Vec<&ProbeStatus> = of(&attempt.statuses, "env_enter_getenv").collect();
    let getenv_ok = getenv.iter().any(|s| s.ok && s.hook.contains("per session"));
    Feature {
        name: "uprobes",
        available: uprobe_pmu && getenv_ok,
        detail: match (uprobe_pmu, getenv.iter().find(|s| !s.ok), &attempt.load_error) {
            (false, _, _) => "no uprobe PMU".into(),
            (true, _, _) if getenv_ok => "getenv probes attached on this process and detached".into(),
            (true, Some(s), _) => s.error.clone().unwrap_or_default(),
            (true, None, Some(e)) => format!("not tested: {e}"),
            (true, None, None) => "no libc with getenv found".into(),
        },
        used: "yes: getenv/secure_getenv reads of session processes, and what they give OpenSSL's SSL_write (the prompt-marker scan) (optional)".into(),
    }
}

fn lsm_feature(attempt: &Attempt) -> Feature {
    let lsm_active =
        std::fs::read_to_string("/sys/kernel/security/lsm").map(|s| s.split(',').any(|l| l.trim() == "bpf"));
    let (lsm_loads, lsm_detail) = probe_feature(attempt, "files_enter_lsm_file_open");
    Feature {
        name: "bpf_lsm",
        available: lsm_loads && lsm_active.as_ref().is_ok_and(|a| *a),
        detail: match lsm_active {
            Ok(true) => lsm_detail,
            Ok(false) => format!("bpf not in the active LSMs; {lsm_detail}"),
            Err(e) => format!("cannot read /sys/kernel/security/lsm ({e}); {lsm_detail}"),
        },
        used: "no: tracepoints cover the same hooks".into(),
    }
}

/// One row per program tried, plus the object itself when it did not load.
fn probe_rows(statuses: Vec<ProbeStatus>, load_error: Option<String>) -> Vec<ProbeRow> {
    let mut programs: Vec<ProbeRow> = statuses
        .into_iter()
        .map(|s| ProbeRow {
            program: s.program,
            hook: s.hook,
            usage: usage_name(s.usage),
            ok: s.ok,
            error: s.error,
        })
        .collect();
    if let Some(e) = load_error {
        programs.push(ProbeRow {
            program: "(object)",
            hook: String::new(),
            usage: "required",
            ok: false,
            error: Some(e),
        });
    }
    programs
}

impl Report {
    pub fn human(&self) -> String {
        let mut out =
            format!("aiwatch {} on {}\n\nKernel features:\n", env!("CARGO_PKG_VERSION"), self.kernel);
        for f in &self.features {
            out += &format!(
                "  {:<12} {:<3}  {}\n  {:<12}      used: {}\n",
                f.name,
                if f.available { "yes" } else { "no" },
                f.detail,
                "",
                f.used
            );
        }
        out += "\nKernel-dependent paths:\n";
        for p in &self.paths {
            out += &format!("  {:<20} {}: {}\n", p.job, p.program.unwrap_or("NONE"), p.how);
            for o in &p.passed_over {
                out += &format!("  {:<20} not {}: {}\n", "", o.program, o.reason);
            }
        }
        out += "\nPrograms (attached and detached again; run attaches required and optional ones):\n";
        for p in &self.programs {
            out += &format!(
                "  {:<4} {:<28} {:<10} {}{}\n",
                match (p.ok, p.usage) {
                    (true, _) => "ok",
                    (false, "check-only") => "no",
                    (false, _) => "FAIL",
                },
                p.program,
                p.usage,
                p.hook,
                p.error.as_ref().map(|e| format!("\n         {e}")).unwrap_or_default()
            );
        }
        out += if self.ready {
            "\nReady: every required program loads and attaches.\n"
        } else {
            "\nNOT READY: a required program cannot load or attach (see FAIL above).\n"
        };
        out
    }
}
