//! `aiwatch audit`: the Node test assistants of tests/assistants/audit run under a reduced plan
//! (few timezones, few hosts, one proxy), isolated, against the audit's own mock API. The covert
//! one must be caught on each factor with the code points named; the well-behaved one must get
//! `no effect` everywhere, twice; bad input must be refused or reported inconclusive.
//!
//! The audit runs without its sensor (`--no-sensor`), except in the one test that checks what the
//! sensor adds (it loads eBPF: run it under the host lock). The assistants
//! run from the source tree, which must be readable by `nobody`, the user the runs take when the
//! audit runs as root.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use integration_tests::*;
use serde_json::Value;

/// Two timezones besides UTC (one the covert assistant encodes, one that crosses midnight from
/// UTC for much of the day), a neutral gateway and one listed host, one proxy.
const PLAN: &str = r#"
[audit]
timeout_seconds = 30
factors = ["timezone", "base_url", "proxy"]
[factors.timezone]
values = ["UTC", "Asia/Tokyo", "Asia/Shanghai"]
[factors.base_url]
values = ["llm-gateway.corp.example", "dashscope.aliyuncs.com"]
[factors.proxy]
values = ["http://proxy.corp.example:3128"]
"#;

/// Planted in the invoking environment: must never reach the assistant or the report.
const PLANTED: &str = "sk-ant-planted-credential-of-the-invoking-user";

/// A test assistant, copied where the run's user (`nobody`) can reach it: the checkout may be
/// under a directory only root can enter (a fresh clone in `mktemp -d`, mode 0700).
/// (The directory is held only to be removed when the run is over.)
struct Staged(#[allow(dead_code)] TempDir, PathBuf);

impl Staged {
    fn to_str(&self) -> Option<&str> {
        self.1.to_str()
    }
}

fn assistant(name: &str) -> Staged {
    use std::os::unix::fs::PermissionsExt as _;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("assistants/audit").join(name);
    let dir = TempDir::new("audit-script");
    let dst = dir.path(name);
    std::fs::copy(&src, &dst).expect("copy the test assistant");
    for (p, mode) in [(&dir.0, 0o755), (&dst, 0o755)] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    Staged(dir, dst)
}

struct Audit {
    code: i32,
    stdout: String,
    stderr: String,
    json: Value,
    markdown: String,
    /// The OCSF Detection Findings, one per line.
    ocsf: Vec<Value>,
}

/// `aiwatch audit --no-sensor --plan PLAN --json … --report … --ocsf … ARGS -- COMMAND`, under a
/// guard that kills it by PID if it outlives `limit`.
fn audit(tag: &str, plan: &str, args: &[&str], command: &[&str], limit: Duration) -> Audit {
    audit_with(tag, plan, args, command, limit, true)
}

fn audit_with(
    tag: &str,
    plan: &str,
    args: &[&str],
    command: &[&str],
    limit: Duration,
    no_sensor: bool,
) -> Audit {
    let dir = TempDir::new(tag);
    std::fs::write(dir.path("plan.toml"), plan).expect("write plan");
    let (json, md, ocsf) = (dir.path("audit.json"), dir.path("audit.md"), dir.path("audit.ocsf"));
    let mut cmd = Command::new(aiwatch_bin());
    cmd.args(["audit", "--quiet", "--plan"])
        .arg(dir.path("plan.toml"))
        .arg("--json")
        .arg(&json)
        .arg("--report")
        .arg(&md)
        .arg("--ocsf")
        .arg(&ocsf)
        .args(args)
        .args(no_sensor.then_some("--no-sensor"))
        .arg("--")
        .args(command)
        .env("ANTHROPIC_API_KEY", PLANTED)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut g = spawn_cmd(&mut cmd);
    let status = g.wait(patience(limit)).expect("the audit finished in time");
    let read = |r: Option<&mut dyn std::io::Read>| {
        let mut s = String::new();
        if let Some(r) = r {
            let _ = r.read_to_string(&mut s);
        }
        s
    };
    let stdout = read(g.0.stdout.as_mut().map(|r| r as &mut dyn std::io::Read));
    let stderr = read(g.0.stderr.as_mut().map(|r| r as &mut dyn std::io::Read));
    let json = std::fs::read_to_string(&json)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let markdown = std::fs::read_to_string(&md).unwrap_or_default();
    let ocsf = std::fs::read_to_string(&ocsf)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("an OCSF line is JSON"))
        .collect();
    Audit { code: status.code().unwrap_or(-1), stdout, stderr, json, markdown, ocsf }
}

fn factor<'a>(a: &'a Audit, name: &str) -> &'a Value {
    a.json["factors"].as_array().and_then(|f| f.iter().find(|f| f["name"] == name)).unwrap_or_else(|| {
        panic!("no factor {name}:\n{}\n{}", a.stdout, a.stderr);
    })
}

