use super::*;

const W: DayWindow = DayWindow { first: 20_000, last: 30_000 };

fn classes(s: &str) -> Vec<(String, String)> {
    tokenize(s)
        .into_iter()
        .map(|t| {
            let c = match &t.class {
                Class::Date(d) => format!("date {}", d.format()),
                c => format!("{c:?}"),
            };
            (t.text.to_string(), c)
        })
        .collect()
}

#[test]
fn calendar_round_trips() {
    assert_eq!(days_from_civil(1970, 1, 1), 0);
    assert_eq!(civil_from_days(days_from_civil(2026, 11, 28)), (2026, 11, 28));
    assert_eq!(days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28), 2);
}

#[test]
fn dates_and_times_are_single_tokens_with_a_format() {
    let c = classes("Today is 2026-11-28, or 2026/11/28 or 11/28/2026 at 07:44:06 (v2.1.332)");
    let dates: Vec<&(String, String)> = c.iter().filter(|(_, k)| k.starts_with("date")).collect();
    assert_eq!(dates.len(), 4, "{c:?}");
    assert_eq!(dates[0].1, "date YYYY-MM-DD");
    assert_eq!(dates[1].1, "date YYYY/MM/DD");
    assert_eq!(dates[2].1, "date MM/DD/YYYY");
    assert_eq!(dates[3].1, "date HH:mm:ss");
    assert!(c.iter().any(|(t, k)| t == "332" && k == "Number"));
    let c = classes("Today's date is Monday, November 30, 2026 (local)");
    assert!(
        c.iter().any(|(t, k)| t == "Monday, November 30, 2026" && k == "date EEEE, MMMM DD, YYYY"),
        "{c:?}"
    );
    let c = classes("due 1st Dec. 2026, or 30 November 2026");
    let dates: Vec<&(String, String)> = c.iter().filter(|(_, k)| k.starts_with("date")).collect();
    assert_eq!(
        dates.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>(),
        ["1st Dec. 2026", "30 November 2026"],
        "{c:?}"
    );
    let c = classes("at 2026-11-28T07:44:06.123Z and 2026年11月28日");
    assert_eq!(c[2], ("2026-11-28T07:44:06.123Z".into(), "date YYYY-MM-DDTHH:mm:ss.SSSZ".into()));
    assert!(c.iter().any(|(t, _)| t == "2026年11月28日"));
}

#[test]
fn a_date_format_change_is_encoding_with_the_code_points_named() {
    let d = compare_text("f", &["Today is 2026-11-28."], "Today is 2026/11/28.", &[], W).unwrap();
    assert_eq!(d.kinds, [Kind::Encoding].into_iter().collect());
    let h = &d.hunks[0];
    assert_eq!(h.note.as_deref(), Some("date format YYYY-MM-DD → YYYY/MM/DD"));
    assert_eq!(h.chars.len(), 2);
    assert_eq!(h.chars[0].removed[0].name, "HYPHEN-MINUS");
    assert_eq!(h.chars[0].inserted[0].name, "SOLIDUS");
}

#[test]
fn midnight_and_volatile_values_are_noise() {
    // The zone crossed midnight: same format, a current date.
    assert_eq!(
        compare_text(
            "f",
            &["on Monday, November 30, 2026 ok"],
            "on Tuesday, December 1, 2026 ok",
            &[],
            DayWindow { first: days_from_civil(2026, 11, 29), last: days_from_civil(2026, 12, 1) }
        ),
        None
    );
    // …but a date far from today is news.
    let d = compare_text(
        "f",
        &["on 2026-11-30"],
        "on 2021-01-01",
        &[],
        DayWindow { first: days_from_civil(2026, 11, 29), last: days_from_civil(2026, 12, 1) },
    )
    .unwrap();
    assert_eq!(d.kinds, [Kind::Content].into_iter().collect());
    // Ids that differ between baseline runs.
    let b = ["id=3f2a9c1e-77 took 12 ms", "id=88aa01bb-02 took 9 ms"];
    assert_eq!(compare_text("f", &b, "id=12345678-ab took 31 ms", &[], W), None);
    // An invisible character next to a volatile id is not.
    let d = compare_text("f", &b, "id=12345678-ab took\u{200B} 31 ms", &[], W).unwrap();
    assert_eq!(d.hunks[0].kind, Kind::Encoding);
    assert_eq!(d.hunks[0].chars[0].inserted[0].code, "U+200B");
    assert_eq!(d.hunks[0].chars[0].inserted[0].name, "ZERO WIDTH SPACE");
    assert_eq!(d.hunks[0].chars[0].inserted[0].shown, "⟨U+200B⟩");
}

