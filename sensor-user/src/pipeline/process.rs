//! Processes: exec, fork and exit keep the process table and the kernel's map of tracked
//! processes in step, and start and end sessions; the start-up scan adds what already runs.

use std::collections::HashMap;

use sensor_common::{TrackState, Tracked};

use super::{net, state::State};
use crate::{
    detect::{correlate::Correlator, variables::Variable, version},
    kernel::{events::Header, tracker::Tracker},
    model::procs::{scan, Session, Update, Who},
    output::{
        emit::Out,
        report::{Body, ProcessRef, SessionRef},
    },
    sys::clock::Clock,
};

/// Adds assistants already running (and their descendants) to the table and the kernel; how
/// many processes were found, and the sessions started.
pub(super) fn scan(st: &mut State, kernel: &mut dyn Tracker, ignore: &[u32]) -> (usize, Vec<Out>) {
    let found = scan::scan(st.src.as_ref(), &st.classifier, ignore);
    let n = found.len();
    let mut out = Vec::new();
    let mut members: HashMap<u32, Vec<u32>> = HashMap::new();
    for s in found {
        if st.table.get(s.proc.pid).is_some() {
            continue;
        }
        kernel.track_scanned(s.proc.pid, Tracked { session: s.proc.session, state: s.proc.role as u32 });
        let pid = s.proc.pid;
        let is_root = s.assistant.is_some();
        members.entry(s.proc.session).or_default().push(pid);
        st.table.insert_scanned(s.proc, s.assistant.as_deref(), s.start_ns);
        if let Some(who) = st.table.who(pid).filter(|_| is_root) {
            out.push(session_started(&mut st.correlator, &who, Clock::now_boot_ns(), "scan", Vec::new()));
        }
    }
    for (root, pids) in members {
        kernel.session_started(root, pids);
    }
    (n, out)
}

pub(super) fn exec(
    st: &mut State,
    hdr: &Header,
    ppid: u32,
    filename: &str,
    argv: Vec<String>,
    kernel: &mut dyn Tracker,
) -> Vec<Out> {
    // Before the process may leave its session: the connections the exec closed belong there.
    let mut out = net::closed_by_exec(st, hdr, kernel);
    out.extend(exec_record(st, hdr, ppid, filename, argv, kernel));
    out
}

/// The exec as the process table takes it: a session started, an exec in one, or nothing.
fn exec_record(
    st: &mut State,
    hdr: &Header,
    ppid: u32,
    filename: &str,
    argv: Vec<String>,
    kernel: &mut dyn Tracker,
) -> Vec<Out> {
    let environment = st.pending_env.take(hdr.pid);
    let u = st.table.on_exec(hdr, ppid, filename, argv, &st.classifier, st.src.as_ref());
    let started = matches!(u, Update::SessionStarted { .. });
    let in_session = matches!(u, Update::None);
    apply(u, kernel);
    let Some(who) = st.table.who(hdr.pid) else { return Vec::new() };
    learn_base_urls(&mut st.correlator, who.root(), &environment);
    if started {
        // A new session's root is the process that exec'd.
        return vec![session_started(&mut st.correlator, &who, hdr.ts_ns, "exec", environment)];
    }
    if !in_session {
        return Vec::new();
    }
    // The new program may carry OpenSSL of its own (a Node.js reached through `env`).
    kernel.session_exec(who.root(), hdr.pid);
    let body = Body::ProcessExec {
        session: SessionRef::of(who.session),
        process: ProcessRef::of(who.proc, hdr.tid, &hdr.comm),
        reader: who.reader,
        environment,
    };
    vec![Out::record(hdr.ts_ns, body)]
}

pub(super) fn fork(st: &mut State, hdr: &Header, child: u32, kernel: &mut dyn Tracker) -> Vec<Out> {
    let u = st.table.on_fork(hdr, child);
    apply(u, kernel);
    if let Some(who) = st.table.who(child) {
        // The kernel gave the child its parent's entry as it was at the fork: a parent
        // classified since left the child pending there.
        let t = Tracked { session: who.proc.session, state: who.proc.role as u32 };
        if hdr.state == Some(TrackState::Pending) && t.state != TrackState::Pending as u32 {
            kernel.track(child, t);
        }
        kernel.session_forked(who.root(), hdr.pid, child, hdr.ts_ns);
        st.env_names.forked(hdr.pid, child);
    }
    Vec::new()
}

/// Process `pid` exited at `ts_ns` (its record, or a reconciliation that found it gone).
pub(super) fn exit(st: &mut State, pid: u32, ts_ns: u64, kernel: &mut dyn Tracker) -> Vec<Out> {
    let closed = st.egress.on_exit(pid, ts_ns, |fd| kernel.take_sock(pid, fd));
    let mut out = net::report(st, closed, ts_ns);
    out.extend(super::content::exit(st, pid, ts_ns));
    st.pending_env.forget(pid);
    st.env_names.forget(pid);
    st.env_seen.forget(pid);
    if let Some(s) = st.table.on_exit(pid) {
        st.egress.end_session(s.root_pid);
        st.correlator.end_session(s.root_pid);
        st.content.session_end(s.root_pid);
        kernel.session_ended(s.root_pid);
        out.push(session_ended(&s, ts_ns));
    }
    out
}

/// Tells the kernel what the process table changed.
fn apply(update: Update, kernel: &mut dyn Tracker) {
    match update {
        Update::None => {}
        Update::SessionStarted { root, entries } => {
            let pids = entries.iter().map(|(pid, _)| *pid).collect();
            for (pid, t) in entries {
                kernel.track(pid, t);
            }
            kernel.session_started(root, pids);
        }
        Update::Untrack(pids) => {
            for pid in pids {
                kernel.untrack(pid);
            }
        }
    }
}

/// API base URLs a session's processes were given name its `base_url` destinations; every
/// watched variable set is a fact signatures may ask for.
fn learn_base_urls(correlator: &mut Correlator, root: u32, vars: &[Variable]) {
    for v in vars {
        correlator.note_env(root, &v.name);
        if let (Some(url), "base_url") = (&v.value, v.category.as_str()) {
            correlator.learn_base_url(root, url);
        }
    }
}

/// `who` is the session's root; the correlator learns its assistant and version (read from
/// the installation, see `detect::version`).
pub(super) fn session_started(
    correlator: &mut Correlator,
    who: &Who<'_>,
    boot_ns: u64,
    found_by: &'static str,
    environment: Vec<Variable>,
) -> Out {
    let version = version::assistant_version(&who.session.exe, &who.session.argv);
    correlator.start_session(who.root(), &who.session.assistant, version);
    let process = ProcessRef::of(who.proc, who.proc.pid, &who.proc.comm);
    Out::record(
        boot_ns,
        Body::SessionStart { session: SessionRef::of(who.session), process, found_by, environment },
    )
}

fn session_ended(s: &Session, boot_ns: u64) -> Out {
    let duration_ms = boot_ns.saturating_sub(s.start_ns) / 1_000_000;
    Out::record(boot_ns, Body::SessionEnd { session: SessionRef::of(s), duration_ms })
}
