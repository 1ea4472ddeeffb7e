//! Outbound connections of sessions: one entry per (pid, fd) from connect to close, named the
//! way an analyst would (`api.anthropic.com:443`) from the best source at hand — an HTTP
//! CONNECT target, a TLS ClientHello's SNI, an absolute-URI or Host header, or an earlier DNS
//! answer of the same session — and with the bytes that went through it.

use std::{
    collections::{HashMap, VecDeque},
    net::IpAddr,
};

use sensor_common::{tcp_state, Direction, RawSockAddr};
use serde::Serialize;

use crate::{
    detect::parsers::{
        dns, http,
        sockaddr::{self, Peer},
        tls,
    },
    sys::errno::errno_name,
};

const SOCK_STREAM: u32 = 1;
const SOCK_DGRAM: u32 = 2;
const EINPROGRESS: i64 = 115;
/// Addresses remembered per session from DNS answers.
const DNS_CACHE: usize = 4096;
/// A connection that sent nothing is reported open after this long.
pub const OPEN_GRACE_NS: u64 = 1_000_000_000;

/// Where a connection's host name came from, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostSource {
    Dns,
    HttpHost,
    TlsSni,
    HttpAbsoluteUri,
    HttpConnect,
}

impl HostSource {
    pub fn label(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::HttpHost => "http_host",
            Self::TlsSni => "tls_sni",
            Self::HttpAbsoluteUri => "http_absolute_uri",
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
    opened: bool,
    /// connect() has returned (a blocking connect's state changes come before it does).
    #[serde(skip)]
    connect_returned: bool,
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

#[derive(Default)]
struct DnsCache {
    names: HashMap<IpAddr, String>,
    order: VecDeque<IpAddr>,
}

impl DnsCache {
    fn insert(&mut self, ip: IpAddr, name: &str) {
        if self.names.insert(ip, name.to_string()).is_none() {
            self.order.push_back(ip);
            while self.order.len() > DNS_CACHE {
                if let Some(old) = self.order.pop_front() {
                    self.names.remove(&old);
                }
            }
        }
    }
}

#[derive(Default)]
pub struct Egress {
    conns: HashMap<(u32, i32), Connection>,
    dns: HashMap<u32, DnsCache>,
}

fn protocol(sock_type: u32) -> &'static str {
    match sock_type {
        SOCK_STREAM => "tcp",
        SOCK_DGRAM => "udp",
        _ => "unknown",
    }
}

impl Connection {
    fn new(id: String, fd: i32, sock_type: u32, peer: Peer, start_ns: u64) -> Self {
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

    fn name(&mut self, host: String, source: HostSource) {
        // An address literal names nothing the address does not already say.
        if host.parse::<IpAddr>().is_ok() {
            return;
        }
        if self.host_source.is_none_or(|s| source > s) {
            self.host = Some(host);
            self.host_source = Some(source);
        }
    }

    fn is_dns(&self) -> bool {
        self.remote_port == 53
    }
}

impl Egress {
    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    fn open(&mut self, key: (u32, i32), out: &mut Vec<Out>) {
        if let Some(c) = self.conns.get_mut(&key) {
            if !c.opened {
                c.opened = true;
                out.push(Out::Open { pid: key.0, conn: c.clone() });
            }
        }
    }

    /// connect() returned. The session keys the DNS cache; the id names a new connection.
    pub fn on_connect(
        &mut self,
        o: Origin,
        fd: i32,
        sock_type: u32,
        ret: i64,
        addr: &RawSockAddr,
    ) -> Vec<Out> {
        let Origin { pid, session, now_ns, id } = o;
        let mut out = Vec::new();
        let Some(peer) = sockaddr::parse(addr) else { return out };
        let key = (pid, fd);
        // A state change may have come first (blocking connect): keep what it said.
        let c = self.conns.entry(key).or_insert_with(|| Connection::new(id, fd, sock_type, peer, now_ns));
        c.remote_addr = peer.addr.ip().to_string();
        c.remote_port = peer.addr.port();
        c.ipv4_mapped = peer.v4_mapped;
        if c.protocol == "unknown" {
            c.protocol = protocol(sock_type);
        }
        if let Some(name) = self.dns.get(&session).and_then(|d| d.names.get(&peer.addr.ip())) {
            c.name(name.clone(), HostSource::Dns);
        }
        c.connect_returned = true;
        match ret {
            0 if c.result != "failed" => c.result = "established",
            r if r == -EINPROGRESS => {}
            0 => {}
            r => {
                c.result = "failed";
                c.error = errno_name(r);
            }
        }
        if c.result == "failed" {
            self.open(key, &mut out);
        }
        out
    }

