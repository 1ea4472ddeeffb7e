//! The connection to the receiver: a TCP or TLS stream (octet-counted frames), or a connected
//! UDP socket (one message per datagram).

use std::{sync::Arc, time::Duration};

use anyhow::Context as _;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf},
    net::{TcpStream, UdpSocket},
};
use tokio_rustls::{
    rustls::{self, pki_types::pem::PemObject as _},
    TlsConnector,
};

use crate::config::syslog::{SyslogConfig, Transport};

/// A connection attempt gives up after this long (the next comes after the backoff).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A stream: TCP, or TLS over it.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// How to reach the receiver: made once at start, so a bad CA file fails start-up.
pub struct Dialer {
    transport: Transport,
    address: String,
    tls: Option<(TlsConnector, rustls::pki_types::ServerName<'static>)>,
}

pub enum Conn {
    Stream { reader: ReadHalf<Box<dyn Io>>, writer: WriteHalf<Box<dyn Io>> },
    Dgram(UdpSocket),
}

impl Dialer {
    pub fn new(cfg: &SyslogConfig) -> anyhow::Result<Self> {
        let tls = match &cfg.ca_file {
            Some(ca) if cfg.transport == Transport::Tls => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)
                    .with_context(|| format!("cannot read syslog CA file {}", ca.display()))?
                {
                    let cert = cert.with_context(|| format!("bad PEM in syslog CA file {}", ca.display()))?;
                    roots.add(cert).with_context(|| format!("bad CA certificate in {}", ca.display()))?;
                }
                anyhow::ensure!(!roots.is_empty(), "syslog CA file {} holds no certificate", ca.display());
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .context("TLS protocol versions")?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let name = rustls::pki_types::ServerName::try_from(cfg.tls_server_name().to_string())
                    .context("syslog TLS server name")?;
                Some((TlsConnector::from(Arc::new(config)), name))
            }
            _ => None,
        };
        let address = match cfg.address.host().contains(':') {
            true => format!("[{}]:{}", cfg.address.host(), cfg.address.port()),
            false => format!("{}:{}", cfg.address.host(), cfg.address.port()),
        };
        Ok(Self { transport: cfg.transport, address, tls })
    }

    /// A new connection (the name resolved again).
    pub async fn connect(&self) -> anyhow::Result<Conn> {
        tokio::time::timeout(CONNECT_TIMEOUT, self.connect_now())
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("timed out after {CONNECT_TIMEOUT:?}")))
    }

    async fn connect_now(&self) -> anyhow::Result<Conn> {
        if self.transport == Transport::Udp {
            let peer = tokio::net::lookup_host(&self.address)
                .await?
                .next()
                .with_context(|| format!("{} resolves to no address", self.address))?;
            let local = if peer.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
            let sock = UdpSocket::bind(local).await?;
            sock.connect(peer).await?;
            return Ok(Conn::Dgram(sock));
        }
        let tcp = TcpStream::connect(&self.address).await?;
        // Messages are written whole; nothing is gained by waiting to coalesce them.
        tcp.set_nodelay(true)?;
        let io: Box<dyn Io> = match &self.tls {
            Some((connector, name)) => {
                Box::new(connector.connect(name.clone(), tcp).await.context("TLS handshake")?)
            }
            None => Box::new(tcp),
        };
        let (reader, writer) = tokio::io::split(io);
        Ok(Conn::Stream { reader, writer })
    }
}

impl Conn {
    /// Sends one message (`frame` already octet-counted for a stream).
    pub async fn send(&mut self, frame: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Stream { writer, .. } => {
                writer.write_all(frame).await?;
                writer.flush().await
            }
            Conn::Dgram(s) => s.send(frame).await.map(drop),
        }
    }

    /// Resolves when the receiver closed the stream (it never sends anything else: what it
    /// does send, TLS session tickets included, is read and ignored). Never, for UDP.
    pub async fn closed(&mut self) {
        let Conn::Stream { reader, .. } = self else { return std::future::pending().await };
        let mut buf = [0u8; 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    pub fn is_stream(&self) -> bool {
        matches!(self, Conn::Stream { .. })
    }
}
