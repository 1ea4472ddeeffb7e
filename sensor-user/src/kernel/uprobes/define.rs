//! Defining the trace events of each libc file and holding their carriers: at start-up for the
//! libc files found then, and on the worker for those a session brings (a process whose root is
//! not the daemon's: the host's, when the daemon runs in a container).

use std::{
    collections::{HashMap, HashSet},
    os::fd::{AsRawFd as _, OwnedFd},
    path::PathBuf,
};

use anyhow::Context as _;

use super::{events::*, perf::*, targets::*, TraceEvent};
use crate::{config::GetenvProbes, kernel::loader::ProbeStatus};

/// What defines events and owns them: dropped (carriers closed) before the events are removed.
pub(super) struct Definer {
    pub uprobe_events: PathBuf,
    tracefs: String,
    group: String,
    mode: GetenvProbes,
    /// Each program's fd, owned here so that events defined late never use a closed fd.
    prog_fds: HashMap<&'static str, OwnedFd>,
    /// libc files (device, inode) already probed.
    known: HashSet<(u64, u64)>,
    /// The events of each probed file (device, inode), with when they were defined
    /// (boot-time ns): a process covered before then has not inherited them.
    by_file: HashMap<(u64, u64), (Vec<u64>, u64)>,
    /// The TLS probes are defined too (their programs loaded).
    pub tls: bool,
    /// Numbers event names apart.
    next: usize,
    /// `group/name` of each event defined, to remove at the end.
    pub defined: Vec<String>,
    carriers: Vec<OwnedFd>,
}

impl Definer {
    pub fn new(
        uprobe_events: PathBuf,
        tracefs: &str,
        mode: GetenvProbes,
        prog_fds: HashMap<&'static str, OwnedFd>,
        tls: bool,
    ) -> Self {
        Self {
            uprobe_events,
            tracefs: tracefs.to_string(),
            group: format!("aiwatch_{}", std::process::id()),
            mode,
            prog_fds,
            tls,
            known: HashSet::new(),
            by_file: HashMap::new(),
            next: 0,
            defined: Vec::new(),
            carriers: Vec::new(),
        }
    }

    /// Defines and attaches the events of every libc in `libcs` not probed yet; their ids.
    pub fn add(&mut self, libcs: Vec<Libc>, statuses: &mut Vec<ProbeStatus>) -> Vec<u64> {
        let mut ids = Vec::new();
        for libc in distinct(libcs, &mut self.known) {
            let mut file_ids = Vec::new();
            for ev in self.define_events(&libc, statuses) {
                let status = self.attach_carrier(&ev);
                if status.ok {
                    file_ids.push(ev.id);
                }
                statuses.push(status);
            }
            ids.extend(&file_ids);
            self.by_file.insert(libc.key, (file_ids, crate::sys::clock::Clock::now_boot_ns()));
        }
        ids
    }

    /// The events of a probed file, each with when it was defined.
    pub fn events_of(&self, file: &Libc) -> Vec<(u64, u64)> {
        self.by_file
            .get(&file.key)
            .map(|(ids, at)| ids.iter().map(|id| (*id, *at)).collect())
            .unwrap_or_default()
    }

    /// Defines an entry event (and a return event, where the probe has one) per function of
    /// one file that it defines.
    fn define_events(&mut self, libc: &Libc, statuses: &mut Vec<ProbeStatus>) -> Vec<TraceEvent> {
        let mut events = Vec::new();
        let offs = match offsets(&libc.path, libc.kind.probes()) {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(file = %libc.path.display(), error = %e, "cannot read a probed file's symbols");
                return events;
            }
        };
        let i = self.next;
        self.next += 1;
        for (probe, off) in offs {
            let func = probe.func;
            let programs = std::iter::once((false, probe.program)).chain(probe.ret.map(|r| (true, r)));
            for (ret, program) in programs {
                let event = format!("{}{i}_{func}", if ret { "r" } else { "e" });
                let name = format!("{}/{event}", self.group);
                let hook =
                    format!("uprobe/{}:{func}{}", libc.path.display(), if ret { " (return)" } else { "" });
                match define(&self.uprobe_events, &self.tracefs, &name, &libc.path, off, ret) {
                    Ok(id) => {
                        self.defined.push(name.clone());
                        events.push(TraceEvent { name, id, program });
                    }
                    Err(e) => statuses.push(ProbeStatus::failed(program, hook, e)),
                }
            }
        }
        events
    }

    /// Carriers: the BPF program goes on one perf event per trace event (per CPU when
    /// system-wide; on this process, for children to inherit, per session).
    fn attach_carrier(&mut self, ev: &TraceEvent) -> ProbeStatus {
        let system = self.mode == GetenvProbes::System;
        let (carrier_pid, cpus): (i32, Vec<i32>) =
            if system { (-1, (0..num_cpus()).collect()) } else { (std::process::id() as i32, vec![-1]) };
        let hook = format!("{} ({})", ev.name, if system { "every process" } else { "per session" });
        let r = (|| -> anyhow::Result<()> {
            let prog = self.prog_fds.get(ev.program).context("program not loaded")?.as_raw_fd();
            for (n, cpu) in cpus.iter().enumerate() {
                let fd = perf_open(ev.id, carrier_pid, *cpu, false, true).context("perf_event_open")?;
                if n == 0 {
                    ioctl(&fd, PERF_EVENT_IOC_SET_BPF, prog as libc::c_ulong).context("attaching BPF")?;
                }
                ioctl(&fd, PERF_EVENT_IOC_ENABLE, 0).context("enabling")?;
                self.carriers.push(fd);
            }
            Ok(())
        })();
        match r {
            Ok(()) => ProbeStatus::ok(ev.program, hook),
            Err(e) => ProbeStatus::failed(
                ev.program,
                hook,
                crate::sys::privileges::explain_perf_error(format!("{e:#}")),
            ),
        }
    }

    /// Closes the carriers and removes the events (retrying briefly while perf fds close).
    pub fn remove_all(&mut self) {
        self.carriers.clear();
        for name in std::mem::take(&mut self.defined) {
            for _ in 0..20 {
                if append(&self.uprobe_events, &format!("-:{name}")).is_ok() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}
