//! Environment variables: the watched ones in an exec's environment (kept until its exec
//! event, and their names for as long as the process lives), and reads through libc's getenv,
//! set or not as that environment says.

use sensor_common::flags;

use super::{
    signal,
    state::{ExecNames, State},
};
use crate::{
    kernel::events::Header,
    output::{
        emit::Out,
        report::{Body, ProcessRef, SessionRef},
    },
};

/// The new environment of an exec, sent just before its exec event.
pub(super) fn exec_env(st: &mut State, hdr: &Header, entries: &[String]) -> Vec<Out> {
    let vars = st.watch.scan(entries);
    // Every entry was read (none cut off by the kernel's bounds): a name missing is unset.
    let complete = hdr.flags & (flags::ARGV_TRUNCATED | flags::READ_FAILED) == 0;
    st.env_names.insert(hdr.pid, ExecNames::new(&vars, complete));
    st.pending_env.insert(hdr.pid, vars);
    Vec::new()
}

/// A `getenv`/`secure_getenv` (and `repeats` more the kernel counted): counted every time,
/// reported and correlated once per process, variable and outcome.
pub(super) fn read(st: &mut State, hdr: &Header, secure: bool, repeats: u32, name: String) -> Vec<Out> {
    let Some(category) = st.watch.category(&name).map(str::to_string) else { return Vec::new() };
    if st.table.who(hdr.pid).is_none() {
        return Vec::new();
    }
    let set = is_set(st, hdr.pid, &name);
    let Some(who) = st.table.who(hdr.pid) else { return Vec::new() };
    let mut out = vec![Out::EnvRead {
        assistant: who.assistant().to_string(),
        category: category.clone(),
        reader: who.reader,
        count: 1 + u64::from(repeats),
    }];
    if !st.env_seen.first(hdr.pid, &name, set) {
        return out;
    }
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

/// Whether `name` was in `pid`'s environment: as its exec (or its parent's, for a child that
/// did not exec) gave it, else as `/proc/<pid>/environ` shows it, which is the same memory.
/// A value the process later set itself is no host information, and is not looked for.
fn is_set(st: &mut State, pid: u32, name: &str) -> bool {
    if let Some(known) = st.env_names.get(pid) {
        if known.has(name) || known.complete {
            return known.has(name);
        }
    }
    match st.src.environ(pid) {
        // None: gone, or exiting as it was read (part of its environment, cached, would say
        // variables it had were unset, for its later reads and its forked children).
        Some(entries) => {
            let known = ExecNames::new(&st.watch.scan(&entries), true);
            let set = known.has(name);
            st.env_names.insert(pid, known);
            set
        }
        None => false,
    }
}
