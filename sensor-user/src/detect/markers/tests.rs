use super::*;

fn scan(v: serde_json::Value) -> RequestMarkers {
    scan_json(v.to_string().as_bytes()).expect("scans")
}

/// (kind, code point, count, paths) of each marker, for exact comparisons.
fn found(r: &RequestMarkers) -> Vec<(MarkerKind, &str, u32, Vec<&str>)> {
    r.markers
        .iter()
        .map(|m| {
            let paths = m.paths.iter().map(String::as_str).collect();
            (m.kind, m.code_point.as_str(), m.count, paths)
        })
        .collect()
}

fn dates_of(r: &RequestMarkers) -> Vec<(&str, u32, Vec<&str>)> {
    r.dates.iter().map(|d| (d.format, d.count, d.paths.iter().map(String::as_str).collect())).collect()
}

#[test]
fn covert_system_prompt_found_exactly() {
    let r = scan(serde_json::json!({
        "model": "claude",
        "system": "Today\u{2019}s date is 2026/11/30.\u{200b}",
        "messages": [{"role": "user", "content": "hello"}],
    }));
    assert_eq!(
        found(&r),
        vec![
            (MarkerKind::QuoteLookalike, "U+2019", 1, vec!["$.system"]),
            (MarkerKind::Invisible, "U+200B", 1, vec!["$.system"]),
        ]
    );
    assert_eq!(r.markers[0].name, "RIGHT SINGLE QUOTATION MARK");
    assert_eq!(r.markers[1].name, "ZERO WIDTH SPACE");
    assert_eq!(dates_of(&r), vec![(YMD_SLASH, 1, vec!["$.system"])]);
    assert_eq!(r.shape.len(), 16);
    assert!(r.shape.bytes().all(|b| b.is_ascii_hexdigit()));
    let json = serde_json::to_value(&r).expect("serializes");
    assert_eq!(json["markers"][0]["kind"], "quote_lookalike");
    assert_eq!(json["markers"][1]["kind"], "invisible");
}

#[test]
fn clean_multilingual_request_has_no_markers() {
    let r = scan(serde_json::json!({
        "system": "You are a helpful assistant. Don't guess; today is 2026-11-30.",
        "messages": [
            {"role": "user", "content": "Please fix the bug in \"main.rs\" (it's urgent)!"},
            {"role": "user", "content": "请帮我修复这个错误，谢谢。"},
            {"role": "user", "content": "このコードを直してください。「重要」です！なぜ？\u{3000}はい、"},
            {"role": "user", "content": "Voilà, très élégant: Straße, Größe, Ærø, señor, naïve."},
            {"role": "user", "content": "Пожалуйста, исправь ошибку в этом коде."},
            {"role": "user", "content": "Καλημέρα, ο κώδικας είναι σωστός."},
            {"role": "user", "content": "family 👨\u{200d}👩\u{200d}👧\u{200d}👦 ok 👍🏽 ❤\u{fe0f} ❤\u{fe0f}\u{200d}🔥 1\u{fe0f}\u{20e3}"},
            {"role": "user", "content": "flag 🏴\u{E0067}\u{E0062}\u{E0065}\u{E006E}\u{E0067}\u{E007F} done"},
            {"role": "user", "content": "می\u{200c}خواهم और क्\u{200d}ष"},
            {"role": "user", "content": "version 1.2.3, id 20261130, v2026.11.30.1"},
        ],
    }));
    assert_eq!(found(&r), vec![], "{r:?}");
    assert_eq!(dates_of(&r), vec![(YMD_DASH, 1, vec!["$.system"])]);
    assert_eq!(r.dropped, 0);
    assert!(r.strings > 10 && r.chars > 100);
}

#[test]
fn mixed_script_word_is_confusable_whole_foreign_word_is_not() {
    let r = scan(serde_json::json!({"messages": [{"content": "log in to p\u{0430}ypal now"}]}));
    assert_eq!(found(&r), vec![(MarkerKind::Confusable, "U+0430", 1, vec!["$.messages[0].content"])]);
    assert_eq!(r.markers[0].name, "CYRILLIC SMALL LETTER A");
    // Greek omicron and fullwidth letters inside ASCII words; math bold H.
    let r = scan(serde_json::json!({"a": "g\u{03bf}\u{03bf}gle", "b": "\u{FF21}pple", "c": "\u{1D407}ello"}));
    let cps: Vec<_> = r.markers.iter().map(|m| m.code_point.as_str()).collect();
    assert_eq!(cps, vec!["U+03BF", "U+FF21", "U+1D407"]);
    assert_eq!(r.markers[0].count, 2);
    // Real Russian/Greek words and fullwidth-only words are not markers.
    let r = scan(serde_json::json!({"a": "рассказ о космосе, ο λόγος, ＡＢＣ"}));
    assert_eq!(found(&r), vec![]);
}

