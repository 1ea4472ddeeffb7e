//! Sessions' fingerprint signals, correlated with their egress: every outbound connection is
//! annotated with what the session read shortly before it, and rules from the config turn
//! "read the host's fingerprint, then talked to an LLM API" into findings.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque},
    net::{IpAddr, SocketAddr},
};

use serde::Serialize;

pub use crate::config::rules::{RuleConfig, Severity};
use crate::{
    config::{rules::Readers, Config},
    detect::{
        baseline::Baseline,
        classify::Reader,
        markers::RequestMarkers,
        prompt_rule::{self, DateChange, NewMarker, PromptRule, SessionMarks, Verdict},
        signatures::{SessionFacts, Signature},
    },
};

/// The rule name of a signature's finding (the signature's id is in `signature`).
pub const SIGNATURE_RULE: &str = "signature";
/// The rule name of the baseline's finding.
pub const BASELINE_RULE: &str = "baseline_new_category";

/// The evasion technique of a syscall through a 32-bit entry (`int $0x80`), as findings and
/// the live view name it.
pub const COMPAT_SYSCALL: &str = "compat_syscall";

/// Signals kept per session (oldest dropped first).
const MAX_SIGNALS: usize = 512;
/// Signals listed in an annotation or finding at most.
const MAX_LISTED: usize = 16;

/// A fingerprint signal of a session.
#[derive(Debug, Clone, Serialize)]
pub struct Signal {
    /// `file`, `variable`, `interfaces`.
    pub kind: &'static str,
    pub category: String,
    /// The path, variable or request.
    pub artifact: String,
    pub reader: Reader,
    pub pid: u32,
    #[serde(skip)]
    pub ts_ns: u64,
}

/// What an egress event is annotated with.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Annotation {
    pub destination_class: String,
    pub window_seconds: u64,
    /// Distinct categories read in the window.
    pub categories: Vec<String>,
    /// Up to 16 distinct artifacts (paths, variables, requests), most recent first.
    pub artifacts: Vec<String>,
    pub signals: usize,
    /// Milliseconds from the last read to the connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_read_ms_before: Option<u64>,
}

/// A signal as listed in a finding.
#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    #[serde(flatten)]
    pub signal: Signal,
    pub ms_before_egress: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    pub rule: String,
    pub severity: Severity,
    pub description: String,
    pub destination_class: String,
    /// Distinct groups read, each named by its first category.
    pub groups: Vec<String>,
    pub categories: Vec<String>,
    pub evidence: Vec<Evidence>,
    /// Reads by the assistant's own process were among them.
    pub by_assistant: bool,
    /// Evasion techniques the session was seen using (`compat_syscall`), at any time.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub evasion: Vec<String>,
    /// The signature that matched (rule `signature`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The assistant's version, when its installation says (`detect::version`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assistant_version: Option<String>,
    /// Categories its assistant and version do not usually read (rule `baseline_new_category`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub new_categories: Vec<String>,
    /// Markers its assistant version's other sessions do not carry (rule `prompt_marker_anomaly`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub new_markers: Vec<NewMarker>,
    /// Date formats that changed after a read of `categories` (rule `prompt_marker_anomaly`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub date_changes: Vec<DateChange>,
}

/// Destination classes from config: class → host patterns (`*.example.com` for subdomains).
pub struct Destinations {
    classes: Vec<(String, Vec<String>)>,
}

impl Destinations {
    pub fn new(destinations: &BTreeMap<String, Vec<String>>) -> Self {
        Self {
            classes: destinations
                .iter()
                .map(|(k, v)| (k.clone(), v.iter().map(|h| h.to_ascii_lowercase()).collect()))
                .collect(),
        }
    }

    /// The class of a destination: a configured one (by `host`), `base_url` if the session was
    /// given it (by host name, or by address and port for an IP-literal base URL), or `other`.
    fn class(&self, host: Option<&str>, peer: Option<SocketAddr>, given: &BaseUrls) -> String {
        let host = host.map(str::to_ascii_lowercase);
        if let Some(host) = &host {
            for (class, patterns) in &self.classes {
                if patterns.iter().any(|p| host_matches(p, host)) {
                    return class.clone();
                }
            }
        }
        if host.is_some_and(|h| given.hosts.contains(&h))
            || peer.is_some_and(|p| given.addrs.contains(&canonical(p)))
        {
            return "base_url".into();
        }
        "other".into()
    }
}

/// An IPv4-mapped IPv6 address is its IPv4 address.
fn canonical(a: SocketAddr) -> SocketAddr {
    SocketAddr::new(a.ip().to_canonical(), a.port())
}

