//! Real assistants, installed at pinned versions from the npm registry by `cargo xtask setup`
//! (into target/assistants), run non-interactively against a mock LLM API inside a network
//! namespace that has no route out, under the built-in default configuration.

use std::{path::PathBuf, time::Duration};

use integration_tests::{net::*, tls::*, *};
use serde_json::Value;

const MOCK_HOST: &str = "api.mock-llm.test";
const PLANTED_KEY: &str = "sk-ant-api03-PLANTEDkeyPLANTEDkeyPLANTED";

fn assistant_bin(name: &str) -> PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/assistants/node_modules/.bin")
        .join(name);
    assert!(p.exists(), "{} missing: `cargo xtask setup` installs the assistants", p.display());
    p
}

/// Runs `bin -p "say ok"` in a fresh namespace against the mock; returns the root pid and stdout.
fn run_assistant(bin: &std::path::Path, env: &[(&str, String)]) -> (u32, String) {
    run_session(bin, &["-p", "say ok"], env, &[])
}

/// Runs `bin ARGS` in a fresh namespace against the mock, which has the assistant's shell tool
/// run each of `work` in turn; returns the root pid and stdout.
fn run_session(
    bin: &std::path::Path,
    args: &[&str],
    env: &[(&str, String)],
    work: &'static [&'static str],
) -> (u32, String) {
    let ns = Netns::with_hosts("llm", &[MOCK_HOST]);
    let _api = llm_server_with_work(Some(&ns), "127.0.0.1:8080", work);
    run_in(&ns, bin, args, env)
}

/// Runs `bin -p "say ok"` against the mock over HTTPS (`https://MOCK_HOST:8443`, a CA of the
/// test's own, trusted through `NODE_EXTRA_CA_CERTS`); returns the root pid and stdout.
fn run_over_https(bin: &str) -> (u32, String) {
    let ns = Netns::with_hosts("llms", &[MOCK_HOST]);
    let api = llm_tls_server(Some(&ns), "127.0.0.1:8443", &[MOCK_HOST]);
    let base = format!("https://{MOCK_HOST}:8443");
    let mut env: Vec<(&str, String)> = mock_env(bin)
        .into_iter()
        .map(|(k, v)| if k.ends_with("_BASE_URL") { (k, base.clone()) } else { (k, v) })
        .collect();
    env.push(("NODE_EXTRA_CA_CERTS", api.ca.ca_file.to_string_lossy().into_owned()));
    run_in(&ns, &assistant_bin(bin), &["-p", "say ok"], &env)
}

/// Runs `bin ARGS` in `ns` with a fresh HOME and workspace.
fn run_in(ns: &Netns, bin: &std::path::Path, args: &[&str], env: &[(&str, String)]) -> (u32, String) {
    let home = TempDir::new("home");
    std::fs::create_dir_all(home.path(".gemini")).unwrap();
    std::fs::write(
        home.path(".gemini/settings.json"),
        r#"{"security":{"auth":{"selectedType":"gemini-api-key"}},"telemetry":{"enabled":false},"general":{"disableAutoUpdate":true}}"#,
    )
    .unwrap();
    let out = home.path("stdout");
    let work = workspace(&home);
    let mut cmd = ns.command(bin, args);
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &home.0)
        .env("LANG", "C.UTF-8")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(&work)
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::process::Stdio::null());
    let mut g = spawn_cmd(&mut cmd);
    let pid = g.pid();
    let status = g.wait(Duration::from_secs(120));
    assert!(status.is_some(), "{} did not finish (killed by pid on drop)", bin.display());
    (pid, std::fs::read_to_string(out).unwrap_or_default())
}

/// Where a developer runs an assistant: a git repository with a commit (assistants look at
/// its state at start, through `git` children).
fn workspace(home: &TempDir) -> std::path::PathBuf {
    let work = home.path("project");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("README.md"), "# project\n").unwrap();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["-c", "user.name=dev", "-c", "user.email=dev@example.invalid", "add", "README.md"],
        &["-c", "user.name=dev", "-c", "user.email=dev@example.invalid", "commit", "-q", "-m", "start"],
    ] {
        let ok = std::process::Command::new("git").args(args).current_dir(&work).status();
        assert!(ok.is_ok_and(|s| s.success()), "git {args:?}");
    }
    work
}

