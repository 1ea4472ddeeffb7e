//! The shipped alerting path on real components: aiwatch → Prometheus (deploy/prometheus's rules)
//! → Alertmanager (deploy/alertmanager's route) → a webhook receiver in this test. Needs root
//! (the daemon), `prometheus` and Debian's `prometheus-alertmanager`; run through
//! `cargo xtask test`. Everything listens on 127.0.0.1, and every process started here is killed
//! by PID on drop, also when an assertion fails.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use integration_tests::*;
use serde_json::Value;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(path)
}

/// Debian installs Alertmanager as `prometheus-alertmanager`; upstream calls it `alertmanager`.
fn alertmanager_bin() -> &'static str {
    let on_path = |name: &str| {
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
    };
    ["prometheus-alertmanager", "alertmanager"]
        .into_iter()
        .find(|n| on_path(n))
        .expect("Alertmanager not installed (Debian: apt-get install prometheus-alertmanager)")
}

fn check(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn shipped_alertmanager_config_passes_amtool() {
    let cfg = deploy("alertmanager/alertmanager.yml");
    check(Command::new("amtool").arg("check-config").arg(&cfg));
    // A finding and a health alert both reach the SOC receiver.
    for labels in [
        &["alertname=AiwatchFingerprintFinding", "host=h1", "assistant=claude-code", "team=soc"][..],
        &["alertname=AiwatchDown", "host=h1", "severity=high"],
    ] {
        check(
            Command::new("amtool")
                .args(["config", "routes", "test", "--verify.receivers=soc-webhook"])
                .arg(format!("--config.file={}", cfg.display()))
                .args(labels),
        );
    }
}

/// A webhook receiver: every POSTed JSON body, in arrival order. Stops (and is joined) on drop.
struct Webhook {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Webhook {
    fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind webhook");
        l.set_nonblocking(true).expect("nonblocking");
        let addr = l.local_addr().expect("webhook addr");
        let (bodies, stop) = (Arc::new(Mutex::new(Vec::new())), Arc::new(AtomicBool::new(false)));
        let (b, s) = (bodies.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => serve(c, &b),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self { addr, bodies, stop, thread: Some(thread) }
    }

    fn bodies(&self) -> Vec<Value> {
        self.bodies.lock().expect("bodies").clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP/1.1 request (Alertmanager's client sends a Content-Length), answered 200; a body
/// that is not JSON is kept as a string so the assertions show it.
fn serve(mut c: TcpStream, bodies: &Mutex<Vec<Value>>) {
    let _ = c.set_nonblocking(false);
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let body_at = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..body_at]).to_ascii_lowercase();
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    while buf.len() < body_at + len {
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = &buf[body_at..buf.len().min(body_at + len)];
    let v =
        serde_json::from_slice(body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into()));
    bodies.lock().expect("bodies").push(v);
    let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}

/// `text` with the value of the one line `key: …` replaced by `value` (indentation kept).
fn set_value(text: &str, key: &str, value: &str) -> String {
    let mut found = 0;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let body = l.trim_start();
            let indent = &l[..l.len() - body.len()];
            let (dash, rest) = body.strip_prefix("- ").map_or(("", body), |r| ("- ", r));
            if rest.starts_with(&format!("{key}:")) {
                found += 1;
                format!("{indent}{dash}{key}: {value}")
            } else {
                l.to_string()
            }
        })
        .collect();
    assert_eq!(found, 1, "expected exactly one `{key}:` line in\n{text}");
    lines.join("\n") + "\n"
}

/// The shipped route with only its timings and the receiver's URL changed.
fn alertmanager_config(hook: SocketAddr) -> String {
    let shipped = std::fs::read_to_string(deploy("alertmanager/alertmanager.yml")).expect("shipped route");
    let cfg = set_value(&shipped, "group_wait", "1s");
    let cfg = set_value(&cfg, "group_interval", "1s");
    set_value(&cfg, "url", &format!("http://{hook}/aiwatch"))
}

/// The shipped rules with only their range shortened (5m → 15s), so a finding's alert resolves
/// within the test.
fn short_rules() -> String {
    let shipped = std::fs::read_to_string(deploy("prometheus/aiwatch-rules.yml")).expect("shipped rules");
    assert!(
        shipped.contains("increase(aiwatch_findings_total{severity!=\"info\"}[5m])"),
        "the finding rule's range changed"
    );
    shipped.replace("[5m]", "[15s]")
}

/// Status and body of a GET, or None while nothing answers.
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split(' ').nth(1)?.parse().ok()?;
    Some((status, out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()))
}

