//! Environment variables: the watched ones in an exec's environment (kept until its exec
//! event), and reads through libc's getenv.

use super::{signal, state::State};
use crate::{
    kernel::events::Header,
    output::{
        emit::Out,
        report::{Body, ProcessRef, SessionRef},
    },
};

/// The new environment of an exec, sent just before its exec event.
pub(super) fn exec_env(st: &mut State, hdr: &Header, entries: &[String]) -> Vec<Out> {
    st.pending_env.insert(hdr.pid, st.watch.scan(entries));
    Vec::new()
}

/// A `getenv`/`secure_getenv`: counted every time, reported and correlated once per process,
/// variable and outcome.
pub(super) fn read(st: &mut State, hdr: &Header, secure: bool, set: bool, name: String) -> Vec<Out> {
    let Some(category) = st.watch.category(&name) else { return Vec::new() };
    let Some(who) = st.table.who(hdr.pid) else { return Vec::new() };
    let mut out = vec![Out::EnvRead {
        assistant: who.assistant().to_string(),
        category: category.to_string(),
        reader: who.reader,
    }];
    if !st.env_seen.first(hdr.pid, &name, set) {
        return out;
    }
    let category = category.to_string();
    out.push(signal(&mut st.correlator, &who, "variable", &category, &name, hdr.ts_ns));
    let body = Body::EnvRead {
        session: SessionRef::of(who.session),
        process: ProcessRef::of(who.proc, hdr.tid, &hdr.comm),
        reader: who.reader,
        variable: name,
        category,
        set,
        function: if secure { "secure_getenv" } else { "getenv" },
    };
    out.push(Out::record(hdr.ts_ns, body));
    out
}