fn check_session(sensor: &Sensor, root: u32, assistant: &str, base_url_var: &str, relay_evidence: &[&str]) {
    let start = sensor
        .wait_for("session start", |r| r["type"] == "session_start" && r["session"]["root_pid"] == root);
    assert_eq!(start["session"]["assistant"], assistant, "{start}");
    assert_eq!(start["found_by"], "exec");
    let env = start["environment"].as_array().expect("exec environment");
    let base = env.iter().find(|v| v["name"] == base_url_var).expect("base URL variable listed");
    assert_eq!(base["category"], "base_url");
    assert_eq!(base["value"], format!("http://{MOCK_HOST}:8080"));
    // Egress to the mock host, named, classed as the base URL it was given, and correlated with
    // the session's fingerprint reads before it.
    let open = sensor.wait_for("connection to the mock", |r| {
        r["type"] == "connection_open"
            && r["session"]["root_pid"] == root
            && r["connection"]["host"] == MOCK_HOST
    });
    assert_eq!(open["connection"]["remote_addr"], "127.0.0.1");
    assert_eq!(open["connection"]["remote_port"], 8080);
    assert_eq!(open["fingerprint"]["destination_class"], "base_url");
    assert!(open["fingerprint"]["signals"].as_u64().unwrap() > 0, "no reads correlated: {open}");
    // Its fingerprint reads (files or variables) are reported.
    let reads: Vec<Value> = sensor
        .records()
        .into_iter()
        .filter(|r| {
            (r["type"] == "fingerprint_read" || r["type"] == "env_read") && r["session"]["root_pid"] == root
        })
        .collect();
    assert!(
        reads.iter().any(|r| r["category"] == "network_config"),
        "resolving the mock host reads network config"
    );
    for r in sensor.records() {
        assert!(!r.to_string().contains("PLANTEDkey"), "API key in a record: {r}");
    }
    // Resolving the base URL and naming itself with uname (what every assistant does before each
    // API call) are no relay evidence; what remains is what the assistant itself read of the
    // host's identity: `relay_evidence`, the whole session's findings above informational.
    sensor.wait_for("session end", |r| r["type"] == "session_end" && r["session"]["root_pid"] == root);
    let evidence: Vec<String> = sensor
        .records()
        .into_iter()
        .filter(|r| r["type"] == "finding" && r["session"]["root_pid"] == root)
        .filter(|r| r["finding"]["severity"] != "info")
        .inspect(|r| assert_eq!(r["finding"]["rule"], "relay_identity_then_base_url", "{r}"))
        .flat_map(|r| r["finding"]["evidence"].as_array().cloned().unwrap_or_default())
        .map(|e| e["artifact"].as_str().unwrap_or("?").to_string())
        .collect();
    assert_eq!(evidence, relay_evidence, "{assistant}'s relay evidence");
}

/// The session's request to the model, scanned from its plain-HTTP copy (the mock's base URL is
/// `http:`): complete, no covert marker, and the date formats its text really carries.
fn check_prompt(sensor: &Sensor, root: u32, path_ends: &str, dates: &[&str]) {
    let rec = sensor.wait_for("the model request's markers", |r| {
        r["type"] == "prompt_markers"
            && r["session"]["root_pid"] == root
            && r["request"]["path"].as_str().is_some_and(|p| p.ends_with(path_ends))
    });
    assert_eq!(rec["request"]["transport"], "plain_http", "{rec}");
    assert_eq!(rec["request"]["complete"], true, "{rec}");
    assert_eq!(rec["markers"], serde_json::json!([]), "{rec}");
    let found: Vec<&str> =
        rec["dates"].as_array().unwrap().iter().filter_map(|d| d["format"].as_str()).collect();
    assert_eq!(found, dates, "{rec}");
    assert!(!rec.to_string().contains("PLANTEDkey"), "{rec}");
}