#[test]
fn tag_characters_counted_never_decoded() {
    // "sk-SECRET" spelled in tag characters after ordinary text.
    let tags: String =
        "sk-SECRET".chars().map(|c| char::from_u32(0xE0000 + c as u32).expect("tag")).collect();
    let r = scan(serde_json::json!({"tools": [{"description": format!("Reads files.{tags}")}]}));
    assert_eq!(r.markers.len(), 8, "{r:?}"); // s k - S E C R T: E twice
    let e = r.markers.iter().find(|m| m.code_point == "U+E0045").expect("tag E");
    assert_eq!(e.kind, MarkerKind::TagCharacter);
    assert_eq!(e.name, "TAG LATIN CAPITAL LETTER E");
    assert_eq!(e.count, 2);
    assert_eq!(e.paths, vec!["$.tools[0].description"]);
    let out = format!("{r:?}{}", serde_json::to_string(&r).expect("json"));
    assert!(!out.contains("SECRET") && !out.contains("sk-"), "{out}");
    // Tag characters after a flag that spell nothing valid still count.
    let r = scan(serde_json::json!({"a": "🏴\u{E0041}\u{E007F}"}));
    assert_eq!(r.markers.len(), 2);
}

#[test]
fn bidi_controls_and_invisibles() {
    let r = scan(serde_json::json!({
        "a": "abc\u{202e}fed\u{202c}",
        "b": ["x", "שלום\u{200f}", "\u{2066}y\u{2069}"],
        "c": "soft\u{00ad}hyphen \u{2060} \u{feff} \u{2800} a\u{fe0f} ❤\u{fe0f}\u{fe0f}",
    }));
    let got: Vec<_> = r.markers.iter().map(|m| (m.kind, m.code_point.as_str(), m.count)).collect();
    assert_eq!(
        got,
        vec![
            (MarkerKind::Invisible, "U+00AD", 1),
            (MarkerKind::Invisible, "U+2060", 1),
            (MarkerKind::Invisible, "U+2800", 1),
            (MarkerKind::Invisible, "U+FE0F", 2),
            (MarkerKind::Invisible, "U+FEFF", 1),
            (MarkerKind::BidiControl, "U+200F", 1),
            (MarkerKind::BidiControl, "U+202C", 1),
            (MarkerKind::BidiControl, "U+202E", 1),
            (MarkerKind::BidiControl, "U+2066", 1),
            (MarkerKind::BidiControl, "U+2069", 1),
        ]
    );
    let rlm = r.markers.iter().find(|m| m.code_point == "U+200F").expect("rlm");
    assert_eq!(rlm.paths, vec!["$.b[1]"]);
}

#[test]
fn headers_add_code_points_with_header_paths() {
    let mut r = scan(serde_json::json!({"system": "it\u{2019}s"}));
    let before = r.shape.clone();
    scan_headers(
        &[
            ("User-Agent", "claude-cli/2.0\u{200b}"),
            ("X-Note", "it\u{2019}s 2026-11-30"),
            ("Accept", "application/json"),
        ],
        &mut r,
    );
    assert_eq!(
        found(&r),
        vec![
            (MarkerKind::QuoteLookalike, "U+2019", 2, vec!["$.system", "header:x-note"]),
            (MarkerKind::Invisible, "U+200B", 1, vec!["header:user-agent"]),
        ]
    );
    assert_eq!(r.dates, vec![], "header values carry no dates");
    assert_eq!(r.headers, 3);
    assert_ne!(r.shape, before);
}

#[test]
fn shape_ignores_indices_and_follows_fields() {
    let at = |v: serde_json::Value| scan(v).shape;
    let a = at(serde_json::json!({"messages": [{"content": "x"}, {"content": "it\u{2019}s"}]}));
    let b =
        at(serde_json::json!({"messages": [{"content": "it\u{2019}s"}, {"content": "y"}, {"content": "z"}]}));
    let c = at(serde_json::json!({"system": "it\u{2019}s", "messages": [{"content": "x"}]}));
    let d = at(serde_json::json!({"messages": [{"content": "it\u{2019}s 2026-11-30"}]}));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_ne!(a, d);
}

