//! Outbound connections of tracked sessions, named as an analyst would. Needs root; run
//! through `cargo xtask test`. Every server is on loopback or in the test's own namespace.

use std::{net::Ipv4Addr, time::Duration};

use integration_tests::{net::*, *};
use serde_json::Value;

fn conn(r: &Value) -> &Value {
    &r["connection"]
}

/// The open and close records of the connection `pred` picks, by session root `root`.
fn connection(sensor: &Sensor, root: u32, what: &str, pred: impl Fn(&Value) -> bool) -> (Value, Value) {
    let open = sensor.wait_for(what, |r| {
        r["type"] == "connection_open" && r["session"]["root_pid"] == root && pred(conn(r))
    });
    let id = conn(&open)["id"].clone();
    let close = sensor.wait_for("its close", |r| r["type"] == "connection_close" && conn(r)["id"] == id);
    (open, close)
}

#[test]
fn tls_connection_is_named_by_its_sni_with_bytes_and_duration() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("tls"));
    let (_tls, addr) = tls_server(&dir);
    let agent = probe_as(&dir, AGENT);
    let curl = format!(
        "sh=curl -sk --resolve api.anthropic.com:{p}:127.0.0.1 https://api.anthropic.com:{p}/ -o /dev/null",
        p = addr.port()
    );
    let root = run(&agent, &[&curl]);
    let (open, close) = connection(&sensor, root, "TLS connection", |c| c["remote_port"] == addr.port());
    let c = conn(&open);
    assert_eq!(c["host"], "api.anthropic.com", "{open}");
    assert_eq!(c["host_source"], "tls_sni");
    assert_eq!(c["tls_sni"], "api.anthropic.com");
    assert_eq!(c["remote_addr"], "127.0.0.1");
    assert_eq!(c["protocol"], "tcp");
    assert_eq!(c["proxy"], false);
    assert_eq!(c["result"], "established");
    assert!(c["local_port"].as_u64().is_some_and(|p| p > 0), "{open}");
    assert_eq!(open["reader"], "descendant");
    assert_eq!(open["process"]["comm"], "curl");
    let c = conn(&close);
    assert!(c["bytes_sent"].as_u64().unwrap() > 200, "{close}");
    assert!(c["bytes_received"].as_u64().unwrap() > 200, "{close}");
    assert!(c["duration_ms"].is_u64());
}

#[test]
fn large_client_hello_with_late_sni_is_named() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("pq"));
    let sink = sink_server(None, "127.0.0.1:0");
    let hello = aiwatch::detect::parsers::tls::build_client_hello("pq.example-relay.com", 2600, 16384);
    assert!(hello.len() > 2600);
    let file = dir.path("hello.bin");
    std::fs::write(&file, &hello).unwrap();
    let agent = probe_as(&dir, AGENT);
    let root = run(&agent, &[&format!("tcp={},@{}", sink.addr, file.display())]);
    let (open, close) = connection(&sensor, root, "PQ-sized hello", |c| c["remote_port"] == sink.addr.port());
    assert_eq!(conn(&open)["host"], "pq.example-relay.com", "{open}");
    assert_eq!(conn(&open)["host_source"], "tls_sni");
    assert_eq!(open["reader"], "assistant");
    assert_eq!(conn(&close)["bytes_sent"], hello.len());
    assert_eq!(conn(&close)["bytes_received"], 2);
}

#[test]
fn proxy_connect_target_is_the_host_and_the_proxy_is_marked() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("proxy"));
    let (_tls, tls) = tls_server(&dir);
    let proxy = connect_proxy(tls);
    let agent = probe_as(&dir, AGENT);
    let curl = format!("sh=curl -sk -x http://{} https://api.openai.com/v1/models -o /dev/null", proxy.addr);
    let root = run(&agent, &[&curl]);
    let (open, _) =
        connection(&sensor, root, "proxied connection", |c| c["remote_port"] == proxy.addr.port());
    let c = conn(&open);
    assert_eq!(c["host"], "api.openai.com", "{open}");
    assert_eq!(c["host_source"], "http_connect");
    assert_eq!(c["proxy"], true);
    assert_eq!(c["tls_sni"], "api.openai.com");
}

