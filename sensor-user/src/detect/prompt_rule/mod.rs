//! The built-in finding on prompt markers (issue 17), rule `prompt_marker_anomaly`: a session's
//! request carries a marker (kind and code point at a JSON path pattern) that its assistant
//! version's other sessions on this host do not carry, or writes a date at a path in a format
//! that changed — from the session's own earlier requests, or from what the assistant version's
//! sessions usually write there — after the session read the host's timezone or its base URL
//! (`date_reads`).
//!
//! What is learned, per (assistant, version) and bounded: each key (a marker or a date format at
//! a path pattern) and how many distinct sessions carried it. A session counts once per key
//! however often it repeats it, and its own requests never count for it: repeating a marker
//! within one session cannot make it usual. A key is usual once `usual_sessions` other sessions
//! carried it. Until `learning_sessions` other sessions of the version were learned nothing is
//! new (no history is learning, not a finding). Every request scanned whole is learned, whether
//! it raised a finding or not: what recurs across sessions becomes usual.
//!
//! Only kinds, code points, date formats and path patterns are kept: never any text.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::Serialize;

use crate::{
    config::{detection::PromptRuleConfig, rules::Severity},
    detect::markers::{self, MarkerKind, RequestMarkers},
    model::bounded::Recent,
};

/// The rule name of the finding.
pub const RULE: &str = "prompt_marker_anomaly";
/// Keys an (assistant, version) history keeps; the least recently carried goes first.
pub const MAX_KEYS: usize = 1024;
/// Keys a session remembers having taught its history; past these it teaches nothing more.
pub const MAX_SESSION_KEYS: usize = 256;
/// Anomalies a session remembers having reported; past these its new ones count as duplicates.
pub const MAX_REPORTED: usize = 256;
/// New markers and date changes listed in one finding (the description counts the rest).
pub const MAX_LISTED: usize = 32;

const FORMATS: [&str; 6] = [
    markers::YMD_DASH,
    markers::YMD_SLASH,
    markers::YMD_DOT,
    markers::DMY_DOT,
    markers::DMY_DASH,
    markers::NMY_SLASH,
];

/// What is learned: a marker or a date format, at a path pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Marker { kind: MarkerKind, code_point: String, path: String },
    Date { format: &'static str, path: String },
}

/// A marker none (or too few) of the assistant version's other sessions carried at its path.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NewMarker {
    pub kind: MarkerKind,
    /// "U+2019".
    pub code_point: String,
    pub name: String,
    /// The JSON path pattern (`$.messages[*].content`) or `header:<name>`.
    pub path: String,
    /// Other sessions of the assistant version that carried it there (fewer than
    /// `usual_sessions`).
    pub other_sessions: u64,
}

/// A date written at `path` in a format that is not what was written there before.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DateChange {
    pub path: String,
    /// The formats written there before.
    pub before: Vec<&'static str>,
    pub after: &'static str,
    /// Before whom: `session` (its own earlier requests) or `assistant_version` (what the
    /// version's other sessions usually write there).
    pub compared_with: &'static str,
}

/// What a request raised.
#[derive(Debug, Clone, PartialEq)]
pub struct Anomaly {
    pub severity: Severity,
    pub new_markers: Vec<NewMarker>,
    pub date_changes: Vec<DateChange>,
    /// The `date_reads` categories the session had read (with date changes only).
    pub reads: Vec<String>,
    /// New markers and date changes not listed (past `MAX_LISTED`).
    pub omitted: usize,
    /// De-duplication keys, remembered by [`SessionMarks::reported`] once it is emitted.
    keys: Vec<String>,
}

#[derive(Debug, PartialEq)]
pub enum Verdict {
    Nothing,
    /// Everything it raised was reported for the session already.
    Duplicate,
    Anomaly(Box<Anomaly>),
}

/// What a session taught its history and was told about (dropped when it ends).
#[derive(Default)]
pub struct SessionMarks {
    /// Counted in its history's sessions.
    counted: bool,
    taught: HashSet<Key>,
    reported: HashSet<String>,
}

impl SessionMarks {
    /// `a` was emitted: its markers and date changes are not reported again in the session.
    pub fn reported(&mut self, a: &Anomaly) {
        for k in &a.keys {
            if self.reported.len() >= MAX_REPORTED {
                return;
            }
            self.reported.insert(k.clone());
        }
    }

