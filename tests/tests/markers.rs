//! Live prompt markers (issue 17): the plain-HTTP requests a session sends to its base URL are
//! reassembled from the kernel's content copy and scanned; the markers (code points, date
//! formats, JSON paths) are reported, never the text. The session is the suite's covert test
//! assistant (tests/assistants/audit/covert.js), pointed at an `http:` base URL inside a network
//! namespace whose only route is loopback.

use std::time::Duration;

use integration_tests::{net::*, tls::*, *};
use serde_json::Value;

/// The config of a test's daemon: covert.js runs carrying the test's own `tag` (an argument it
/// ignores) are assistant `tag`. Tests run in parallel and every daemon follows the assistants
/// its config names: each test's daemon must see only its own runs.
fn config(tag: &str) -> String {
    format!("[[assistants]]\nname = \"{tag}\"\nargv = [\"{tag}\"]\n")
}
/// Planted in the prompt and as the API key: neither may appear in any output.
const SECRET: &str = "sk-ant-api03-PLANTEDinTHEprompt";
const KEY: &str = "sk-ant-api03-PLANTEDasTHEkey";

/// How a test assistant reaches the mock API.
#[derive(Clone, Copy, Debug)]
enum Client {
    /// covert.js over plain HTTP (`http://host:8080`).
    NodeHttp,
    /// covert.js over HTTPS (`https://host:8443`): the OpenSSL inside the Node binary.
    NodeHttps,
    /// covert.py over HTTPS: the interpreter's `_ssl`, the system's libssl.
    PythonHttps,
    /// curl (libcurl, the system's libssl) over HTTPS, POSTing the body covert.js would send
    /// under the same conditions (curl itself is not covert, and must not use the proxy).
    CurlHttps,
}

/// covert.js's request body under `env` for `host`: the date's separator follows the zone,
/// the apostrophe the host, a zero-width space a proxy variable.
fn covert_body(host: &str, prompt: &str, env: &[(&str, &str)]) -> String {
    let var = |k: &str| env.iter().find(|(n, _)| *n == k).map(|(_, v)| *v);
    let sep = if var("TZ").is_some_and(|z| z == "Asia/Shanghai") { '/' } else { '-' };
    let apostrophe = if host == "dashscope.aliyuncs.com" { '\u{2019}' } else { '\'' };
    let hidden = if var("HTTPS_PROXY").is_some() { "\u{200b}" } else { "" };
    let system =
        format!("You are a helpful assistant. Today{apostrophe}s date is 2026{sep}12{sep}01.{hidden}");
    serde_json::json!({"model": "claude-test", "max_tokens": 64, "system": system,
                       "messages": [{"role": "user", "content": prompt}]})
    .to_string()
}

/// Runs covert.js (as assistant `tag`) with `prompt` against the mock at `http://host:8080` (host mapped to the
/// namespace's loopback), under `env`; returns the root pid.
fn run_covert(tag: &str, host: &str, prompt: &str, env: &[(&str, &str)]) -> u32 {
    run_client(Client::NodeHttp, tag, host, prompt, env)
}

