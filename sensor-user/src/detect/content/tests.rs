use super::http::{Assembler, Request};

const BUDGET: usize = 1 << 20;

fn post(body: &str, extra: &str) -> Vec<u8> {
    format!(
        "POST /v1/messages?key=SECRET HTTP/1.1\r\nHost: api\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn push_all(a: &mut Assembler, sends: &[&[u8]]) -> Vec<Request> {
    sends.iter().flat_map(|s| a.push(true, 0, s, BUDGET)).collect()
}

#[test]
fn a_request_split_across_sends_is_whole_and_its_query_dropped() {
    let bytes = post(r#"{"system":"hi"}"#, "");
    let (a1, a2) = bytes.split_at(20);
    let (a2, a3) = a2.split_at(a2.len() - 3);
    let reqs = push_all(&mut Assembler::default(), &[a1, a2, a3]);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/v1/messages");
    assert_eq!(reqs[0].body, br#"{"system":"hi"}"#);
    assert_eq!(reqs[0].missing, 0);
}

#[test]
fn keep_alive_requests_come_one_by_one() {
    let mut both = post(r#"{"a":1}"#, "");
    both.extend(post(r#"{"b":2}"#, ""));
    let reqs = push_all(&mut Assembler::default(), &[&both]);
    assert_eq!(
        reqs.iter().map(|r| r.body.clone()).collect::<Vec<_>>(),
        [br#"{"a":1}"#.to_vec(), br#"{"b":2}"#.to_vec()]
    );
}

#[test]
fn a_chunked_body_is_dechunked() {
    let head = b"POST /v1/chat HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let reqs = push_all(&mut Assembler::default(), &[&head, b"4\r\n{\"a\"\r\n", b"3\r\n:1}\r\n0\r\n\r\n"]);
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].body, br#"{"a":1}"#);
}

#[test]
fn a_gap_in_the_body_makes_the_request_incomplete_and_the_next_one_whole() {
    let first = post(r#"{"long":"0123456789"}"#, "");
    let mut a = Assembler::default();
    let mut reqs = a.push(true, 0, &first[..first.len() - 10], BUDGET);
    // The send's last 10 bytes were not copied.
    reqs.extend(a.push(true, 10, &post(r#"{"b":2}"#, ""), BUDGET));
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert_eq!(reqs[0].missing, 10);
    assert_eq!(reqs[1].body, br#"{"b":2}"#);
    assert_eq!(reqs[1].missing, 0);
}

#[test]
fn a_request_whose_copy_stopped_ends_when_the_next_begins() {
    let first = post(r#"{"long":"0123456789"}"#, "");
    let mut a = Assembler::default();
    let mut reqs = a.push(true, 0, &first[..first.len() - 10], BUDGET);
    reqs.extend(a.push(true, 0, &post(r#"{"b":2}"#, ""), BUDGET));
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    assert!(reqs[0].missing > 0);
    assert_eq!(reqs[1].body, br#"{"b":2}"#);
}

#[test]
fn a_body_past_the_budget_is_cut() {
    let body = format!(r#"{{"s":"{}"}}"#, "x".repeat(100));
    let reqs = Assembler::default().push(true, 0, &post(&body, ""), 50);
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].cut);
    assert_eq!(reqs[0].body.len(), 50);
}

#[test]
fn bytes_that_are_no_request_are_skipped_until_one_starts() {
    let mut a = Assembler::default();
    assert!(a.push(true, 0, b"\x16\x03\x01 binary that is no head\r\n\r\n", BUDGET).is_empty());
    assert!(a.push(true, 0, b"more binary", BUDGET).is_empty());
    let reqs = a.push(true, 0, &post("{}", ""), BUDGET);
    assert_eq!(reqs.len(), 1);
}

fn content() -> super::Content {
    super::Content::new(&crate::config::content::ContentConfig::default())
}

fn info(class: &str) -> super::ConnInfo {
    named(class, None, "c")
}

fn named(class: &str, host: Option<&str>, id: &str) -> super::ConnInfo {
    let destination = crate::detect::egress::Destination {
        host: host.map(str::to_string),
        addr: "127.0.0.1".into(),
        port: 443,
        proxy: false,
    };
    super::ConnInfo { id: id.into(), class: class.into(), destination }
}

fn sock(pid: u32, fd: i32) -> super::ConnKey {
    super::ConnKey::Sock { pid, fd }
}

fn tls(pid: u32, ssl: u64) -> super::ConnKey {
    super::ConnKey::Tls { pid, ssl }
}

fn post_to(host: &str, body: &str) -> Vec<u8> {
    format!("POST /v1/messages HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}", body.len())
        .into_bytes()
}

/// A request written to OpenSSL goes to the process's connection its `Host` header names (the
/// latest of several), is scanned as `tls_openssl`, and that connection's id is reported.
#[test]
fn a_tls_request_is_matched_to_the_connection_its_host_names() {
    let mut c = content();
    c.opened((7, 3), named("llm_api", Some("api.anthropic.com"), "old"));
    c.opened((7, 4), named("other", Some("telemetry.example"), "tel"));
    c.opened((7, 5), named("llm_api", Some("api.anthropic.com"), "new"));
    c.opened((8, 3), named("llm_api", Some("api.example"), "other-process"));
    let req = post_to("API.anthropic.com:443", r#"{"system":"Today\u2019s"}"#);
    let (scanned, skipped) = c.chunk(tls(7, 0xabc), 1, Some(req.len() as u64), &req);
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(scanned.len(), 1);
    assert_eq!(scanned[0].conn.id, "new");
    assert_eq!(scanned[0].request.transport, "tls_openssl");
    assert_eq!(scanned[0].pid, 7);
    // The same SSL connection's next request needs no lookup: the socket may be gone.
    assert!(c.closed((7, 5)).is_none());
    let (scanned, _) = c.chunk(tls(7, 0xabc), 1, Some(req.len() as u64), &req);
    assert_eq!(scanned.len(), 1);
}

/// A TLS request to a host none of the process's connections is named by, or to one of a class
/// not scanned, is not scanned, and said so.
#[test]
fn a_tls_request_without_a_scanned_connection_is_not_scanned() {
    let mut c = content();
    c.opened((7, 4), named("other", Some("telemetry.example"), "tel"));
    c.opened((8, 3), named("llm_api", Some("api.anthropic.com"), "other-process"));
    for (ssl, host) in ["telemetry.example", "api.anthropic.com", "[::1]:8443"].into_iter().enumerate() {
        let req = post_to(host, "{}");
        let (scanned, skipped) = c.chunk(tls(7, ssl as u64), 1, Some(req.len() as u64), &req);
        assert!(scanned.is_empty(), "{host}");
        assert_eq!(skipped, [super::Skipped::NotLlm], "{host}");
    }
}

/// A request still in flight when its process exits is reported incomplete; the connection is
/// forgotten.
#[test]
fn a_tls_request_cut_by_the_exit_is_incomplete() {
    let mut c = content();
    c.opened((7, 3), named("llm_api", Some("h"), "c"));
    let req = post_to("h", r#"{"a":"0123456789"}"#);
    let (scanned, _) = c.chunk(tls(7, 1), 1, Some(req.len() as u64), &req);
    assert_eq!(scanned.len(), 1);
    let part = &req[..req.len() - 5];
    let (scanned, _) = c.chunk(tls(7, 1), 1, Some(part.len() as u64), part);
    assert!(scanned.is_empty());
    let ended = c.process_exit(7);
    assert_eq!(ended.len(), 1);
    assert!(!ended[0].request.complete);
    assert!(c.process_exit(7).is_empty());
}

#[test]
fn a_connection_to_a_destination_not_scanned_holds_nothing() {
    let mut c = content();
    c.opened((1, 3), info("other"));
    let body = post(r#"{"a":1}"#, "");
    let (scanned, skipped) = c.chunk(sock(1, 3), 1, Some(body.len() as u64), &body);
    assert!(scanned.is_empty() && skipped.is_empty());
    assert_eq!(c.held, 0);
}

#[test]
fn requests_held_across_connections_are_bounded() {
    let mut c = content();
    // 1 MiB of an unfinished 2 MiB body on each of 70 connections: past 64 MiB held, a chunk
    // is dropped (its request given up) and counted.
    let head = b"POST /v1/messages HTTP/1.1\r\nContent-Length: 2097152\r\n\r\n".to_vec();
    let part = vec![b'x'; 1 << 20];
    let mut capped = 0;
    for fd in 0..70 {
        c.opened((1, fd), info("llm_api"));
        c.chunk(sock(1, fd), 1, Some(head.len() as u64), &head);
        let (_, skipped) = c.chunk(sock(1, fd), 1, Some(part.len() as u64), &part);
        capped += skipped.iter().filter(|s| **s == super::Skipped::MemoryCap).count();
    }
    assert!(c.held <= super::MAX_HELD, "{}", c.held);
    assert!(capped >= 6, "{capped}");
}