#[test]
fn apostrophes_look_alikes_words_and_disclosure() {
    let d = compare_text("f", &["It's fine"], "It\u{2019}s fine", &[], W).unwrap();
    assert_eq!(d.kinds, [Kind::Encoding].into_iter().collect());
    assert_eq!(d.hunks[0].chars[0].removed[0].name, "APOSTROPHE");
    assert_eq!(d.hunks[0].chars[0].inserted[0].name, "RIGHT SINGLE QUOTATION MARK");
    let d = compare_text("f", &["a cat"], "a \u{0441}at", &[], W).unwrap();
    assert_eq!(
        (d.hunks[0].kind, d.hunks[0].note.as_deref()),
        (Kind::Encoding, Some("look-alike characters"))
    );
    let d = compare_text("f", &["a cat"], "a dog", &[], W).unwrap();
    assert_eq!(d.kinds, [Kind::Content].into_iter().collect());
    let toks = vec!["Asia/Tokyo".to_string(), "+09:00".to_string()];
    let d = compare_text("f", &["zone: UTC"], "zone: Asia/Tokyo", &toks, W).unwrap();
    assert_eq!(d.kinds, [Kind::Disclosure].into_iter().collect());
    assert_eq!(d.disclosed, ["Asia/Tokyo"]);
    // Present in the baseline too: not disclosed by the variant.
    assert_eq!(compare_text("f", &["Asia/Tokyo"], "Asia/Tokyo", &toks, W), None);
    assert!(!contains_token("api.moonshot.cnx", "api.moonshot.cn"));
    assert!(contains_token("url=https://api.moonshot.cn/v1", "api.moonshot.cn"));
}

fn rec(method: &str, path: &str, body: &str) -> Recorded {
    Recorded {
        seq: 0,
        ms: 0,
        listener: "https:443".into(),
        tls_sni: None,
        proxy: None,
        method: method.into(),
        path: path.into(),
        headers: vec![("host".into(), "x".into()), ("x-id".into(), "a".into())],
        body: body.into(),
        body_bytes: body.len(),
        binary: false,
        api: "other",
        status: 200,
        llm_call: false,
    }
}

