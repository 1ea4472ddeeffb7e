//! HTTP requests to LLM APIs: the kernel's content copy (plain-HTTP sends, and the plaintext
//! given to OpenSSL) goes to the content stage, which reassembles and scans each request; its
//! markers are reported (`prompt_markers`), its text is not.

use super::state::State;
use crate::{
    detect::content::{ConnKey, Scanned, Skipped},
    kernel::events::{has, Header},
    output::{
        emit::Out,
        report::{Body, ProcessRef, PromptMarkersRecord, SessionRef},
    },
};

/// One chunk of a send's content copy (`bytes`: the send's byte count, on its first chunk).
pub(super) fn chunk(st: &mut State, hdr: &Header, fd: i32, bytes: i64, data: &[u8]) -> Vec<Out> {
    copy(st, hdr, ConnKey::Sock { pid: hdr.pid, fd }, bytes.max(0) as u64, data)
}

/// One chunk of the plaintext an `SSL_write` was given (`bytes`: the call's byte count).
pub(super) fn tls_chunk(st: &mut State, hdr: &Header, ssl: u64, bytes: u64, data: &[u8]) -> Vec<Out> {
    copy(st, hdr, ConnKey::Tls { pid: hdr.pid, ssl }, bytes, data)
}

/// A process exited: the TLS requests it left unfinished are reported incomplete.
pub(super) fn exit(st: &mut State, pid: u32, boot_ns: u64) -> Vec<Out> {
    let ended = st.content.process_exit(pid);
    ended.into_iter().flat_map(|s| report(st, s, boot_ns)).collect()
}

fn copy(st: &mut State, hdr: &Header, key: ConnKey, bytes: u64, data: &[u8]) -> Vec<Out> {
    let Some(root) = st.table.who(hdr.pid).map(|w| w.root()) else { return Vec::new() };
    let start = has(hdr, sensor_common::flags::CONTENT_START).then_some(bytes);
    let (scanned, skipped) = st.content.chunk(key, root, start, data);
    let mut out: Vec<Out> = skipped.into_iter().filter_map(|s| skip(st, hdr.pid, s)).collect();
    out.extend(scanned.into_iter().flat_map(|s| report(st, s, hdr.ts_ns)));
    out
}

/// With `content.markers = "headers-only"`: the headers of a request head in the first bytes
/// of a send.
pub(super) fn head(st: &mut State, hdr: &Header, fd: i32, data: &[u8]) -> Vec<Out> {
    match st.content.head((hdr.pid, fd), data) {
        Some(s) => report(st, s, hdr.ts_ns),
        None => Vec::new(),
    }
}

fn skip(st: &State, pid: u32, s: Skipped) -> Option<Out> {
    let who = st.table.who(pid)?;
    let outcome = match s {
        Skipped::NotLlm => "not_llm",
        Skipped::SessionBudget => "session_budget",
        Skipped::MemoryCap => "memory_cap",
    };
    Some(Out::PromptRequest { assistant: who.session.assistant.clone(), outcome })
}

/// The records of a scanned (or incomplete) request: its count, its `prompt_markers`, and the
/// finding of the prompt-marker rule when it raises one.
pub(super) fn report(st: &mut State, s: Scanned, boot_ns: u64) -> Vec<Out> {
    let finding = super::prompt_rule::finding(st, &s, boot_ns);
    let Some(who) = st.table.who(s.pid) else { return Vec::new() };
    let outcome = match (&s.error, s.request.complete) {
        (None, _) => "scanned",
        (Some(_), true) => "not_json",
        (Some(_), false) => "incomplete",
    };
    let record = PromptMarkersRecord {
        session: SessionRef::of(who.session),
        process: ProcessRef::of(who.proc, s.pid, &who.proc.comm),
        reader: who.reader,
        connection_id: s.conn.id,
        destination: s.conn.destination,
        destination_class: s.conn.class,
        request: s.request,
        found: s.found,
        error: s.error,
    };
    let mut out = vec![
        Out::PromptRequest { assistant: who.session.assistant.clone(), outcome },
        Out::record(boot_ns, Body::PromptMarkers(Box::new(record))),
    ];
    out.extend(finding);
    out
}
