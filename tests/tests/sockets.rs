//! Sockets reused or closed in the ways that once hid connections (issue 14, items 7 and 9):
//! connected twice, retried, closed by dup2/close_range/exec, an address unreadable at entry.
//! Needs root; run through `cargo xtask test`. Every server is on loopback.

use std::time::Duration;

use integration_tests::{net::*, *};
use serde_json::Value;

fn conn(r: &Value) -> &Value {
    &r["connection"]
}

fn opens(sensor: &Sensor, root: u32, n: usize, what: &str, port: u16) -> Vec<Value> {
    sensor.wait_n(n, what, |r| {
        r["type"] == "connection_open" && r["session"]["root_pid"] == root && conn(r)["remote_port"] == port
    })
}

#[test]
fn udp_socket_connected_to_two_peers_is_two_connections() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("udp2"));
    let a = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let (pa, pb) = (a.local_addr().unwrap().port(), b.local_addr().unwrap().port());
    let agent = probe_as(&dir, AGENT);
    let root = run(&agent, &[&format!("sock=udp2,127.0.0.1:{pa},127.0.0.1:{pb}")]);
    let first = opens(&sensor, root, 1, "the first peer", pa).remove(0);
    let second = opens(&sensor, root, 1, "the second peer", pb).remove(0);
    assert_eq!(conn(&first)["fd"], conn(&second)["fd"], "one socket: {first} {second}");
    assert_ne!(conn(&first)["id"], conn(&second)["id"]);
    assert_eq!(conn(&second)["protocol"], "udp");
    // The first ends when the socket is connected again, not when it closes.
    sensor.wait_for("the first's close", |r| {
        r["type"] == "connection_close" && conn(r)["id"] == conn(&first)["id"]
    });
}

#[test]
fn tcp_connect_retried_on_one_socket_is_a_new_connection() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("retry"));
    let sink = sink_server(None, "127.0.0.1:0");
    let refused = free_port();
    let agent = probe_as(&dir, AGENT);
    let root = run(&agent, &[&format!("sock=retry,127.0.0.1:{refused},{}", sink.addr)]);
    let failed = opens(&sensor, root, 1, "the refused connect", refused).remove(0);
    assert_eq!(conn(&failed)["result"], "failed", "{failed}");
    let ok = opens(&sensor, root, 1, "the retry", sink.addr.port()).remove(0);
    assert_eq!(conn(&ok)["result"], "established", "{ok}");
    assert_eq!(conn(&ok)["host"], "retried.example");
    assert_eq!(conn(&failed)["fd"], conn(&ok)["fd"]);
    assert_ne!(conn(&failed)["id"], conn(&ok)["id"]);
}

/// The connection's close is reported while the process still runs (it waits for a file).
fn closed_while_running(how: &str) {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new(how));
    let sink = sink_server(None, "127.0.0.1:0");
    let agent = probe_as(&dir, AGENT);
    let wait = dir.path("go");
    let mut g = spawn(&agent, &[&format!("sock={how},{},{}", sink.addr, wait.display())]);
    let root = g.pid();
    let open = opens(&sensor, root, 1, "the connection", sink.addr.port()).remove(0);
    assert_eq!(conn(&open)["host"], "reused.example", "{open}");
    let close = sensor.wait_for(&format!("its close by {how}"), |r| {
        r["type"] == "connection_close" && conn(r)["id"] == conn(&open)["id"]
    });
    assert!(g.0.try_wait().unwrap().is_none(), "{how}: the close came with the exit, not before: {close}");
    std::fs::write(&wait, "").unwrap();
    assert!(g.wait(Duration::from_secs(10)).is_some_and(|s| s.success()));
}

#[test]
fn connection_closed_by_dup2_onto_its_fd_ends_then() {
    closed_while_running("dup2");
}

/// The kernel keeps which fds of a process may be followed sockets (a byte per fd, one for all
/// fds from 63 up), so that close() of a file looks nothing else up: a socket's close must still
/// end its connection, at a low fd and past the per-fd bytes.
#[test]
fn connection_closed_by_close_ends_then() {
    closed_while_running("close");
}

#[test]
fn connection_closed_by_close_at_a_high_fd_ends_then() {
    closed_while_running("close_high");
}

#[test]
fn connection_closed_by_close_range_ends_then() {
    closed_while_running("close_range");
}

