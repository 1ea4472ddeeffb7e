//! The endpoint: routes, the connection cap, idle connections, the bind retry.

use std::time::Instant;

use sensor_common::Stat;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

async fn get(addr: SocketAddr, req: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(req).await.unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

/// An endpoint on a free loopback port, already bound.
fn start(max: usize) -> (SocketAddr, Arc<Metrics>) {
    let m = Arc::new(Metrics::new().unwrap());
    let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    let _task = serve(Endpoint::new(addr, max, m.clone(), Default::default()), Ok(l));
    (addr, m)
}

/// Whether the server has closed `s` (end of file, or a reset) within `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(tokio::time::timeout(within, s.read(&mut b)).await, Ok(Ok(0) | Err(_)))
}

#[tokio::test]
async fn serves_metrics_and_status_and_rejects_the_rest() {
    let (addr, m) = start(64);
    m.fingerprint_reads.with_label_values(&["claude-code", "timezone", "assistant"]).inc();
    let mut totals = [0u64; Stat::COUNT as usize];
    totals[Stat::RingbufFull as usize] = 3;
    m.set_kernel(&totals);
    m.set_kernel(&totals);
    let status = get(addr, b"GET /status HTTP/1.1\r\n\r\n").await;
    assert!(status.contains("\"sessions\": []") && status.contains("\"bind_failures\": 0"), "{status}");
    let body = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
    assert!(body.contains("content-type: text/plain; version=0.0.4"), "{body}");
    assert!(body.contains(
        r#"aiwatch_fingerprint_reads_total{assistant="claude-code",category="timezone",reader="assistant"} 1"#
    ));
    assert!(body.contains(r#"aiwatch_kernel_events_total{outcome="ringbuf_full"} 3"#), "{body}");
    assert!(body.contains(r#"aiwatch_build_info{version=""#));
    assert!(body.contains("aiwatch_metrics_listener_up 1"), "{body}");
    assert!(get(addr, b"GET /metrics?x=1 HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 200"));
    assert!(get(addr, b"GET /nope HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 404"));
    assert!(get(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 405"));
    assert!(get(addr, &[b'x'; 9000]).await.starts_with("HTTP/1.1 431"));
    assert!(get(addr, b"GET\r\n\r\n").await.starts_with("HTTP/1.1 400"));
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_and_idle_ones_time_out() {
    let (addr, m) = start(2);
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // Both permits are held (give the accept loop a moment to take them): a third is closed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(addr).await.unwrap();
    assert!(closed_within(&mut third, Duration::from_secs(2)).await, "a third connection was served");
    assert_eq!(m.endpoint.connections_rejected.get(), 1);
    // The idle ones are closed after the header timeout, and scraping works again.
    let t = Instant::now();
    for s in &mut idle {
        assert!(closed_within(s, HEADER_TIMEOUT + Duration::from_secs(2)).await, "idle connection kept");
    }
    assert!(t.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(500), "{:?}", t.elapsed());
    assert!(get(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn a_failed_bind_is_counted_and_retried_until_it_binds() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let m = Arc::new(Metrics::new().unwrap());
    let first = bind_at_start(addr, &m);
    assert!(first.is_err());
    let _task = serve(Endpoint::new(addr, 4, m.clone(), Default::default()), first);
    // Still taken: the retries fail and are counted.
    tokio::time::sleep(BIND_RETRY * 2 + Duration::from_millis(500)).await;
    assert!(m.endpoint.bind_failures.get() >= 2, "{}", m.endpoint.bind_failures.get());
    assert_eq!(m.endpoint.listener_up.get(), 0);
    drop(taken);
    let end = Instant::now() + BIND_RETRY * 3;
    while m.endpoint.listener_up.get() != 1 {
        assert!(Instant::now() < end, "not bound after the port was released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = get(addr, b"GET /status HTTP/1.1\r\n\r\n").await;
    assert!(status.contains("\"last_bind_error\": \"cannot listen for metrics on"), "{status}");
    let body = get(addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert!(body.contains("aiwatch_metrics_listener_up 1"), "{body}");
}

#[test]
fn a_burst_of_connections_waits_in_the_queue_while_the_accept_loop_is_away() {
    // Nothing accepts here: every connection must be queued by the kernel, none dropped (a
    // dropped SYN costs its client a second or more). std's backlog of 128 fails at the 130th.
    let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    let burst = 1000;
    let queued: Vec<_> = (0..burst)
        .map(|i| {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))
                .unwrap_or_else(|e| panic!("connection {i} of a burst of {burst}: {e}"))
        })
        .collect();
    assert_eq!(queued.len(), burst);
}