    fn was_reported(&self, key: &str) -> bool {
        // Full: a session that already had this many reported is not reported more.
        self.reported.contains(key) || self.reported.len() >= MAX_REPORTED
    }

    /// The formats the session wrote at `path` before.
    fn own_formats(&self, path: &str) -> Vec<&'static str> {
        let mut own: Vec<&'static str> = self
            .taught
            .iter()
            .filter_map(|k| match k {
                Key::Date { format, path: p } if p == path => Some(*format),
                _ => None,
            })
            .collect();
        own.sort_unstable();
        own
    }
}

struct History {
    /// Sessions learned.
    sessions: u64,
    /// Key → distinct sessions that carried it.
    keys: Recent<Key, u64>,
}

pub struct PromptRule {
    pub cfg: PromptRuleConfig,
    /// (assistant, version or `unknown`) → history.
    histories: Recent<(String, String), History>,
    /// Keys dropped from full histories.
    keys_evicted: u64,
}

impl PromptRule {
    pub fn new(cfg: &PromptRuleConfig) -> Self {
        Self { cfg: cfg.clone(), histories: Recent::new(cfg.max_entries as usize), keys_evicted: 0 }
    }

    pub fn reconfigure(&mut self, cfg: &PromptRuleConfig) {
        self.cfg = cfg.clone();
        self.histories.set_cap(cfg.max_entries as usize);
    }

    /// (histories, keys) evicted so far.
    pub fn evictions(&self) -> (u64, u64) {
        (self.histories.evicted(), self.keys_evicted)
    }

    /// A request scanned whole (`found`) of a session of `assistant` `version` that has read
    /// the categories `reads` so far: what it raises, given what was learned before it; then it
    /// is learned.
    pub fn check(
        &mut self,
        assistant: &str,
        version: Option<&str>,
        session: &mut SessionMarks,
        found: &RequestMarkers,
        reads: &BTreeSet<String>,
    ) -> Verdict {
        if !self.cfg.enabled || assistant.is_empty() {
            return Verdict::Nothing;
        }
        let cfg = &self.cfg;
        let (marks, dates) = keys(found);
        let id = (assistant.to_string(), version.unwrap_or("unknown").to_string());
        if self.histories.touch(&id).is_none() {
            self.histories.insert(id.clone(), History { sessions: 0, keys: Recent::new(MAX_KEYS) });
        }
        let Some(h) = self.histories.touch(&id) else { return Verdict::Nothing };
        // Only other sessions count: the session's own contribution is taken off.
        let others = |k: &Key| {
            let own = u64::from(session.taught.contains(k));
            h.keys.get(k).copied().unwrap_or(0).saturating_sub(own)
        };
        let learned =
            h.sessions.saturating_sub(u64::from(session.counted)) >= u64::from(cfg.learning_sessions);
        let usual = u64::from(cfg.usual_sessions);

        let mut new_markers = Vec::new();
        if learned {
            for (k, name) in &marks {
                let Key::Marker { kind, code_point, path } = k else { continue };
                let n = others(k);
                if n < usual {
                    let (kind, code_point, name, path) =
                        (*kind, code_point.clone(), name.clone(), path.clone());
                    new_markers.push(NewMarker { kind, code_point, name, path, other_sessions: n });
                }
            }
        }
        let read: Vec<String> = cfg.date_reads.iter().filter(|c| reads.contains(*c)).cloned().collect();
        let mut date_changes = Vec::new();
        for (path, formats) in dates.iter().filter(|_| !read.is_empty()) {
            let own = session.own_formats(path);
            let (before, compared_with) = if !own.is_empty() {
                (own, "session")
            } else if learned {
                let usual_here = FORMATS
                    .into_iter()
                    .filter(|&format| others(&Key::Date { format, path: path.clone() }) >= usual)
                    .collect();
                (usual_here, "assistant_version")
            } else {
                continue;
            };
            for &after in formats.iter().filter(|&f| !before.is_empty() && !before.contains(f)) {
                date_changes.push(DateChange {
                    path: path.clone(),
                    before: before.clone(),
                    after,
                    compared_with,
                });
            }
        }

        learn(h, session, marks.keys().chain(dates_keys(&dates).iter()), &mut self.keys_evicted);

        let raised = !new_markers.is_empty() || !date_changes.is_empty();
        new_markers.retain(|m| !session.was_reported(&marker_key(m)));
        date_changes.retain(|d| !session.was_reported(&date_key(d)));
        if new_markers.is_empty() && date_changes.is_empty() {
            return if raised { Verdict::Duplicate } else { Verdict::Nothing };
        }
        let mut keys: Vec<String> = new_markers.iter().map(marker_key).collect();
        keys.extend(date_changes.iter().map(date_key));
        let severity = match (new_markers.is_empty(), date_changes.is_empty()) {
            (false, false) => cfg.marker_severity.max(cfg.date_severity),
            (false, true) => cfg.marker_severity,
            _ => cfg.date_severity,
        };
        let omitted = (new_markers.len() + date_changes.len()).saturating_sub(MAX_LISTED);
        date_changes.truncate(MAX_LISTED);
        new_markers.truncate(MAX_LISTED - date_changes.len());
        let reads = if date_changes.is_empty() { Vec::new() } else { read };
        Verdict::Anomaly(Box::new(Anomaly { severity, new_markers, date_changes, reads, omitted, keys }))
    }
}