#[test]
fn claude_code_native_binary_end_to_end() {
    let sensor = Sensor::start("");
    let (root, out) = run_assistant(&assistant_bin("claude"), &mock_env("claude"));
    assert!(out.contains("ok"), "claude answered {out:?}");
    // Claude Code reads /etc/machine-id in every session, under a second before its first API
    // call: with a base URL given, that is the relay pattern (docs/runbook.md).
    check_session(&sensor, root, "claude-code", "ANTHROPIC_BASE_URL", &["/etc/machine-id"]);
    // Its request tells the model today's date, written YYYY-MM-DD (issue 17, live markers).
    check_prompt(&sensor, root, "/v1/messages", &["YYYY-MM-DD"]);
}

#[test]
fn gemini_cli_end_to_end() {
    let sensor = Sensor::start("");
    let (root, out) = run_assistant(&assistant_bin("gemini"), &mock_env("gemini"));
    assert!(out.contains("ok"), "gemini answered {out:?}");
    check_session(&sensor, root, "gemini-cli", "GOOGLE_GEMINI_BASE_URL", &[]);
    // Its request carries no date and no marker (issue 17, live markers).
    check_prompt(&sensor, root, ":streamGenerateContent", &[]);
    // Node reads variables through getenv: the base URL read itself is reported.
    sensor.wait_for("getenv of the base URL", |r| {
        r["type"] == "env_read"
            && r["session"]["root_pid"] == root
            && r["variable"] == "GOOGLE_GEMINI_BASE_URL"
    });
}

/// The real assistants against an HTTPS base URL: Gemini CLI runs on Node, whose OpenSSL (inside
/// the NodeSource binary) is probed, so its request is scanned from `SSL_write`
/// (`transport: tls_openssl`): complete, no marker, no date. Claude Code's native binary is
/// Bun-compiled, with BoringSSL inside and no exported `SSL_write`: its request (it answers, so
/// it was sent) is not visible, and no `prompt_markers` record claims otherwise.
#[test]
fn real_assistants_over_https_show_which_transport_makes_requests_visible() {
    let sensor = Sensor::start("");
    let (root, out) = run_over_https("gemini");
    assert!(out.contains("ok"), "gemini answered {out:?}");
    let rec = sensor.wait_for("gemini's model request over TLS", |r| {
        r["type"] == "prompt_markers"
            && r["session"]["root_pid"] == root
            && r["request"]["path"].as_str().is_some_and(|p| p.ends_with(":streamGenerateContent"))
    });
    assert_eq!(rec["request"]["transport"], "tls_openssl", "{rec}");
    assert_eq!(rec["request"]["complete"], true, "{rec}");
    assert_eq!(rec["destination"]["host"], MOCK_HOST, "{rec}");
    assert_eq!(rec["destination"]["port"], 8443, "{rec}");
    assert_eq!(rec["markers"], serde_json::json!([]), "{rec}");
    assert_eq!(rec["dates"], serde_json::json!([]), "{rec}");
    assert!(!rec.to_string().contains("PLANTEDkey"), "{rec}");

    let (root, out) = run_over_https("claude");
    assert!(out.contains("ok"), "claude answered {out:?}");
    sensor.wait_for("claude's connection to the base URL", |r| {
        r["type"] == "connection_open"
            && r["session"]["root_pid"] == root
            && r["connection"]["remote_port"] == 8443
    });
    sensor.wait_for("session end", |r| r["type"] == "session_end" && r["session"]["root_pid"] == root);
    let claimed: Vec<Value> = sensor
        .records()
        .into_iter()
        .filter(|r| r["type"] == "prompt_markers" && r["session"]["root_pid"] == root)
        .collect();
    assert!(claimed.is_empty(), "a Bun/BoringSSL request reported as scanned: {claimed:?}");
}

