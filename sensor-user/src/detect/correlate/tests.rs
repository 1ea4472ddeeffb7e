//! The correlator's rules, tiers and bounds.

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
    // In memory: unit tests do not write the host's state directory.
    let mut cfg = cfg.clone();
    cfg.detection.state_dir = None;
    Correlator::new(&cfg)
}

fn emitted(out: &[(String, Outcome)]) -> Vec<&Finding> {
    out.iter().filter_map(|(_, o)| if let Outcome::Emit(f) = o { Some(&**f) } else { None }).collect()
}

/// The old built-in rule, as a user may keep it: the ordinary pattern, informational.
fn ordinary_rule() -> RuleConfig {
    let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    RuleConfig {
        name: "fingerprint_then_llm_egress".into(),
        description: String::new(),
        severity: Severity::Info,
        descendant_severity: Severity::Info,
        groups: vec![
            g(&["timezone"]),
            g(&["proxy", "proxy_config", "base_url", "environment"]),
            g(&["network_config"]),
            g(&["host_identity"]),
            g(&["locale"]),
        ],
        min_groups: 2,
        destinations: g(&["llm_api", "base_url"]),
        window_seconds: 300,
        readers: Readers::Any,
        ignore: Vec::new(),
    }
}

fn with_ordinary_rule() -> Config {
    let mut cfg = Config::default();
    cfg.rules.push(ordinary_rule());
    cfg
}

const RELAY: &str = crate::config::defaults::RELAY_RULE;

#[test]
fn the_ordinary_pattern_is_no_finding() {
    // Timezone, proxy, locale, even the machine id, then the assistant's own API: what every
    // assistant does.
    let mut c = correlator(&Config::default());
    c.start_session(1, "claude-code", Some("2.0.1".into()));
    c.add_signal(1, sig("timezone", "/etc/localtime", true, 10));
    c.add_signal(1, sig("proxy", "HTTPS_PROXY", true, 11));
    c.add_signal(1, sig("host_identity", "/etc/machine-id", true, 11));
    let (ann, out) = c.on_egress(1, Some("api.anthropic.com"), None, 12_500_000_000);
    assert_eq!(ann.destination_class, "llm_api");
    assert_eq!(ann.categories, vec!["host_identity", "proxy", "timezone"]);
    assert_eq!(ann.last_read_ms_before, Some(1500));
    assert!(out.is_empty(), "no finding at all");
}

#[test]
fn identity_read_by_the_assistant_then_its_given_base_url_is_one_high_relay_finding() {
    let mut c = correlator(&Config::default());
    c.start_session(1, "claude-code", Some("2.0.1".into()));
    c.learn_base_url(1, "http://relay.example.net:8080/v1");
    c.add_signal(1, sig("timezone", "/etc/localtime", true, 10));
    c.add_signal(1, sig("host_identity", "/etc/hostname", true, 11));
    c.add_signal(1, sig("network_config", "/etc/resolv.conf", false, 11));
    let (ann, out) = c.on_egress(1, Some("relay.example.net"), None, 12_500_000_000);
    assert_eq!(ann.destination_class, "base_url");
    let f = emitted(&out);
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].rule.as_str(), f[0].severity, f[0].by_assistant), (RELAY, Severity::High, true));
    // Only the assistant's own reads count: the child's resolv.conf is not evidence.
    assert_eq!(f[0].categories, vec!["host_identity"]);
    assert_eq!(f[0].evidence.len(), 1);
    assert_eq!(f[0].assistant_version.as_deref(), Some("2.0.1"));
    // The next connection of the same session: de-duplicated.
    let (_, out) = c.on_egress(1, Some("relay.example.net"), None, 13_000_000_000);
    assert!(matches!(out[0].1, Outcome::Duplicate));
    // The API itself after the same reads: no relay.
    c.add_signal(2, sig("host_identity", "/etc/hostname", true, 11));
    assert!(c.on_egress(2, Some("api.anthropic.com"), None, 12_000_000_000).1.is_empty());
}