impl Anomaly {
    /// What it means, in one sentence, naming markers, formats and reads (never any text).
    pub fn description(&self, assistant: &str, version: Option<&str>) -> String {
        let who = format!("{assistant} {}", version.unwrap_or("(version unknown)"));
        let mut parts = Vec::new();
        if !self.new_markers.is_empty() {
            let list: Vec<String> = self
                .new_markers
                .iter()
                .map(|m| format!("{} {} at {}", m.kind.as_str(), m.code_point, m.path))
                .collect();
            parts.push(format!(
                "carries markers that other sessions of {who} on this host do not: {}",
                list.join(", ")
            ));
        }
        for d in &self.date_changes {
            let whose = match d.compared_with {
                "session" => "its earlier requests".to_string(),
                _ => format!("other sessions of {who}"),
            };
            parts.push(format!(
                "writes dates at {} as {} where {whose} wrote {}, after reading {}",
                d.path,
                d.after,
                d.before.join(" or "),
                self.reads.join(" and ")
            ));
        }
        let more = if self.omitted > 0 { format!(" (and {} more)", self.omitted) } else { String::new() };
        format!("A request to an LLM API {}{more}", parts.join("; "))
    }
}

fn marker_key(m: &NewMarker) -> String {
    format!("marker:{}:{}:{}", m.kind.as_str(), m.code_point, m.path)
}

fn date_key(d: &DateChange) -> String {
    format!("date:{}:{}", d.path, d.after)
}

/// The request's marker keys (with the marker's name), and its date formats per path pattern.
fn keys(found: &RequestMarkers) -> (BTreeMap<Key, String>, BTreeMap<String, BTreeSet<&'static str>>) {
    let mut marks = BTreeMap::new();
    for m in &found.markers {
        for p in &m.paths {
            let k = Key::Marker { kind: m.kind, code_point: m.code_point.clone(), path: markers::pattern(p) };
            marks.insert(k, m.name.clone());
        }
    }
    let mut dates: BTreeMap<String, BTreeSet<&'static str>> = BTreeMap::new();
    for d in &found.dates {
        for p in &d.paths {
            dates.entry(markers::pattern(p)).or_default().insert(d.format);
        }
    }
    (marks, dates)
}

fn dates_keys(dates: &BTreeMap<String, BTreeSet<&'static str>>) -> Vec<Key> {
    dates
        .iter()
        .flat_map(|(path, formats)| formats.iter().map(|&format| Key::Date { format, path: path.clone() }))
        .collect()
}

/// The session's request is learned: the session counts once in its history, and once for each
/// key it carries (however many of its requests carry it).
fn learn<'a>(
    h: &mut History,
    session: &mut SessionMarks,
    keys: impl Iterator<Item = &'a Key>,
    evicted: &mut u64,
) {
    if !session.counted {
        session.counted = true;
        h.sessions += 1;
    }
    let before = h.keys.evicted();
    for k in keys {
        if session.taught.contains(k) || session.taught.len() >= MAX_SESSION_KEYS {
            continue;
        }
        session.taught.insert(k.clone());
        match h.keys.touch(k) {
            Some(n) => *n += 1,
            None => {
                h.keys.insert(k.clone(), 1);
            }
        }
    }
    *evicted += h.keys.evicted() - before;
}
