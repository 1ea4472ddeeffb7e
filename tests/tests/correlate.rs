//! Correlation and SOC outputs: findings in both formats, severities, the file sink, and the
//! shipped alert rules proven on a real Prometheus. Needs root; run through `cargo xtask test`.

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use integration_tests::{net::*, *};
use serde_json::Value;

/// A mock LLM API call: a plain HTTP request naming the API host.
fn api_call(dir: &TempDir, addr: std::net::SocketAddr) -> String {
    let req = dir.path("request.http");
    std::fs::write(
        &req,
        "POST /v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
    )
    .unwrap();
    format!("tcp={addr},@{}", req.display())
}

/// A call to a gateway the session was given as its base URL: the request names a host that is
/// no LLM API's, so only the base URL makes it `base_url`.
fn gateway_call(dir: &TempDir, addr: std::net::SocketAddr) -> String {
    let req = dir.path("gateway.http");
    std::fs::write(&req, "POST /v1/messages HTTP/1.1\r\nHost: gateway.test\r\nContent-Length: 2\r\n\r\n{}")
        .unwrap();
    format!("tcp={addr},@{}", req.display())
}

/// Runs `agent` with `actions`, given `ANTHROPIC_BASE_URL=http://BASE`; returns its pid.
fn run_given(agent: &Path, base: std::net::SocketAddr, actions: &[&str]) -> u32 {
    let mut cmd = Command::new(agent);
    cmd.args(actions)
        .env("ANTHROPIC_BASE_URL", format!("http://{base}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut g = spawn_cmd(&mut cmd);
    assert!(g.wait(Duration::from_secs(60)).expect("test program finished").success());
    g.pid()
}

const RELAY: &str = "relay_identity_then_base_url";

fn findings(records: &[Value], root: u32) -> Vec<Value> {
    records.iter().filter(|r| r["type"] == "finding" && r["session"]["root_pid"] == root).cloned().collect()
}

/// The incident's pattern: the assistant itself reads the host name, then calls the gateway it
/// was given as its base URL. One high finding of the relay rule, in both formats.
#[test]
fn identity_read_then_the_given_base_url_is_exactly_one_relay_finding_in_both_formats() {
    let native = Sensor::start(AGENT_CONFIG);
    let ocsf = Sensor::start_with(AGENT_CONFIG, &["--schema", "ocsf"]);
    let dir = TempDir::new("finding");
    let api = http_server(None, "127.0.0.1:0");
    let agent = probe_as(&dir, AGENT);
    let call = gateway_call(&dir, api.addr);
    let actions: [&str; 5] =
        ["openat=/etc/localtime", "access=/etc/environment", "openat=/etc/hostname", &call, &call];
    let root = run_given(&agent, api.addr, &actions);

    let f = native.wait_for("finding", |r| r["type"] == "finding" && r["session"]["root_pid"] == root);
    // The second call of the same session is the same finding: wait for its connection, then count.
    native.wait_n(2, "both calls", |r| r["type"] == "connection_close" && r["session"]["root_pid"] == root);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(findings(&native.records(), root).len(), 1, "exactly one finding");
    assert_eq!(f["finding"]["rule"], RELAY);
    assert_eq!(f["finding"]["severity"], "high");
    assert_eq!(f["finding"]["by_assistant"], true);
    assert_eq!(f["finding"]["destination_class"], "base_url");
    // Only the identity read is the relay's evidence; the zone and the environment are ordinary.
    assert_eq!(f["finding"]["categories"], serde_json::json!(["host_identity"]));
    assert_eq!(f["destination"]["port"], api.addr.port());
    assert_eq!(f["reader"], "assistant");
    assert_eq!(f["session"]["assistant"], "test-agent");
    let evidence: Vec<&str> = f["finding"]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["artifact"].as_str().unwrap())
        .collect();
    assert_eq!(evidence, ["/etc/hostname"]);
    assert!(f["finding"]["evidence"][0]["ms_before_egress"].is_u64());
    // The connection is annotated with the reads before it.
    let open = native.wait_for("annotated connection", |r| {
        r["type"] == "connection_open" && r["session"]["root_pid"] == root
    });
    assert_eq!(open["fingerprint"]["destination_class"], "base_url");
    assert_eq!(
        open["fingerprint"]["categories"],
        serde_json::json!(["host_identity", "proxy_config", "timezone"])
    );

    // OCSF: one Detection Finding, and the activity classes for the rest.
    let of = ocsf.wait_for("OCSF finding", |r| {
        r["class_uid"] == 2004
            && r["actor"]["session"]["uid"].is_string()
            && r["actor"]["process"]["pid"] == root
    });
    ocsf.wait_n(2, "both OCSF closes", |r| {
        r["class_uid"] == 4001 && r["activity_id"] == 2 && r["actor"]["process"]["pid"] == root
    });
    std::thread::sleep(Duration::from_millis(200));
    let all = ocsf.records();
    assert_eq!(
        all.iter().filter(|r| r["class_uid"] == 2004 && r["actor"]["process"]["pid"] == root).count(),
        1
    );
    assert_eq!(of["type_uid"], 200401);
    assert_eq!(of["severity_id"], 4);
    assert_eq!(of["finding_info"]["title"], RELAY);
    assert_eq!(of["finding_info"]["analytic"]["uid"], RELAY);
    assert_eq!(of["unmapped"]["aiwatch"]["rule"], RELAY, "{of}");
    assert_eq!(of["metadata"]["version"], "1.3.0");
    assert!(of["evidences"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["dst_endpoint"]["hostname"] == "gateway.test"));
    assert!(all
        .iter()
        .any(|r| r["class_uid"] == 1001 && r["file"]["path"] == "/etc/localtime" && r["activity_id"] == 14));
    assert!(all
        .iter()
        .any(|r| r["class_uid"] == 1007 && r["activity_id"] == 1 && r["process"]["pid"] == root));
    assert!(all.iter().any(|r| r["class_uid"] == 4001 && r["dst_endpoint"]["hostname"] == "gateway.test"));
    for r in &all {
        assert!(r["time"].as_u64().is_some_and(|t| t > 1_700_000_000_000), "{r}");
        assert_eq!(
            r["type_uid"],
            r["class_uid"].as_u64().unwrap() * 100 + r["activity_id"].as_u64().unwrap()
        );
    }
}

#[test]
fn repeated_reads_of_one_file_do_not_hide_the_other_categories() {
    // The machine id, then 600 stats of the routing table (more than the session keeps signals for),
    // then the call to the given gateway: both categories are still in the relay finding.
    let sensor = Sensor::start(AGENT_CONFIG);
    let dir = TempDir::new("repeat");
    let api = http_server(None, "127.0.0.1:0");
    let agent = probe_as(&dir, AGENT);
    let call = gateway_call(&dir, api.addr);
    let mut actions = vec!["openat=/etc/localtime", "openat=/etc/machine-id"];
    actions.extend(std::iter::repeat_n("stat=/proc/net/route", 600));
    actions.push(&call);
    let root = run_given(&agent, api.addr, &actions);
    let f = sensor.wait_for("finding", |r| r["type"] == "finding" && r["session"]["root_pid"] == root);
    assert_eq!(f["finding"]["rule"], RELAY);
    assert_eq!(f["finding"]["categories"], serde_json::json!(["host_identity", "network_config"]), "{f}");
}

#[test]
fn a_session_that_only_connects_has_no_finding() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("connect-only"));
    let api = http_server(None, "127.0.0.1:0");
    let agent = probe_as(&dir, AGENT);
    let root = run(&agent, &[&api_call(&dir, api.addr)]);
    let open =
        sensor.wait_for("connection", |r| r["type"] == "connection_open" && r["session"]["root_pid"] == root);
    assert_eq!(open["fingerprint"]["destination_class"], "llm_api");
    assert_eq!(open["fingerprint"]["signals"], 0);
    sensor.wait_for("session end", |r| r["type"] == "session_end" && r["session"]["root_pid"] == root);
    assert!(findings(&sensor.records(), root).is_empty());
}

