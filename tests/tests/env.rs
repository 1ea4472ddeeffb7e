//! Environment and network-configuration probing: exec-time environments, getenv reads,
//! /proc environ reads, interface enumeration. Needs root; run through `cargo xtask test`.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use integration_tests::*;
use serde_json::Value;

const SECRET: &str = "hunter2-s3cr3t";

fn proxy_url() -> String {
    format!("http://alice:{SECRET}@proxy.corp.example:3128/")
}

fn env_reads(sensor: &Sensor, pid: u32) -> Vec<Value> {
    sensor.records().into_iter().filter(|r| r["type"] == "env_read" && r["process"]["pid"] == pid).collect()
}

/// Runs `agent` with `actions`, with the planted proxy credentials in its environment. With
/// `gate`, the agent first waits for that file, which is created once the sensor reported the
/// session and its getenv probes are attached (processes forked later inherit them).
fn run_with_proxy(sensor: Option<&Sensor>, agent: &std::path::Path, actions: &[&str]) -> u32 {
    let gate = agent.with_extension("go");
    let wait = format!("waitfile={}", gate.display());
    let actions: Vec<&str> =
        sensor.map(|_| wait.as_str()).into_iter().chain(actions.iter().copied()).collect();
    let mut g = spawn_cmd(
        Command::new(agent)
            .args(&actions)
            .env("HTTPS_PROXY", proxy_url())
            .env("https_proxy", proxy_url())
            .env("ANTHROPIC_API_KEY", format!("sk-ant-api03-{SECRET}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    if let Some(sensor) = sensor {
        let root = g.pid();
        sensor
            .wait_for("session start", |r| r["type"] == "session_start" && r["session"]["root_pid"] == root);
        // The probes are attached on a worker thread, one request per session in the order the
        // sessions started: once as many attaches are done as sessions started, ours is.
        let end = deadline(Duration::from_secs(15));
        loop {
            let text = sensor.scrape();
            let sum = |name: &str| -> f64 {
                text.lines()
                    .filter(|l| {
                        l.strip_prefix(name).is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
                    })
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum()
            };
            let attached =
                sum("aiwatch_getenv_attach_seconds_count") + sum("aiwatch_getenv_attach_errors_total");
            if attached >= sum("aiwatch_sessions_started_total") {
                break;
            }
            assert!(Instant::now() < end, "getenv probes not attached: {attached}\n{text}");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::fs::write(&gate, "").expect("open the gate");
    }
    let status = g.wait(Duration::from_secs(60)).expect("agent finished");
    assert!(status.success(), "{actions:?}: {status}");
    g.pid()
}

#[test]
fn node_variable_reads_timezone_and_interfaces_are_reported() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("node"));
    let script = dir.path("probe.js");
    std::fs::write(
        &script,
        "const a = process.env.HTTPS_PROXY, b = process.env.ANTHROPIC_BASE_URL;\n\
         const tz = Intl.DateTimeFormat().resolvedOptions().timeZone;\n\
         const n = Object.keys(require('os').networkInterfaces()).length;\n\
         console.log(JSON.stringify({ a: !!a, b: !!b, tz, n }));\n",
    )
    .unwrap();
    let agent = probe_as(&dir, AGENT);
    let with_tz = format!("sh=TZ=Asia/Tokyo node {} >/dev/null", script.display());
    let without_tz = format!("sh=env -u TZ node {} >/dev/null", script.display());
    let root = run_with_proxy(Some(&sensor), &agent, &[&with_tz, &without_tz]);
    let nodes: Vec<Value> = sensor.wait_n(2, "node execs", |r| {
        r["type"] == "process_exec" && r["session"]["root_pid"] == root && r["process"]["comm"] == "node"
    });
    let (tz_node, plain_node) = (
        nodes[0]["process"]["pid"].as_u64().unwrap() as u32,
        nodes[1]["process"]["pid"].as_u64().unwrap() as u32,
    );
    // Exec-time environment: watched names, the proxy without its credentials.
    let env = nodes[0]["environment"].as_array().expect("environment listed");
    let proxy = env.iter().find(|v| v["name"] == "HTTPS_PROXY").expect("HTTPS_PROXY listed");
    assert_eq!(proxy["category"], "proxy");
    assert_eq!(proxy["value"], "http://proxy.corp.example:3128");
    assert_eq!(proxy["redacted"], true);
    assert!(env
        .iter()
        .any(|v| v["name"] == "TZ" && v["value"] == "Asia/Tokyo" && v["category"] == "timezone"));
    assert!(!nodes[1]["environment"].as_array().unwrap().iter().any(|v| v["name"] == "TZ"));

    let read = |pid: u32, name: &str| {
        sensor.wait_for(name, |r| {
            r["type"] == "env_read" && r["process"]["pid"] == pid && r["variable"] == name
        })
    };
    for pid in [tz_node, plain_node] {
        let r = read(pid, "HTTPS_PROXY");
        assert_eq!(
            (r["set"].clone(), r["category"].clone()),
            (Value::Bool(true), Value::from("proxy")),
            "{r}"
        );
        assert_eq!(r["reader"], "descendant");
        assert_eq!(r["function"], "getenv");
        let r = read(pid, "ANTHROPIC_BASE_URL");
        assert_eq!(
            (r["set"].clone(), r["category"].clone()),
            (Value::Bool(false), Value::from("base_url")),
            "{r}"
        );
    }
    let tz = read(tz_node, "TZ");
    assert_eq!((tz["set"].clone(), tz["category"].clone()), (Value::Bool(true), Value::from("timezone")));
    assert_eq!(read(plain_node, "TZ")["set"], false);
    // Without TZ, ICU falls back to /etc/localtime: a timezone file read.
    sensor.wait_for("localtime read", |r| {
        r["type"] == "fingerprint_read" && r["process"]["pid"] == plain_node && r["category"] == "timezone"
    });
    // os.networkInterfaces(): netlink link and address dumps; the link dump returns MACs.
    let q = |pid: u32, req: &str| {
        sensor.wait_for(req, |r| {
            r["type"] == "interface_query" && r["process"]["pid"] == pid && r["request"] == req
        })
    };
    let link = q(tz_node, "RTM_GETLINK");
    assert_eq!(link["method"], "netlink");
    assert_eq!(link["dump"], true);
    assert_eq!(link["categories"], serde_json::json!(["network_config", "host_identity"]));
    assert_eq!(q(tz_node, "RTM_GETADDR")["categories"], serde_json::json!(["network_config"]));
    // Each (variable, set) is reported once per process, however often libc re-reads it.
    let reads = env_reads(&sensor, tz_node);
    let mut keys: Vec<String> = reads.iter().map(|r| format!("{}={}", r["variable"], r["set"])).collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "{keys:?}");
}