fn wait_until(what: &str, secs: u64, logs: &TempDir, ok: impl Fn() -> bool) {
    let end = deadline(Duration::from_secs(secs));
    while !ok() {
        if Instant::now() > end {
            let log = |n: &str| std::fs::read_to_string(logs.path(n)).unwrap_or_default();
            panic!(
                "timed out: {what}\n--- alertmanager log:\n{}\n--- prometheus log:\n{}",
                log("alertmanager.log"),
                log("prometheus.log")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A process whose stderr goes to `dir/<log>`, killed by PID on drop.
fn start_logged(cmd: &mut Command, dir: &TempDir, log: &str) -> Guard {
    let f = std::fs::File::create(dir.path(log)).expect("log file");
    spawn_cmd(cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(f))
}

const RULE: &str = "alerting_identity_then_api";

/// Two assistants and a finding rule of the test's own (host identity, then an LLM API), so what
/// fires does not depend on the built-in rules.
fn sensor_config() -> String {
    format!(
        "[[assistants]]\nname = \"alert-a\"\nexe = [\"aiwatch-alert-a\"]\n\
         [[assistants]]\nname = \"alert-b\"\nexe = [\"aiwatch-alert-b\"]\n\
         [[rules]]\nname = \"{RULE}\"\nseverity = \"high\"\ndescendant_severity = \"medium\"\n\
         groups = [[\"host_identity\"]]\nmin_groups = 1\ndestinations = [\"llm_api\"]\nwindow_seconds = 60\n"
    )
}

/// Reads the host's name, then calls a mock LLM API (a plain HTTP request naming its host).
fn identity_then_api(dir: &TempDir, agent: &Path, api: SocketAddr) -> u32 {
    let req = dir.path("request.http");
    std::fs::write(
        &req,
        "POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    )
    .unwrap();
    run(agent, &["openat=/etc/hostname", &format!("tcp={api},@{}", req.display())])
}

/// Notifications (webhook bodies) for `assistant`'s group with `status`.
fn notices<'a>(bodies: &'a [Value], assistant: &str, status: &str) -> Vec<&'a Value> {
    bodies.iter().filter(|b| b["groupLabels"]["assistant"] == assistant && b["status"] == status).collect()
}

/// Whether a notification carries this test's finding alert for `assistant` in `status`.
fn has_finding(n: &Value, assistant: &str, status: &str) -> bool {
    n["alerts"].as_array().is_some_and(|a| {
        a.iter().any(|x| {
            x["labels"]["alertname"] == "AiwatchFingerprintFinding"
                && x["labels"]["assistant"] == assistant
                && x["labels"]["rule"] == RULE
                && x["status"] == status
        })
    })
}

/// Alertmanager with the shipped route (timings and URL changed), ready; its address.
fn start_alertmanager(dir: &TempDir, hook: SocketAddr) -> (Guard, SocketAddr) {
    std::fs::write(dir.path("alertmanager.yml"), alertmanager_config(hook)).unwrap();
    let am: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let guard = start_logged(
        Command::new(alertmanager_bin())
            .arg(format!("--config.file={}", dir.path("alertmanager.yml").display()))
            .arg(format!("--storage.path={}", dir.path("am-data").display()))
            .arg(format!("--web.listen-address={am}"))
            // No gossip: an empty address turns clustering off (it would listen on all interfaces).
            .arg("--cluster.listen-address="),
        dir,
        "alertmanager.log",
    );
    wait_until("Alertmanager ready", 30, dir, || get(am, "/-/ready").is_some_and(|(s, _)| s == 200));
    (guard, am)
}

/// Prometheus scraping `target` every second with the shortened shipped rules, sending to `am`.
fn start_prometheus(dir: &TempDir, target: SocketAddr, am: SocketAddr) -> (Guard, SocketAddr) {
    std::fs::write(dir.path("rules.yml"), short_rules()).unwrap();
    std::fs::write(
        dir.path("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: [\"{am}\"]\n\
             scrape_configs:\n  - job_name: aiwatch\n    static_configs:\n      - targets: [\"{target}\"]\n",
            dir.path("rules.yml").display(),
        ),
    )
    .unwrap();
    let prom: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let guard = start_logged(
        Command::new("prometheus")
            .arg(format!("--config.file={}", dir.path("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path("prom-data").display()))
            .arg(format!("--web.listen-address={prom}")),
        dir,
        "prometheus.log",
    );
    (guard, prom)
}

#[test]
fn finding_alert_reaches_the_webhook_grouped_per_host_and_assistant_and_resolves() {
    let (dir, hook) = (TempDir::new("alerting"), Webhook::start());
    let (_am, am) = start_alertmanager(&dir, hook.addr);
    let sensor = Sensor::start(&sensor_config());
    let (_prom, prom) = start_prometheus(&dir, sensor.metrics, am);
    // Prometheus holds the zero-valued series of both assistants before anything happens, and
    // has evaluated the rules on them a few times: nothing is sent for a zero.
    let q = format!("/api/v1/query?query=aiwatch_findings_total%7Brule%3D%22{RULE}%22%7D");
    wait_until("first scrapes", 60, &dir, || {
        get(prom, &q).is_some_and(|(_, b)| b.contains("\"alert-a\"") && b.contains("\"alert-b\""))
    });
    std::thread::sleep(Duration::from_secs(4));
    let early: Vec<Value> = hook.bodies().into_iter().filter(|b| b.to_string().contains(RULE)).collect();
    assert!(early.is_empty(), "notified before any finding: {early:?}");

    let api = net::http_server(None, "127.0.0.1:0");
    for (assistant, exe) in [("alert-a", "aiwatch-alert-a"), ("alert-b", "aiwatch-alert-b")] {
        let root = identity_then_api(&dir, &probe_as(&dir, exe), api.addr);
        let f = sensor.wait_for("finding", |r| r["type"] == "finding" && r["session"]["root_pid"] == root);
        assert_eq!(
            (f["finding"]["rule"].as_str(), f["session"]["assistant"].as_str()),
            (Some(RULE), Some(assistant))
        );
    }

    // Firing: one notification group per (host, assistant), each holding only its assistant.
    wait_until("both firing notifications", 60, &dir, || {
        let b = hook.bodies();
        ["alert-a", "alert-b"]
            .iter()
            .all(|a| notices(&b, a, "firing").iter().any(|n| has_finding(n, a, "firing")))
    });
    let bodies = hook.bodies();
    let mut keys = Vec::new();
    for a in ["alert-a", "alert-b"] {
        let n = notices(&bodies, a, "firing").into_iter().find(|n| has_finding(n, a, "firing")).unwrap();
        assert_eq!(n["groupLabels"], serde_json::json!({"host": "127.0.0.1", "assistant": a}), "{n}");
        assert_eq!(n["receiver"], "soc-webhook");
        for alert in n["alerts"].as_array().unwrap() {
            assert_eq!(alert["labels"]["assistant"], a, "another assistant's alert in {a}'s group: {n}");
        }
        let alert = n["alerts"].as_array().unwrap().iter().find(|x| x["labels"]["rule"] == RULE).unwrap();
        assert_eq!(alert["labels"]["host"], "127.0.0.1");
        assert_eq!(alert["labels"]["instance"], sensor.metrics.to_string());
        assert_eq!(alert["labels"]["severity"], "high");
        assert_eq!(alert["labels"]["team"], "soc");
        assert!(alert["annotations"]["summary"].as_str().unwrap().contains(a), "{alert}");
        keys.push(n["groupKey"].as_str().unwrap().to_string());
    }
    assert_ne!(keys[0], keys[1], "two assistants, one group");

    // Resolved once the findings are older than the rule's range.
    wait_until("both resolved notifications", 90, &dir, || {
        let b = hook.bodies();
        ["alert-a", "alert-b"]
            .iter()
            .all(|a| notices(&b, a, "resolved").iter().any(|n| has_finding(n, a, "resolved")))
    });
    for a in ["alert-a", "alert-b"] {
        let b = hook.bodies();
        let n =
            notices(&b, a, "resolved").into_iter().find(|n| has_finding(n, a, "resolved")).unwrap().clone();
        let alert = n["alerts"].as_array().unwrap().iter().find(|x| x["labels"]["rule"] == RULE).unwrap();
        assert!(alert["endsAt"].as_str().is_some_and(|t| !t.starts_with("0001")), "{alert}");
    }
}