/// Identity reads by a tool the assistant ran (its child), then the given gateway: no relay
/// finding; the same reads by the assistant itself are the high one.
#[test]
fn reads_by_descendants_only_are_no_relay() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("descendant"));
    let api = http_server(None, "127.0.0.1:0");
    let agent = probe_as(&dir, AGENT);
    let call = gateway_call(&dir, api.addr);
    let child = run_given(&agent, api.addr, &["child=openat=/etc/machine-id;openat=/etc/resolv.conf", &call]);
    let own = run_given(&agent, api.addr, &["openat=/etc/machine-id", "openat=/etc/resolv.conf", &call]);
    let f = sensor.wait_for("finding", |r| r["type"] == "finding" && r["session"]["root_pid"] == own);
    assert_eq!((&f["finding"]["rule"], &f["finding"]["severity"]), (&RELAY.into(), &"high".into()));
    assert_eq!(f["finding"]["groups"], serde_json::json!(["host_identity"]));
    let open = sensor
        .wait_for("connection", |r| r["type"] == "connection_open" && r["session"]["root_pid"] == child);
    assert_eq!(open["fingerprint"]["categories"], serde_json::json!(["host_identity", "network_config"]));
    sensor.wait_for("session end", |r| r["type"] == "session_end" && r["session"]["root_pid"] == child);
    assert!(findings(&sensor.records(), child).is_empty());
}