    /// A TCP state change of a connection in progress.
    pub fn on_state(
        &mut self,
        o: Origin,
        fd: i32,
        newstate: u32,
        local: &RawSockAddr,
        remote: &RawSockAddr,
    ) -> Vec<Out> {
        let Origin { pid, now_ns, id, .. } = o;
        let mut out = Vec::new();
        let key = (pid, fd);
        if let std::collections::hash_map::Entry::Vacant(e) = self.conns.entry(key) {
            let Some(peer) = sockaddr::parse(remote) else { return out };
            e.insert(Connection::new(id, fd, SOCK_STREAM, peer, now_ns));
        }
        let Some(c) = self.conns.get_mut(&key) else { return out };
        match newstate {
            tcp_state::ESTABLISHED => {
                c.result = "established";
                c.local_port = sockaddr::parse(local).map(|p| p.addr.port()).filter(|p| *p != 0);
            }
            tcp_state::CLOSE => {
                c.result = "failed";
                // A non-blocking connect has returned EINPROGRESS already: this is its result.
                // A blocking one is still inside connect(), whose errno is more precise.
                if c.connect_returned {
                    c.error.get_or_insert_with(|| "refused, reset or timed out".to_string());
                    self.open(key, &mut out);
                }
            }
            _ => {}
        }
        out
    }

    /// Bytes sent on (or, for DNS, received from) a tracked socket.
    pub fn on_data(
        &mut self,
        o: Origin,
        fd: i32,
        direction: Direction,
        sock_type: u32,
        peer: &RawSockAddr,
        data: &[u8],
    ) -> Vec<Out> {
        let Origin { pid, session, now_ns, id } = o;
        let mut out = Vec::new();
        let key = (pid, fd);
        let peer = sockaddr::parse(peer);
        if let std::collections::hash_map::Entry::Vacant(e) = self.conns.entry(key) {
            // sendto()/recvfrom() on an unconnected socket: the peer names the destination.
            let Some(p) = peer else { return out };
            e.insert(Connection::new(id, fd, sock_type, p, now_ns));
        }
        let Some(c) = self.conns.get_mut(&key) else { return out };
        let dns_peer = peer.is_some_and(|p| p.addr.port() == 53);
        if c.is_dns() || dns_peer {
            let tcp = c.protocol == "tcp";
            if direction == Direction::Recv {
                if let Ok(msg) = dns::parse(data, tcp) {
                    if let Some(l) = learn(&mut self.dns, session, &msg, c, peer) {
                        out.push(Out::Dns { pid, lookup: l });
                    }
                }
            }
            if direction == Direction::Send {
                self.open(key, &mut out);
            }
            return out;
        }
        if direction == Direction::Send {
            if tls::looks_like_tls(data) {
                if let Ok(hello) = tls::parse_client_hello(data) {
                    c.alpn = hello.alpn;
                    if let Some(sni) = hello.sni {
                        c.tls_sni = Some(sni.clone());
                        c.name(sni, HostSource::TlsSni);
                    }
                }
            } else if let Some(req) = http::parse_request(data) {
                if let Some((host, _port)) = req.connect_target() {
                    c.proxy = true;
                    c.name(host, HostSource::HttpConnect);
                } else if let Some(host) = req.absolute_host() {
                    c.proxy = true;
                    c.name(host, HostSource::HttpAbsoluteUri);
                } else if let Some(host) = req.host {
                    c.name(host, HostSource::HttpHost);
                }
            }
            // Behind a CONNECT, the next send is the tunnelled ClientHello: report after it.
            let waiting_for_tunnel =
                c.proxy && c.host_source == Some(HostSource::HttpConnect) && c.tls_sni.is_none();
            if !waiting_for_tunnel {
                self.open(key, &mut out);
            }
        }
        out
    }
}

/// Remembers a DNS answer's addresses for the session; the lookup to report.
fn learn(
    dns: &mut HashMap<u32, DnsCache>,
    session: u32,
    msg: &dns::Message,
    c: &Connection,
    peer: Option<Peer>,
) -> Option<DnsLookup> {
    if !msg.response {
        return None;
    }
    let q = msg.questions.first()?;
    let addrs = msg.addresses();
    let cache = dns.entry(session).or_default();
    for ip in &addrs {
        cache.insert(*ip, &q.name);
    }
    let resolver = peer.map(|p| p.addr.ip().to_string()).unwrap_or_else(|| c.remote_addr.clone());
    Some(DnsLookup {
        name: q.name.clone(),
        qtype: q.qtype,
        rcode: msg.rcode,
        answers: addrs.iter().map(|a| a.to_string()).collect(),
        resolver,
        protocol: c.protocol,
    })
}

impl Egress {
    /// close() of a tracked socket, with the kernel's byte counts.
    pub fn on_close(&mut self, pid: u32, fd: i32, sent: u64, recv: u64, now_ns: u64) -> Vec<Out> {
        let mut out = Vec::new();
        self.open((pid, fd), &mut out);
        if let Some(mut c) = self.conns.remove(&(pid, fd)) {
            c.bytes_sent = sent;
            c.bytes_received = recv;
            c.duration_ms = Some(now_ns.saturating_sub(c.start_ns) / 1_000_000);
            out.push(Out::Close { pid, conn: c });
        }
        out
    }