/// What the session was given as API base URLs (from its exec-time environment), bounded.
#[derive(Default)]
struct BaseUrls {
    /// Host names (and IP literals as written), lower case.
    hosts: HashSet<String>,
    /// IP-literal base URLs: address and port (the scheme's default when none is written).
    addrs: HashSet<SocketAddr>,
}

impl BaseUrls {
    const MAX: usize = 16;

    fn learn(&mut self, url: &str) {
        let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let authority = authority.rsplit('@').next().unwrap_or("");
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((h, after)) => (h, after.strip_prefix(':')),
                None => ("", None),
            },
            None => match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        if host.is_empty() || self.hosts.len() >= Self::MAX {
            return;
        }
        self.hosts.insert(host.to_ascii_lowercase());
        let default_port = match scheme.to_ascii_lowercase().as_str() {
            "http" | "ws" => Some(80),
            "https" | "wss" => Some(443),
            _ => None,
        };
        let port = match port {
            Some(p) => p.parse::<u16>().ok(),
            None => default_port,
        };
        if let (Ok(ip), Some(port)) = (host.parse::<IpAddr>(), port) {
            self.addrs.insert(canonical(SocketAddr::new(ip, port)));
        }
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            host.len() > domain.len()
                && host.ends_with(domain)
                && host[..host.len() - domain.len()].ends_with('.')
        }
        None => pattern == host,
    }
}

#[derive(Default)]
struct SessionState {
    signals: VecDeque<Signal>,
    /// Signals in `signals` per category, by reader (assistant, descendant): what eviction asks.
    kinds: HashMap<String, [usize; 2]>,
    base_urls: BaseUrls,
    fired: HashSet<String>,
    /// Evasion techniques seen (a fixed, small set).
    evasion: BTreeSet<&'static str>,
    /// The assistant and its version (set when the session starts).
    assistant: String,
    version: Option<String>,
    /// Every category read in the session (bounded): what the baseline learns and signatures ask.
    read: BTreeSet<String>,
    /// Watched variables set in the session's exec environments (bounded).
    env: BTreeSet<String>,
    /// What its requests taught the prompt-marker rule, and were told.
    prompt: SessionMarks,
}

/// Distinct categories and variable names a session keeps.
const MAX_SESSION_NAMES: usize = 64;

fn reader_index(r: Reader) -> usize {
    match r {
        Reader::Assistant => 0,
        Reader::Descendant => 1,
    }
}

impl SessionState {
    fn push(&mut self, s: Signal) {
        match self.kinds.get_mut(s.category.as_str()) {
            Some(n) => n[reader_index(s.reader)] += 1,
            None => {
                let mut n = [0; 2];
                n[reader_index(s.reader)] = 1;
                self.kinds.insert(s.category.clone(), n);
            }
        }
        self.signals.push_back(s);
    }

    fn remove(&mut self, i: usize) {
        let Some(s) = self.signals.remove(i) else { return };
        if let Some(n) = self.kinds.get_mut(s.category.as_str()) {
            n[reader_index(s.reader)] = n[reader_index(s.reader)].saturating_sub(1);
            if n == &[0, 0] {
                self.kinds.remove(s.category.as_str());
            }
        }
    }

    /// How many signals of this category and reader the queue holds.
    fn count(&self, s: &Signal) -> usize {
        self.kinds.get(s.category.as_str()).map_or(0, |n| n[reader_index(s.reader)])
    }

    /// Makes room in a full queue without losing what a rule needs: the oldest signal whose
    /// category and reader a later one repeats goes, so no amount of repetition (512 `stat`s
    /// of one file) pushes a category out. Only when every signal is the last of its kind (more
    /// kinds than room, which the categories do not allow today) does the oldest go. The first
    /// signal from the front whose kind counts more than one is that one: at most one signal
    /// per kind is looked at before it.
    fn evict_one(&mut self) {
        let victim = self.signals.iter().position(|s| self.count(s) > 1).unwrap_or(0);
        self.remove(victim);
    }
}

pub struct Correlator {
    rules: Vec<RuleConfig>,
    pub destinations: Destinations,
    window_ns: u64,
    sessions: HashMap<u32, SessionState>,
    /// Findings allowed per minute (all sessions), and the current minute's count.
    per_minute: u32,
    minute: (u64, u32),
    /// Known behaviours per assistant and version (the signature file).
    pub signatures: Vec<Signature>,
    /// Failures to load the signature file so far.
    pub signature_errors: u64,
    /// What each assistant and version usually reads on this host.
    pub baseline: Baseline,
    /// What each assistant version's requests usually carry on this host.
    pub prompt: PromptRule,
}

