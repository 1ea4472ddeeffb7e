//! `getenv` uprobes (which `secure_getenv` calls; and, for the content scan, OpenSSL's `SSL_write` and
//! `SSL_write_ex`), attached so that only sessions pay for them.
//!
//! A uprobe defined through tracefs (`uprobe_events`) is one trace event whose BPF programs run
//! for every perf event open on it, filtered by the processes those perf events follow. So:
//! - each libc's `getenv` (entry only) is defined once at start-up;
//! - one *carrier* perf event per trace event, on the daemon itself, holds the BPF program;
//! - each session gets BPF-less perf events on its processes, opened with `inherit`: every
//!   process a session member forks afterwards carries them from birth, across exec, with no
//!   window to close and no need to stop it. Processes outside sessions never hit a breakpoint.
//! - The TLS events are not inherited: each inherited perf event costs every fork of a session
//!   about 10 µs (the kernel walks its whole list of trace events for each copy), and few of a
//!   session's processes use OpenSSL. They go on a session process that has a TLS library:
//!   mapped when the session starts, its executable at exec, or a libssl it opens (the dynamic
//!   loader's open, or a `dlopen`), milliseconds before its first `SSL_write`. A perf event
//!   on a process covers all its threads (the filter is its memory) and stays across exec.
//!
//! Opening a perf event on a uprobe walks every mapping of the library (tens of milliseconds on
//! a busy host), so sessions are attached on a worker thread, never in the event loop.

mod define;
mod events;
mod perf;
mod queue;
mod targets;

use std::{
    collections::HashMap,
    os::fd::{AsFd as _, OwnedFd},
    path::Path,
    time::Instant,
};

use anyhow::{bail, Context as _};
use aya::{programs::UProbe, Ebpf};

use self::{define::Definer, events::*, perf::*, targets::*};
use crate::{config::GetenvProbes, kernel::loader::ProbeStatus, model::bounded::Recent};

/// What the probes count: handles into the daemon's metrics (`aiwatch_getenv_attach_*`).
#[derive(Clone)]
pub struct AttachMetrics {
    /// Time to attach a session's processes.
    pub seconds: prometheus::Histogram,
    /// Processes that could not be followed.
    pub errors: prometheus::IntCounter,
    /// `aiwatch_state_evictions_total`: requests dropped at a full queue, coverage entries and
    /// perf events the bounds below refused.
    pub evictions: prometheus::IntCounterVec,
}

/// Requests waiting for the worker; past this, a request is dropped and counted
/// (`getenv_queue`): the event loop never waits for the worker.
pub const QUEUE_LEN: usize = 4096;
/// Processes whose coverage a session's worker state remembers (`getenv_coverage`): the least
/// recently covered is forgotten, and a fork of it is then attached on its own.
pub const COVERAGE_PER_SESSION: usize = 4096;
/// Perf events a session may hold (`getenv_perf_fds`): processes past it are not followed.
pub const PERF_FDS_PER_SESSION: usize = 4096;

pub const PROGRAMS: [&str; 1] = ["env_enter_getenv"];
/// The TLS plaintext programs, loaded only with the content scan on.
pub const TLS_PROGRAMS: [&str; 3] = ["tls_enter_ssl_write", "tls_enter_ssl_write_ex", "tls_exit_ssl_write"];

/// A uprobe trace event defined in tracefs.
#[derive(Debug, Clone)]
struct TraceEvent {
    /// `group/name`.
    name: String,
    id: u64,
    program: &'static str,
}

enum Request {
    Attach {
        root: u32,
        pids: Vec<u32>,
    },
    /// A session process forked: the child inherits the probes only if its parent had them.
    Fork {
        root: u32,
        parent: u32,
        child: u32,
        fork_ns: u64,
    },
    /// A session process exec'd: a program with OpenSSL inside gets its TLS events, on this
    /// process.
    Exec {
        root: u32,
        pid: u32,
    },
    /// A session process opened a TLS library (`path`, as it sees it): its TLS events, on
    /// this process.
    TlsOpen {
        root: u32,
        pid: u32,
        path: String,
    },
    /// Sessions ended (kept aside in the queue, see `queue.rs`): a wake-up for the worker.
    Detach,
}

