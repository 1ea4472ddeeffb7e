//! The prompt-marker rule: learning, what counts as new, repetition, date changes, bounds.

use super::*;

/// A request whose system prompt is `system` (scanned by the real scanner).
fn req(system: &str) -> RequestMarkers {
    let body = serde_json::json!({ "system": system, "messages": [{ "role": "user", "content": "say ok" }] });
    markers::scan_json(body.to_string().as_bytes()).expect("scans")
}

const CLEAN: &str = "You are helpful. Today's date is 2026-11-30.";
const QUOTE: &str = "You are helpful. Today\u{2019}s date is 2026-11-30.";
const SLASH: &str = "You are helpful. Today's date is 2026/11/30.";

fn cfg(learning: u32, usual: u32) -> PromptRuleConfig {
    PromptRuleConfig { learning_sessions: learning, usual_sessions: usual, ..PromptRuleConfig::default() }
}

fn reads(c: &[&str]) -> BTreeSet<String> {
    c.iter().map(|s| s.to_string()).collect()
}

/// One request of a new session; the session is returned for more.
fn session(r: &mut PromptRule, system: &str, read: &[&str]) -> (SessionMarks, Verdict) {
    let mut s = SessionMarks::default();
    let v = r.check("a", Some("1.0"), &mut s, &req(system), &reads(read));
    (s, v)
}

fn anomaly(v: Verdict) -> Anomaly {
    match v {
        Verdict::Anomaly(a) => *a,
        other => panic!("no anomaly: {other:?}"),
    }
}

/// Emits `v` in session `s` (as the correlator does once the rate limit lets it through).
fn emit(s: &mut SessionMarks, v: Verdict) -> Anomaly {
    let a = anomaly(v);
    s.reported(&a);
    a
}

#[test]
fn the_first_sessions_teach_and_raise_nothing() {
    let mut r = PromptRule::new(&cfg(3, 1));
    for _ in 0..3 {
        // No history yet: even a marker is learning, not a finding.
        assert_eq!(session(&mut r, QUOTE, &["timezone"]).1, Verdict::Nothing);
    }
    // Learned now, and the marker was carried by three other sessions: usual.
    assert_eq!(session(&mut r, QUOTE, &[]).1, Verdict::Nothing);
}

#[test]
fn a_marker_the_other_sessions_do_not_carry_is_new_with_its_code_point_and_path() {
    let mut r = PromptRule::new(&cfg(2, 1));
    for _ in 0..2 {
        assert_eq!(session(&mut r, CLEAN, &[]).1, Verdict::Nothing);
    }
    let a = anomaly(session(&mut r, QUOTE, &[]).1);
    assert_eq!(
        a.new_markers,
        [NewMarker {
            kind: MarkerKind::QuoteLookalike,
            code_point: "U+2019".into(),
            name: "RIGHT SINGLE QUOTATION MARK".into(),
            path: "$.system".into(),
            other_sessions: 0,
        }]
    );
    assert!(a.date_changes.is_empty() && a.reads.is_empty());
    assert_eq!(a.severity, Severity::Medium);
    let d = a.description("a", Some("1.0"));
    assert!(d.contains("quote_lookalike U+2019 at $.system") && d.contains("a 1.0"), "{d}");
    assert!(!d.contains("helpful") && !d.contains("2026"), "request text in {d}");
    // Another version has no history of its own yet: learning.
    let mut s = SessionMarks::default();
    assert_eq!(r.check("a", Some("2.0"), &mut s, &req(QUOTE), &reads(&[])), Verdict::Nothing);
}

#[test]
fn repeating_a_marker_within_a_session_never_makes_it_usual() {
    let mut r = PromptRule::new(&cfg(1, 2));
    session(&mut r, CLEAN, &[]);
    // One session sends it 50 times: reported once, the rest duplicates (not "usual").
    let (mut s, v) = session(&mut r, QUOTE, &[]);
    emit(&mut s, v);
    for _ in 0..50 {
        assert_eq!(r.check("a", Some("1.0"), &mut s, &req(QUOTE), &reads(&[])), Verdict::Duplicate);
    }
    // It counted as one session: the next session carrying it is still new (1 of 2 needed)...
    let a = anomaly(session(&mut r, QUOTE, &[]).1);
    assert_eq!(a.new_markers[0].other_sessions, 1);
    // ...and once two other sessions carried it, it is usual.
    assert_eq!(session(&mut r, QUOTE, &[]).1, Verdict::Nothing);
}

#[test]
fn a_sessions_own_requests_do_not_count_for_it() {
    // One other session would be enough to make it usual: the session's own is not one.
    let mut r = PromptRule::new(&cfg(1, 1));
    session(&mut r, CLEAN, &[]);
    let (mut s, v) = session(&mut r, QUOTE, &[]);
    emit(&mut s, v);
    assert_eq!(r.check("a", Some("1.0"), &mut s, &req(QUOTE), &reads(&[])), Verdict::Duplicate);
    // Nor does the session itself count toward the learning period.
    let mut r = PromptRule::new(&cfg(1, 1));
    let (mut s, v) = session(&mut r, QUOTE, &[]);
    assert_eq!(v, Verdict::Nothing);
    assert_eq!(r.check("a", Some("1.0"), &mut s, &req(QUOTE), &reads(&[])), Verdict::Nothing);
}