/// What became of a finding that matched.
pub enum Outcome {
    Emit(Box<Finding>),
    /// Already reported for this session and rule.
    Duplicate,
    /// Over the per-minute limit.
    RateLimited,
}

/// A finding that matched, and the key that de-duplicates it within its session.
struct Candidate {
    key: String,
    finding: Finding,
}

impl Correlator {
    /// From the config's `rules`, `correlation`, `destinations` and `detection` sections (the
    /// baseline is read from its state directory; signatures are set apart).
    pub fn new(cfg: &Config) -> Self {
        let mut c = Self {
            rules: Vec::new(),
            destinations: Destinations::new(&cfg.destinations),
            window_ns: 0,
            sessions: HashMap::new(),
            per_minute: 0,
            minute: (0, 0),
            signatures: Vec::new(),
            signature_errors: 0,
            baseline: Baseline::load(
                // `state_dir = ""`: in memory only.
                cfg.detection.state_dir.clone().filter(|d| !d.as_os_str().is_empty()),
                cfg.detection.baseline_learning_sessions,
                cfg.detection.baseline_max_entries as usize,
            ),
            prompt: PromptRule::new(&cfg.detection.prompt_rule),
        };
        c.reconfigure(cfg);
        c
    }

    /// New rules, destinations and baseline settings (SIGHUP); sessions' signals are kept.
    pub fn reconfigure(&mut self, cfg: &Config) {
        let max_rule_window = cfg.rules.iter().map(|r| r.window_seconds).max().unwrap_or(0);
        self.rules = cfg.rules.clone();
        self.destinations = Destinations::new(&cfg.destinations);
        self.window_ns = cfg.correlation.window_seconds.max(max_rule_window) * 1_000_000_000;
        self.per_minute = cfg.correlation.max_findings_per_minute;
        self.baseline.learning_sessions = cfg.detection.baseline_learning_sessions;
        self.baseline.max_entries = cfg.detection.baseline_max_entries as usize;
        self.prompt.reconfigure(&cfg.detection.prompt_rule);
    }

    /// A session of `assistant` (at `version`, when known) started.
    pub fn start_session(&mut self, root: u32, assistant: &str, version: Option<String>) {
        let st = self.sessions.entry(root).or_default();
        st.assistant = assistant.to_string();
        st.version = version;
    }

    pub fn add_signal(&mut self, root: u32, s: Signal) {
        let st = self.sessions.entry(root).or_default();
        let cutoff = s.ts_ns.saturating_sub(self.window_ns);
        while st.signals.front().is_some_and(|f| f.ts_ns < cutoff) {
            st.remove(0);
        }
        if st.signals.len() >= MAX_SIGNALS {
            st.evict_one();
        }
        if st.read.len() < MAX_SESSION_NAMES {
            st.read.insert(s.category.clone());
        }
        st.push(s);
    }

    /// A base URL the session was given (from its exec-time environment): its host name, and
    /// for an IP literal its address and port, make a destination `base_url`.
    pub fn learn_base_url(&mut self, root: u32, url: &str) {
        self.sessions.entry(root).or_default().base_urls.learn(url);
    }

    /// A watched variable set in an exec environment of the session (signatures' `when.env`).
    pub fn note_env(&mut self, root: u32, name: &str) {
        let st = self.sessions.entry(root).or_default();
        if st.env.len() < MAX_SESSION_NAMES {
            st.env.insert(name.to_string());
        }
    }

    /// The session used an evasion technique: its findings say so.
    pub fn note_evasion(&mut self, root: u32, technique: &'static str) {
        self.sessions.entry(root).or_default().evasion.insert(technique);
    }

    /// The session ended: what it read is learned for its assistant and version.
    pub fn end_session(&mut self, root: u32) {
        if let Some(st) = self.sessions.remove(&root).filter(|s| !s.assistant.is_empty()) {
            self.baseline.learn(&st.assistant, st.version.as_deref(), &st.read);
        }
    }

