//! Volume: what of a session's records is sent at `output.detail`, and the `session_rollup`
//! record that counts the rest. The emitter feeds every record here after counting it in the
//! metrics; the answer says whether to send it, and which rollup goes before it (a session's
//! final one, before its `session_end`). Periodic rollups of long sessions come from [`Rollup::due`].
//!
//! - `summary`: session start and end, findings and rollups; the session's first read of each
//!   artifact (pattern) and its first connection to each destination. Repeats, later
//!   connections, closes are counted into the rollup.
//! - `reads`: every record, except a read of an artifact (pattern) a process running the same
//!   program already read in the session (each `git` asking for `LC_ALL`, each `ps` opening
//!   `/proc/<pid>/environ` of every process): each program's first read of each artifact.
//! - `all`: every record.
//!
//! Rollups are sent at every level.

pub mod key;
pub mod session;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use crate::{
    config::{OutputConfig, OutputDetail},
    model::bounded::Recent,
    output::report::Body,
    sys::clock::Clock,
};
use key::Seen;
use session::Profile;

/// Sessions counted at once; the records of more are all sent.
pub const MAX_SESSIONS: usize = 4096;
/// Ended sessions remembered, so a late record of one is sent rather than starting a profile.
const ENDED: usize = 1024;

/// What to do with one record.
#[derive(Debug, Default)]
pub struct Fed {
    /// Send it (else it was counted in its session's rollup).
    pub send: bool,
    /// A rollup to send before it: the session's final one.
    pub before: Option<(u64, Body)>,
}

pub struct Rollup {
    detail: OutputDetail,
    interval_ns: u64,
    /// By session id.
    sessions: HashMap<String, Profile>,
    ended: Recent<String, ()>,
}

impl Rollup {
    pub fn new(cfg: &OutputConfig) -> Self {
        Self {
            detail: cfg.detail,
            interval_ns: cfg.rollup_interval.0.saturating_mul(1_000_000_000),
            sessions: HashMap::new(),
            ended: Recent::new(ENDED),
        }
    }

    /// Counts `body` (of kernel time `ns`) and says whether to send it.
    pub fn feed(&mut self, ns: u64, body: &Body, clock: &Clock) -> Fed {
        let send = Fed { send: true, before: None };
        let Some(session) = key::session_of(body) else { return send };
        if matches!(body, Body::SessionRollup(_)) || self.ended.get(&session.id).is_some() {
            return send;
        }
        if !self.sessions.contains_key(&session.id) {
            if self.sessions.len() >= MAX_SESSIONS {
                return send;
            }
            self.sessions.insert(session.id.clone(), Profile::new(session.clone(), ns));
        }
        let Some(p) = self.sessions.get_mut(&session.id) else { return send };
        let seen = key::seen(body);
        let is_end = matches!(seen, Seen::End);
        let to_send = decide(self.detail, p, seen, ns);
        if to_send {
            p.sent += 1;
        } else {
            p.summarized += 1;
        }
        let before = if is_end {
            let p = self.sessions.remove(&session.id);
            self.ended.insert(session.id.clone(), ());
            p.map(|p| (ns, Body::SessionRollup(Box::new(p.record(clock, true)))))
        } else {
            None
        };
        Fed { send: to_send, before }
    }

    /// Rollups of sessions that counted something since their last one, `rollup_interval` ago.
    pub fn due(&mut self, now_ns: u64, clock: &Clock) -> Vec<(u64, Body)> {
        let interval = self.interval_ns;
        let mut out = Vec::new();
        for p in self.sessions.values_mut() {
            if p.changed && now_ns.saturating_sub(p.rolled_ns) >= interval {
                p.rolled_ns = now_ns;
                p.changed = false;
                out.push((now_ns, Body::SessionRollup(Box::new(p.record(clock, false)))));
            }
        }
        out
    }

    /// The rollups of every session still running (the daemon is stopping).
    pub fn flush(&mut self, now_ns: u64, clock: &Clock) -> Vec<(u64, Body)> {
        self.sessions
            .drain()
            .map(|(_, p)| (now_ns, Body::SessionRollup(Box::new(p.record(clock, false)))))
            .collect()
    }
}

/// Counts what `seen` is into `p`; whether to send it at `detail`.
fn decide(detail: OutputDetail, p: &mut Profile, seen: Seen<'_>, ns: u64) -> bool {
    match seen {
        Seen::Always | Seen::End => {
            p.touch(ns);
            true
        }
        Seen::Read(a) => {
            let first = p.read(&a, ns);
            match detail {
                OutputDetail::All => true,
                OutputDetail::Reads => a.kind == "exec" || p.first_by_program(&a),
                OutputDetail::Summary => first,
            }
        }
        Seen::Open { dest, class, failed } => {
            let first = p.open(&dest, class, failed, ns);
            first || detail != OutputDetail::Summary
        }
        Seen::Close { dest, sent, received } => {
            p.close(&dest, sent, received, ns);
            detail != OutputDetail::Summary
        }
    }
}
