//! The prompt-marker rule (`detect::prompt_rule`) on each request the content stage scanned
//! whole: its finding, or why none is emitted (a duplicate within the session, the rate limit).

use super::state::State;
use crate::{
    detect::{content::Scanned, correlate::Outcome, prompt_rule::RULE},
    output::{
        emit::Out,
        report::{Body, FindingRecord, ProcessRef, SessionRef},
    },
};

/// Headers-only, incomplete and unparsable requests say nothing of what the body carries: they
/// are neither judged nor learned.
pub(super) fn finding(st: &mut State, s: &Scanned, boot_ns: u64) -> Option<Out> {
    if s.error.is_some() || !s.request.complete {
        return None;
    }
    let root = st.table.who(s.pid)?.root();
    let outcome = st.correlator.on_prompt(root, &s.found, &s.conn.class, boot_ns)?;
    let who = st.table.who(s.pid)?;
    Some(match outcome {
        Outcome::Emit(finding) => {
            let record = FindingRecord {
                // A connection may carry several requests: the time tells their findings apart.
                id: format!("{}-{RULE}-{boot_ns:x}", s.conn.id),
                session: SessionRef::of(who.session),
                process: ProcessRef::of(who.proc, s.pid, &who.proc.comm),
                reader: who.reader,
                finding: *finding,
                destination: s.conn.destination.clone(),
                connection_id: s.conn.id.clone(),
            };
            Out::record(boot_ns, Body::Finding(Box::new(record)))
        }
        Outcome::Duplicate => Out::Suppressed("duplicate"),
        Outcome::RateLimited => Out::Suppressed("rate_limited"),
    })
}
