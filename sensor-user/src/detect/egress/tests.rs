use super::{connection::SOCK_DGRAM, *};
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
    assert!(e.on_connect(o(10, 10, 0), 5, SOCK_STREAM, -EINPROGRESS, &v4([127, 0, 0, 1], 8443)).is_empty());
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
    assert_eq!((c.host.as_deref(), c.host_source), (Some("api.example-relay.com"), Some(HostSource::Dns)));
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

fn closed(out: &[Out]) -> Vec<&Connection> {
    out.iter().filter_map(|o| if let Out::Close { conn, .. } = o { Some(conn) } else { None }).collect()
}

#[test]
fn udp_socket_connected_twice_is_two_connections() {
    let mut e = Egress::default();
    let none = RawSockAddr { len: 0, data: [0; 28] };
    e.on_connect(o(1, 1, 0), 5, SOCK_DGRAM, 0, &v4([127, 0, 0, 1], 5001));
    let first = opened(&e.on_data(o(1, 1, 1), 5, Direction::Send, SOCK_DGRAM, &none, b"a"))[0].clone();
    assert_eq!(first.remote_port, 5001);
    // Connected again, to another peer: the first ends, the second is new.
    let out = e.on_connect(o(1, 1, 2), 5, SOCK_DGRAM, 0, &v4([127, 0, 0, 1], 5002));
    assert_eq!(closed(&out).iter().map(|c| c.id.as_str()).collect::<Vec<_>>(), [first.id.as_str()]);
    let second = opened(&e.on_data(o(1, 1, 3), 5, Direction::Send, SOCK_DGRAM, &none, b"b"))[0].clone();
    assert_eq!(second.remote_port, 5002);
    assert_ne!(second.id, first.id);
    // The same peer again is the same connection.
    assert!(e.on_connect(o(1, 1, 4), 5, SOCK_DGRAM, 0, &v4([127, 0, 0, 1], 5002)).is_empty());
    assert_eq!(e.len(), 1);
}

#[test]
fn tcp_connect_retried_after_failure_is_a_new_connection() {
    let mut e = Egress::default();
    let refused = -(libc::ECONNREFUSED as i64);
    let out = e.on_connect(o(1, 1, 0), 5, SOCK_STREAM, refused, &v4([127, 0, 0, 1], 5001));
    assert_eq!(opened(&out)[0].result, "failed");
    // The same socket, the same peer, now listening: a blocking connect's state change first.
    let out = e.on_state(
        o(1, 1, 1),
        5,
        tcp_state::ESTABLISHED,
        &v4([127, 0, 0, 1], 40000),
        &v4([127, 0, 0, 1], 5001),
    );
    assert_eq!(closed(&out)[0].result, "failed");
    assert!(e.on_connect(o(1, 1, 2), 5, SOCK_STREAM, 0, &v4([127, 0, 0, 1], 5001)).is_empty());
    let c = opened(&e.on_close(1, 5, 1, 1, 3))[0].clone();
    assert_eq!((c.result, c.local_port), ("established", Some(40000)));
    // EISCONN on a connected socket is not a new connection.
    e.on_connect(o(1, 1, 4), 6, SOCK_STREAM, 0, &v4([127, 0, 0, 1], 5001));
    let eisconn = -(libc::EISCONN as i64);
    assert!(e.on_connect(o(1, 1, 5), 6, SOCK_STREAM, eisconn, &v4([127, 0, 0, 1], 5001)).is_empty());
    assert_eq!(e.len(), 1);
}

#[test]
fn fds_closed_without_close_end_only_their_connections() {
    let mut e = Egress::default();
    for fd in [3, 5, 9] {
        e.on_connect(o(1, 1, 0), fd, SOCK_STREAM, 0, &v4([127, 0, 0, 1], 5000 + fd as u16));
    }
    e.on_connect(o(2, 2, 0), 5, SOCK_STREAM, 0, &v4([127, 0, 0, 1], 6000));
    let out = e.on_fds_closed(1, |fd| (4..=9).contains(&fd), 1, |fd| (fd as u64, 0));
    let mut fds: Vec<(i32, u64)> = closed(&out).iter().map(|c| (c.fd, c.bytes_sent)).collect();
    fds.sort();
    assert_eq!(fds, [(5, 5), (9, 9)]);
    assert_eq!(e.len(), 2);
}

#[test]
fn datagrams_to_other_peers_are_other_connections_and_tcp_ignores_sendto_addresses() {
    let mut e = Egress::default();
    let send = |e: &mut Egress, t, port| {
        e.on_data(o(1, 1, t), 5, Direction::Send, SOCK_DGRAM, &v4([127, 0, 0, 1], port), b"q")
    };
    assert_eq!(opened(&send(&mut e, 0, 4001))[0].remote_port, 4001);
    assert!(send(&mut e, 1, 4001).is_empty());
    let out = send(&mut e, 2, 4002);
    assert_eq!((closed(&out)[0].remote_port, opened(&out)[0].remote_port), (4001, 4002));
    // A TLS ClientHello on a TCP socket, "sent to" port 53: named by its SNI, not taken for DNS.
    e.on_connect(o(1, 1, 3), 6, SOCK_STREAM, 0, &v4([127, 0, 0, 1], 443));
    let hello = build_client_hello("api.anthropic.com", 32, 16384);
    let out = e.on_data(o(1, 1, 4), 6, Direction::Send, SOCK_STREAM, &v4([127, 0, 0, 1], 53), &hello);
    let c = opened(&out)[0];
    assert_eq!((c.remote_port, c.tls_sni.as_deref()), (443, Some("api.anthropic.com")));
}

#[test]
fn socks5_handshake_names_the_destination_and_waits_for_the_tunnelled_hello() {
    let mut e = Egress::default();
    let none = RawSockAddr { len: 0, data: [0; 28] };
    e.on_connect(o(1, 1, 0), 5, SOCK_STREAM, 0, &v4([127, 0, 0, 1], 1080));
    let mut send = |data: &[u8]| e.on_data(o(1, 1, 1), 5, Direction::Send, SOCK_STREAM, &none, data);
    assert!(send(&[5, 1, 2]).is_empty(), "greeting");
    assert!(send(&[1, 1, b'u', 2, b'p', b'w']).is_empty(), "authentication");
    let mut req = vec![5, 1, 0, 3, 17];
    req.extend_from_slice(b"api.anthropic.com");
    req.extend_from_slice(&[1, 187]);
    assert!(send(&req).is_empty(), "request");
    let out = send(&build_client_hello("api.anthropic.com", 32, 16384));
    let c = opened(&out)[0];
    assert_eq!(
        (c.host.as_deref(), c.host_source, c.proxy),
        (Some("api.anthropic.com"), Some(HostSource::SocksConnect), true)
    );
    assert_eq!(c.tls_sni.as_deref(), Some("api.anthropic.com"));
}