#[test]
fn a_new_marker_at_another_path_is_reported_again_in_the_session() {
    let mut r = PromptRule::new(&cfg(1, 1));
    session(&mut r, CLEAN, &[]);
    let (mut s, v) = session(&mut r, QUOTE, &[]);
    emit(&mut s, v);
    let body = serde_json::json!({ "system": QUOTE, "tools": [{ "description": "zero\u{200B}width" }] });
    let found = markers::scan_json(body.to_string().as_bytes()).unwrap();
    // Only what the session was not told yet is listed.
    let a = anomaly(r.check("a", Some("1.0"), &mut s, &found, &reads(&[])));
    let listed: Vec<(&str, &str)> =
        a.new_markers.iter().map(|m| (m.code_point.as_str(), m.path.as_str())).collect();
    assert_eq!(listed, [("U+200B", "$.tools[*].description")]);
}

#[test]
fn a_date_format_unlike_the_versions_usual_after_a_timezone_read_is_a_finding() {
    let mut r = PromptRule::new(&cfg(2, 2));
    for _ in 0..2 {
        assert_eq!(session(&mut r, CLEAN, &["timezone"]).1, Verdict::Nothing);
    }
    // Without a read of the timezone or base URL, another format is no finding.
    assert_eq!(session(&mut r, SLASH, &["locale", "host_identity"]).1, Verdict::Nothing);
    let a = anomaly(session(&mut r, SLASH, &["timezone", "locale"]).1);
    assert_eq!(
        a.date_changes,
        [DateChange {
            path: "$.system".into(),
            before: vec!["YYYY-MM-DD"],
            after: "YYYY/MM/DD",
            compared_with: "assistant_version",
        }]
    );
    assert_eq!(a.reads, ["timezone"]);
    assert!(a.new_markers.is_empty());
    assert_eq!(a.severity, Severity::High);
    let d = a.description("a", Some("1.0"));
    assert!(
        d.contains("YYYY/MM/DD") && d.contains("YYYY-MM-DD") && d.contains("after reading timezone"),
        "{d}"
    );
}

#[test]
fn a_session_whose_date_format_changes_after_a_base_url_read_is_a_finding_while_learning() {
    let mut r = PromptRule::new(&cfg(5, 2));
    let (mut s, v) = session(&mut r, CLEAN, &["base_url"]);
    assert_eq!(v, Verdict::Nothing);
    let v = r.check("a", Some("1.0"), &mut s, &req(SLASH), &reads(&["base_url"]));
    let a = emit(&mut s, v);
    assert_eq!(a.date_changes.len(), 1, "{a:?}");
    assert_eq!(
        (a.date_changes[0].compared_with, a.date_changes[0].before.clone()),
        ("session", vec!["YYYY-MM-DD"])
    );
    assert_eq!(a.reads, ["base_url"]);
    // Once: from then on both are formats the session wrote before, and neither is a change.
    assert_eq!(r.check("a", Some("1.0"), &mut s, &req(SLASH), &reads(&["base_url"])), Verdict::Nothing);
    assert_eq!(r.check("a", Some("1.0"), &mut s, &req(CLEAN), &reads(&["base_url"])), Verdict::Nothing);
}

#[test]
fn off_and_severities_follow_the_config() {
    let mut r = PromptRule::new(&PromptRuleConfig { enabled: false, ..cfg(1, 1) });
    session(&mut r, CLEAN, &[]);
    assert_eq!(session(&mut r, QUOTE, &["timezone"]).1, Verdict::Nothing);
    let mut c = cfg(1, 1);
    c.marker_severity = Severity::Critical;
    c.date_severity = Severity::Low;
    r.reconfigure(&c);
    session(&mut r, CLEAN, &["timezone"]);
    let both = "Today\u{2019}s date is 2026/11/30.";
    let a = anomaly(session(&mut r, both, &["timezone"]).1);
    assert_eq!((a.new_markers.len(), a.date_changes.len(), a.severity), (1, 1, Severity::Critical));
    c.date_reads = vec!["locale".into()];
    r.reconfigure(&c);
    let prime = "Today\u{2032}s date is 2026/11/30.";
    let a = anomaly(session(&mut r, prime, &["timezone"]).1);
    assert!(a.date_changes.is_empty() && a.severity == Severity::Critical, "{a:?}");
}

#[test]
fn histories_and_keys_are_bounded_and_evictions_counted() {
    let mut r = PromptRule::new(&PromptRuleConfig { max_entries: 4, ..cfg(1, 1) });
    for v in 0..10 {
        let mut s = SessionMarks::default();
        r.check("a", Some(&v.to_string()), &mut s, &req(CLEAN), &reads(&[]));
    }
    assert_eq!(r.histories.len(), 4);
    assert_eq!(r.evictions().0, 6);
    // One session teaches at most MAX_SESSION_KEYS keys; many sessions at most MAX_KEYS. Each
    // request: 95 tag characters at 8 paths each (760 keys).
    let tags: String = (0xE0020..=0xE007E).filter_map(char::from_u32).collect();
    let mut learned = 0;
    for i in 0..20 {
        let tools: serde_json::Map<String, serde_json::Value> =
            (0..8).map(|j| (format!("t{i}x{j}"), serde_json::Value::from(format!("a{tags}b")))).collect();
        let found = markers::scan_json(serde_json::json!({ "tools": tools }).to_string().as_bytes()).unwrap();
        let mut s = SessionMarks::default();
        r.check("wide", None, &mut s, &found, &reads(&[]));
        assert_eq!(s.taught.len(), MAX_SESSION_KEYS);
        learned += s.taught.len();
    }
    let h = r.histories.get(&("wide".to_string(), "unknown".to_string())).unwrap();
    assert_eq!(h.keys.len(), MAX_KEYS.min(learned));
    assert_eq!(r.evictions().1 as usize, learned - h.keys.len());
    // A reload with fewer entries evicts down to it.
    r.reconfigure(&PromptRuleConfig { max_entries: 1, ..cfg(1, 1) });
    assert_eq!(r.histories.len(), 1);
}