#[test]
fn c_getenv_and_secure_getenv_right_after_exec_are_reported() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("cget"));
    let agent = probe_as(&dir, AGENT);
    // The child execs and calls getenv as its very first action.
    let pidfile = dir.path("child.pid");
    let child = format!(
        "child=getenv=HTTPS_PROXY|secure_getenv=TZDIR|getenv=LC_ALL|getenv=PATH|pid={}",
        pidfile.display()
    );
    run_with_proxy(Some(&sensor), &agent, &[&child.replace('|', ";")]);
    let child: u32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    let r = sensor.wait_for("getenv", |r| {
        r["type"] == "env_read" && r["process"]["pid"] == child && r["variable"] == "HTTPS_PROXY"
    });
    assert_eq!((r["set"].clone(), r["function"].clone()), (Value::Bool(true), Value::from("getenv")), "{r}");
    let r = sensor.wait_for("secure_getenv", |r| {
        r["type"] == "env_read" && r["process"]["pid"] == child && r["variable"] == "TZDIR"
    });
    // secure_getenv is seen through the getenv it calls: libc's getenv is the one probe a
    // session's processes inherit (each inherited probe costs every fork about 15 µs).
    assert_eq!(r["function"], "getenv", "secure_getenv's read, through the getenv it calls");
    assert_eq!(r["set"], false);
    assert_eq!(r["category"], "timezone");
    sensor.wait_for("LC_ALL", |r| {
        r["type"] == "env_read" && r["process"]["pid"] == child && r["variable"] == "LC_ALL"
    });
    std::thread::sleep(Duration::from_millis(200));
    let reads = env_reads(&sensor, child);
    assert!(!reads.iter().any(|r| r["variable"] == "PATH"), "unwatched variables are not reported");
    assert_eq!(reads.iter().filter(|r| r["variable"] == "TZDIR").count(), 1);
}