#[test]
fn close_on_exec_connection_ends_at_exec() {
    closed_while_running("exec");
}

#[test]
fn connect_address_unreadable_at_entry_is_read_at_exit() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("unfaulted"));
    let sink = sink_server(None, "127.0.0.1:0");
    let agent = probe_as(&dir, AGENT);
    let root = run(&agent, &[&format!("sock=unfaulted,{}", sink.addr)]);
    let open = opens(&sensor, root, 1, "the connection", sink.addr.port()).remove(0);
    assert_eq!(conn(&open)["host"], "unfaulted.example", "{open}");
    assert_eq!(conn(&open)["remote_addr"], "127.0.0.1");
}

#[test]
fn connect_address_unreadable_even_at_exit_is_counted() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("badaddr"));
    let series = r#"aiwatch_kernel_events_total{outcome="read_failed"}"#;
    let before = sensor.metric(series).unwrap_or(0.0);
    let agent = probe_as(&dir, AGENT);
    run(&agent, &["sock=badaddr", "sock=badaddr"]);
    let end = std::time::Instant::now() + Duration::from_secs(5);
    let mut after = before;
    while after < before + 2.0 && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(200));
        after = sensor.metric(series).unwrap_or(0.0);
    }
    assert!(after >= before + 2.0, "read_failed {before} -> {after}");
}

#[test]
fn unconnected_udp_datagrams_are_one_connection_per_destination() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("sendto"));
    let peers: Vec<std::net::UdpSocket> =
        (0..3).map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
    let ports: Vec<u16> = peers.iter().map(|p| p.local_addr().unwrap().port()).collect();
    let agent = probe_as(&dir, AGENT);
    let action = format!("sock=sendto,127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}", ports[0], ports[1], ports[2]);
    let root = run(&agent, &[&action]);
    // Five datagrams to the first peer, then one to each other: the later peers are reported.
    for (i, port) in ports.iter().enumerate() {
        let open = opens(&sensor, root, 1, &format!("peer {i}"), *port).remove(0);
        assert_eq!(conn(&open)["protocol"], "udp", "{open}");
    }
}

#[test]
fn a_fake_port_53_address_on_a_tcp_socket_does_not_hide_its_sni() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("fake53"));
    let sink = sink_server(None, "127.0.0.1:0");
    let agent = probe_as(&dir, AGENT);
    let root = run(&agent, &[&format!("sock=fake53,{}", sink.addr)]);
    let open = opens(&sensor, root, 1, "the connection", sink.addr.port()).remove(0);
    assert_eq!(conn(&open)["tls_sni"], "api.anthropic.com", "{open}");
    assert_eq!(conn(&open)["host_source"], "tls_sni");
}

#[test]
fn socks5_with_a_password_still_yields_the_tunnelled_sni() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("socks5"));
    let (_tls, tls) = tls_server(&dir);
    let proxy = socks5_proxy(tls);
    let agent = probe_as(&dir, AGENT);
    let curl = format!(
        "sh=curl -sk --max-time 10 -x socks5h://user:secretpw@{} https://api.anthropic.com/v1/models -o /dev/null",
        proxy.addr
    );
    let root = run(&agent, &[&curl]);
    let open = opens(&sensor, root, 1, "the proxied connection", proxy.addr.port()).remove(0);
    let c = conn(&open);
    assert_eq!(c["host"], "api.anthropic.com", "{open}");
    assert_eq!(c["host_source"], "socks_connect");
    assert_eq!(c["tls_sni"], "api.anthropic.com");
    assert_eq!(c["proxy"], true);
    assert!(!open.to_string().contains("secretpw"), "{open}");
}

#[test]
fn a_connect_head_written_a_header_at_a_time_still_yields_the_tunnelled_sni() {
    let (sensor, dir) = (Sensor::start(AGENT_CONFIG), TempDir::new("headers"));
    let sink = sink_server(None, "127.0.0.1:0");
    let proxy = connect_proxy(sink.addr);
    let agent = probe_as(&dir, AGENT);
    let root = run(&agent, &[&format!("sock=connect_headers,{},12", proxy.addr)]);
    let open = opens(&sensor, root, 1, "the proxied connection", proxy.addr.port()).remove(0);
    let c = conn(&open);
    assert_eq!(c["host"], "api.openai.com", "{open}");
    assert_eq!(c["host_source"], "http_connect");
    assert_eq!(c["tls_sni"], "api.openai.com");
}
