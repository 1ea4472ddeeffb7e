//! The audit's own HTTP proxy, which the proxy factor's variables point at: a `CONNECT` is
//! answered `200` and the tunnel handed to the mock (TLS or plain, whichever the client speaks),
//! whatever host it names; an absolute-form request (`POST http://host/…`) is answered by the mock
//! directly. Nothing is forwarded anywhere else.

use std::{
    convert::Infallible,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn, Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};

use super::mock::{self, Meta, Recorder};

/// Serves one client connection of the proxy.
pub async fn serve<T>(io: T, listener: String, rec: Arc<Recorder>, tls: tokio_rustls::TlsAcceptor)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req: Request<Incoming>| {
        let (listener, rec, tls) = (listener.clone(), rec.clone(), tls.clone());
        async move {
            if req.method() == Method::CONNECT {
                let target = req.uri().authority().map_or_else(|| req.uri().to_string(), |a| a.to_string());
                let meta = Meta { listener, tls_sni: None, proxy: Some(format!("CONNECT {target}")) };
                tokio::spawn(async move {
                    if let Ok(up) = hyper::upgrade::on(req).await {
                        tunnel(TokioIo::new(up), meta, rec, tls).await;
                    }
                });
                return Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())));
            }
            let meta = Arc::new(Meta { listener, tls_sni: None, proxy: Some("forward".to_string()) });
            mock::handle(req, meta, rec).await
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await;
}

/// Serves what comes through a tunnel: TLS if it starts with a handshake record, else HTTP.
async fn tunnel<T>(mut io: T, meta: Meta, rec: Arc<Recorder>, tls: tokio_rustls::TlsAcceptor)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut first = [0u8; 1];
    match io.read(&mut first).await {
        Ok(1) => {}
        _ => return,
    }
    let io = Prefixed { prefix: Some(first[0]), inner: io };
    if first[0] == 0x16 {
        mock::serve_tls(io, meta, rec, tls).await;
    } else {
        mock::serve_http(io, meta, rec).await;
    }
}

/// A stream with one byte already read put back in front.
struct Prefixed<T> {
    prefix: Option<u8>,
    inner: T,
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if let Some(b) = self.prefix.take() {
            if buf.remaining() > 0 {
                buf.put_slice(&[b]);
                return Poll::Ready(Ok(()));
            }
            self.prefix = Some(b);
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