/// A variable read over and over is sent once a second at most: the kernel counts the rest
/// (`env_repeated`), and the next read sent carries their number into `aiwatch_env_reads_total`.
/// Whether it was set comes from the environment the process was started with.
#[test]
fn repeated_reads_of_a_variable_are_counted_in_the_kernel_not_sent() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("getenvrep"));
    let agent = probe_as(&dir, AGENT);
    let reads = 20_000;
    let root = run_with_proxy(
        Some(&sensor),
        &agent,
        &[
            &format!("getenvrep=HTTPS_PROXY,{reads}"),
            "getenvrep=TZDIR,3",
            // The kernel keys names of up to 22 bytes apart from longer ones (ENV_SHORT_LEN):
            // the longest short name, the shortest long one, and one far longer.
            &format!("getenvrep={SHORTEST_LONG},3"),
            &format!("getenvrep={LONGEST_SHORT},3"),
            &format!("getenvrep={LONG},3"),
            "sleep=1200",
            "getenv=HTTPS_PROXY",
        ],
    );
    let kernel = |outcome: &str| {
        sensor.metric(&format!("aiwatch_kernel_events_total{{outcome=\"{outcome}\"}}")).unwrap_or(0.0)
    };
    let proxy_reads = || {
        sensor
            .scrape()
            .lines()
            .filter(|l| l.starts_with("aiwatch_env_reads_total{") && l.contains("category=\"proxy\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let end = deadline(Duration::from_secs(10));
    while proxy_reads() < f64::from(reads + 1) {
        assert!(
            Instant::now() < end,
            "{} proxy reads counted of {}:\n{}",
            proxy_reads(),
            reads + 1,
            sensor.scrape()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // All but the first of each name were left in the kernel (a second read of HTTPS_PROXY, a
    // second apart, was sent).
    let repeated = kernel("env_repeated");
    assert!(repeated >= f64::from(reads - 1 + 2 + 3 * 2), "{repeated} repeats counted in the kernel");
    let records = env_reads(&sensor, root);
    let proxy: Vec<&Value> = records.iter().filter(|r| r["variable"] == "HTTPS_PROXY").collect();
    assert_eq!(proxy.len(), 1, "one record per (variable, set): {records:?}");
    assert_eq!(proxy[0]["set"], true, "{}", proxy[0]);
    let tzdir: Vec<&Value> = records.iter().filter(|r| r["variable"] == "TZDIR").collect();
    assert_eq!(tzdir.len(), 1, "{records:?}");
    assert_eq!(tzdir[0]["set"], false, "{}", tzdir[0]);
    for name in [LONGEST_SHORT, SHORTEST_LONG, LONG] {
        let named: Vec<&Value> = records.iter().filter(|r| r["variable"] == name).collect();
        assert_eq!(named.len(), 1, "{name}, whole and once: {records:?}");
        assert_eq!(
            (named[0]["set"].clone(), named[0]["category"].clone()),
            (Value::Bool(false), "base_url".into())
        );
    }
}

/// Watched names (`*_BASE_URL`) around the kernel's short-name limit.
const LONGEST_SHORT: &str = "AIWATCH_TEST1_BASE_URL";
const SHORTEST_LONG: &str = "AIWATCH_TEST23_BASE_URL";
const LONG: &str = "AIWATCH_TEST_A_MUCH_LONGER_NAME_BASE_URL";

#[test]
fn proc_environ_reads_and_interface_ioctls_are_reported() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("environ"));
    let agent = probe_as(&dir, AGENT);
    let other = std::process::id();
    let read_other = format!("openat=/proc/{other}/environ");
    let root = run(&agent, &["openat=/proc/self/environ", &read_other, "ifhwaddr=lo", "ifconf=x"]);
    let own = sensor.wait_for("own environ", |r| {
        r["type"] == "fingerprint_read" && r["process"]["pid"] == root && r["path"] == "/proc/self/environ"
    });
    assert_eq!(own["category"], "environment");
    assert_eq!(own["target_pid"], root);
    let theirs = sensor.wait_for("other environ", |r| {
        r["type"] == "fingerprint_read"
            && r["process"]["pid"] == root
            && r["path"] == read_other.trim_start_matches("openat=")
    });
    assert_eq!(theirs["target_pid"], other);
    let hw = sensor.wait_for("SIOCGIFHWADDR", |r| {
        r["type"] == "interface_query" && r["process"]["pid"] == root && r["request"] == "SIOCGIFHWADDR"
    });
    assert_eq!(hw["method"], "ioctl");
    assert_eq!(hw["interface"], "lo");
    assert_eq!(hw["result"], 0);
    assert_eq!(hw["categories"], serde_json::json!(["network_config", "host_identity"]));
    let conf = sensor.wait_for("SIOCGIFCONF", |r| {
        r["type"] == "interface_query" && r["process"]["pid"] == root && r["request"] == "SIOCGIFCONF"
    });
    assert_eq!(conf["categories"], serde_json::json!(["network_config"]));
}

#[test]
fn planted_secrets_never_appear_in_events_logs_or_metrics() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("secrets"));
    let agent = probe_as(&dir, AGENT);
    let root = run_with_proxy(Some(&sensor), &agent, &["child=getenv=HTTPS_PROXY", "sh=env >/dev/null"]);
    sensor.wait_for("session end", |r| r["type"] == "session_end" && r["session"]["root_pid"] == root);
    let start = sensor
        .wait_for("session start", |r| r["type"] == "session_start" && r["session"]["root_pid"] == root);
    assert!(start["environment"].as_array().unwrap().iter().any(|v| v["name"] == "HTTPS_PROXY"), "{start}");
    let records: Vec<String> = sensor.records().iter().map(Value::to_string).collect();
    assert!(records.len() >= 2, "{records:?}");
    let metrics = sensor.scrape();
    let log = sensor.stop();
    for r in &records {
        assert!(!r.contains(SECRET), "secret in record {r}");
    }
    for (what, text) in [("metrics", metrics), ("log", log)] {
        assert!(!text.contains(SECRET), "secret in {what}");
    }
}

#[test]
fn untracked_processes_reading_variables_produce_nothing() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("untracked-env"));
    let plain = probe_as(&dir, "plain-program");
    let agent = probe_as(&dir, AGENT);
    let actions = [
        "getenv=HTTPS_PROXY",
        "openat=/proc/self/environ",
        "ifhwaddr=lo",
        "sh=node -e 'require(\"os\").networkInterfaces(); process.env.TZ' ",
    ];
    let untracked = run_with_proxy(None, &plain, &actions);
    let tracked = run_with_proxy(Some(&sensor), &agent, &["child=getenv=HTTPS_PROXY;ifhwaddr=lo"]);
    sensor
        .wait_for("tracked ioctl", |r| r["type"] == "interface_query" && r["session"]["root_pid"] == tracked);
    std::thread::sleep(Duration::from_millis(300));
    let leaked: Vec<Value> = sensor
        .records()
        .into_iter()
        .filter(|r| {
            r["session"]["root_pid"] == untracked
                || r["process"]["ppid"] == untracked
                || r["process"]["pid"] == untracked
        })
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
    for r in sensor.records() {
        assert!(!r.to_string().contains(SECRET), "secret in record {r}");
    }
}
