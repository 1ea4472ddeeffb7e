//! Path syscalls: the path resolved against its process, classified into fingerprint
//! categories, reported, and correlated.

use super::{signal, state::State};
use crate::{
    kernel::{events::FileRecord, tracker::Tracker},
    model::procs::Who,
    output::{
        emit::Out,
        report::{Body, FingerprintRead, ProcessRef, SessionRef},
    },
    sys::errno::errno_name,
};

pub(super) fn file(st: &mut State, rec: &FileRecord, kernel: &mut dyn Tracker) -> Vec<Out> {
    let Some(ctx) = st.table.on_file(rec, &st.fs, st.src.as_ref()) else { return Vec::new() };
    // An empty path (fstat, fchdir) names an fd whose open was already reported.
    if rec.path.is_empty() {
        return Vec::new();
    }
    let Some(session) = ctx.session else { return Vec::new() };
    let who = Who { proc: ctx.proc, session, reader: ctx.proc.reader() };
    let Some(res) = ctx.resolution else {
        return vec![Out::UnresolvedPath { pid: rec.hdr.pid, path: rec.path.clone(), dirfd: rec.dirfd }];
    };
    if rec.ret >= 0 && rec.syscall.returns_fd() {
        // A TLS library loaded: the content scan's probes go on this process.
        kernel.session_opened(who.root(), rec.hdr.pid, &res.resolved);
    }
    let views = res.match_views();
    let view_refs: Vec<&str> = views.iter().map(|v| v.as_ref()).collect();
    let categories = st.matcher.categories(&view_refs);
    let Some(first) = categories.first() else { return Vec::new() };
    let mut out = Vec::with_capacity(1 + categories.len());
    for c in &categories {
        out.push(signal(&mut st.correlator, &who, "file", c, &res.resolved, rec.hdr.ts_ns));
    }
    let read = FingerprintRead {
        session: SessionRef::of(who.session),
        process: ProcessRef::of(who.proc, rec.hdr.tid, &rec.hdr.comm),
        reader: who.reader,
        category: first.to_string(),
        categories: categories.iter().map(|c| c.to_string()).collect(),
        syscall: rec.syscall.name(),
        path: rec.path.clone(),
        dirfd: (rec.dirfd != sensor_common::AT_FDCWD).then_some(rec.dirfd),
        target_pid: proc_pid(&res.absolute),
        absolute_path: res.absolute,
        resolved_path: res.resolved,
        target_path: res.target,
        flags: rec.flags,
        resolve_flags: rec.resolve,
        result: rec.ret,
        success: rec.ret >= 0,
        errno: errno_name(rec.ret),
        truncated: rec.hdr.flags & sensor_common::flags::PATH_TRUNCATED != 0,
    };
    out.insert(0, Out::record(rec.hdr.ts_ns, Body::FingerprintRead(Box::new(read))));
    out
}

/// The pid in a `/proc/<pid>/...` path.
fn proc_pid(path: &str) -> Option<u32> {
    path.strip_prefix("/proc/")?.split('/').next()?.parse().ok()
}