#[test]
fn malformed_json_names_why() {
    let err = scan_json(b"{\"system\": \"abc").expect_err("truncated");
    let ScanError::NotJson { reason, line, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(reason.contains("EOF"), "{reason}");
    assert_eq!(*line, 1);
    assert!(!err.to_string().contains("abc"));
    assert!(matches!(scan_json(b"not json"), Err(ScanError::NotJson { .. })));
    assert_eq!(scan_json(b"  "), Err(ScanError::Empty));
    // A BOM at the very start is transport, not a marker.
    let r = scan_json(b"\xEF\xBB\xBF{\"a\":\"b\"}").expect("bom");
    assert_eq!(r.markers, vec![]);
}

#[test]
fn deep_nesting_is_refused() {
    let nest = |n: usize| format!("{}\"x\"{}", "[".repeat(n), "]".repeat(n));
    assert!(scan_json(nest(MAX_DEPTH).as_bytes()).is_ok());
    let limit = Err(ScanError::TooDeep { limit: MAX_DEPTH });
    assert_eq!(scan_json(nest(MAX_DEPTH + 1).as_bytes()), limit);
    assert_eq!(scan_json(nest(1000).as_bytes()), limit);
}

#[test]
fn planted_secret_never_in_output() {
    let secret = "sk-ant-api03-SECRETvalue0123456789abcdefghijklmnopqrstuvwxyz";
    let mut body = serde_json::json!({
        "system": format!("key {secret}\u{2019} \u{200b}{secret} 2026/11/30 p\u{0430}ypal"),
        "messages": [{"content": format!("{secret}\u{E0041}")}],
    });
    body[secret] = serde_json::json!(format!("\u{202e}{secret}"));
    let r = scan(body);
    assert!(r.markers.len() >= 4);
    let out = format!("{r:?}\n{}", serde_json::to_string(&r).expect("json"));
    for part in ["sk-ant", "SECRET", "0123456789", "ypal", "2026/11/30"] {
        assert!(!out.contains(part), "{part} leaked: {out}");
    }
    assert!(out.contains("$.*"), "a long key is not shown: {out}");
}

#[test]
fn dates_formats_and_ranges() {
    let r = scan(serde_json::json!({
        "a": "30.11.2026 and 30-11-2026 and 11/30/2026 and 2026.11.30",
        "b": ["2026-02-29", "2024-02-29", "2026-13-01", "1969-01-01", "99/99/2026", "x2026-11-30"],
    }));
    assert_eq!(
        dates_of(&r),
        vec![
            (DMY_DASH, 1, vec!["$.a"]),
            (DMY_DOT, 1, vec!["$.a"]),
            (NMY_SLASH, 1, vec!["$.a"]),
            (YMD_DASH, 1, vec!["$.b[1]"]),
            (YMD_DOT, 1, vec!["$.a"]),
        ]
    );
}

#[test]
fn bounded_paths_markers_and_large_body() {
    let many: Vec<String> = (0..20).map(|i| format!("x{i}\u{2019}")).collect();
    let r = scan(serde_json::json!({"items": many}));
    assert_eq!(r.markers[0].count, 20);
    assert_eq!(r.markers[0].paths.len(), MAX_PATHS);
    assert!(r.markers[0].paths_truncated);
    // More distinct code points than kept: the rest is counted as dropped.
    let tags: String = (0xE0000..=0xE007F).filter_map(char::from_u32).collect();
    let confusables: String =
        (0x1D400..0x1D4FF).filter_map(char::from_u32).map(|c| format!("a{c} ")).collect();
    let r = scan(serde_json::json!({"a": tags, "b": confusables}));
    assert_eq!(r.markers.len(), MAX_MARKERS);
    assert!(r.dropped > 0);
    // A 2 MiB body full of markers completes.
    let chunk = "Today\u{2019}s p\u{0430}ypal 2026/11/30 \u{200b}\u{E0041} 日本語。 ";
    let big = chunk.repeat((2 << 20) / chunk.len());
    let r = scan(serde_json::json!({"system": big, "messages": [{"content": big}]}));
    assert!(r.chars > 1_000_000);
    assert_eq!(r.markers.len(), 4);
    let mut paths = r.markers[0].paths.clone();
    paths.sort();
    assert_eq!(paths, vec!["$.messages[0].content", "$.system"]);
}