/// What Claude Code (Bun) and Gemini CLI (Node) do right before each API call, measured: resolve
/// the name (`/etc/hosts`, `/etc/resolv.conf`, `/etc/nsswitch.conf`, the netlink address dump of
/// `AI_ADDRCONFIG`) and call `uname`. None of it is a relay's collecting; a MAC or
/// `/etc/machine-id` read is.
#[test]
fn resolving_the_base_url_and_uname_are_no_relay() {
    let mut c = correlator(&Config::default());
    c.start_session(1, "claude-code", None);
    c.learn_base_url(1, "http://api.mock-llm.test:8080");
    for (cat, art) in [
        ("network_config", "/etc/hosts"),
        ("network_config", "/etc/resolv.conf"),
        ("network_config", "/etc/nsswitch.conf"),
        ("network_config", "/run/systemd/resolve/stub-resolv.conf"),
        ("network_config", "RTM_GETADDR"),
        ("host_identity", "uname"),
    ] {
        c.add_signal(1, sig(cat, art, true, 11));
    }
    assert!(emitted(&c.on_egress(1, Some("api.mock-llm.test"), None, 12_000_000_000).1).is_empty());
    c.add_signal(1, sig("host_identity", "/etc/machine-id", true, 12));
    let (_, out) = c.on_egress(1, Some("api.mock-llm.test"), None, 12_500_000_000);
    let f = emitted(&out);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].evidence.len(), 1, "only the machine-id read is evidence");
}

#[test]
fn a_user_rule_for_the_ordinary_pattern_is_informational() {
    let mut c = correlator(&with_ordinary_rule());
    c.add_signal(1, sig("timezone", "/etc/localtime", true, 10));
    c.add_signal(1, sig("proxy", "HTTPS_PROXY", true, 11));
    let f = c.on_egress(1, Some("api.anthropic.com"), None, 12_500_000_000).1;
    let f = emitted(&f);
    assert_eq!((f[0].severity, f[0].severity.ocsf_id(), f[0].severity.label()), (Severity::Info, 1, "info"));
    assert_eq!(f[0].groups, vec!["timezone", "proxy"]);
    assert!(Severity::Info < Severity::Low);
}

#[test]
fn a_sessions_findings_name_the_evasion_it_used() {
    let mut c = correlator(&Config::default());
    for root in [7, 8] {
        c.learn_base_url(root, "http://10.1.2.3:4000");
        c.add_signal(root, sig("timezone", "/etc/localtime", true, 10));
        c.add_signal(root, sig("host_identity", "/etc/machine-id", true, 10));
    }
    c.note_evasion(7, COMPAT_SYSCALL);
    c.note_evasion(7, COMPAT_SYSCALL);
    assert_eq!(
        emitted(&c.on_egress(7, Some("10.1.2.3"), None, 11_000_000_000).1)[0].evasion,
        [COMPAT_SYSCALL]
    );
    assert!(emitted(&c.on_egress(8, Some("10.1.2.3"), None, 11_000_000_000).1)[0].evasion.is_empty());
}

#[test]
fn no_finding_without_reads_other_destinations_or_outside_the_window() {
    let mut c = correlator(&Config::default());
    c.learn_base_url(1, "https://relay.example.net");
    assert!(emitted(&c.on_egress(1, Some("relay.example.net"), None, 1).1).is_empty());
    c.learn_base_url(2, "https://relay.example.net");
    c.add_signal(2, sig("host_identity", "/etc/hostname", true, 10));
    assert!(emitted(&c.on_egress(2, Some("example.com"), None, 11_000_000_000).1).is_empty());
    assert!(
        emitted(&c.on_egress(2, Some("relay.example.net"), None, 1_000_000_000_000).1).is_empty(),
        "too late"
    );
    c.learn_base_url(3, "https://relay.example.net");
    c.add_signal(3, sig("timezone", "/etc/localtime", true, 10));
    c.add_signal(3, sig("locale", "LANG", true, 10));
    assert!(
        emitted(&c.on_egress(3, Some("relay.example.net"), None, 11_000_000_000).1).is_empty(),
        "no identity or network read"
    );
}

#[test]
fn descendant_only_reads_are_no_relay() {
    let mut c = correlator(&Config::default());
    c.learn_base_url(4, "https://user:pw@relay.example.net:8443/v1");
    c.add_signal(4, sig("host_identity", "/etc/machine-id", false, 10));
    c.add_signal(4, sig("network_config", "/etc/resolv.conf", false, 10));
    let (ann, out) = c.on_egress(4, Some("relay.example.net"), None, 11_000_000_000);
    assert_eq!(ann.destination_class, "base_url");
    assert!(out.is_empty(), "a tool the assistant ran read them");
    c.add_signal(4, sig("network_config", "/proc/net/route", true, 11));
    let (_, out) = c.on_egress(4, Some("relay.example.net"), None, 12_000_000_000);
    assert_eq!(emitted(&out)[0].severity, Severity::High);
}

