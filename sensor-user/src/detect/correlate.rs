//! Sessions' fingerprint signals, correlated with their egress: every outbound connection is
//! annotated with what the session read shortly before it, and rules from the config turn
//! "read the host's fingerprint, then talked to an LLM API" into findings.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    net::{IpAddr, SocketAddr},
};

use serde::Serialize;

pub use crate::config::rules::{RuleConfig, Severity};
use crate::{config::CorrelationConfig, detect::classify::Reader};

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
    evasion: std::collections::BTreeSet<&'static str>,
}

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
}

/// What became of a finding that matched.
pub enum Outcome {
    Emit(Finding),
    /// Already reported for this session and rule.
    Duplicate,
    /// Over the per-minute limit.
    RateLimited,
}

impl Correlator {
    /// From the config's `rules`, `correlation` and `destinations` sections.
    pub fn new(
        rules: &[RuleConfig],
        correlation: &CorrelationConfig,
        destinations: &BTreeMap<String, Vec<String>>,
    ) -> Self {
        let max_rule_window = rules.iter().map(|r| r.window_seconds).max().unwrap_or(0);
        Self {
            rules: rules.to_vec(),
            destinations: Destinations::new(destinations),
            window_ns: correlation.window_seconds.max(max_rule_window) * 1_000_000_000,
            sessions: HashMap::new(),
            per_minute: correlation.max_findings_per_minute,
            minute: (0, 0),
        }
    }

    /// New rules and destinations (SIGHUP); sessions' signals are kept.
    pub fn reconfigure(
        &mut self,
        rules: &[RuleConfig],
        correlation: &CorrelationConfig,
        destinations: &BTreeMap<String, Vec<String>>,
    ) {
        let fresh = Self::new(rules, correlation, destinations);
        self.rules = fresh.rules;
        self.destinations = fresh.destinations;
        self.window_ns = fresh.window_ns;
        self.per_minute = fresh.per_minute;
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
        st.push(s);
    }

    /// A base URL the session was given (from its exec-time environment): its host name, and
    /// for an IP literal its address and port, make a destination `base_url`.
    pub fn learn_base_url(&mut self, root: u32, url: &str) {
        self.sessions.entry(root).or_default().base_urls.learn(url);
    }

    /// The session used an evasion technique: its findings say so.
    pub fn note_evasion(&mut self, root: u32, technique: &'static str) {
        self.sessions.entry(root).or_default().evasion.insert(technique);
    }

    pub fn end_session(&mut self, root: u32) {
        self.sessions.remove(&root);
    }

    /// An egress to `host` (its name, when known) at `peer` at `ts_ns`: its annotation, and the
    /// findings it completes.
    pub fn on_egress(
        &mut self,
        root: u32,
        host: Option<&str>,
        peer: Option<SocketAddr>,
        ts_ns: u64,
    ) -> (Annotation, Vec<(String, Outcome)>) {
        let st = self.sessions.entry(root).or_default();
        let class = self.destinations.class(host, peer, &st.base_urls);
        let window =
            |w_ns: u64| st.signals.iter().filter(move |s| s.ts_ns <= ts_ns && ts_ns - s.ts_ns <= w_ns);
        let ann = annotation(window(self.window_ns), class.clone(), self.window_ns, ts_ns);

        let mut outcomes = Vec::new();
        for rule in &self.rules {
            if !rule.destinations.contains(&class) {
                continue;
            }
            let w_ns = rule.window_seconds * 1_000_000_000;
            let hits: Vec<&Signal> =
                window(w_ns).filter(|s| rule.groups.iter().any(|g| g.contains(&s.category))).collect();
            let mut groups: Vec<String> = Vec::new();
            for g in &rule.groups {
                if hits.iter().any(|s| g.contains(&s.category)) {
                    groups.push(g[0].clone());
                }
            }
            if groups.len() < rule.min_groups.max(1) {
                continue;
            }
            if st.fired.contains(&rule.name) {
                outcomes.push((rule.name.clone(), Outcome::Duplicate));
                continue;
            }
            let minute = ts_ns / 60_000_000_000;
            if self.minute.0 != minute {
                self.minute = (minute, 0);
            }
            if self.minute.1 >= self.per_minute {
                outcomes.push((rule.name.clone(), Outcome::RateLimited));
                continue;
            }
            self.minute.1 += 1;
            st.fired.insert(rule.name.clone());
            let by_assistant = hits.iter().any(|s| s.reader == Reader::Assistant);
            let mut categories: Vec<String> = hits.iter().map(|s| s.category.clone()).collect();
            categories.sort();
            categories.dedup();
            let evidence = hits
                .iter()
                .rev()
                .take(MAX_LISTED)
                .map(|s| Evidence { signal: (*s).clone(), ms_before_egress: (ts_ns - s.ts_ns) / 1_000_000 })
                .collect();
            outcomes.push((
                rule.name.clone(),
                Outcome::Emit(Finding {
                    rule: rule.name.clone(),
                    severity: if by_assistant { rule.severity } else { rule.descendant_severity },
                    description: rule.description.clone(),
                    destination_class: class.clone(),
                    groups,
                    categories,
                    evidence,
                    by_assistant,
                    evasion: st.evasion.iter().map(|t| t.to_string()).collect(),
                }),
            ));
        }
        (ann, outcomes)
    }
}

