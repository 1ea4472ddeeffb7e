//! The HTTP endpoint (loopback by default): `/metrics` for Prometheus, `/status` for the live
//! view (`aiwatch status`).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::output::{metrics::Metrics, status};

/// Binds the endpoint, before anything is attached (so a bad address fails start-up) and before
/// the runtime exists (the daemon starts its threads only after dropping capabilities).
pub fn bind(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen for metrics on {addr}"))?;
    listener.set_nonblocking(true).context("metrics listener")?;
    Ok(listener)
}

/// Serves `/metrics` and `/status` on `listener` in the background.
pub fn serve(
    listener: std::net::TcpListener,
    metrics: Arc<Metrics>,
    status: status::Shared,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let addr = listener.local_addr().context("metrics listener")?;
    let listener = TcpListener::from_std(listener).context("metrics listener")?;
    tracing::info!(%addr, "metrics endpoint at http://{addr}/metrics");
    Ok(tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let (m, st) = (metrics.clone(), status.clone());
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(Duration::from_secs(10), handle(stream, &m, &st)).await;
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }))
}

async fn handle(mut stream: TcpStream, metrics: &Metrics, status: &status::Shared) -> std::io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
        if len == buf.len() {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                b"request too large\n",
            )
            .await;
        }
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(());
        }
        len += n;
    }
    let head = String::from_utf8_lossy(&buf[..len]);
    let mut parts = head.lines().next().unwrap_or("").split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => {
            respond(&mut stream, "200 OK", "text/plain; version=0.0.4; charset=utf-8", &metrics.encode())
                .await
        }
        ("GET", "/status") => {
            let body =
                status.lock().map(|s| serde_json::to_vec_pretty(&*s).unwrap_or_default()).unwrap_or_default();
            respond(&mut stream, "200 OK", "application/json", &body).await
        }
        ("GET", "/") => {
            respond(&mut stream, "200 OK", "text/plain", b"aiwatch: see /metrics and /status\n").await
        }
        ("GET", _) => respond(&mut stream, "404 Not Found", "text/plain", b"not found\n").await,
        _ if method.is_empty() || target.is_empty() => {
            respond(&mut stream, "400 Bad Request", "text/plain", b"bad request\n").await
        }
        _ => respond(&mut stream, "405 Method Not Allowed", "text/plain", b"only GET\n").await,
    }
}

async fn respond(stream: &mut TcpStream, status: &str, ctype: &str, body: &[u8]) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use sensor_common::Stat;
    use tokio::io::AsyncReadExt;

    use super::*;

    async fn get(addr: SocketAddr, req: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(req).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_metrics_and_rejects_the_rest() {
        let m = Arc::new(Metrics::new().unwrap());
        m.fingerprint_reads.with_label_values(&["claude-code", "timezone", "assistant"]).inc();
        let mut totals = [0u64; Stat::COUNT as usize];
        totals[Stat::RingbufFull as usize] = 3;
        m.set_kernel(&totals);
        m.set_kernel(&totals);
        let l = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = l.local_addr().unwrap();
        let _task = serve(l, m.clone(), Default::default()).unwrap();
        assert!(get(addr, b"GET /status HTTP/1.1\r\n\r\n").await.contains("\"sessions\": []"));
        let body = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        assert!(body.contains(r#"aiwatch_fingerprint_reads_total{assistant="claude-code",category="timezone",reader="assistant"} 1"#));
        assert!(body.contains(r#"aiwatch_kernel_events_total{outcome="ringbuf_full"} 3"#), "{body}");
        assert!(body.contains(r#"aiwatch_build_info{version=""#));
        assert!(get(addr, b"GET /nope HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 404"));
        assert!(get(addr, b"POST /metrics HTTP/1.1\r\n\r\n").await.starts_with("HTTP/1.1 405"));
        assert!(get(addr, &[b'x'; 9000]).await.starts_with("HTTP/1.1 431"));
        assert!(get(addr, b"\r\n\r\n").await.starts_with("HTTP/1.1 400"));
    }
}