const SIGNATURES: &str = r#"
[[signature]]
id = "acme-tz-date"
assistant = "acme"
versions = ">=1.0.30, <1.0.40"
description = "encodes the zone into its dates"
when.categories = ["timezone"]
when.base_url_given = true
when.env = ["ACME_BASE_URL"]
"#;

#[test]
fn a_signature_matches_its_versions_under_its_conditions() {
    let mut c = correlator(&Config::default());
    c.signatures = crate::detect::signatures::parse(SIGNATURES, "s.toml").unwrap();
    for (root, version, given, hit) in
        [(1, "1.0.35", true, true), (2, "1.0.40", true, false), (3, "1.0.35", false, false)]
    {
        c.start_session(root, "acme", Some(version.into()));
        if given {
            c.note_env(root, "ACME_BASE_URL");
            c.learn_base_url(root, "http://127.0.0.1:9");
        }
        c.add_signal(root, sig("timezone", "TZ", true, 10));
        let f = c.on_egress(root, Some("api.anthropic.com"), None, 11_000_000_000).1;
        let f = emitted(&f);
        assert_eq!(f.len(), usize::from(hit), "{version} given={given}");
        if hit {
            assert_eq!((f[0].rule.as_str(), f[0].severity), (SIGNATURE_RULE, Severity::High));
            assert_eq!(f[0].signature.as_deref(), Some("acme-tz-date"));
            assert_eq!(f[0].evidence[0].signal.artifact, "TZ");
        }
    }
}