/// Loads `programs` (the loader's table may have loaded them already); their fds.
fn load(ebpf: &mut Ebpf, programs: &[&'static str]) -> anyhow::Result<HashMap<&'static str, OwnedFd>> {
    let mut prog_fds = HashMap::new();
    for &name in programs {
        let p: &mut UProbe =
            ebpf.program_mut(name).with_context(|| format!("program {name} missing"))?.try_into()?;
        if p.fd().is_err() {
            p.load().with_context(|| format!("loading {name}"))?;
        }
        let fd = p.fd()?.as_fd().try_clone_to_owned().with_context(|| format!("duplicating {name}'s fd"))?;
        prog_fds.insert(name, fd);
    }
    Ok(prog_fds)
}

/// The getenv probes of this daemon. Dropping it detaches everything and removes the events.
pub struct EnvProbes {
    tx: Option<queue::Sender>,
    /// What the worker needs, until [`EnvProbes::start_worker`]: the daemon starts its threads
    /// only once it has dropped the capabilities it does not keep (they are per thread).
    pending: Option<(queue::Receiver, Vec<u64>, AttachMetrics)>,
    /// Defines events and holds them; the worker's while it runs (it returns it at the end).
    definer: Option<Definer>,
    worker: Option<std::thread::JoinHandle<Definer>>,
}

impl EnvProbes {
    /// Loads the programs, defines the events and, per `mode`, attaches them; the TLS probes
    /// too with `tls` (the content scan on). Returns the probes and a status per (program,
    /// file) for `aiwatch check` and the health metric.
    pub fn setup(
        ebpf: &mut Ebpf,
        mode: GetenvProbes,
        extra_libc: &[String],
        tls: bool,
        tracefs: &str,
        metrics: AttachMetrics,
    ) -> anyhow::Result<(Self, Vec<ProbeStatus>)> {
        let mut me = Self { tx: None, pending: None, definer: None, worker: None };
        let mut statuses = Vec::new();
        if mode == GetenvProbes::Off {
            return Ok((me, statuses));
        }
        let uprobe_events = Path::new(tracefs).join("uprobe_events");
        let mut prog_fds = load(ebpf, &PROGRAMS)?;
        // Without its programs (a verifier that refuses them) the TLS copy is lost, and nothing
        // else.
        let tls = tls && {
            match load(ebpf, &TLS_PROGRAMS) {
                Ok(fds) => {
                    prog_fds.extend(fds);
                    true
                }
                Err(e) => {
                    for p in TLS_PROGRAMS {
                        statuses.push(ProbeStatus::failed(p, "uprobe/openssl".into(), format!("{e:#}")));
                    }
                    false
                }
            }
        };
        remove_stale(&uprobe_events);
        let mut definer = Definer::new(uprobe_events, tracefs, mode, prog_fds, tls);
        // The inherited ones: libc's. The TLS events are defined now (and, system-wide,
        // attached) but go on session processes one by one.
        let ids = definer.add(libc_files(extra_libc), &mut statuses);
        if tls {
            definer.add(tls_files(), &mut statuses);
        }
        let none = definer.defined.is_empty();
        me.definer = Some(definer);
        if none {
            bail!("no libc with getenv found to probe");
        }
        if mode == GetenvProbes::Session {
            for structure in ["getenv_queue", "getenv_coverage", "getenv_perf_fds"] {
                metrics.evictions.with_label_values(&[structure]).inc_by(0);
            }
            let (tx, rx) = queue::channel(QUEUE_LEN, metrics.evictions.with_label_values(&["getenv_queue"]));
            me.pending = Some((rx, ids, metrics));
            me.tx = Some(tx);
        }
        Ok((me, statuses))
    }

    /// Starts the attach worker (per-session mode); requests sent before wait for it.
    pub fn start_worker(&mut self) -> anyhow::Result<()> {
        // Only the per-session mode has a worker. The definer is taken for it alone: it holds
        // the carriers, and the system-wide ones, dropped here, went silent as soon as the
        // daemon started (and their events were left defined at exit).
        let Some((rx, ids, metrics)) = self.pending.take() else { return Ok(()) };
        let Some(definer) = self.definer.take() else { return Ok(()) };
        let thread = std::thread::Builder::new().name("aiwatch-uprobes".into());
        let run = move || worker(rx, ids, metrics, definer);
        self.worker = Some(thread.spawn(run).context("starting the getenv worker")?);
        Ok(())
    }

    /// Follows a session's processes (and everything they start from now on), on the worker:
    /// opening the perf events takes milliseconds (tens, on a busy host), and done here it held
    /// up every event behind it (detection latency p50 15 ms instead of 0.3 ms). The root goes
    /// first, so its children forked from then on inherit the probes; a fork before that is
    /// attached on its own (see [`Request::Fork`]).
    pub fn attach(&self, root: u32, mut pids: Vec<u32>) {
        pids.sort_by_key(|p| *p != root);
        self.send(Request::Attach { root, pids });
    }

    pub fn forked(&self, root: u32, parent: u32, child: u32, fork_ns: u64) {
        self.send(Request::Fork { root, parent, child, fork_ns });
    }

    pub fn exec(&self, root: u32, pid: u32) {
        self.send(Request::Exec { root, pid });
    }

    /// `path` (a file a session process opened) is a TLS library: the TLS probes go on it.
    pub fn tls_opened(&self, root: u32, pid: u32, path: &str) {
        if is_tls_library(path) {
            self.send(Request::TlsOpen { root, pid, path: path.to_string() });
        }
    }

    pub fn detach(&self, root: u32) {
        if let Some(tx) = &self.tx {
            tx.end(root);
        }
    }

    /// Queues `req` for the worker without waiting; a full queue drops it, counted.
    fn send(&self, req: Request) {
        if let Some(tx) = &self.tx {
            tx.send(req);
        }
    }
}

/// A session's probe state: its perf events, and since when (boot-time ns) each process has
/// been covered, directly or by inheritance.
struct Session {
    fds: Vec<OwnedFd>,
    covered_since: Recent<u32, u64>,
    /// The TLS events on each process (not inherited).
    tls: Recent<u32, Vec<u64>>,
}

impl Default for Session {
    fn default() -> Self {
        Self {
            fds: Vec::new(),
            covered_since: Recent::new(COVERAGE_PER_SESSION),
            tls: Recent::new(COVERAGE_PER_SESSION),
        }
    }
}

impl Session {
    /// `pid` is covered since `ns`; an entry forgotten to make room is counted.
    fn cover(&mut self, pid: u32, ns: u64, metrics: &AttachMetrics) {
        let before = self.covered_since.evicted();
        self.covered_since.insert(pid, ns);
        let evicted = self.covered_since.evicted() - before;
        metrics.evictions.with_label_values(&["getenv_coverage"]).inc_by(evicted);
    }
}

/// Opens perf events `ids` on `pid`, inherited by its children with `inherit`.
fn attach_pid(ids: &[u64], pid: u32, fds: &mut Vec<OwnedFd>, metrics: &AttachMetrics, inherit: bool) -> bool {
    if fds.len() + ids.len() > PERF_FDS_PER_SESSION {
        metrics.evictions.with_label_values(&["getenv_perf_fds"]).inc();
        return false;
    }
    for id in ids {
        match perf_open(*id, pid as i32, -1, inherit, false) {
            Ok(fd) => fds.push(fd),
            // The process may be gone already.
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return false,
            Err(e) => {
                metrics.errors.inc();
                let error = crate::sys::privileges::explain_perf_error(e.to_string());
                tracing::warn!(pid, %error, "cannot follow getenv for this process");
                return false;
            }
        }
    }
    true
}

/// Puts the TLS events of `files` (defined first if new) on `pid`, those it does not have yet.
fn attach_tls(definer: &mut Definer, s: &mut Session, pid: u32, files: Vec<Libc>, metrics: &AttachMetrics) {
    if files.is_empty() {
        return;
    }
    let mut statuses = Vec::new();
    definer.add(files.clone(), &mut statuses);
    for st in statuses.iter().filter(|s| !s.ok) {
        metrics.errors.inc();
        tracing::warn!(hook = %st.hook, error = ?st.error, "cannot probe a TLS library");
    }
    let has = s.tls.touch(&pid).cloned().unwrap_or_default();
    let mut missing: Vec<u64> = files
        .iter()
        .flat_map(|f| definer.events_of(f))
        .map(|(id, _)| id)
        .filter(|id| !has.contains(id))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() || !attach_pid(&missing, pid, &mut s.fds, metrics, false) {
        return;
    }
    tracing::debug!(pid, events = missing.len(), "TLS probes attached");
    let before = s.tls.evicted();
    s.tls.insert(pid, has.into_iter().chain(missing).collect());
    metrics.evictions.with_label_values(&["getenv_coverage"]).inc_by(s.tls.evicted() - before);
}

fn worker(
    mut rx: queue::Receiver,
    mut ids: Vec<u64>,
    metrics: AttachMetrics,
    mut definer: Definer,
) -> Definer {
    let mut sessions: HashMap<u32, Session> = HashMap::new();
    while let Some((gone, req)) = rx.next() {
        for root in gone {
            sessions.remove(&root);
        }
        let Some(req) = req else { continue };
        match req {
            Request::Attach { root, pids } => {
                let start = Instant::now();
                // libc files of roots other than those seen so far (a host process, seen from a
                // daemon in a container) get their events first.
                let mut statuses = Vec::new();
                for pid in &pids {
                    ids.extend(definer.add(libcs_of(*pid), &mut statuses));
                }
                for st in statuses.iter().filter(|s| !s.ok) {
                    metrics.errors.inc();
                    tracing::warn!(hook = %st.hook, error = ?st.error, "cannot probe a session's libc");
                }
                let s = sessions.entry(root).or_default();
                for pid in &pids {
                    if attach_pid(&ids, *pid, &mut s.fds, &metrics, true) {
                        s.cover(*pid, crate::sys::clock::Clock::now_boot_ns(), &metrics);
                    }
                    if definer.tls {
                        attach_tls(&mut definer, s, *pid, tls_files_of(*pid), &metrics);
                    }
                }
                let took = start.elapsed();
                metrics.seconds.observe(took.as_secs_f64());
                tracing::debug!(
                    root,
                    processes = pids.len(),
                    ms = took.as_millis() as u64,
                    "getenv probes attached"
                );
            }
            Request::Fork { root, parent, child, fork_ns } => {
                let Some(s) = sessions.get_mut(&root) else { continue };
                match s.covered_since.touch(&parent).copied() {
                    // Forked after its parent was covered: it inherited the probes at birth.
                    Some(since) if since <= fork_ns => s.cover(child, fork_ns, &metrics),
                    // Forked before: it needs its own.
                    _ => {
                        if attach_pid(&ids, child, &mut s.fds, &metrics, true) {
                            s.cover(child, crate::sys::clock::Clock::now_boot_ns(), &metrics);
                        }
                    }
                }
            }
            Request::Exec { root, pid } => {
                let Some(s) = sessions.get_mut(&root) else { continue };
                if definer.tls {
                    attach_tls(&mut definer, s, pid, tls_files_of(pid), &metrics);
                }
            }
            Request::TlsOpen { root, pid, path } => {
                let Some(s) = sessions.get_mut(&root) else { continue };
                if definer.tls {
                    attach_tls(&mut definer, s, pid, tls_files_at(pid, &path), &metrics);
                }
            }
            Request::Detach => {}
        }
    }
    definer
}

impl Drop for EnvProbes {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(w) = self.worker.take() {
            if let Ok(d) = w.join() {
                self.definer = Some(d);
            }
        }
        if let Some(mut d) = self.definer.take() {
            d.remove_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_getenv_in_this_hosts_libc() {
        let libcs = libc_files(&[]);
        assert!(!libcs.is_empty(), "no libc found");
        let offs = offsets(&libcs[0].path, LIBC_PROBES).unwrap();
        assert!(offs.iter().any(|(p, off)| p.func == "getenv" && *off > 0), "{offs:?}");
        assert_eq!(std::mem::size_of::<PerfEventAttr>(), 136);
    }

    /// System-wide, the probes have no worker: starting the daemon's threads must leave the
    /// definer (the carriers that hold the BPF programs) in place, and the events are removed
    /// at the end. (Taken and dropped there, the probes went silent once the daemon watched.)
    #[test]
    fn system_wide_probes_outlive_the_start_of_the_threads() {
        let dir = std::env::temp_dir().join(format!("aiwatch-uprobes-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let uprobe_events = dir.join("uprobe_events");
        std::fs::write(&uprobe_events, "").unwrap();
        let mut definer =
            Definer::new(uprobe_events.clone(), "", GetenvProbes::System, HashMap::new(), false);
        definer.defined.push("aiwatch_test/e0_getenv".into());
        let mut probes = EnvProbes { tx: None, pending: None, definer: Some(definer), worker: None };
        probes.start_worker().unwrap();
        assert!(probes.worker.is_none());
        let kept = probes.definer.as_ref().map(|d| d.defined.clone());
        assert_eq!(kept, Some(vec!["aiwatch_test/e0_getenv".to_string()]));
        drop(probes);
        let removed = std::fs::read_to_string(&uprobe_events).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(removed, "-:aiwatch_test/e0_getenv\n");
    }
}
