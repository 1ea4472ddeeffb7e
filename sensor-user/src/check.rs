//! `aiwatch check`: which kernel features this host offers, and what the sensor will use.
//! It loads (verifies) every program of the same table `aiwatch run` attaches from, so the two
//! cannot disagree.

use std::path::Path;

use aya::{maps::MapType, programs::ProgramType};
use serde::Serialize;

use crate::{
    config::Config,
    loader::{self, ProbeStatus, Usage},
};

#[derive(Debug, Serialize)]
pub struct Feature {
    pub name: &'static str,
    pub available: bool,
    pub detail: String,
    /// How `aiwatch run` uses it.
    pub used: &'static str,
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

#[derive(Debug, Serialize)]
pub struct Report {
    pub kernel: String,
    pub features: Vec<Feature>,
    pub programs: Vec<ProbeRow>,
    /// Every required program loads and its hooks exist.
    pub ready: bool,
}

fn usage_name(u: Usage) -> &'static str {
    match u {
        Usage::Required => "required",
        Usage::Optional => "optional",
        Usage::CheckOnly => "check-only",
    }
}

pub fn report(cfg: &Config) -> Report {
    let kernel = nix::sys::utsname::uname()
        .map(|u| format!("{} {}", u.sysname().to_string_lossy(), u.release().to_string_lossy()))
        .unwrap_or_else(|_| "unknown".into());
    let tracefs = loader::ensure_tracefs();
    let (statuses, load_error) = match loader::open(cfg) {
        Ok(mut ebpf) => (loader::load_programs(&mut ebpf, false, true), None),
        Err(e) => (Vec::new(), Some(format!("{e:#}"))),
    };
    let loaded = |prog: &str| statuses.iter().find(|s| s.program == prog);
    let probe_feature = |prog: &str| match (loaded(prog), &load_error) {
        (Some(ProbeStatus { ok: true, .. }), _) => (true, "a test program loaded".to_string()),
        (Some(ProbeStatus { error: Some(e), .. }), _) => (false, e.clone()),
        (_, Some(e)) => (false, format!("not tested: {e}")),
        _ => (false, "not tested".to_string()),
    };
    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    let ringbuf = aya::sys::is_map_supported(MapType::RingBuf).unwrap_or(false);
    let tp_supported = aya::sys::is_program_supported(ProgramType::TracePoint).unwrap_or(false);
    let uprobe = Path::new("/sys/bus/event_source/devices/uprobe").exists();
    let (fentry, fentry_detail) = probe_feature("files_enter_fentry_openat2");
    let lsm_active =
        std::fs::read_to_string("/sys/kernel/security/lsm").map(|s| s.split(',').any(|l| l.trim() == "bpf"));
    let (lsm_loads, lsm_detail) = probe_feature("files_enter_lsm_file_open");
    let features = vec![
        Feature {
            name: "btf",
            available: btf,
            detail: if btf { "/sys/kernel/btf/vmlinux".into() } else { "no /sys/kernel/btf/vmlinux".into() },
            used: "only by fentry/LSM programs, which run does not need",
        },
        Feature {
            name: "ring_buffer",
            available: ringbuf,
            detail: if ringbuf {
                "BPF_MAP_TYPE_RINGBUF".into()
            } else {
                "not supported (needs Linux 5.8)".into()
            },
            used: "yes: every event",
        },
        Feature {
            name: "tracepoints",
            available: tp_supported && tracefs.is_ok(),
            detail: match &tracefs {
                Ok(dir) => format!("tracefs at {dir}"),
                Err(e) => format!("{e:#}"),
            },
            used: "yes: every hook of the sensor",
        },
        Feature {
            name: "uprobes",
            available: uprobe,
            detail: if uprobe { "uprobe PMU present".into() } else { "no uprobe PMU".into() },
            used: "not yet: planned for environment-variable reads",
        },
        Feature {
            name: "fentry",
            available: fentry,
            detail: fentry_detail,
            used: "no: tracepoints cover the same hooks",
        },
        Feature {
            name: "bpf_lsm",
            available: lsm_loads && lsm_active.as_ref().is_ok_and(|a| *a),
            detail: match lsm_active {
                Ok(true) => lsm_detail,
                Ok(false) => format!("bpf not in the active LSMs; {lsm_detail}"),
                Err(e) => format!("cannot read /sys/kernel/security/lsm ({e}); {lsm_detail}"),
            },
            used: "no: tracepoints cover the same hooks",
        },
    ];
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
    let ready = !programs.is_empty() && programs.iter().all(|p| p.ok || p.usage != "required");
    Report { kernel, features, programs, ready }
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
        out += "\nPrograms (run attaches required and optional ones):\n";
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
            "\nReady: every required program loads and its hook exists.\n"
        } else {
            "\nNOT READY: a required program cannot load or its hook is missing (see FAIL above).\n"
        };
        out
    }
}