    /// An egress to `host` (its name, when known) at `peer` at `ts_ns`: its annotation, and the
    /// findings it completes (rules, signatures, the baseline).
    pub fn on_egress(
        &mut self,
        root: u32,
        host: Option<&str>,
        peer: Option<SocketAddr>,
        ts_ns: u64,
    ) -> (Annotation, Vec<(String, Outcome)>) {
        let st = self.sessions.entry(root).or_default();
        let class = self.destinations.class(host, peer, &st.base_urls);
        let in_window: Vec<&Signal> =
            st.signals.iter().filter(|s| s.ts_ns <= ts_ns && ts_ns - s.ts_ns <= self.window_ns).collect();
        let ann = annotation(&in_window, class.clone(), self.window_ns, ts_ns);
        let mut found: Vec<Candidate> =
            self.rules.iter().filter_map(|r| rule_finding(r, st, &class, ts_ns)).collect();
        found.extend(signature_findings(&self.signatures, st, &class, &in_window, ts_ns));
        found.extend(baseline_finding(&self.baseline, st, &class, &in_window, ts_ns));
        let mut outcomes = Vec::new();
        for c in found {
            let outcome = if st.fired.contains(&c.key) {
                Outcome::Duplicate
            } else if !admit(&mut self.minute, self.per_minute, ts_ns) {
                Outcome::RateLimited
            } else {
                st.fired.insert(c.key.clone());
                // Each new category is reported once per session.
                st.fired.extend(c.finding.new_categories.iter().map(|n| format!("{BASELINE_RULE}:{n}")));
                Outcome::Emit(Box::new(c.finding))
            };
            outcomes.push((c.key, outcome));
        }
        (ann, outcomes)
    }
}

impl Correlator {
    /// A request of the session scanned whole, to a destination of `class`, at `ts_ns`: the
    /// prompt-marker rule's finding (`detect::prompt_rule`), if it raises one; it is learned.
    pub fn on_prompt(
        &mut self,
        root: u32,
        found: &RequestMarkers,
        class: &str,
        ts_ns: u64,
    ) -> Option<Outcome> {
        let st = self.sessions.get_mut(&root)?;
        let a = match self.prompt.check(&st.assistant, st.version.as_deref(), &mut st.prompt, found, &st.read)
        {
            Verdict::Nothing => return None,
            Verdict::Duplicate => return Some(Outcome::Duplicate),
            Verdict::Anomaly(a) => a,
        };
        if !admit(&mut self.minute, self.per_minute, ts_ns) {
            return Some(Outcome::RateLimited);
        }
        st.prompt.reported(&a);
        let description = a.description(&st.assistant, st.version.as_deref());
        let mut f = finding(st, prompt_rule::RULE, a.severity, description, class);
        // The reads before a changed date format are its evidence (within the window).
        let window_ns = self.window_ns;
        let hits = st
            .signals
            .iter()
            .filter(|s| s.ts_ns <= ts_ns && ts_ns - s.ts_ns <= window_ns && a.reads.contains(&s.category));
        f.by_assistant = hits.clone().any(|s| s.reader == Reader::Assistant);
        f.evidence = evidence(hits, ts_ns);
        let a = *a;
        f.categories = a.reads;
        f.new_markers = a.new_markers;
        f.date_changes = a.date_changes;
        Some(Outcome::Emit(Box::new(f)))
    }
}

/// Whether the per-minute limit lets one more finding through (and counts it).
fn admit(minute: &mut (u64, u32), per_minute: u32, ts_ns: u64) -> bool {
    let now = ts_ns / 60_000_000_000;
    if minute.0 != now {
        *minute = (now, 0);
    }
    if minute.1 >= per_minute {
        return false;
    }
    minute.1 += 1;
    true
}

/// The signals listed as a finding's evidence, most recent first.
fn evidence<'a>(hits: impl DoubleEndedIterator<Item = &'a Signal>, ts_ns: u64) -> Vec<Evidence> {
    hits.rev()
        .take(MAX_LISTED)
        .map(|s| Evidence { signal: s.clone(), ms_before_egress: ts_ns.saturating_sub(s.ts_ns) / 1_000_000 })
        .collect()
}

/// A finding as a tier names it, with what the session says of itself.
fn finding(st: &SessionState, rule: &str, severity: Severity, description: String, class: &str) -> Finding {
    Finding {
        rule: rule.to_string(),
        severity,
        description,
        destination_class: class.to_string(),
        groups: Vec::new(),
        categories: Vec::new(),
        evidence: Vec::new(),
        by_assistant: false,
        evasion: st.evasion.iter().map(|t| t.to_string()).collect(),
        signature: None,
        assistant_version: st.version.clone(),
        new_categories: Vec::new(),
        new_markers: Vec::new(),
        date_changes: Vec::new(),
    }
}