#[test]
fn the_baseline_flags_a_new_category_after_learning_once_per_session() {
    let mut cfg = Config::default();
    cfg.detection.baseline_learning_sessions = 2;
    let mut c = correlator(&cfg);
    for root in [1, 2] {
        c.start_session(root, "acme", Some("1.0".into()));
        c.add_signal(root, sig("timezone", "/etc/localtime", true, 10));
        assert!(c.on_egress(root, Some("api.anthropic.com"), None, 11_000_000_000).1.is_empty());
        c.end_session(root);
    }
    c.start_session(3, "acme", Some("1.0".into()));
    c.add_signal(3, sig("timezone", "/etc/localtime", true, 10));
    assert!(c.on_egress(3, Some("api.anthropic.com"), None, 11_000_000_000).1.is_empty(), "usual");
    c.add_signal(3, sig("host_identity", "/etc/machine-id", false, 12));
    let out = c.on_egress(3, Some("api.anthropic.com"), None, 13_000_000_000).1;
    let f = emitted(&out);
    assert_eq!((f[0].rule.as_str(), f[0].severity), (BASELINE_RULE, Severity::Medium));
    assert_eq!(f[0].new_categories, ["host_identity"]);
    assert!(f[0].description.contains("acme 1.0") && f[0].description.contains("host_identity"));
    assert!(c.on_egress(3, Some("api.anthropic.com"), None, 14_000_000_000).1.is_empty(), "reported once");
    c.add_signal(3, sig("locale", "LANG", true, 15));
    assert_eq!(emitted(&c.on_egress(3, None, None, 16_000_000_000).1)[0].new_categories, ["locale"]);
    // Another version is still learning.
    c.start_session(4, "acme", Some("1.1".into()));
    c.add_signal(4, sig("host_identity", "/etc/machine-id", false, 12));
    assert!(c.on_egress(4, None, None, 13_000_000_000).1.is_empty());
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
        c.learn_base_url(root, "https://relay.example.net");
        c.add_signal(root, sig("network_config", "a", true, 10));
    }
    assert_eq!(emitted(&c.on_egress(5, Some("relay.example.net"), None, 11_000_000_000).1).len(), 1);
    assert!(matches!(
        c.on_egress(6, Some("relay.example.net"), None, 11_000_000_000).1[0].1,
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
    let mut c = correlator(&with_ordinary_rule());
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
    let mut c = correlator(&with_ordinary_rule());
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

#[test]
fn prompt_rule_findings_name_the_reads_and_keep_to_the_rate_limit() {
    let mut cfg = Config::default();
    cfg.detection.prompt_rule.learning_sessions = 1;
    cfg.detection.prompt_rule.usual_sessions = 1;
    cfg.correlation.max_findings_per_minute = 1;
    let mut c = correlator(&cfg);
    let body = |s: &str| {
        let json = serde_json::json!({ "system": s }).to_string();
        crate::detect::markers::scan_json(json.as_bytes()).unwrap()
    };
    c.start_session(1, "a", Some("1.0".into()));
    assert!(c.on_prompt(1, &body("Date 2026-11-30."), "llm_api", 1_000_000_000).is_none());
    c.end_session(1);
    c.start_session(2, "a", Some("1.0".into()));
    c.add_signal(2, sig("timezone", "/usr/share/zoneinfo/Asia/Shanghai", true, 5));
    c.add_signal(2, sig("host_identity", "/etc/machine-id", true, 5));
    let Some(Outcome::Emit(f)) = c.on_prompt(2, &body("Date 2026/11/30."), "base_url", 6_000_000_000) else {
        panic!("no finding")
    };
    assert_eq!(
        (f.rule.as_str(), f.severity, f.destination_class.as_str()),
        (prompt_rule::RULE, Severity::High, "base_url")
    );
    assert_eq!(f.categories, ["timezone"]);
    assert_eq!(f.evidence.len(), 1);
    assert_eq!(f.evidence[0].signal.artifact, "/usr/share/zoneinfo/Asia/Shanghai");
    assert_eq!(f.evidence[0].ms_before_egress, 1000);
    assert!(f.by_assistant);
    assert_eq!(f.assistant_version.as_deref(), Some("1.0"));
    let json = serde_json::to_value(&*f).unwrap();
    assert_eq!(
        json["date_changes"],
        serde_json::json!([{ "path": "$.system", "before": ["YYYY-MM-DD"], "after": "YYYY/MM/DD",
                             "compared_with": "assistant_version" }])
    );
    assert!(json.get("new_markers").is_none(), "{json}");
    let o = crate::output::ocsf::to_ocsf(&prompt_finding_record(*f));
    assert_eq!((o["class_uid"].as_u64(), o["severity_id"].as_u64()), (Some(2004), Some(4)));
    assert_eq!(o["finding_info"]["types"], serde_json::json!(["Covert Prompt Content", prompt_rule::RULE]));
    assert_eq!(o["finding_info"]["analytic"]["name"], prompt_rule::RULE);
    let evidences = o["evidences"].as_array().expect("evidences");
    assert!(evidences.iter().any(|e| e["data"]["after"] == "YYYY/MM/DD"), "{o}");
    assert!(evidences.iter().any(|e| e["data"]["category"] == "timezone"), "{o}");
    assert_eq!(o["unmapped"]["aiwatch"]["date_changes"], json["date_changes"]);
    // Over the minute's limit: counted, not reported, so not de-duplicated either.
    c.start_session(3, "a", Some("1.0".into()));
    let quote = body("Today\u{2019}s date is 2026-11-30.");
    assert!(matches!(c.on_prompt(3, &quote, "llm_api", 7_000_000_000), Some(Outcome::RateLimited)));
    assert!(matches!(c.on_prompt(3, &quote, "llm_api", 61_000_000_000), Some(Outcome::Emit(_))));
    assert!(matches!(c.on_prompt(3, &quote, "llm_api", 62_000_000_000), Some(Outcome::Duplicate)));
}

/// A finding as the pipeline wraps it, for its OCSF form.
fn prompt_finding_record(finding: Finding) -> crate::output::report::Record {
    use crate::output::report::{Body, FindingRecord, ProcessRef, Record, SessionRef};
    let session = SessionRef { id: "s".into(), assistant: "a".into(), root_pid: 2, uid: 0 };
    let process = ProcessRef {
        pid: 2,
        tid: 2,
        ppid: 1,
        uid: 0,
        gid: 0,
        comm: "node".into(),
        exe: "/usr/bin/node".into(),
        argv: Vec::new(),
    };
    let destination =
        crate::detect::egress::Destination { host: None, addr: "127.0.0.1".into(), port: 8080, proxy: false };
    let record = FindingRecord {
        id: "c-prompt".into(),
        session,
        process,
        reader: Reader::Assistant,
        finding,
        destination,
        connection_id: "c".into(),
    };
    Record {
        schema: crate::output::report::SCHEMA,
        time: "2026-12-01T03:20:36Z".into(),
        boot_ns: 6_000_000_000,
        host: "h".into(),
        body: Body::Finding(Box::new(record)),
    }
}