    /// The process exited: its sockets closed without close(). `counts` gives the kernel's
    /// last byte counts for (pid, fd) and forgets the socket.
    pub fn on_exit(&mut self, pid: u32, now_ns: u64, mut counts: impl FnMut(i32) -> (u64, u64)) -> Vec<Out> {
        let fds: Vec<i32> = self.conns.keys().filter(|(p, _)| *p == pid).map(|(_, fd)| *fd).collect();
        let mut out = Vec::new();
        for fd in fds {
            let (sent, recv) = counts(fd);
            out.extend(self.on_close(pid, fd, sent, recv, now_ns));
        }
        out
    }

    /// The session ended: forget its DNS answers.
    pub fn end_session(&mut self, session: u32) {
        self.dns.remove(&session);
    }

    /// Reports connections that have been open a while without sending anything.
    pub fn tick(&mut self, now_ns: u64) -> Vec<Out> {
        let due: Vec<(u32, i32)> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.opened && now_ns.saturating_sub(c.start_ns) >= OPEN_GRACE_NS)
            .map(|(k, _)| *k)
            .collect();
        let mut out = Vec::new();
        for key in due {
            self.open(key, &mut out);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::parsers::{
        dns::tests::response,
        sockaddr::tests::{v4, v6},
        tls::build_client_hello,
    };

    fn o(pid: u32, session: u32, now_ns: u64) -> Origin {
        Origin { pid, session, now_ns, id: format!("c-{pid}-{now_ns}") }
    }

    fn opened(out: &[Out]) -> Vec<&Connection> {
        out.iter().filter_map(|o| if let Out::Open { conn, .. } = o { Some(conn) } else { None }).collect()
    }

    #[test]
    fn tls_connection_named_by_sni_then_closed_with_bytes() {
        let mut e = Egress::default();
        let none = RawSockAddr { len: 0, data: [0; 28] };
        assert!(e
            .on_connect(o(10, 10, 0), 5, SOCK_STREAM, -EINPROGRESS, &v4([127, 0, 0, 1], 8443))
            .is_empty());
        e.on_state(
            o(10, 10, 1),
            5,
            tcp_state::ESTABLISHED,
            &v4([127, 0, 0, 1], 40000),
            &v4([127, 0, 0, 1], 8443),
        );
        let hello = build_client_hello("api.anthropic.com", 32, 16384);
        let out = e.on_data(o(10, 10, 2), 5, Direction::Send, SOCK_STREAM, &none, &hello);
        let c = opened(&out)[0];
        assert_eq!((c.host.as_deref(), c.host_source), (Some("api.anthropic.com"), Some(HostSource::TlsSni)));
        assert_eq!((c.result, c.local_port, c.protocol, c.proxy), ("established", Some(40000), "tcp", false));
        let out = e.on_close(10, 5, 517, 4000, 2_000_000_002);
        let Out::Close { conn, .. } = &out[0] else { panic!("{out:?}") };
        assert_eq!((conn.bytes_sent, conn.bytes_received, conn.duration_ms), (517, 4000, Some(2000)));
        assert!(e.is_empty());
    }

    #[test]
    fn connect_proxy_then_tunnelled_hello() {
        let mut e = Egress::default();
        let none = RawSockAddr { len: 0, data: [0; 28] };
        e.on_connect(o(1, 1, 0), 7, SOCK_STREAM, 0, &v4([127, 0, 0, 1], 3128));
        let out = e.on_data(
            o(1, 1, 1),
            7,
            Direction::Send,
            SOCK_STREAM,
            &none,
            b"CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\n\r\n",
        );
        assert!(out.is_empty(), "waits for the tunnelled hello");
        let out = e.on_data(
            o(1, 1, 2),
            7,
            Direction::Send,
            SOCK_STREAM,
            &none,
            &build_client_hello("api.openai.com", 32, 16384),
        );
        let c = opened(&out)[0];
        assert_eq!(
            (c.host.as_deref(), c.host_source, c.proxy),
            (Some("api.openai.com"), Some(HostSource::HttpConnect), true)
        );
        assert_eq!(c.tls_sni.as_deref(), Some("api.openai.com"));
        assert_eq!(c.remote_port, 3128);
    }

    #[test]
    fn dns_answer_names_a_later_connection_of_the_same_session_only() {
        let mut e = Egress::default();
        e.on_connect(o(1, 1, 0), 3, SOCK_DGRAM, 0, &v4([127, 0, 0, 53], 53));
        let none = RawSockAddr { len: 0, data: [0; 28] };
        let out = e.on_data(
            o(1, 1, 1),
            3,
            Direction::Recv,
            SOCK_DGRAM,
            &none,
            &response(1, "api.example-relay.com", Some("edge.cdn.net"), &[[127, 0, 0, 9]]),
        );
        let Out::Dns { lookup, .. } = &out[0] else { panic!("{out:?}") };
        assert_eq!(
            (lookup.name.as_str(), lookup.answers.clone()),
            ("api.example-relay.com", vec!["127.0.0.9".to_string()])
        );
        assert_eq!(lookup.resolver, "127.0.0.53");
        let out = e.on_connect(o(2, 1, 2), 4, SOCK_STREAM, -111, &v4([127, 0, 0, 9], 443));
        let c = opened(&out)[0];
        assert_eq!(
            (c.host.as_deref(), c.host_source),
            (Some("api.example-relay.com"), Some(HostSource::Dns))
        );
        assert_eq!((c.result, c.error.as_deref()), ("failed", Some("ECONNREFUSED")));
        // Another session did not resolve it.
        e.on_connect(o(3, 99, 2), 4, SOCK_STREAM, 0, &v4([127, 0, 0, 9], 443));
        let out = e.on_close(3, 4, 0, 0, 3);
        let Out::Open { conn, .. } = &out[0] else { panic!() };
        assert_eq!(conn.host, None);
    }

    #[test]
    fn plain_http_unconnected_udp_v6_and_exit() {
        let mut e = Egress::default();
        let none = RawSockAddr { len: 0, data: [0; 28] };
        e.on_connect(o(1, 1, 0), 5, SOCK_STREAM, 0, &v6("::1".parse().unwrap(), 8080));
        let out = e.on_data(
            o(1, 1, 1),
            5,
            Direction::Send,
            SOCK_STREAM,
            &none,
            b"POST /v1/messages HTTP/1.1\r\nHost: api.example.com:8080\r\n\r\n",
        );
        let c = opened(&out)[0];
        assert_eq!((c.host.as_deref(), c.remote_addr.as_str()), (Some("api.example.com"), "::1"));
        // sendto() without connect: the peer is the destination.
        let out = e.on_data(
            o(1, 1, 1),
            6,
            Direction::Send,
            SOCK_DGRAM,
            &v6("::ffff:127.0.0.1".parse().unwrap(), 9999),
            b"x",
        );
        let c = opened(&out)[0];
        assert!(c.ipv4_mapped && c.remote_addr == "127.0.0.1" && c.protocol == "udp");
        let out = e.on_exit(1, 10, |fd| (fd as u64, 0));
        assert_eq!(out.iter().filter(|o| matches!(o, Out::Close { .. })).count(), 2);
        assert!(e.is_empty());
    }

    #[test]
    fn silent_connection_reported_after_grace() {
        let mut e = Egress::default();
        e.on_connect(o(1, 1, 0), 5, SOCK_STREAM, 0, &v4([127, 0, 0, 1], 22));
        assert!(e.tick(OPEN_GRACE_NS - 1).is_empty());
        assert_eq!(opened(&e.tick(OPEN_GRACE_NS)).len(), 1);
        assert!(e.tick(OPEN_GRACE_NS * 2).is_empty());
    }
}