/// Records of one session of `bin ARGS` at `detail`, with the mock having it run `work`: the
/// number sent, and the session's final rollup.
fn session_volume(
    bin: &str,
    detail: &str,
    args: &[&str],
    env: &[(&str, String)],
    work: &'static [&'static str],
) -> (usize, Value) {
    let sensor = Sensor::start_with("", &["--detail", detail]);
    let (root, out) = run_session(&assistant_bin(bin), args, env, work);
    assert!(out.contains("ok"), "{bin} answered {out:?}");
    let end =
        sensor.wait_for("session end", |r| r["type"] == "session_end" && r["session"]["root_pid"] == root);
    let id = end["session"]["id"].clone();
    let records: Vec<Value> = sensor.records().into_iter().filter(|r| r["session"]["id"] == id).collect();
    let rollup = records
        .iter()
        .find(|r| r["type"] == "session_rollup" && r["final"] == true)
        .expect("final rollup")
        .clone();
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for r in &records {
        *kinds.entry(r["type"].as_str().unwrap_or("?").to_string()).or_default() += 1;
    }
    eprintln!("{bin} at {detail}: {kinds:?}");
    (records.len(), rollup)
}

/// The variables that point `bin` (claude or gemini) at the mock, with the planted key.
fn mock_env(bin: &str) -> Vec<(&'static str, String)> {
    let base = format!("http://{MOCK_HOST}:8080");
    match bin {
        "claude" => vec![("ANTHROPIC_API_KEY", PLANTED_KEY.to_string()), ("ANTHROPIC_BASE_URL", base)],
        _ => vec![
            ("GEMINI_API_KEY", PLANTED_KEY.to_string()),
            ("GOOGLE_GEMINI_BASE_URL", base),
            ("GEMINI_CLI_TRUST_WORKSPACE", "true".to_string()),
        ],
    }
}

/// `output.detail`: records per session of each pinned assistant, every record (`all`) and
/// the default `summary` (figures in docs/events.md, Volume).
#[test]
fn summary_sends_a_fraction_of_the_records_of_real_assistants() {
    for bin in ["claude", "gemini"] {
        let env = mock_env(bin);
        let (all, _) = session_volume(bin, "all", &["-p", "say ok"], &env, &[]);
        let (summary, rollup) = session_volume(bin, "summary", &["-p", "say ok"], &env, &[]);
        let summarized = rollup["records_summarized"].as_u64().unwrap_or(0);
        eprintln!("{bin}: all {all} records, summary {summary} ({summarized} summarized)");
        assert!(summary * 2 <= all, "{bin}: summary {summary} of all {all}");
        assert!(summarized > 0, "{bin}");
    }
}

/// What the mock has an assistant's shell tool run in a working session: look at the
/// repository, the processes, search the tree (what assistants run most).
const WORK: &[&str] = &[
    "git status && git log --oneline -3",
    "ps aux",
    "grep -rn project . ; ls -la",
    "git diff HEAD --stat && date",
    "git log -p -1",
    "ps aux | grep -c node",
];

/// A working session: the mock has each assistant run the commands of `WORK` through its shell
/// tool, one per turn, as a developer's request would. `summary` sends at least 10× fewer
/// records than `all` (the issue's target; figures in docs/events.md, Volume), and its rollup
/// shows the commands did run.
#[test]
fn summary_sends_a_tenth_of_the_records_of_a_working_session() {
    let runs: [(&str, &[&str]); 2] = [
        ("claude", &["-p", "look at this project", "--allowedTools", "Bash"]),
        ("gemini", &["-p", "look at this project", "--yolo"]),
    ];
    for (bin, args) in runs {
        let env = mock_env(bin);
        let (all, _) = session_volume(bin, "all", args, &env, WORK);
        let (summary, rollup) = session_volume(bin, "summary", args, &env, WORK);
        eprintln!("{bin}: all {all} records, summary {summary}");
        // The tools ran: each command's programs are in the rollup, run by the session's
        // descendants as often as `WORK` runs them.
        for (program, runs) in [("/usr/bin/ps", 2), ("/usr/bin/date", 1)] {
            let exec = rollup["artifacts"]
                .as_array()
                .and_then(|a| a.iter().find(|a| a["kind"] == "exec" && a["artifact"] == program))
                .unwrap_or_else(|| panic!("{bin}: no exec of {program} in {rollup}"));
            assert_eq!(exec["count"], runs, "{bin}: {exec}");
        }
        assert!(summary * 10 <= all, "{bin}: summary sent {summary} records, all {all}");
    }
}