/// A session given an IP-literal base URL (`http://127.0.0.1:PORT`, as for a local gateway)
/// that reads the zone file and the machine id and then calls exactly that address and port is
/// a finding, though no name says so (the request names an unknown host); a call to another
/// port of the same address is not the base URL.
#[test]
fn an_ip_literal_base_url_is_matched_by_address_and_port() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("ip-base-url"));
    let gateway = http_server(None, "127.0.0.1:0");
    let elsewhere = http_server(None, "127.0.0.1:0");
    let req = dir.path("gateway.http");
    std::fs::write(
        &req,
        "POST /v1/messages HTTP/1.1\r\nHost: gateway.internal\r\nContent-Length: 2\r\n\r\n{}",
    )
    .unwrap();
    let call = |a: std::net::SocketAddr| format!("tcp={a},@{}", req.display());
    let agent = probe_as(&dir, AGENT);
    let mut cmd = Command::new(&agent);
    cmd.args(["openat=/etc/localtime", "openat=/etc/machine-id", &call(elsewhere.addr), &call(gateway.addr)])
        .env("ANTHROPIC_BASE_URL", format!("http://{}", gateway.addr))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut g = spawn_cmd(&mut cmd);
    assert!(g.wait(Duration::from_secs(60)).expect("test program finished").success());
    let root = g.pid();

    let f = sensor.wait_for("finding", |r| r["type"] == "finding" && r["session"]["root_pid"] == root);
    assert_eq!(f["finding"]["destination_class"], "base_url", "{f}");
    assert_eq!((&f["finding"]["rule"], &f["finding"]["severity"]), (&RELAY.into(), &"high".into()));
    assert_eq!(f["destination"]["port"], gateway.addr.port(), "{f}");
    let opens = sensor.wait_n(2, "both connections", |r| {
        r["type"] == "connection_open" && r["session"]["root_pid"] == root
    });
    let class_of = |port: u16| {
        let open = opens.iter().find(|r| r["connection"]["remote_port"] == port).expect("connection to port");
        open["fingerprint"]["destination_class"].clone()
    };
    assert_eq!(class_of(elsewhere.addr.port()), "other");
    assert_eq!(class_of(gateway.addr.port()), "base_url");
    assert_eq!(findings(&sensor.records(), root).len(), 1);
}