#[test]
fn plain_http_is_named_by_its_host_header_and_ipv6_loopback_works() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("http"));
    let v4 = http_server(None, "127.0.0.1:0");
    let v6 = http_server(None, "[::1]:0");
    let agent = probe_as(&dir, AGENT);
    let c4 = format!(
        "sh=curl -s --resolve api.example-relay.test:{p}:127.0.0.1 http://api.example-relay.test:{p}/v1/messages -o /dev/null",
        p = v4.addr.port()
    );
    let c6 =
        format!("sh=curl -s -H 'Host: relay6.example.test' http://[::1]:{}/ -o /dev/null", v6.addr.port());
    let root = run(&agent, &[&c4, &c6]);
    let (open, close) = connection(&sensor, root, "HTTP v4", |c| c["remote_port"] == v4.addr.port());
    assert_eq!(conn(&open)["host"], "api.example-relay.test", "{open}");
    assert_eq!(conn(&open)["host_source"], "http_host");
    assert_eq!(conn(&open)["proxy"], false);
    assert!(conn(&close)["bytes_received"].as_u64().unwrap() > 0);
    let (open, _) = connection(&sensor, root, "HTTP v6", |c| c["remote_port"] == v6.addr.port());
    assert_eq!(conn(&open)["remote_addr"], "::1", "{open}");
    assert_eq!(conn(&open)["host"], "relay6.example.test");
}

#[test]
fn name_resolved_through_dns_names_the_connection() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("dns"));
    let ns = Netns::new("dns");
    let _dns = dns_server(&ns, &[("api.example-relay.test", Ipv4Addr::LOCALHOST)]);
    let sink = sink_server(Some(&ns), "127.0.0.1:0");
    let agent = probe_as(&dir, AGENT);
    let target = format!("tcp=api.example-relay.test:{},hello", sink.addr.port());
    let mut g = spawn_cmd(&mut ns.command(&agent, &[&target]));
    let root = g.pid();
    assert!(g.wait(Duration::from_secs(30)).is_some_and(|s| s.success()));
    let lookup =
        sensor.wait_for("DNS answer", |r| r["type"] == "dns_lookup" && r["session"]["root_pid"] == root);
    assert_eq!(lookup["dns"]["name"], "api.example-relay.test", "{lookup}");
    assert_eq!(lookup["dns"]["answers"][0], "127.0.0.1");
    assert_eq!(lookup["dns"]["resolver"], "127.0.0.1");
    let (open, close) =
        connection(&sensor, root, "resolved connection", |c| c["remote_port"] == sink.addr.port());
    assert_eq!(conn(&open)["host"], "api.example-relay.test", "{open}");
    assert_eq!(conn(&open)["host_source"], "dns");
    assert_eq!(conn(&close)["bytes_sent"], 5);
    // The query itself went to the resolver on port 53, over UDP.
    let (q, _) = connection(&sensor, root, "DNS query", |c| c["remote_port"] == 53);
    assert_eq!(conn(&q)["protocol"], "udp");
}

#[test]
fn refused_connection_is_reported_failed() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("refused"));
    let port = free_port();
    let agent = probe_as(&dir, AGENT);
    let root = run(&agent, &[&format!("tcp=127.0.0.1:{port},x")]);
    let (open, close) = connection(&sensor, root, "refused", |c| c["remote_port"] == port);
    assert_eq!(conn(&open)["result"], "failed", "{open}");
    assert_eq!(conn(&open)["error"], "ECONNREFUSED");
    assert_eq!(conn(&close)["bytes_sent"], 0);
}

#[test]
fn untracked_process_connecting_produces_nothing() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("untracked"));
    let sink = sink_server(None, "127.0.0.1:0");
    let plain = probe_as(&dir, "plain-program");
    let agent = probe_as(&dir, AGENT);
    let target = format!("tcp={},hello", sink.addr);
    let untracked = run(&plain, &[&target]);
    let tracked = run(&agent, &[&target]);
    connection(&sensor, tracked, "tracked connection", |c| c["remote_port"] == sink.addr.port());
    std::thread::sleep(Duration::from_millis(200));
    let leaked: Vec<Value> =
        sensor.records().into_iter().filter(|r| r["process"]["pid"] == untracked).collect();
    assert!(leaked.is_empty(), "{leaked:?}");
}
