//! The recording mock LLM API of one run: HTTP/1.1 on the run's loopback listeners (plain, or
//! TLS with certificates of the audit's CA), answering as `answers` says and recording every
//! request — method, path, headers, body — in arrival order.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Instant,
};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::{body::Incoming, service::service_fn, Request, Response};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use super::answers;

/// Request bodies larger than this are cut (and flagged).
const MAX_BODY: usize = 32 << 20;

/// One request as it arrived.
#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    /// Arrival order within the run (from 0).
    pub seq: usize,
    /// Milliseconds after the run started.
    pub ms: u64,
    /// The listener it came in on: `http:80`, `https:443`, `proxy:3128`.
    pub listener: String,
    /// The TLS server name the client asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_sni: Option<String>,
    /// How it came through the audit's proxy: `CONNECT host:port` or `forward` (an
    /// absolute-form request).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    pub method: String,
    /// Origin-form path and query.
    pub path: String,
    /// Header names in lower case, in order.
    pub headers: Vec<(String, String)>,
    /// The body as UTF-8 (invalid bytes replaced; see `binary`).
    pub body: String,
    pub body_bytes: usize,
    /// The body was not UTF-8 (or was compressed): compared as bytes only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub binary: bool,
    /// Which API the mock answered as (`anthropic.messages`, `gemini.generate`, …, `other`).
    pub api: &'static str,
    pub status: u16,
    /// The model answered (a completion call).
    pub llm_call: bool,
}

/// Every request of one run.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    requests: Mutex<Vec<Recorded>>,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self { start: Instant::now(), requests: Mutex::new(Vec::new()) })
    }

    pub fn take(&self) -> Vec<Recorded> {
        self.requests.lock().map(|mut r| std::mem::take(&mut *r)).unwrap_or_default()
    }
}

/// Where a connection came from, for the record.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub listener: String,
    pub tls_sni: Option<String>,
    pub proxy: Option<String>,
}

/// Serves HTTP/1.1 on `io` until the client closes it.
pub async fn serve_http<T>(io: T, meta: Meta, rec: Arc<Recorder>)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let meta = Arc::new(meta);
    let svc = service_fn(move |req| handle(req, meta.clone(), rec.clone()));
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(io), svc).await;
}

/// Serves TLS (a certificate for whatever name the client asks) and then HTTP/1.1 on `io`.
pub async fn serve_tls<T>(io: T, mut meta: Meta, rec: Arc<Recorder>, tls: tokio_rustls::TlsAcceptor)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Ok(stream) = tls.accept(io).await else { return };
    meta.tls_sni = stream.get_ref().1.server_name().map(str::to_string);
    serve_http(stream, meta, rec).await;
}

/// The answer to one request, recorded first.
pub async fn handle(
    req: Request<Incoming>,
    meta: Arc<Meta>,
    rec: Arc<Recorder>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let method = req.method().as_str().to_string();
    let path = req.uri().path_and_query().map_or("/".to_string(), |p| p.as_str().to_string());
    let absolute = req.uri().authority().is_some();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let (bytes, cut) = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => (b.to_bytes(), false),
        Err(_) => (Bytes::new(), true),
    };
    let encoded = headers.iter().any(|(k, v)| k == "content-encoding" && v != "identity");
    let text = std::str::from_utf8(&bytes).ok().map(str::to_string);
    let a = answers::answer(&method, &path, &bytes);
    {
        let mut reqs = rec.requests.lock().unwrap_or_else(|e| e.into_inner());
        let seq = reqs.len();
        reqs.push(Recorded {
            seq,
            ms: rec.start.elapsed().as_millis() as u64,
            listener: meta.listener.clone(),
            tls_sni: meta.tls_sni.clone(),
            proxy: meta.proxy.clone().or_else(|| absolute.then(|| "forward".to_string())),
            method,
            path,
            headers,
            binary: text.is_none() || encoded || cut,
            body: text.unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
            body_bytes: bytes.len(),
            api: a.api,
            status: a.status,
            llm_call: a.is_llm_call(),
        });
    }
    let mut resp = Response::new(Full::new(Bytes::from(a.body)));
    *resp.status_mut() = hyper::StatusCode::from_u16(a.status).unwrap_or(hyper::StatusCode::OK);
    resp.headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(a.content_type));
    resp.headers_mut().insert("x-aiwatch-audit", hyper::header::HeaderValue::from_static("mock"));
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    /// One request over an in-memory connection, as a client sends it; the raw answer.
    async fn exchange(rec: &Arc<Recorder>, method: &str, path: &str, body: &str) -> String {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let meta = Meta { listener: "https:443".into(), tls_sni: Some("api.example".into()), proxy: None };
        let task = tokio::spawn(serve_http(server, meta, rec.clone()));
        let req = format!(
            "{method} {path} HTTP/1.1\r\nhost: api.example\r\ncontent-type: application/json\r\n\
             x-api-key: k\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        client.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        task.await.unwrap();
        out
    }

    #[tokio::test]
    async fn every_api_is_answered_and_every_request_recorded() {
        let rec = Recorder::new();
        let cases = [
            (
                "/v1/messages",
                r#"{"model":"m","stream":true,"messages":[]}"#,
                "text/event-stream",
                "content_block_delta",
            ),
            ("/v1/messages", r#"{"model":"m","messages":[]}"#, "application/json", r#""type":"message""#),
            ("/v1/chat/completions", r#"{"model":"m","stream":true}"#, "text/event-stream", "data: [DONE]"),
            ("/v1/chat/completions", r#"{"model":"m"}"#, "application/json", "chat.completion"),
            ("/v1/responses", r#"{"model":"m","stream":true}"#, "text/event-stream", "response.completed"),
            ("/v1beta/models/g:generateContent", r#"{"contents":[]}"#, "application/json", "candidates"),
            ("/v1beta/models/g:streamGenerateContent?alt=sse", "{}", "text/event-stream", "data: {"),
        ];
        for (path, body, ctype, needle) in cases {
            let out = exchange(&rec, "POST", path, body).await;
            assert!(out.starts_with("HTTP/1.1 200"), "{path}: {out}");
            assert!(out.contains(&format!("content-type: {ctype}")), "{path}: {out}");
            assert!(out.contains(needle), "{path} {body}: {out}");
        }
        let out = exchange(&rec, "GET", "/nothing/here", "").await;
        assert!(out.starts_with("HTTP/1.1 404"), "{out}");
        let got = rec.take();
        assert_eq!(got.len(), cases.len() + 1);
        assert!(got.iter().take(cases.len()).all(|r| r.llm_call && r.status == 200), "{got:?}");
        let first = &got[0];
        assert_eq!((first.seq, first.method.as_str(), first.path.as_str()), (0, "POST", "/v1/messages"));
        assert_eq!(first.body, cases[0].1);
        assert!(first.headers.contains(&("x-api-key".into(), "k".into())));
        assert_eq!((first.listener.as_str(), first.tls_sni.as_deref()), ("https:443", Some("api.example")));
        assert_eq!(got[5].api, "gemini.generate");
        assert!(!got[cases.len()].llm_call);
    }
}