/// A base URL given by name only (`http://gateway.test:PORT`, resolved without DNS, as through
/// `/etc/hosts`): the connection is classified once its request names the host, so the call
/// completes the finding although the connect itself carried only an address.
#[test]
fn a_name_only_base_url_is_matched_once_the_request_names_it() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("name-base-url"));
    let gateway = http_server(None, "127.0.0.1:0");
    let port = gateway.addr.port();
    let req = dir.path("gateway.http");
    let head =
        format!("POST /v1/messages HTTP/1.1\r\nHost: gateway.test:{port}\r\nContent-Length: 2\r\n\r\n{{}}");
    std::fs::write(&req, head).unwrap();
    let agent = probe_as(&dir, AGENT);
    let call = format!("tcp={},@{}", gateway.addr, req.display());
    let mut cmd = Command::new(&agent);
    cmd.args(["openat=/etc/localtime", "openat=/etc/machine-id", &call])
        .env("ANTHROPIC_BASE_URL", format!("http://gateway.test:{port}/v1"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut g = spawn_cmd(&mut cmd);
    assert!(g.wait(Duration::from_secs(60)).expect("test program finished").success());
    let root = g.pid();

    let f = sensor.wait_for("finding", |r| r["type"] == "finding" && r["session"]["root_pid"] == root);
    assert_eq!(f["finding"]["destination_class"], "base_url", "{f}");
    assert_eq!((&f["finding"]["rule"], &f["finding"]["severity"]), (&RELAY.into(), &"high".into()));
    assert_eq!(f["destination"]["host"], "gateway.test", "{f}");
    let open =
        sensor.wait_for("connection", |r| r["type"] == "connection_open" && r["session"]["root_pid"] == root);
    assert_eq!(open["fingerprint"]["destination_class"], "base_url", "{open}");
}

#[test]
fn file_sink_is_reopened_on_sighup() {
    let dir = TempDir::new("filesink");
    let out = dir.path("events.jsonl");
    let sensor = Sensor::start_with(AGENT_CONFIG, &["--output", out.to_str().unwrap()]);
    let agent = probe_as(&dir, AGENT);
    let wait_file = |path: &Path, pid: u32, kind: &str| {
        let end = deadline(Duration::from_secs(15));
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.lines().any(|l| {
                l.contains(&format!("\"root_pid\":{pid}")) && l.contains(&format!("\"type\":\"{kind}\""))
            }) {
                return text;
            }
            assert!(Instant::now() < end, "no {kind} of {pid} in {}", path.display());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let first = run(&agent, &["openat=/etc/localtime"]);
    // The whole first session (its end comes after its reads, late on a slow kernel) before the rotation.
    wait_file(&out, first, "session_end");
    // logrotate: move the file away, SIGHUP, and the next events go to a new file.
    let rotated = dir.path("events.jsonl.1");
    std::fs::rename(&out, &rotated).unwrap();
    // SAFETY: signalling our own child by PID.
    unsafe { libc::kill(sensor.pid() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(300));
    let second = run(&agent, &["openat=/etc/hostname"]);
    let text = wait_file(&out, second, "fingerprint_read");
    assert!(!text.contains(&format!("\"root_pid\":{first},")), "old session's events in the new file");
    assert!(std::fs::read_to_string(&rotated)
        .unwrap()
        .lines()
        .all(|l| serde_json::from_str::<Value>(l).is_ok()));
    assert!(sensor.records().is_empty(), "nothing on stdout when writing to a file");
    let log = sensor.stop();
    assert!(log.contains("output file reopened"), "{log}");
}

#[test]
fn shipped_rules_pass_promtool() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    for args in
        [&["check", "rules", "aiwatch-rules.yml"][..], &["test", "rules", "aiwatch-rules.test.yml"][..]]
    {
        let out = Command::new("promtool").args(args).current_dir(&rules).output().expect("run promtool");
        assert!(
            out.status.success(),
            "promtool {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else { return String::new() };
    let _ = s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes());
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default()
}

#[test]
fn real_prometheus_fires_the_finding_alert() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("prometheus"));
    let rules = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/prometheus/aiwatch-rules.yml")
        .canonicalize()
        .unwrap();
    let port = free_port();
    let cfg = dir.path("prometheus.yml");
    std::fs::write(
        &cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: aiwatch\n    static_configs:\n      - targets: [\"{}\"]\n",
            rules.display(),
            sensor.metrics
        ),
    )
    .unwrap();
    let _prom = spawn_cmd(
        Command::new("prometheus")
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let prom: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let wait = |what: &str, ok: &dyn Fn() -> bool| {
        let end = deadline(Duration::from_secs(90));
        while !ok() {
            assert!(Instant::now() < end, "timed out: {what}");
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    // Prometheus has scraped the zero-valued finding series before anything happens.
    wait("first scrape", &|| {
        http_get(prom, "/api/v1/query?query=aiwatch_findings_total%7Bassistant%3D%22test-agent%22%7D")
            .contains("\"value\"")
    });
    let api = http_server(None, "127.0.0.1:0");
    let agent = probe_as(&dir, AGENT);
    let root = run_given(&agent, api.addr, &["openat=/proc/net/route", &gateway_call(&dir, api.addr)]);
    sensor.wait_for("finding", |r| r["type"] == "finding" && r["session"]["root_pid"] == root);
    wait("AiwatchFingerprintFinding firing", &|| {
        let body = http_get(prom, "/api/v1/alerts");
        let Ok(v) = serde_json::from_str::<Value>(&body) else { return false };
        v["data"]["alerts"].as_array().is_some_and(|a| {
            a.iter().any(|x| {
                x["labels"]["alertname"] == "AiwatchFingerprintFinding"
                    && x["labels"]["assistant"] == "test-agent"
                    && x["labels"]["severity"] == "high"
                    && x["labels"]["rule"] == RELAY
                    && x["state"] == "firing"
            })
        })
    });
}