#[test]
fn requests_flatten_match_and_compare() {
    let f = flatten(&rec("POST", "/v1/messages?beta=true", r#"{"a":{"b":[1,"x"]},"m":"{\"k\":\"v\"}"}"#));
    assert_eq!(f.key, "POST /v1/messages");
    assert_eq!(f.fields["query.beta"], "true");
    assert_eq!(f.fields["body.a.b[0]"], "1");
    assert_eq!(f.fields["body.m⟨json⟩.k"], "v");
    assert!(!f.fields.contains_key("header.host"));
    assert_eq!(path_key("/api/eval/3f2a9c1e-77aa-4bcd-9012-aabbccddeeff"), "/api/eval/{id}");
    assert_eq!(
        path_key("/v1beta/models/gemini-3.5-flash:generateContent"),
        "/v1beta/models/gemini-3.5-flash:generateContent"
    );
    let b1 = vec![flatten(&rec("POST", "/m", r#"{"t":"x"}"#)), flatten(&rec("GET", "/t", ""))];
    let b2 = vec![flatten(&rec("POST", "/m", r#"{"t":"x"}"#))];
    let v =
        vec![flatten(&rec("POST", "/m", r#"{"t":"y","n":"Asia/Tokyo"}"#)), flatten(&rec("GET", "/new", ""))];
    let d = compare_run(&[b1, b2], &v, &["Asia/Tokyo".into()], W);
    assert_eq!(d.len(), 2, "{d:#?}");
    assert_eq!(d[0].fields.len(), 2);
    assert_eq!(d[0].fields[0].field, "body.n");
    assert_eq!(d[0].fields[0].change, "added");
    assert!(d[0].fields[0].kinds.contains(&Kind::Disclosure));
    assert!(d[1].presence.as_deref().unwrap().starts_with("extra"));
    assert!(d.iter().all(RequestDiff::is_finding));
}

#[test]
fn base64_json_is_compared_field_by_field() {
    // {"uptime":0.45,"rss":1268} in base64, padded and not, standard and URL-safe.
    let f = flatten(&rec("POST", "/e", r#"{"p":"eyJ1cHRpbWUiOjAuNDUsInJzcyI6MTI2OH0="}"#));
    assert_eq!(f.fields["body.p⟨base64 json⟩.uptime"], "0.45");
    assert_eq!(f.fields["body.p⟨base64 json⟩.rss"], "1268");
    assert!(base64_json("eyJ1cHRpbWUiOjAuNDUsInJzcyI6MTI2OH0").is_some());
    // Not base64 of JSON: a token, a word, JSON's own text.
    for s in ["eyJhbGciOiJIUzI1NiJ9.e30.sig", "sk-ant-api03-abcdefghijklmnop", "Wonderful weather today"] {
        assert!(base64_json(s).is_none(), "{s}");
    }
    // The volatile numbers inside are learned from the baseline like any other field.
    let b = |u: &str| vec![flatten(&rec("POST", "/e", &format!(r#"{{"p":"{u}"}}"#)))];
    let enc = |v: &str| {
        let t = format!(r#"{{"uptime":{v},"zone":"UTC"}}"#);
        let abc = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for ch in t.as_bytes().chunks(3) {
            let n = ch.iter().enumerate().fold(0u32, |a, (i, c)| a | (u32::from(*c) << (16 - 8 * i)));
            for i in 0..=ch.len() {
                out.push(abc[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    };
    let d = compare_run(&[b(&enc("0.45")), b(&enc("0.83"))], &b(&enc("0.61")), &[], W);
    assert!(d.is_empty(), "{d:#?}");
}

#[test]
fn events_in_varying_number_and_order_are_compared_by_value() {
    let req = |events: &[&str]| {
        let e: Vec<String> =
            events.iter().map(|n| format!(r#"{{"name":"{n}","uptime":0.{}}}"#, n.len() * 7)).collect();
        flatten(&rec("POST", "/batch", &format!(r#"{{"events":[{}]}}"#, e.join(","))))
    };
    let b1 = vec![req(&["init", "start's"]), req(&["exit"])];
    let b2 = vec![req(&["start's", "init", "tool"])];
    // Other events, another order, another batching: noise.
    let v = vec![req(&["tool", "init"]), req(&["start's"]), req(&["exit"])];
    let d = compare_run(&[b1.clone(), b2.clone()], &v, &[], W);
    assert!(d.is_empty(), "{d:#?}");
    // One batch in every run, holding other events in another order: noise too.
    let one = |e: &[&str]| vec![req(e)];
    let d = compare_run(
        &[one(&["init", "start's"]), one(&["start's", "init", "tool"])],
        &one(&["tool", "init"]),
        &[],
        W,
    );
    assert!(d.is_empty(), "{d:#?}");
    // A look-alike apostrophe, a new field and a disclosure are still found.
    let v = vec![req(&["tool", "start\u{2019}s"])];
    let d = compare_run(&[b1.clone(), b2.clone()], &v, &[], W);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert!(d[0].fields[0].kinds.contains(&Kind::Encoding), "{d:#?}");
    let v = vec![flatten(&rec("POST", "/batch", r#"{"events":[{"name":"init","zone":"Asia/Tokyo"}]}"#))];
    let d = compare_run(&[b1, b2], &v, &["Asia/Tokyo".into()], W);
    assert!(d[0].fields.iter().any(|f| f.kinds.contains(&Kind::Disclosure)), "{d:#?}");
    assert_eq!(super::loose::masked("body.e[12].x[0].y"), "body.e[*].x[*].y");
}