/// The code points (`U+…`) named in a factor's findings, as `(removed, inserted)` pairs.
fn code_points(f: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for g in f["groups"].as_array().into_iter().flatten() {
        for h in g["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|d| d["fields"].as_array().into_iter().flatten())
        {
            for c in h["hunks"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|h| h["chars"].as_array().into_iter().flatten())
            {
                let name = |k: &str| {
                    c[k].as_array()
                        .and_then(|a| a.first())
                        .map(|p| {
                            format!(
                                "{} {}",
                                p["code"].as_str().unwrap_or(""),
                                p["name"].as_str().unwrap_or("")
                            )
                        })
                        .unwrap_or_default()
                };
                out.push((name("removed"), name("inserted")));
            }
        }
    }
    out
}

/// Every run called the mock exactly once, and each request arrived at the mock's loopback
/// listener (the assistant printed the mock's answer): nothing left the runs' namespaces.
fn all_requests_at_the_mock(a: &Audit) {
    let runs = a.json["runs"].as_array().expect("runs");
    assert!(!runs.is_empty());
    for r in runs {
        assert_eq!(r["api_calls"], 1, "{r}");
        for q in r["requests"].as_array().expect("requests") {
            assert!(q.as_str().is_some_and(|q| q.contains("[https:443")), "{r}");
        }
        assert!(r["stdout_tail"].as_str().is_some_and(|s| s.ends_with("ok")), "{r}");
    }
}

#[test]
fn covert_assistant_is_caught_on_each_factor_with_the_code_points_named() {
    let a = audit(
        "audit-covert",
        PLAN,
        &[],
        &[assistant("covert.js").to_str().unwrap()],
        Duration::from_secs(120),
    );
    assert_eq!(a.code, 1, "{}\n{}", a.stdout, a.stderr);
    assert_eq!(a.json["verdict"], "host_dependent_content");
    all_requests_at_the_mock(&a);

    let tz = factor(&a, "timezone");
    assert_eq!(tz["verdict"], "host_dependent_content", "{tz}");
    assert_eq!(tz["groups"][0]["values"], serde_json::json!(["Asia/Shanghai"]), "{tz}");
    assert_eq!(tz["kinds"], serde_json::json!(["encoding"]), "{tz}");
    assert!(code_points(tz).contains(&("U+002D HYPHEN-MINUS".into(), "U+002F SOLIDUS".into())), "{tz}");
    assert!(a.stdout.contains("`YYYY-MM-DD` → `YYYY/MM/DD`"), "{}", a.stdout);

    let host = factor(&a, "base_url");
    assert_eq!(host["groups"][0]["values"], serde_json::json!(["dashscope.aliyuncs.com"]), "{host}");
    assert_eq!(host["no_effect"], serde_json::json!(["llm-gateway.corp.example"]), "{host}");
    assert_eq!(
        code_points(host),
        [("U+0027 APOSTROPHE".to_string(), "U+2019 RIGHT SINGLE QUOTATION MARK".to_string())],
        "{host}"
    );

    let proxy = factor(&a, "proxy");
    assert_eq!(proxy["verdict"], "host_dependent_content", "{proxy}");
    assert_eq!(code_points(proxy), [(String::new(), "U+200B ZERO WIDTH SPACE".to_string())], "{proxy}");
    // One Detection Finding per factor with host-dependent content, for the SOC.
    let found: Vec<&str> =
        a.ocsf.iter().filter_map(|f| f["unmapped"]["aiwatch"]["factor"].as_str()).collect();
    assert_eq!(found, ["timezone", "base_url", "proxy"], "{:?}", a.ocsf);
    assert!(a.ocsf.iter().all(|f| f["class_uid"] == 2004 && f["metadata"]["version"] == "1.3.0"));
    for text in [&a.stdout, &a.markdown] {
        assert!(text.contains("U+2019 RIGHT SINGLE QUOTATION MARK where U+0027 APOSTROPHE was"), "{text}");
        assert!(text.contains("U+200B ZERO WIDTH SPACE"), "{text}");
        assert!(!text.contains(PLANTED));
    }
}

#[test]
fn well_behaved_assistant_has_no_effect_on_any_factor_twice() {
    for round in 0..2 {
        let tag = format!("audit-good-{round}");
        let a = audit(
            &tag,
            PLAN,
            &[],
            &[assistant("wellbehaved.js").to_str().unwrap()],
            Duration::from_secs(120),
        );
        assert_eq!(a.code, 0, "round {round}:\n{}\n{}", a.stdout, a.stderr);
        for f in a.json["factors"].as_array().expect("factors") {
            assert_eq!(f["verdict"], "no_effect", "round {round}: {f}");
        }
        all_requests_at_the_mock(&a);
        // Each run saw only loopback, no route, and the audit's dummy key, not the planted one.
        for r in a.json["runs"].as_array().unwrap() {
            let first = r["stdout_tail"].as_str().and_then(|s| s.lines().next()).unwrap_or("");
            assert_eq!(first, r#"{"interfaces":["lo"],"routes":0,"dummyKey":true}"#, "{r}");
        }
        assert!(!a.markdown.contains(PLANTED) && !a.json.to_string().contains(PLANTED));
        assert!(a.ocsf.is_empty(), "{:?}", a.ocsf);
    }
}

#[test]
fn a_command_that_does_not_exist_is_an_error() {
    let a = audit("audit-missing", PLAN, &[], &["/nonexistent/assistant"], Duration::from_secs(30));
    assert_eq!(a.code, 2, "{}\n{}", a.stdout, a.stderr);
    assert!(a.stderr.contains("command not found: /nonexistent/assistant"), "{}", a.stderr);
}

#[test]
fn a_malformed_plan_is_refused_naming_the_key() {
    let bad = "[audit]\ntimeout_seconds = \"soon\"\n";
    let a = audit(
        "audit-badplan",
        bad,
        &[],
        &[assistant("covert.js").to_str().unwrap()],
        Duration::from_secs(30),
    );
    assert_eq!(a.code, 2, "{}\n{}", a.stdout, a.stderr);
    assert!(a.stderr.contains("audit.timeout_seconds"), "{}", a.stderr);
    // The built-in plan, printed, is a valid plan file.
    let out = Command::new(aiwatch_bin()).args(["audit", "--print-plan"]).output().expect("run aiwatch");
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && printed.contains("[factors.timezone]"), "{printed}");
    let a =
        audit("audit-printed", &printed, &["--factor", "nonesuch"], &["/bin/true"], Duration::from_secs(30));
    assert_eq!(a.code, 2, "{}\n{}", a.stdout, a.stderr);
    assert!(a.stderr.contains("nonesuch"), "{}", a.stderr);
}

#[test]
fn a_hanging_assistant_is_killed_with_its_children() {
    let plan = "[audit]\ntimeout_seconds = 3\nfactors = [\"proxy\"]\n[factors.proxy]\nvalues = [\"http://p.example:3128\"]\n";
    let a =
        audit("audit-hang", plan, &[], &[assistant("hang.js").to_str().unwrap()], Duration::from_secs(60));
    assert_eq!(a.code, 3, "{}\n{}", a.stdout, a.stderr);
    for r in a.json["runs"].as_array().expect("runs") {
        assert_eq!(r["status"], "timed_out", "{r}");
        let child: u32 = r["stdout_tail"]
            .as_str()
            .and_then(|s| s.strip_prefix("child "))
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or_else(|| panic!("no child PID: {r}"));
        // Gone, or (PID reused) no longer the assistant's `sleep 1000`.
        let cmdline = std::fs::read(format!("/proc/{child}/cmdline")).unwrap_or_default();
        assert_ne!(cmdline, b"sleep\x001000\x00", "child {child} of a timed-out run still runs");
    }
    assert!(a.stdout.contains("timed out after 3 s"), "{}", a.stdout);
}

#[test]
fn an_assistant_that_never_calls_the_api_is_inconclusive_with_the_reason() {
    let a = audit(
        "audit-silent",
        PLAN,
        &[],
        &[assistant("silent.js").to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert_eq!(a.code, 3, "{}\n{}", a.stdout, a.stderr);
    assert_eq!(a.json["verdict"], "inconclusive");
    for f in a.json["factors"].as_array().expect("factors") {
        assert_eq!(f["verdict"], "inconclusive", "{f}");
    }
    assert!(a.stdout.contains("never called the API: it sent no request at all"), "{}", a.stdout);
}

#[test]
fn with_the_sensor_the_report_says_which_timezone_files_it_read() {
    let a = audit_with(
        "audit-sensor",
        PLAN,
        &["--factor", "timezone"],
        &[assistant("covert.js").to_str().unwrap()],
        Duration::from_secs(180),
        false,
    );
    assert_eq!(a.code, 1, "{}\n{}", a.stdout, a.stderr);
    assert!(a.json["sensor"].as_str().is_some_and(|s| s.starts_with("aiwatch run")), "{}", a.json["sensor"]);
    let tz = factor(&a, "timezone");
    let files: Vec<&str> =
        tz["reads_files"].as_array().expect("reads_files").iter().filter_map(Value::as_str).collect();
    for f in ["/etc/localtime", "/usr/share/zoneinfo/Asia/Shanghai"] {
        assert!(files.contains(&f), "{f} not in {files:?}\n{}\n{}", a.stdout, a.stderr);
    }
    assert!(a.stdout.contains("reads `/etc/localtime`"), "{}", a.stdout);
}