/// A `[[rules]]` rule: enough groups read (by whom it counts) in its window, then a connection
/// of one of its destination classes.
fn rule_finding(rule: &RuleConfig, st: &SessionState, class: &str, ts_ns: u64) -> Option<Candidate> {
    if !rule.destinations.iter().any(|d| d == class) {
        return None;
    }
    let w_ns = rule.window_seconds * 1_000_000_000;
    let hits: Vec<&Signal> = st
        .signals
        .iter()
        .filter(|s| s.ts_ns <= ts_ns && ts_ns - s.ts_ns <= w_ns)
        .filter(|s| rule.readers == Readers::Any || s.reader == Reader::Assistant)
        .filter(|s| rule.groups.iter().any(|g| g.contains(&s.category)))
        .filter(|s| !rule.ignores(&s.artifact))
        .collect();
    let groups: Vec<String> = rule
        .groups
        .iter()
        .filter(|g| hits.iter().any(|s| g.contains(&s.category)))
        .map(|g| g[0].clone())
        .collect();
    if groups.len() < rule.min_groups.max(1) {
        return None;
    }
    let by_assistant = hits.iter().any(|s| s.reader == Reader::Assistant);
    let severity = if by_assistant { rule.severity } else { rule.descendant_severity };
    let mut f = finding(st, &rule.name, severity, rule.description.clone(), class);
    f.categories = hits.iter().map(|s| s.category.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    f.groups = groups;
    f.evidence = evidence(hits.into_iter(), ts_ns);
    f.by_assistant = by_assistant;
    Some(Candidate { key: rule.name.clone(), finding: f })
}

/// Signatures whose assistant, version range and conditions the session meets.
fn signature_findings(
    signatures: &[Signature],
    st: &SessionState,
    class: &str,
    in_window: &[&Signal],
    ts_ns: u64,
) -> Vec<Candidate> {
    let facts = SessionFacts {
        assistant: &st.assistant,
        version: st.version.as_deref(),
        categories: &st.read,
        destination_class: class,
        base_url_given: !st.base_urls.hosts.is_empty(),
        env: &st.env,
    };
    signatures
        .iter()
        .filter(|sig| sig.matches(&facts))
        .map(|sig| {
            let hits = in_window.iter().copied().filter(|s| sig.when.categories.contains(&s.category));
            let mut f = finding(st, SIGNATURE_RULE, sig.severity, sig.description.clone(), class);
            f.signature = Some(sig.id.clone());
            f.categories = sig.when.categories.clone();
            f.by_assistant = hits.clone().any(|s| s.reader == Reader::Assistant);
            f.evidence = evidence(hits, ts_ns);
            Candidate { key: format!("{SIGNATURE_RULE}:{}", sig.id), finding: f }
        })
        .collect()
}

/// Categories the session read that its assistant and version do not usually read (once the
/// baseline has learned them), not yet reported in this session.
fn baseline_finding(
    baseline: &Baseline,
    st: &SessionState,
    class: &str,
    in_window: &[&Signal],
    ts_ns: u64,
) -> Option<Candidate> {
    if st.assistant.is_empty() {
        return None;
    }
    let new: Vec<String> = baseline
        .unusual(&st.assistant, st.version.as_deref(), &st.read)
        .into_iter()
        .filter(|c| !st.fired.contains(&format!("{BASELINE_RULE}:{c}")))
        .collect();
    if new.is_empty() {
        return None;
    }
    let description = format!(
        "Read categories that sessions of {} {} do not usually read on this host: {}",
        st.assistant,
        st.version.as_deref().unwrap_or("(version unknown)"),
        new.join(", ")
    );
    let hits = in_window.iter().copied().filter(|s| new.contains(&s.category));
    let mut f = finding(st, BASELINE_RULE, Severity::Medium, description, class);
    f.categories = new.clone();
    f.by_assistant = hits.clone().any(|s| s.reader == Reader::Assistant);
    f.evidence = evidence(hits, ts_ns);
    f.new_categories = new.clone();
    Some(Candidate { key: format!("{BASELINE_RULE}:{}", new.join("+")), finding: f })
}

/// What a connection at `ts_ns` is annotated with: the signals in the window before it, most
/// recent first.
fn annotation(in_window: &[&Signal], destination_class: String, window_ns: u64, ts_ns: u64) -> Annotation {
    let mut ann =
        Annotation { destination_class, window_seconds: window_ns / 1_000_000_000, ..Default::default() };
    let mut cats: Vec<String> = Vec::new();
    let mut arts: Vec<String> = Vec::new();
    for s in in_window.iter().rev() {
        ann.signals += 1;
        if !cats.contains(&s.category) {
            cats.push(s.category.clone());
        }
        if arts.len() < MAX_LISTED && !arts.contains(&s.artifact) {
            arts.push(s.artifact.clone());
        }
    }
    ann.last_read_ms_before = in_window.iter().map(|s| (ts_ns - s.ts_ns) / 1_000_000).min();
    cats.sort();
    ann.categories = cats;
    ann.artifacts = arts;
    ann
}

#[cfg(test)]
mod tests;
