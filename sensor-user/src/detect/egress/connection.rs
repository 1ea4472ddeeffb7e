//! What the egress stage reports: connections, their destinations, DNS answers.

use std::net::IpAddr;

use serde::Serialize;

use crate::detect::parsers::sockaddr::Peer;

pub(super) const SOCK_STREAM: u32 = 1;
pub(super) const SOCK_DGRAM: u32 = 2;

/// Where a connection's host name came from, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostSource {
    Dns,
    HttpHost,
    TlsSni,
    HttpAbsoluteUri,
    SocksConnect,
    HttpConnect,
}

impl HostSource {
    pub fn label(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::HttpHost => "http_host",
            Self::TlsSni => "tls_sni",
            Self::HttpAbsoluteUri => "http_absolute_uri",
            Self::SocksConnect => "socks_connect",
            Self::HttpConnect => "http_connect",
        }
    }
}

/// A connection as reported.
#[derive(Debug, Clone, Serialize)]
pub struct Connection {
    pub id: String,
    pub fd: i32,
    /// `tcp`, `udp`, or `unknown` for a socket created before tracking.
    pub protocol: &'static str,
    pub remote_addr: String,
    pub remote_port: u16,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ipv4_mapped: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_port: Option<u16>,
    /// Destination host name, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_source: Option<HostSource>,
    /// The SNI of a TLS ClientHello sent on it (also behind a CONNECT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_sni: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
    /// The connection goes through an HTTP proxy (CONNECT or absolute-URI request).
    pub proxy: bool,
    /// `established`, `in_progress`, or `failed`.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Set on close.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(skip)]
    pub start_ns: u64,
    #[serde(skip)]
    pub(super) opened: bool,
    /// connect() has returned (a blocking connect's state changes come before it does).
    #[serde(skip)]
    pub(super) connect_returned: bool,
}

/// Where a connection went, as a finding names it.
#[derive(Debug, Clone, Serialize)]
pub struct Destination {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub addr: String,
    pub port: u16,
    pub proxy: bool,
}

impl Connection {
    pub fn destination(&self) -> Destination {
        Destination {
            host: self.host.clone(),
            addr: self.remote_addr.clone(),
            port: self.remote_port,
            proxy: self.proxy,
        }
    }
}

/// A DNS answer a session received.
#[derive(Debug, Clone, Serialize)]
pub struct DnsLookup {
    pub name: String,
    pub qtype: u16,
    pub rcode: u8,
    pub answers: Vec<String>,
    pub resolver: String,
    pub protocol: &'static str,
}

/// Who an event comes from: process, session root, time, and the id a new connection gets.
pub struct Origin {
    pub pid: u32,
    pub session: u32,
    pub now_ns: u64,
    pub id: String,
}

/// What the pipeline should report.
#[derive(Debug)]
pub enum Out {
    Open { pid: u32, conn: Connection },
    Close { pid: u32, conn: Connection },
    Dns { pid: u32, lookup: DnsLookup },
}

pub(super) fn protocol(sock_type: u32) -> &'static str {
    match sock_type {
        SOCK_STREAM => "tcp",
        SOCK_DGRAM => "udp",
        _ => "unknown",
    }
}

impl Connection {
    pub(super) fn new(id: String, fd: i32, sock_type: u32, peer: Peer, start_ns: u64) -> Self {
        Self {
            id,
            fd,
            protocol: protocol(sock_type),
            remote_addr: peer.addr.ip().to_string(),
            remote_port: peer.addr.port(),
            ipv4_mapped: peer.v4_mapped,
            local_port: None,
            host: None,
            host_source: None,
            tls_sni: None,
            alpn: Vec::new(),
            proxy: false,
            result: "in_progress",
            error: None,
            bytes_sent: 0,
            bytes_received: 0,
            duration_ms: None,
            start_ns,
            opened: false,
            connect_returned: false,
        }
    }

    pub(super) fn name(&mut self, host: String, source: HostSource) {
        // An address literal names nothing the address does not already say.
        if host.parse::<IpAddr>().is_ok() {
            return;
        }
        if self.host_source.is_none_or(|s| source > s) {
            self.host = Some(host);
            self.host_source = Some(source);
        }
    }

    /// Whether `peer` is where this connection goes (compared without formatting it).
    pub(super) fn is_peer(&self, peer: &Peer) -> bool {
        self.remote_port == peer.addr.port()
            && self.remote_addr.parse::<IpAddr>().is_ok_and(|a| a == peer.addr.ip())
    }

    pub(super) fn is_dns(&self) -> bool {
        self.remote_port == 53
    }
}