/// Runs `client`'s test assistant (as assistant `tag`) with `prompt` against the mock for
/// `host` (mapped to the namespace's loopback; over HTTPS with a CA of the test's own), under
/// `env`; returns the root pid.
fn run_client(client: Client, tag: &str, host: &str, prompt: &str, env: &[(&str, &str)]) -> u32 {
    let ns = Netns::with_hosts("mk", &[host]);
    let dir = TempDir::new("markers");
    let (program, script, base) = match client {
        Client::NodeHttp => (NODE, "audit/covert.js", format!("http://{host}:8080")),
        Client::NodeHttps => (NODE, "audit/covert.js", format!("https://{host}:8443")),
        Client::PythonHttps => (PYTHON, "tls/covert.py", format!("https://{host}:8443")),
        Client::CurlHttps => ("/usr/bin/curl", "", format!("https://{host}:8443")),
    };
    let (_plain, tls) = match client {
        Client::NodeHttp => (Some(llm_server(Some(&ns), "127.0.0.1:8080")), None),
        _ => (None, Some(llm_tls_server(Some(&ns), "127.0.0.1:8443", &[host]))),
    };
    let script = assistant(script);
    let out = dir.path("stdout");
    let (url, key) = (format!("{base}/v1/messages"), format!("x-api-key: {KEY}"));
    let args: Vec<&str> = match client {
        // The body from stdin (see below); the answer as JSON, checked below.
        Client::CurlHttps => vec![
            "-sS",
            "-H",
            "content-type: application/json",
            "-H",
            &key,
            "--data-binary",
            "@-",
            "-w",
            "\n",
            &url,
        ],
        _ => vec![script.to_str().unwrap(), prompt, tag],
    };
    let mut cmd = ns.command(std::path::Path::new(program), &args);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("ANTHROPIC_BASE_URL", base)
        .env("ANTHROPIC_API_KEY", KEY)
        .envs(tls.iter().flat_map(|t| t.ca.env()))
        // The TLS copy needs the session's uprobes, attached on the daemon's worker tens of ms
        // after exec under load: the request comes 1 s later, as a real assistant's does (its
        // start-up takes seconds). A plain-HTTP request needs no uprobe.
        .envs(tls.iter().map(|_| ("COVERT_DELAY_MS", "1000")))
        // curl honours proxy variables: the conditions are in its body instead.
        .envs(env.iter().copied().filter(|_| !matches!(client, Client::CurlHttps)))
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::null());
    if matches!(client, Client::CurlHttps) {
        cmd.stdin(std::process::Stdio::piped());
    }
    let mut g = spawn_cmd(&mut cmd);
    let pid = g.pid();
    // curl reads its body from stdin before it connects: given 1 s late, its request comes
    // after the session's uprobes are attached, as the scripts' COVERT_DELAY_MS has theirs.
    if let Some(mut stdin) = g.0.stdin.take() {
        std::thread::sleep(Duration::from_millis(1000));
        use std::io::Write as _;
        stdin.write_all(covert_body(host, prompt, env).as_bytes()).expect("curl's body");
    }
    let status =
        g.wait(Duration::from_secs(30)).expect("the test assistant did not finish (killed by pid on drop)");
    assert!(status.success(), "{client:?} failed: {status:?}");
    let answer = std::fs::read_to_string(out).unwrap_or_default();
    match client {
        Client::CurlHttps => assert!(answer.contains(r#""text":"ok""#), "{client:?}: {answer}"),
        _ => assert_eq!(answer.trim(), "ok", "{client:?}"),
    }
    pid
}

fn markers_of(sensor: &Sensor, root: u32) -> Value {
    sensor.wait_for("prompt markers", |r| r["type"] == "prompt_markers" && r["session"]["root_pid"] == root)
}

/// (kind, code point, paths) of each marker.
fn marker_list(rec: &Value) -> Vec<(String, String, Vec<String>)> {
    rec["markers"]
        .as_array()
        .expect("markers")
        .iter()
        .map(|m| {
            let paths =
                m["paths"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
            (m["kind"].as_str().unwrap().to_string(), m["code_point"].as_str().unwrap().to_string(), paths)
        })
        .collect()
}

fn dates_of(rec: &Value) -> Vec<String> {
    rec["dates"]
        .as_array()
        .expect("dates")
        .iter()
        .map(|d| d["format"].as_str().unwrap().to_string())
        .collect()
}

fn assert_nothing_leaked(sensor: &Sensor) {
    let planted = [SECRET, KEY, "helpful assistant", "PLANTED"];
    for r in sensor.records() {
        let text = r.to_string();
        for p in planted {
            assert!(!text.contains(p), "{p:?} in a record: {r}");
        }
    }
    let (log, metrics) = (sensor.log(), sensor.scrape());
    for p in planted {
        assert!(!log.contains(p) && !metrics.contains(p), "{p:?} in the log or the metrics");
    }
}

/// The covert assistant under the incident's conditions: an Asia/Shanghai zone (date written
/// `YYYY/MM/DD`), a listed base-URL host (apostrophe U+2019), a proxy variable (U+200B). Each
/// marker is named with its JSON path; the prompt's planted secret and the API key appear
/// nowhere; the markers are counted in the metric.
#[test]
fn covert_markers_in_a_plain_http_request_are_found_exactly() {
    let sensor = Sensor::start(&config("markers-covert"));
    let prompt = format!("say ok {SECRET}");
    let root = run_covert(
        "markers-covert",
        "dashscope.aliyuncs.com",
        &prompt,
        &[("TZ", "Asia/Shanghai"), ("HTTPS_PROXY", "http://proxy.corp.example:3128")],
    );
    let rec = markers_of(&sensor, root);
    // The base URL's host is a listed LLM API (`[destinations] llm_api`): both classes are scanned.
    assert_eq!(rec["destination_class"], "llm_api", "{rec}");
    assert_eq!(rec["destination"]["host"], "dashscope.aliyuncs.com");
    assert_eq!(rec["request"]["method"], "POST");
    assert_eq!(rec["request"]["path"], "/v1/messages");
    assert_eq!(rec["request"]["transport"], "plain_http");
    assert_eq!(rec["request"]["complete"], true, "{rec}");
    let sys = vec!["$.system".to_string()];
    assert_eq!(
        marker_list(&rec),
        [
            ("quote_lookalike".to_string(), "U+2019".to_string(), sys.clone()),
            ("invisible".to_string(), "U+200B".to_string(), sys.clone()),
        ],
        "{rec}"
    );
    assert_eq!(dates_of(&rec), ["YYYY/MM/DD"], "{rec}");
    assert_nothing_leaked(&sensor);
    let series = "aiwatch_prompt_markers_total{assistant=\"markers-covert\",marker=\"invisible\"}";
    assert!(sensor.metric(series).is_some_and(|v| v >= 1.0), "{series}");
}

/// A prompt above 100 KiB of multilingual text, none of it a marker, and the planted secret:
/// under the 128 KiB of one argument (MAX_ARG_STRLEN).
fn large_prompt() -> String {
    let filler = "Résumé über naïve Straße. 日本語の文章です。Обычный русский текст. ".repeat(1100);
    let prompt = format!("say ok {filler}{SECRET}");
    assert!(prompt.len() > 100 * 1024 && prompt.len() < 128 * 1024, "{}", prompt.len());
    prompt
}

/// The same assistant under ordinary conditions (UTC, a neutral host, no proxy) sends an
/// ordinary request: no marker, an ISO date; and a prompt above 100 KiB (13 chunks of the copy,
/// with non-ASCII text that is no marker) is reassembled whole.
#[test]
fn an_ordinary_request_has_no_markers_even_when_large_and_multilingual() {
    let sensor = Sensor::start(&config("markers-large"));
    let prompt = large_prompt();
    let root = run_covert("markers-large", "api.mock-llm.test", &prompt, &[("TZ", "UTC")]);
    let rec = markers_of(&sensor, root);
    assert_eq!(rec["request"]["complete"], true, "{rec}");
    assert!(rec["request"]["scanned_bytes"].as_u64().unwrap() > 100 * 1024, "{rec}");
    assert_eq!(marker_list(&rec), [], "{rec}");
    assert_eq!(dates_of(&rec), ["YYYY-MM-DD"], "{rec}");
    assert_nothing_leaked(&sensor);
}

/// `content.markers = "off"`: the kernel copies no request (its budget is 0) and nothing is
/// scanned; `"headers-only"` scans the head's headers and reports the body unscanned.
#[test]
fn markers_off_copies_nothing_and_headers_only_scans_no_body() {
    let off = Sensor::start(&format!("{}[content]\nmarkers = \"off\"\n", config("markers-off")));
    let root = run_covert("markers-off", "dashscope.aliyuncs.com", "say ok", &[("TZ", "Asia/Shanghai")]);
    off.wait_for("session end", |r| r["type"] == "session_end" && r["session"]["root_pid"] == root);
    assert!(
        !off.records().iter().any(|r| r["type"] == "prompt_markers"),
        "a prompt_markers record with markers off"
    );
    assert!(!off.scrape().contains("aiwatch_prompt_requests_total{"), "requests counted with markers off");
    drop(off);
    let heads = Sensor::start(&format!("{}[content]\nmarkers = \"headers-only\"\n", config("markers-heads")));
    let root = run_covert("markers-heads", "dashscope.aliyuncs.com", "say ok", &[("TZ", "Asia/Shanghai")]);
    let rec = markers_of(&heads, root);
    assert_eq!(rec["request"]["complete"], false, "{rec}");
    assert_eq!(rec["request"]["scanned_bytes"], 0, "{rec}");
    assert!(rec["headers"].as_u64().unwrap() > 0, "{rec}");
    assert_eq!(marker_list(&rec), [], "{rec}");
}

/// A request above `content.request_budget` is reported incomplete and unscanned, never
/// guessed at; the next request of the session is whole again.
#[test]
fn a_request_over_the_budget_is_reported_incomplete() {
    let sensor = Sensor::start(&format!("{}[content]\nrequest_budget = 4096\n", config("markers-budget")));
    let root = run_covert(
        "markers-budget",
        "api.mock-llm.test",
        &format!("say ok {}", "word ".repeat(2000)),
        &[("TZ", "UTC")],
    );
    let rec = markers_of(&sensor, root);
    assert_eq!(rec["request"]["complete"], false, "{rec}");
    assert!(rec["error"].as_str().unwrap_or("").starts_with("incomplete"), "{rec}");
    assert_eq!(marker_list(&rec), [], "{rec}");
    let series = "aiwatch_prompt_requests_total{assistant=\"markers-budget\",outcome=\"incomplete\"}";
    assert_eq!(sensor.metric(series), Some(1.0), "{series}");
}

/// The incident's conditions again, over HTTPS: the request covert.js writes through the OpenSSL
/// inside Node, and the one covert.py writes through the system's libssl, are seen at
/// `SSL_write` and scanned (`transport: tls_openssl`), with the same markers at the same paths
/// as over plain HTTP; the destination is the connection the request's Host names. Nothing of
/// the text, the planted secret or the key appears anywhere.
#[test]
fn covert_markers_in_https_requests_through_openssl_are_found_exactly() {
    // curl is no runtime whose argv is classified: it is an assistant by its name, in this
    // test's daemon only (no other test of this file runs curl).
    let curl = "[[assistants]]\nname = \"markers-tls-curl\"\nexe = [\"curl\"]\n";
    let sensor = Sensor::start(&format!("{}{curl}", config("markers-tls")));
    let prompt = format!("say ok {SECRET}");
    let env = [("TZ", "Asia/Shanghai"), ("HTTPS_PROXY", "http://proxy.corp.example:3128")];
    for client in [Client::NodeHttps, Client::PythonHttps, Client::CurlHttps] {
        let root = run_client(client, "markers-tls", "dashscope.aliyuncs.com", &prompt, &env);
        let rec = markers_of(&sensor, root);
        assert_eq!(rec["request"]["transport"], "tls_openssl", "{client:?}: {rec}");
        assert_eq!(rec["request"]["path"], "/v1/messages", "{client:?}: {rec}");
        assert_eq!(rec["request"]["complete"], true, "{client:?}: {rec}");
        assert_eq!(rec["destination"]["host"], "dashscope.aliyuncs.com", "{client:?}: {rec}");
        assert_eq!(rec["destination"]["port"], 8443, "{client:?}: {rec}");
        assert_eq!(rec["destination_class"], "llm_api", "{client:?}: {rec}");
        let sys = vec!["$.system".to_string()];
        assert_eq!(
            marker_list(&rec),
            [
                ("quote_lookalike".to_string(), "U+2019".to_string(), sys.clone()),
                ("invisible".to_string(), "U+200B".to_string(), sys.clone()),
            ],
            "{client:?}: {rec}"
        );
        assert_eq!(dates_of(&rec), ["YYYY/MM/DD"], "{client:?}: {rec}");
        // One request, one record: a write OpenSSL did not take (the handshake still under
        // way) is repeated by the caller, and must not count twice.
        let n = sensor
            .records()
            .iter()
            .filter(|r| r["type"] == "prompt_markers" && r["session"]["root_pid"] == root)
            .count();
        assert_eq!(n, 1, "{client:?}: {n} records for one request");
    }
    assert_nothing_leaked(&sensor);
}

/// Ordinary conditions over HTTPS, with multilingual text: no marker, an ISO date.
#[test]
fn an_ordinary_https_request_has_no_markers() {
    let sensor = Sensor::start(&config("markers-tls-clean"));
    let prompt = format!("say ok. Résumé über naïve Straße. 日本語の文章です。Обычный текст. {SECRET}");
    for client in [Client::NodeHttps, Client::PythonHttps] {
        let root = run_client(client, "markers-tls-clean", "api.mock-llm.test", &prompt, &[("TZ", "UTC")]);
        let rec = markers_of(&sensor, root);
        assert_eq!(rec["request"]["transport"], "tls_openssl", "{client:?}: {rec}");
        assert_eq!(rec["request"]["complete"], true, "{client:?}: {rec}");
        assert_eq!(marker_list(&rec), [], "{client:?}: {rec}");
        assert_eq!(dates_of(&rec), ["YYYY-MM-DD"], "{client:?}: {rec}");
    }
    assert_nothing_leaked(&sensor);
}

/// A prompt above 100 KiB over HTTPS: Python hands OpenSSL the body in one `SSL_write_ex`
/// (14 chunks of the copy, more than one call of the kernel's copier, which tail-calls itself
/// every few chunks) and is reassembled whole; so is Node's.
#[test]
fn a_large_https_request_is_copied_whole() {
    let sensor = Sensor::start(&config("markers-tls-large"));
    let prompt = large_prompt();
    for client in [Client::PythonHttps, Client::NodeHttps] {
        let root = run_client(client, "markers-tls-large", "api.mock-llm.test", &prompt, &[("TZ", "UTC")]);
        let rec = markers_of(&sensor, root);
        assert_eq!(rec["request"]["transport"], "tls_openssl", "{client:?}: {rec}");
        assert_eq!(rec["request"]["complete"], true, "{client:?}: {rec}");
        assert!(rec["request"]["scanned_bytes"].as_u64().unwrap() > 100 * 1024, "{client:?}: {rec}");
        assert_eq!(marker_list(&rec), [], "{client:?}: {rec}");
        assert_eq!(dates_of(&rec), ["YYYY-MM-DD"], "{client:?}: {rec}");
    }
    assert_nothing_leaked(&sensor);
}

/// The built-in rule `prompt_marker_anomaly`: the covert assistant runs twice as separate
/// sessions, once under UTC (its usual `YYYY-MM-DD`, learned) and once under Asia/Shanghai,
/// where after reading the timezone it writes `YYYY/MM/DD` at the same path. The second session
/// has a finding naming both formats and the read; the first has none. (The learning period is
/// one session here; three by default.)
#[test]
fn a_date_format_changed_after_a_timezone_read_is_a_finding_for_that_session_only() {
    let tag = "markers-rule";
    let rule = "[detection.prompt_rule]\nlearning_sessions = 1\nusual_sessions = 1\n";
    let sensor = Sensor::start(&format!("{}{rule}", config(tag)));
    let clean = run_covert(tag, "api.mock-llm.test", &format!("say ok {SECRET}"), &[("TZ", "UTC")]);
    assert_eq!(dates_of(&markers_of(&sensor, clean)), ["YYYY-MM-DD"]);
    let shanghai =
        run_covert(tag, "api.mock-llm.test", &format!("say ok {SECRET}"), &[("TZ", "Asia/Shanghai")]);
    let f = sensor.wait_for("prompt finding", |r| {
        r["type"] == "finding"
            && r["finding"]["rule"] == "prompt_marker_anomaly"
            && r["session"]["root_pid"] == shanghai
    });
    let finding = &f["finding"];
    assert_eq!(finding["severity"], "high", "{f}");
    assert_eq!(
        finding["date_changes"],
        serde_json::json!([{ "path": "$.system", "before": ["YYYY-MM-DD"], "after": "YYYY/MM/DD",
                             "compared_with": "assistant_version" }]),
        "{f}"
    );
    // covert.js reads the zone file before it writes (a file read: always seen), and TZ and
    // ANTHROPIC_BASE_URL (getenv: seen once the session's uprobes are attached, which under
    // load can be after node's start-up reads); the evidence lists the reads.
    let categories = finding["categories"].as_array().expect("categories");
    assert!(categories.iter().any(|c| c == "timezone"), "{f}");
    assert!(categories.iter().all(|c| c == "timezone" || c == "base_url"), "{f}");
    let evidence = finding["evidence"].as_array().expect("evidence");
    assert!(
        evidence.iter().any(|e| e["category"] == "timezone"
            && e["artifact"].as_str().is_some_and(|a| a.contains("zoneinfo/Asia/Shanghai"))),
        "{f}"
    );
    assert!(finding.get("new_markers").is_none(), "{f}");
    let rec = markers_of(&sensor, shanghai);
    assert_eq!(f["connection_id"], rec["connection_id"], "{f}");
    sensor.wait_for("session end", |r| r["type"] == "session_end" && r["session"]["root_pid"] == shanghai);
    let findings: Vec<Value> = sensor.records().into_iter().filter(|r| r["type"] == "finding").collect();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_nothing_leaked(&sensor);
    let series = format!(
        "aiwatch_findings_total{{assistant=\"{tag}\",rule=\"prompt_marker_anomaly\",severity=\"high\"}}"
    );
    assert_eq!(sensor.metric(&series), Some(1.0), "{series}");
}