/// What a connection at `ts_ns` is annotated with: the signals in the window before it, most
/// recent first.
fn annotation<'a>(
    in_window: impl Iterator<Item = &'a Signal> + Clone,
    destination_class: String,
    window_ns: u64,
    ts_ns: u64,
) -> Annotation {
    let mut ann =
        Annotation { destination_class, window_seconds: window_ns / 1_000_000_000, ..Default::default() };
    let mut cats: Vec<String> = Vec::new();
    let mut arts: Vec<String> = Vec::new();
    for s in in_window.clone().collect::<Vec<_>>().iter().rev() {
        ann.signals += 1;
        if !cats.contains(&s.category) {
            cats.push(s.category.clone());
        }
        if arts.len() < MAX_LISTED && !arts.contains(&s.artifact) {
            arts.push(s.artifact.clone());
        }
    }
    ann.last_read_ms_before = in_window.map(|s| (ts_ns - s.ts_ns) / 1_000_000).min();
    cats.sort();
    ann.categories = cats;
    ann.artifacts = arts;
    ann
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn sig(cat: &str, art: &str, by_assistant: bool, ts_s: u64) -> Signal {
        Signal {
            kind: "file",
            category: cat.into(),
            artifact: art.into(),
            reader: if by_assistant { Reader::Assistant } else { Reader::Descendant },
            pid: 1,
            ts_ns: ts_s * 1_000_000_000,
        }
    }

    fn correlator(cfg: &Config) -> Correlator {
        Correlator::new(&cfg.rules, &cfg.correlation, &cfg.destinations)
    }

    fn emitted(out: &[(String, Outcome)]) -> Vec<&Finding> {
        out.iter().filter_map(|(_, o)| if let Outcome::Emit(f) = o { Some(f) } else { None }).collect()
    }

    #[test]
    fn fingerprint_then_llm_api_is_one_high_finding_per_session() {
        let mut c = correlator(&Config::default());
        c.add_signal(1, sig("timezone", "/etc/localtime", true, 10));
        c.add_signal(1, sig("proxy", "HTTPS_PROXY", true, 11));
        let (ann, out) = c.on_egress(1, Some("api.anthropic.com"), None, 12_500_000_000);
        assert_eq!(ann.destination_class, "llm_api");
        assert_eq!(ann.categories, vec!["proxy", "timezone"]);
        assert_eq!(ann.last_read_ms_before, Some(1500));
        let f = emitted(&out);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].severity, f[0].by_assistant), (Severity::High, true));
        assert_eq!(f[0].groups, vec!["timezone", "proxy"]);
        assert_eq!(f[0].evidence.len(), 2);
        // The next connection of the same session: de-duplicated.
        let (_, out) = c.on_egress(1, Some("api.anthropic.com"), None, 13_000_000_000);
        assert!(matches!(out[0].1, Outcome::Duplicate));
    }

    #[test]
    fn a_sessions_findings_name_the_evasion_it_used() {
        let mut c = correlator(&Config::default());
        for root in [7, 8] {
            c.add_signal(root, sig("timezone", "/etc/localtime", true, 10));
            c.add_signal(root, sig("host_identity", "/etc/machine-id", true, 10));
        }
        c.note_evasion(7, COMPAT_SYSCALL);
        c.note_evasion(7, COMPAT_SYSCALL);
        assert_eq!(
            emitted(&c.on_egress(7, Some("api.anthropic.com"), None, 11_000_000_000).1)[0].evasion,
            [COMPAT_SYSCALL]
        );
        assert!(emitted(&c.on_egress(8, Some("api.anthropic.com"), None, 11_000_000_000).1)[0]
            .evasion
            .is_empty());
    }

    #[test]
    fn no_finding_without_reads_other_destinations_or_outside_the_window() {
        let mut c = correlator(&Config::default());
        assert!(emitted(&c.on_egress(1, Some("api.openai.com"), None, 1).1).is_empty());
        c.add_signal(2, sig("timezone", "/etc/localtime", true, 10));
        c.add_signal(2, sig("locale", "LANG", true, 10));
        assert!(emitted(&c.on_egress(2, Some("example.com"), None, 11_000_000_000).1).is_empty());
        assert!(
            emitted(&c.on_egress(2, Some("api.openai.com"), None, 1_000_000_000_000).1).is_empty(),
            "too late"
        );
        c.add_signal(3, sig("timezone", "/etc/localtime", true, 10));
        c.add_signal(3, sig("timezone", "TZ", true, 10));
        assert!(
            emitted(&c.on_egress(3, Some("api.openai.com"), None, 11_000_000_000).1).is_empty(),
            "one group only"
        );
    }

    #[test]
    fn descendant_only_reads_and_base_url_hosts() {
        let mut c = correlator(&Config::default());
        c.learn_base_url(4, "https://user:pw@relay.example.net:8443/v1");
        c.add_signal(4, sig("host_identity", "/etc/machine-id", false, 10));
        c.add_signal(4, sig("network_config", "/etc/resolv.conf", false, 10));
        let (ann, out) = c.on_egress(4, Some("relay.example.net"), None, 11_000_000_000);
        assert_eq!(ann.destination_class, "base_url");
        assert_eq!(emitted(&out)[0].severity, Severity::Medium);
    }

    /// An IP-literal base URL (IPv4, IPv6, with or without a port) names its destination by
    /// address and port, whatever name the connection has (none, here); v4-mapped peers match.
    #[test]
    fn ip_literal_base_urls_match_by_address_and_port() {
        let peer = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        let cases = [
            ("http://127.0.0.1:18181", "127.0.0.1:18181", "[::ffff:127.0.0.1]:18181", "127.0.0.1:18182"),
            ("https://10.1.2.3/v1", "10.1.2.3:443", "10.1.2.3:443", "10.1.2.3:80"),
            ("http://u:p@[fd00::1]:4000/x", "[fd00::1]:4000", "[fd00::1]:4000", "[fd00::2]:4000"),
            ("HTTP://10.9.9.9", "10.9.9.9:80", "[::ffff:10.9.9.9]:80", "10.9.9.9:8080"),
        ];
        for (i, (url, same, mapped, other)) in cases.into_iter().enumerate() {
            let root = 100 + i as u32;
            let mut c = correlator(&Config::default());
            c.learn_base_url(root, url);
            c.add_signal(root, sig("timezone", "/etc/localtime", true, 10));
            c.add_signal(root, sig("host_identity", "/etc/machine-id", true, 10));
            let (ann, out) = c.on_egress(root, None, peer(other), 11_000_000_000);
            assert_eq!(ann.destination_class, "other", "{url} vs {other}");
            assert!(emitted(&out).is_empty());
            assert_eq!(c.on_egress(root, None, peer(mapped), 11_000_000_000).0.destination_class, "base_url");
            let (ann, out) = c.on_egress(root, None, peer(same), 11_000_000_000);
            assert_eq!(ann.destination_class, "base_url", "{url} vs {same}");
            assert!(matches!(out[0].1, Outcome::Duplicate), "{url}: fired at the first match");
        }
    }

    #[test]
    fn rate_limit_and_bounded_signals() {
        let mut cfg = Config::default();
        cfg.correlation.max_findings_per_minute = 1;
        let mut c = correlator(&cfg);
        for root in [5, 6] {
            c.add_signal(root, sig("timezone", "a", true, 10));
            c.add_signal(root, sig("locale", "b", true, 10));
        }
        assert_eq!(emitted(&c.on_egress(5, Some("api.x.ai"), None, 11_000_000_000).1).len(), 1);
        assert!(matches!(
            c.on_egress(6, Some("api.x.ai"), None, 11_000_000_000).1[0].1,
            Outcome::RateLimited
        ));
        for i in 0..5000 {
            c.add_signal(7, sig("timezone", &format!("/x/{i}"), true, 10));
        }
        assert_eq!(c.sessions[&7].signals.len(), MAX_SIGNALS);
        let (ann, _) = c.on_egress(7, None, None, 10_000_000_000);
        assert_eq!(ann.artifacts.len(), MAX_LISTED);
        assert_eq!(ann.destination_class, "other");
    }

    #[test]
    fn repetition_does_not_push_a_category_out() {
        let mut c = correlator(&Config::default());
        c.add_signal(8, sig("timezone", "/etc/localtime", true, 10));
        c.add_signal(8, sig("host_identity", "/etc/machine-id", true, 10));
        for _ in 0..5000 {
            c.add_signal(8, sig("network_config", "/etc/hosts", true, 11));
        }
        assert_eq!(c.sessions[&8].signals.len(), MAX_SIGNALS);
        let (ann, out) = c.on_egress(8, Some("api.anthropic.com"), None, 12_000_000_000);
        assert_eq!(ann.categories, vec!["host_identity", "network_config", "timezone"]);
        let f = emitted(&out);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].categories, vec!["host_identity", "network_config", "timezone"]);
        // The latest of each kind stays: an assistant's read is not evicted by its children's.
        let mut c = correlator(&Config::default());
        c.add_signal(9, sig("timezone", "/etc/localtime", true, 10));
        for _ in 0..1000 {
            c.add_signal(9, sig("timezone", "/etc/localtime", false, 11));
        }
        let (_, out) = c.on_egress(9, Some("api.anthropic.com"), None, 12_000_000_000);
        assert!(emitted(&out).is_empty(), "one group only");
        assert!(c.sessions[&9].signals.iter().any(|s| s.reader == Reader::Assistant));
    }

    #[test]
    fn host_patterns() {
        assert!(host_matches("*.anthropic.com", "api.anthropic.com"));
        assert!(!host_matches("*.anthropic.com", "anthropic.com"));
        assert!(!host_matches("*.anthropic.com", "evilanthropic.com"));
        assert!(host_matches("api.openai.com", "api.openai.com"));
    }
}
