//! Outbound connections of sessions: one entry per (pid, fd) from connect to close, named the
//! way an analyst would (`api.anthropic.com:443`) from the best source at hand — an HTTP
//! CONNECT target, a TLS ClientHello's SNI, an absolute-URI or Host header, or an earlier DNS
//! answer of the same session — and with the bytes that went through it.

use std::collections::HashMap;

use sensor_common::{tcp_state, Direction, RawSockAddr};

use crate::{
    detect::parsers::{
        dns, http,
        sockaddr::{self, Peer},
        socks, tls,
    },
    sys::errno::errno_name,
};

const EINPROGRESS: i64 = libc::EINPROGRESS as i64;
const EALREADY: i64 = libc::EALREADY as i64;
const EISCONN: i64 = libc::EISCONN as i64;
/// A connection that sent nothing is reported open after this long.
pub const OPEN_GRACE_NS: u64 = 1_000_000_000;

mod connection;
mod names;
#[cfg(test)]
mod tests;

use connection::{protocol, SOCK_STREAM};
pub use connection::{Connection, Destination, DnsLookup, HostSource, Origin, Out};
use names::{learn, DnsCache};

#[derive(Default)]
pub struct Egress {
    conns: HashMap<(u32, i32), Connection>,
    dns: HashMap<u32, DnsCache>,
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
        // EALREADY and EISCONN answer a connect in progress or done: not a new one.
        if ret != -EALREADY && ret != -EISCONN {
            self.end_if_reconnected(key, &peer, now_ns, &mut out);
        }
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
            // EISCONN: connected already (a non-blocking connect checked again).
            r if (r == 0 || r == -EISCONN) && c.result != "failed" => c.result = "established",
            r if r == -EINPROGRESS || r == -EALREADY || r == -EISCONN => {}
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

    /// A socket whose connect has returned is connected again — a UDP socket to another peer,
    /// a TCP connect retried after it failed: the earlier connection ends here, and the new one
    /// gets its own record. (The kernel counts bytes per socket: they all go to the last one.)
    fn end_if_reconnected(&mut self, key: (u32, i32), peer: &Peer, now_ns: u64, out: &mut Vec<Out>) {
        let Some(c) = self.conns.get(&key) else { return };
        let same_peer = c.is_peer(peer);
        if !c.connect_returned || (same_peer && c.result != "failed") {
            return;
        }
        self.end(key, now_ns, out);
    }

    /// Reports a connection (opened first if it never was) as closed, and forgets it.
    fn end(&mut self, key: (u32, i32), now_ns: u64, out: &mut Vec<Out>) {
        self.open(key, out);
        if let Some(mut old) = self.conns.remove(&key) {
            old.duration_ms = Some(now_ns.saturating_sub(old.start_ns) / 1_000_000);
            out.push(Out::Close { pid: key.0, conn: old });
        }
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
        let Some(peer) = sockaddr::parse(remote) else { return out };
        if newstate == tcp_state::ESTABLISHED {
            self.end_if_reconnected(key, &peer, now_ns, &mut out);
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.conns.entry(key) {
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
        // A stream socket sends to its connected peer whatever address sendto() is given: such
        // an address is ignored (a fake port 53 must not make TLS "DNS").
        let stream = sock_type == SOCK_STREAM || self.conns.get(&key).is_some_and(|c| c.protocol == "tcp");
        let peer = if stream { None } else { sockaddr::parse(peer) };
        if let (Some(p), Direction::Send) = (&peer, direction) {
            self.end_if_other_datagram_peer(key, p, now_ns, &mut out);
        }
        if let std::collections::hash_map::Entry::Vacant(e) = self.conns.entry(key) {
            // sendto()/recvfrom() on an unconnected socket: the peer names the destination.
            let Some(p) = peer else { return out };
            e.insert(Connection::new(id, fd, sock_type, p, now_ns));
        }
        let Some(c) = self.conns.get_mut(&key) else { return out };
        let dns_peer = peer.is_some_and(|p| p.addr.port() == 53);
        if c.is_dns() || dns_peer {
            let tcp = c.protocol == "tcp";
            let msg = dns::parse(data, tcp);
            if direction == Direction::Recv {
                if let Some(l) = msg.ok().and_then(|m| learn(&mut self.dns, session, &m, c, peer)) {
                    out.push(Out::Dns { pid, lookup: l });
                }
                return out;
            }
            if msg.is_ok() {
                self.open(key, &mut out);
                return out;
            }
            // Not DNS, whatever the port: named as any other send.
        }
        if direction == Direction::Send {
            name_from_send(c, data);
            // Through a tunnelling proxy (CONNECT, SOCKS5 from its greeting on), the next sends
            // are the handshake and the tunnelled ClientHello: report after it (or at the grace
            // tick, or at close, whichever comes first).
            let waiting_for_tunnel =
                c.proxy && c.host_source != Some(HostSource::HttpAbsoluteUri) && c.tls_sni.is_none();
            if !waiting_for_tunnel {
                self.open(key, &mut out);
            }
        }
        out
    }

    /// A datagram to another peer on a socket not connected: a new destination, a new
    /// connection (the earlier one ends).
    fn end_if_other_datagram_peer(&mut self, key: (u32, i32), peer: &Peer, now_ns: u64, out: &mut Vec<Out>) {
        let Some(c) = self.conns.get(&key) else { return };
        let same_peer = c.is_peer(peer);
        if same_peer || c.connect_returned || c.protocol != "udp" {
            return;
        }
        self.end(key, now_ns, out);
    }
}

/// Names a connection from what a send carries: a TLS ClientHello's SNI, an HTTP request's
/// CONNECT target, absolute URI or Host, a SOCKS5 CONNECT's destination.
fn name_from_send(c: &mut Connection, data: &[u8]) {
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
    } else if let Some(m) = socks::parse(data) {
        c.proxy = true;
        if let socks::Message::Connect { host, .. } = m {
            c.name(host, HostSource::SocksConnect);
        }
    }
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
    pub fn on_exit(&mut self, pid: u32, now_ns: u64, counts: impl FnMut(i32) -> (u64, u64)) -> Vec<Out> {
        self.on_fds_closed(pid, |_| true, now_ns, counts)
    }

    /// Fds of `pid` that `closed` picks were closed without close() (exit, exec, close_range).
    pub fn on_fds_closed(
        &mut self,
        pid: u32,
        closed: impl Fn(i32) -> bool,
        now_ns: u64,
        mut counts: impl FnMut(i32) -> (u64, u64),
    ) -> Vec<Out> {
        let fds: Vec<i32> =
            self.conns.keys().filter(|(p, fd)| *p == pid && closed(*fd)).map(|(_, fd)| *fd).collect();
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
