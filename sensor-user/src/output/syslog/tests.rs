//! The sending task against in-process receivers: reconnection with resending, and every
//! record that cannot be delivered counted.

use std::{sync::Arc, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, BufReader},
    net::{TcpListener, TcpStream, UdpSocket},
};

use super::*;
use crate::{
    config::{
        syslog::{Address, AppName, DatagramSize, Facility},
        MapSize,
    },
    output::report::{Body, SessionRef, SCHEMA},
};

fn config(address: String, transport: Transport, queue: u32) -> SyslogConfig {
    SyslogConfig {
        address: Address(address),
        transport,
        format: OutputSchema::Native,
        facility: Facility::Local0,
        app_name: AppName("aiwatch".into()),
        queue: MapSize(queue),
        ca_file: None,
        server_name: None,
        max_datagram: DatagramSize(480),
    }
}

fn record(n: u64, host: &str) -> Arc<Record> {
    Arc::new(Record {
        schema: SCHEMA,
        time: "2026-11-30T16:13:50.123456789Z".into(),
        boot_ns: n,
        host: host.into(),
        body: Body::SessionEnd {
            session: SessionRef { id: format!("s{n}"), assistant: "a".into(), root_pid: 1, uid: 0 },
            duration_ms: n,
        },
    })
}

/// The next octet-counted message's MSG, as the record's `boot_ns`.
async fn next(r: &mut BufReader<TcpStream>) -> u64 {
    let mut len = Vec::new();
    r.read_until(b' ', &mut len).await.unwrap();
    let len: usize = std::str::from_utf8(&len).unwrap().trim().parse().unwrap();
    let mut msg = vec![0; len];
    r.read_exact(&mut msg).await.unwrap();
    let msg = String::from_utf8(msg).unwrap();
    assert!(msg.starts_with("<134>1 2026-11-30T16:13:50.123456Z h aiwatch "), "{msg}");
    let json: serde_json::Value = serde_json::from_str(msg.split_once(" - ").unwrap().1).unwrap();
    json["boot_ns"].as_u64().unwrap()
}

fn dropped(m: &SyslogMetrics, reason: &str) -> u64 {
    m.dropped.with_label_values(&[reason]).get()
}

#[tokio::test]
async fn a_receiver_that_closes_gets_what_it_may_have_lost_again() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let registry = prometheus::Registry::new();
    let (handle, task) = spawn(&config(addr, Transport::Tcp, 16), &registry).unwrap();
    let m = handle.metrics.clone();
    let mut first = BufReader::new(listener.accept().await.unwrap().0);
    handle.send(record(1, "h"));
    assert_eq!(next(&mut first).await, 1);
    // The receiver goes away (as a restarted one does, with 1 perhaps unread); then 2 comes.
    drop(first);
    tokio::time::sleep(Duration::from_millis(100)).await;
    handle.send(record(2, "h"));
    let mut second = BufReader::new(listener.accept().await.unwrap().0);
    assert_eq!(next(&mut second).await, 1, "sent again");
    assert_eq!(next(&mut second).await, 2);
    assert_eq!((m.sent.get(), m.resent.get()), (3, 1));
    assert_eq!(m.connects.with_label_values(&["ok"]).get(), 2);
    assert_eq!(m.connected.get(), 1);
    drop(handle);
    task.finish().await;
    assert_eq!(dropped(&m, "shutdown"), 0);
}

#[tokio::test]
async fn undeliverable_records_are_counted() {
    // Nobody listens: a free port, bound then released.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let registry = prometheus::Registry::new();
    let (handle, task) = spawn(&config(addr, Transport::Tcp, 2), &registry).unwrap();
    let m = handle.metrics.clone();
    for n in 0..5 {
        handle.send(record(n, "h"));
    }
    assert_eq!(dropped(&m, "queue_full"), 3);
    drop(handle);
    task.finish().await;
    assert_eq!(dropped(&m, "shutdown"), 2, "still queued at shutdown");
    assert!(m.connects.with_label_values(&["error"]).get() >= 1);
    assert_eq!((m.sent.get(), m.connected.get()), (0, 0));
}

#[tokio::test]
async fn udp_sends_one_datagram_per_record_and_drops_oversize() {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap().to_string();
    let registry = prometheus::Registry::new();
    let (handle, task) = spawn(&config(addr, Transport::Udp, 16), &registry).unwrap();
    let m = handle.metrics.clone();
    handle.send(record(1, &"x".repeat(400)));
    handle.send(record(2, "h"));
    let mut buf = vec![0; 65536];
    let n = sock.recv(&mut buf).await.unwrap();
    let msg = std::str::from_utf8(&buf[..n]).unwrap();
    assert!(msg.starts_with("<134>1 ") && msg.ends_with('}'), "no octet count: {msg}");
    assert!(msg.contains("\"boot_ns\":2"), "{msg}");
    drop(handle);
    task.finish().await;
    assert_eq!((dropped(&m, "oversize"), m.sent.get()), (1, 1));
}
