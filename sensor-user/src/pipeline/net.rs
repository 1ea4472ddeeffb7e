//! Sockets: connect, the first bytes sent and received, close and TCP state changes go to the
//! egress state machine; the connections and DNS answers it names are correlated with the
//! session's fingerprint reads and reported.

use sensor_common::{Direction, RawSockAddr};

use super::state::State;
use crate::{
    detect::{
        content::ConnInfo,
        correlate::Outcome,
        egress::{self, Origin},
    },
    kernel::{events::Header, tracker::Tracker},
    output::{
        emit::Out,
        report::{Body, ConnectionRecord, FindingRecord, ProcessRef, SessionRef},
    },
};

pub(super) fn connect(
    st: &mut State,
    hdr: &Header,
    fd: i32,
    sock_type: u32,
    ret: i64,
    addr: &RawSockAddr,
) -> Vec<Out> {
    let Some(origin) = origin(st, hdr, fd) else { return Vec::new() };
    let out = st.egress.on_connect(origin, fd, sock_type, ret, addr);
    report(st, out, hdr.ts_ns)
}

/// Bytes sent or received (TLS ClientHello, HTTP request head, DNS message, or counts only).
pub(super) fn data(
    st: &mut State,
    hdr: &Header,
    fd: i32,
    direction: Direction,
    sock_type: u32,
    peer: &RawSockAddr,
    data: &[u8],
) -> Vec<Out> {
    let Some(origin) = origin(st, hdr, fd) else { return Vec::new() };
    let out = st.egress.on_data(origin, fd, direction, sock_type, peer, data);
    let mut records = report(st, out, hdr.ts_ns);
    if direction == Direction::Send {
        records.extend(super::content::head(st, hdr, fd, data));
    }
    records
}

pub(super) fn close(st: &mut State, hdr: &Header, fd: i32, sent: u64, received: u64) -> Vec<Out> {
    let out = st.egress.on_close(hdr.pid, fd, sent, received, hdr.ts_ns);
    report(st, out, hdr.ts_ns)
}

/// `close_range()`: the connections whose fds were in the range end (with the kernel's last
/// counts, which it forgets).
pub(super) fn close_range(
    st: &mut State,
    hdr: &Header,
    first: i32,
    last: u32,
    kernel: &mut dyn Tracker,
) -> Vec<Out> {
    let in_range = |fd: i32| fd >= first && fd as u32 <= last;
    let out = st.egress.on_fds_closed(hdr.pid, in_range, hdr.ts_ns, |fd| kernel.take_sock(hdr.pid, fd));
    report(st, out, hdr.ts_ns)
}

/// After an exec: the connections whose fds the exec closed (close-on-exec) end.
pub(super) fn closed_by_exec(st: &mut State, hdr: &Header, kernel: &mut dyn Tracker) -> Vec<Out> {
    let src = &st.src;
    let gone = |fd: i32| !src.fd_path(hdr.pid, fd).is_some_and(|p| p.starts_with("socket:"));
    let out = st.egress.on_fds_closed(hdr.pid, gone, hdr.ts_ns, |fd| kernel.take_sock(hdr.pid, fd));
    report(st, out, hdr.ts_ns)
}

/// A TCP state change: the result and local port of a non-blocking connect.
pub(super) fn state(
    st: &mut State,
    hdr: &Header,
    fd: i32,
    newstate: u32,
    local: &RawSockAddr,
    remote: &RawSockAddr,
) -> Vec<Out> {
    let Some(origin) = origin(st, hdr, fd) else { return Vec::new() };
    let out = st.egress.on_state(origin, fd, newstate, local, remote);
    report(st, out, hdr.ts_ns)
}

/// The process, session and new-connection id of a session's socket event.
fn origin(st: &State, hdr: &Header, fd: i32) -> Option<Origin> {
    let who = st.table.who(hdr.pid)?;
    Some(Origin {
        pid: hdr.pid,
        session: who.root(),
        now_ns: hdr.ts_ns,
        id: format!("{}-{}-{fd}-{:x}", who.session.id, hdr.pid, hdr.ts_ns),
    })
}

/// Records of what the egress state machine reports: connections opened (annotated with the
/// session's reads before, and the findings they complete), closed, and DNS answers.
pub(super) fn report(st: &mut State, outs: Vec<egress::Out>, boot_ns: u64) -> Vec<Out> {
    let mut records = Vec::with_capacity(outs.len());
    for o in outs {
        let pid = match &o {
            egress::Out::Open { pid, .. } | egress::Out::Close { pid, .. } | egress::Out::Dns { pid, .. } => {
                *pid
            }
        };
        let Some(who) = st.table.who(pid) else { continue };
        let (session, process, reader) =
            (SessionRef::of(who.session), ProcessRef::of(who.proc, pid, &who.proc.comm), who.reader);
        let body = match o {
            egress::Out::Open { conn, .. } => {
                // Correlate first: the annotation goes into the open record.
                let peer =
                    conn.remote_addr.parse().ok().map(|ip| std::net::SocketAddr::new(ip, conn.remote_port));
                let (ann, outcomes) =
                    st.correlator.on_egress(who.root(), conn.host.as_deref(), peer, boot_ns);
                for (rule, outcome) in outcomes {
                    match outcome {
                        Outcome::Emit(finding) => {
                            let record = FindingRecord {
                                id: format!("{}-{rule}", conn.id),
                                session: session.clone(),
                                process: process.clone(),
                                reader,
                                finding: *finding,
                                destination: conn.destination(),
                                connection_id: conn.id.clone(),
                            };
                            records.push(Out::record(boot_ns, Body::Finding(Box::new(record))));
                        }
                        Outcome::Duplicate => records.push(Out::Suppressed("duplicate")),
                        Outcome::RateLimited => records.push(Out::Suppressed("rate_limited")),
                    }
                }
                st.content.opened(
                    (pid, conn.fd),
                    ConnInfo {
                        id: conn.id.clone(),
                        class: ann.destination_class.clone(),
                        destination: conn.destination(),
                    },
                );
                let fingerprint = Some(ann);
                Body::ConnectionOpen(Box::new(ConnectionRecord {
                    session,
                    process,
                    reader,
                    connection: conn,
                    fingerprint,
                }))
            }
            egress::Out::Close { conn, .. } => {
                if let Some(s) = st.content.closed((pid, conn.fd)) {
                    records.extend(super::content::report(st, s, boot_ns));
                }
                Body::ConnectionClose(Box::new(ConnectionRecord {
                    session,
                    process,
                    reader,
                    connection: conn,
                    fingerprint: None,
                }))
            }
            egress::Out::Dns { lookup, .. } => Body::DnsLookup { session, process, reader, dns: lookup },
        };
        records.push(Out::record(boot_ns, body));
    }
    records
}
