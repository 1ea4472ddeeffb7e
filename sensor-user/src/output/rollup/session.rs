//! One session's profile: per artifact (pattern), how often, when, and by whom it was read;
//! per destination, connections and bytes. Bounded (see the constants); what did not fit is
//! counted in `overflow`.

use std::{
    collections::{hash_map::DefaultHasher, HashMap, HashSet},
    hash::{Hash, Hasher},
};

use serde::Serialize;

use super::key::{Artifact, Destination};
use crate::{detect::classify::Reader, output::report::SessionRef, sys::clock::Clock};

/// Artifacts listed per session.
pub const MAX_ARTIFACTS: usize = 256;
/// Artifacts remembered per session beyond the listed ones (to send each one's first read once
/// and count them).
pub const MAX_SEEN: usize = 4096;
/// Readers (role and comm) listed per artifact.
pub const MAX_READERS: usize = 8;
/// Distinct values counted per artifact pattern.
pub const MAX_DISTINCT: usize = 512;
/// Destinations listed per session.
pub const MAX_DESTINATIONS: usize = 64;

/// The `session_rollup` record.
#[derive(Debug, Clone, Serialize)]
pub struct SessionRollup {
    pub session: SessionRef,
    /// The session has ended: no rollup follows.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// Time of the session's first record and of its last one so far.
    pub first: String,
    pub last: String,
    /// The session's records sent, and summarized (counted here, not sent), so far.
    pub records_sent: u64,
    pub records_summarized: u64,
    /// In order of first read.
    pub artifacts: Vec<ArtifactSummary>,
    pub egress: Vec<EgressSummary>,
    #[serde(skip_serializing_if = "Overflow::is_empty")]
    pub overflow: Overflow,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArtifactSummary {
    pub kind: &'static str,
    /// A path (pattern), variable, request, program or name.
    pub artifact: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// The reads succeeded (a variable: it was set); failures are a separate entry.
    pub success: bool,
    pub count: u64,
    /// Distinct values behind a pattern (pids, numbers), at most [`MAX_DISTINCT`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distinct: Option<u64>,
    pub first: String,
    pub last: String,
    pub readers: Vec<ReaderSummary>,
    /// Reads by readers not listed.
    #[serde(skip_serializing_if = "is_zero")]
    pub readers_overflow: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReaderSummary {
    pub reader: Reader,
    pub comm: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EgressSummary {
    /// The host name when known, else the address.
    pub destination: String,
    pub port: u16,
    pub addr: String,
    /// The destination class of its first connection (`llm_api`, `base_url`, `other`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    pub connections: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub failed: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub first: String,
    pub last: String,
}

/// What did not fit the bounds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overflow {
    /// Distinct artifacts not listed (counted up to [`MAX_SEEN`]), and their reads.
    pub artifacts: u64,
    pub reads: u64,
    /// Destinations not listed, and their connections.
    pub destinations: u64,
    pub connections: u64,
}

impl Overflow {
    fn is_empty(&self) -> bool {
        self.reads == 0 && self.connections == 0
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    kind: &'static str,
    pattern: String,
    success: bool,
}

#[derive(Debug)]
struct Entry {
    categories: Vec<String>,
    count: u64,
    distinct: Option<HashSet<u64>>,
    first_ns: u64,
    last_ns: u64,
    readers: Vec<ReaderSummary>,
    readers_overflow: u64,
}

#[derive(Debug)]
struct Egress {
    addr: String,
    class: Option<String>,
    connections: u64,
    failed: u64,
    sent: u64,
    received: u64,
    first_ns: u64,
    last_ns: u64,
}

/// One session's counts.
#[derive(Debug)]
pub struct Profile {
    pub session: SessionRef,
    first_ns: u64,
    last_ns: u64,
    pub sent: u64,
    pub summarized: u64,
    /// Listed artifacts, in order of first read.
    order: Vec<Key>,
    entries: HashMap<Key, Entry>,
    /// Hashes of artifacts not listed (beyond [`MAX_ARTIFACTS`]).
    unlisted: HashSet<u64>,
    /// Hashes of (program, artifact) already sent at detail `reads`.
    by_program: HashSet<u64>,
    egress: HashMap<Destination, Egress>,
    dest_order: Vec<Destination>,
    overflow: Overflow,
    /// Time of the last rollup, and whether anything was counted since.
    pub rolled_ns: u64,
    pub changed: bool,
}

fn hash_of(v: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

impl Profile {
    pub fn new(session: SessionRef, now_ns: u64) -> Self {
        Self {
            session,
            first_ns: now_ns,
            last_ns: now_ns,
            sent: 0,
            summarized: 0,
            order: Vec::new(),
            entries: HashMap::new(),
            unlisted: HashSet::new(),
            by_program: HashSet::new(),
            egress: HashMap::new(),
            dest_order: Vec::new(),
            overflow: Overflow::default(),
            rolled_ns: now_ns,
            changed: false,
        }
    }

    /// Counts a read; whether it is the session's first read of its artifact (pattern), or of
    /// an artifact that no longer fits (which is then sent rather than lost).
    pub fn read(&mut self, a: &Artifact<'_>, ns: u64) -> bool {
        self.touch(ns);
        let key = Key { kind: a.kind, pattern: a.pattern.clone(), success: a.success };
        if let Some(e) = self.entries.get_mut(&key) {
            e.add(a, ns);
            return false;
        }
        if self.entries.len() < MAX_ARTIFACTS {
            let mut e = Entry {
                categories: a.categories.clone(),
                count: 0,
                distinct: a.value.as_ref().map(|_| HashSet::new()),
                first_ns: ns,
                last_ns: ns,
                readers: Vec::new(),
                readers_overflow: 0,
            };
            e.add(a, ns);
            self.order.push(key.clone());
            self.entries.insert(key, e);
            return true;
        }
        self.overflow.reads += 1;
        let h = hash_of(&key);
        if self.unlisted.contains(&h) {
            return false;
        }
        if self.unlisted.len() < MAX_SEEN {
            self.unlisted.insert(h);
            self.overflow.artifacts += 1;
        }
        true
    }

    /// Whether this is `exe`'s first read of the artifact in the session (detail `reads`); past
    /// [`MAX_SEEN`] pairs every read is.
    pub fn first_by_program(&mut self, a: &Artifact<'_>) -> bool {
        let h = hash_of((a.kind, &a.pattern, a.success, a.exe));
        if self.by_program.len() >= MAX_SEEN {
            return !self.by_program.contains(&h);
        }
        self.by_program.insert(h)
    }

    /// Counts a connection; whether it is the session's first to its destination.
    pub fn open(&mut self, dest: &Destination, class: Option<&str>, failed: bool, ns: u64) -> bool {
        self.touch(ns);
        if let Some(e) = self.egress.get_mut(dest) {
            e.connections += 1;
            e.failed += u64::from(failed);
            e.last_ns = ns;
            return false;
        }
        if self.egress.len() >= MAX_DESTINATIONS {
            self.overflow.connections += 1;
            self.overflow.destinations += 1;
            return true;
        }
        let e = Egress {
            addr: dest.addr.clone(),
            class: class.map(str::to_string),
            connections: 1,
            failed: u64::from(failed),
            sent: 0,
            received: 0,
            first_ns: ns,
            last_ns: ns,
        };
        self.dest_order.push(dest.clone());
        self.egress.insert(dest.clone(), e);
        true
    }

    /// Adds a closed connection's bytes to its destination.
    pub fn close(&mut self, dest: &Destination, sent: u64, received: u64, ns: u64) {
        self.touch(ns);
        if let Some(e) = self.egress.get_mut(dest) {
            e.sent += sent;
            e.received += received;
            e.last_ns = ns;
        }
    }

    /// Any other record of the session (it moves `last`).
    pub fn touch(&mut self, ns: u64) {
        self.first_ns = self.first_ns.min(ns);
        self.last_ns = self.last_ns.max(ns);
        self.changed = true;
    }

    /// The rollup record of what was counted so far.
    pub fn record(&self, clock: &Clock, is_final: bool) -> SessionRollup {
        let artifacts = self
            .order
            .iter()
            .filter_map(|k| Some((k, self.entries.get(k)?)))
            .map(|(k, e)| ArtifactSummary {
                kind: k.kind,
                artifact: k.pattern.clone(),
                categories: e.categories.clone(),
                success: k.success,
                count: e.count,
                distinct: e.distinct.as_ref().map(|d| d.len() as u64),
                first: clock.rfc3339(e.first_ns),
                last: clock.rfc3339(e.last_ns),
                readers: e.readers.clone(),
                readers_overflow: e.readers_overflow,
            })
            .collect();
        let egress = self
            .dest_order
            .iter()
            .filter_map(|d| Some((d, self.egress.get(d)?)))
            .map(|(d, e)| EgressSummary {
                destination: d.name.clone(),
                port: d.port,
                addr: e.addr.clone(),
                class: e.class.clone(),
                connections: e.connections,
                failed: e.failed,
                bytes_sent: e.sent,
                bytes_received: e.received,
                first: clock.rfc3339(e.first_ns),
                last: clock.rfc3339(e.last_ns),
            })
            .collect();
        SessionRollup {
            session: self.session.clone(),
            is_final,
            first: clock.rfc3339(self.first_ns),
            last: clock.rfc3339(self.last_ns),
            records_sent: self.sent,
            records_summarized: self.summarized,
            artifacts,
            egress,
            overflow: self.overflow.clone(),
        }
    }
}

impl Entry {
    fn add(&mut self, a: &Artifact<'_>, ns: u64) {
        self.count += 1;
        self.first_ns = self.first_ns.min(ns);
        self.last_ns = self.last_ns.max(ns);
        if let (Some(d), Some(v)) = (self.distinct.as_mut(), a.value.as_ref()) {
            if d.len() < MAX_DISTINCT {
                d.insert(hash_of(v));
            }
        }
        if let Some(r) = self.readers.iter_mut().find(|r| r.reader == a.reader && r.comm == a.comm) {
            r.count += 1;
        } else if self.readers.len() < MAX_READERS {
            self.readers.push(ReaderSummary { reader: a.reader, comm: a.comm.to_string(), count: 1 });
        } else {
            self.readers_overflow += 1;
        }
    }
}
