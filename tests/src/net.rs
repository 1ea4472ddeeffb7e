//! Network fixtures for tests: a network namespace of the test's own, and small servers on
//! loopback (HTTP, byte sink, CONNECT proxy, DNS) running on threads that stop on drop.
//! Nothing here reaches any address but loopback.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use crate::{Guard, TempDir};

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A network namespace with loopback up, an extra address on `lo` (glibc's AI_ADDRCONFIG wants
/// one that is not 127/8 before it asks DNS), and a resolv.conf pointing at 127.0.0.1
/// (`ip netns exec` binds /etc/netns/<name>/resolv.conf over /etc/resolv.conf).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        Self::with_hosts(tag, &[])
    }

    /// A namespace whose /etc/hosts also maps `hosts` (names to 127.0.0.1).
    pub fn with_hosts(tag: &str, hosts: &[&str]) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name = format!("aiw-{tag}-{}-{n}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        ip(&["netns", "add", &name]);
        let ns = Self { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ip(&["-n", &ns.name, "addr", "add", "10.251.0.1/32", "dev", "lo"]);
        let etc = format!("/etc/netns/{}", ns.name);
        std::fs::create_dir_all(&etc).expect("mkdir /etc/netns/<ns>");
        std::fs::write(format!("{etc}/resolv.conf"), "nameserver 127.0.0.1\noptions timeout:2 attempts:2\n")
            .expect("write resolv.conf");
        if !hosts.is_empty() {
            let lines: String = hosts.iter().map(|h| format!("127.0.0.1 {h}\n")).collect();
            std::fs::write(format!("{etc}/hosts"), format!("127.0.0.1 localhost\n{lines}"))
                .expect("write hosts");
        }
        ns
    }

    /// Moves the calling thread into the namespace (network namespaces are per thread).
    pub fn enter_thread(&self) {
        enter_netns(&self.name);
    }

    /// `program args` run inside the namespace (through `ip netns exec`, which execs it).
    pub fn command(&self, program: &std::path::Path, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program).args(args);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.name));
    }
}

/// A server thread; stops (and is joined) on drop.
pub struct Server {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn spawn_server(
    netns: Option<&Netns>,
    bind: &str,
    udp: bool,
    serve: impl Fn(Either, &AtomicBool) + Send + 'static,
) -> Server {
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = netns.map(|n| n.name.clone());
    let bind = bind.to_string();
    let s = stop.clone();
    let thread = std::thread::spawn(move || {
        if let Some(name) = ns {
            enter_netns(&name);
        }
        let sock = if udp {
            Either::Udp(UdpSocket::bind(&bind).expect("bind udp"))
        } else {
            Either::Tcp(TcpListener::bind(&bind).expect("bind tcp"))
        };
        tx.send(sock.local_addr()).expect("report address");
        serve(sock, &s);
    });
    let addr = rx.recv().expect("server started");
    Server { addr, stop, thread: Some(thread) }
}

fn enter_netns(name: &str) {
    let f = std::fs::File::open(format!("/run/netns/{name}")).expect("open netns");
    // SAFETY: setns on a valid namespace fd; affects only this thread's network namespace.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
}

pub enum Either {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Either {
    fn local_addr(&self) -> SocketAddr {
        match self {
            Self::Tcp(l) => l.local_addr().expect("addr"),
            Self::Udp(u) => u.local_addr().expect("addr"),
        }
    }
}

/// Accepts connections until stopped, handing each to `handle` on this thread.
pub(crate) fn accept_loop(sock: Either, stop: &AtomicBool, handle: impl Fn(TcpStream)) {
    let Either::Tcp(l) = sock else { unreachable!() };
    l.set_nonblocking(true).expect("nonblocking");
    while !stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((s, _)) => {
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
                handle(s);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn read_head(s: &mut impl Read) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut b = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
    buf
}

/// A mock LLM API: answers every request with a small JSON completion.
pub fn http_server(netns: Option<&Netns>, bind: &str) -> Server {
    spawn_server(netns, bind, false, |sock, stop| {
        accept_loop(sock, stop, |mut s| {
            read_head(&mut s);
            let body = br#"{"type":"message","role":"assistant","content":[{"type":"text","text":"ok"}]}"#;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(body);
        })
    })
}

/// Reads whatever comes until the peer stops sending, then answers `ok` and closes.
pub fn sink_server(netns: Option<&Netns>, bind: &str) -> Server {
    spawn_server(netns, bind, false, |sock, stop| {
        accept_loop(sock, stop, |mut s| {
            let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
            let mut b = [0u8; 65536];
            while let Ok(n) = s.read(&mut b) {
                if n == 0 {
                    break;
                }
            }
            let _ = s.write_all(b"ok");
        })
    })
}

/// An HTTP CONNECT proxy that tunnels every CONNECT, whatever its target, to `upstream`.
pub fn connect_proxy(upstream: SocketAddr) -> Server {
    spawn_server(None, "127.0.0.1:0", false, move |sock, stop| {
        accept_loop(sock, stop, |mut client| {
            let head = read_head(&mut client);
            if !head.starts_with(b"CONNECT ") {
                let _ = client.write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n");
                return;
            }
            let Ok(up) = TcpStream::connect(upstream) else { return };
            let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
            pipe(client, up);
        })
    })
}

/// A SOCKS5 proxy (RFC 1928) on loopback that asks for a user and password (RFC 1929), accepts
/// any, and tunnels every CONNECT to `upstream` whatever it names.
pub fn socks5_proxy(upstream: SocketAddr) -> Server {
    spawn_server(None, "127.0.0.1:0", false, move |sock, stop| {
        accept_loop(sock, stop, |mut client| {
            let mut b = [0u8; 512];
            // Greeting, then the user/password sub-negotiation, then the request: one read each,
            // as the client waits for every answer before it sends the next.
            if client.read(&mut b).unwrap_or(0) < 3 || b[0] != 5 {
                return;
            }
            let _ = client.write_all(&[5, 2]);
            if client.read(&mut b).unwrap_or(0) < 3 || b[0] != 1 {
                return;
            }
            let _ = client.write_all(&[1, 0]);
            if client.read(&mut b).unwrap_or(0) < 10 || b[..2] != [5, 1] {
                return;
            }
            let Ok(up) = TcpStream::connect(upstream) else { return };
            let _ = client.write_all(&[5, 0, 0, 1, 127, 0, 0, 1, 0, 0]);
            pipe(client, up);
        })
    })
}

/// Copies both ways until each side is done.
fn pipe(mut client: TcpStream, mut up: TcpStream) {
    let (mut c2, mut u2) = (client.try_clone().expect("clone"), up.try_clone().expect("clone"));
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut u2, &mut c2);
        let _ = c2.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut client, &mut up);
    let _ = up.shutdown(std::net::Shutdown::Write);
    let _ = t.join();
}

/// A DNS server on 127.0.0.1:53 in `netns`: A records for `names`, empty answers otherwise.
pub fn dns_server(netns: &Netns, names: &[(&str, Ipv4Addr)]) -> Server {
    let names: Vec<(String, Ipv4Addr)> = names.iter().map(|(n, a)| (n.to_string(), *a)).collect();
    spawn_server(Some(netns), "127.0.0.1:53", true, move |sock, stop| {
        let Either::Udp(u) = sock else { unreachable!() };
        u.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
        let mut b = [0u8; 1500];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, peer)) = u.recv_from(&mut b) else { continue };
            if let Some(resp) = answer(&b[..n], &names) {
                let _ = u.send_to(&resp, peer);
            }
        }
    })
}

/// A response to query `q`: header, the question echoed, and an A record if the name is known.
fn answer(q: &[u8], names: &[(String, Ipv4Addr)]) -> Option<Vec<u8>> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*q.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(q.get(i..i + len)?).to_ascii_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*q.get(i)?, *q.get(i + 1)?]);
    let question = q.get(12..i + 4)?;
    let name = labels.join(".");
    let hit = names.iter().find(|(n, _)| *n == name).map(|(_, a)| *a);
    let a = hit.filter(|_| qtype == 1);
    let mut r = q.get(..2)?.to_vec();
    r.extend([0x81, if hit.is_some() { 0x80 } else { 0x83 }, 0, 1, 0, u8::from(a.is_some()), 0, 0, 0, 0]);
    r.extend_from_slice(question);
    if let Some(a) = a {
        r.extend([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend(a.octets());
    }
    Some(r)
}

/// `openssl s_server` on 127.0.0.1:`port` with a throwaway certificate.
pub fn tls_server(dir: &TempDir) -> (Guard, SocketAddr) {
    let (key, cert) = (dir.path("key.pem"), dir.path("cert.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=aiwatch-test",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run openssl req");
    assert!(ok.success(), "openssl req failed");
    let port = crate::free_port();
    let g = Guard(
        Command::new("openssl")
            .args(["s_server", "-quiet", "-www", "-accept"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("-key")
            .arg(&key)
            .arg("-cert")
            .arg(&cert)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start openssl s_server"),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    for _ in 0..300 {
        if TcpStream::connect(addr).is_ok() {
            return (g, addr);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("openssl s_server did not start");
}

/// A mock LLM API speaking enough of the Anthropic Messages API (streaming or not) and the
/// Gemini API (`generateContent`, `streamGenerateContent`, `countTokens`) for the real CLIs to
/// complete a one-shot prompt. Every answer says "ok".
pub fn llm_server(netns: Option<&Netns>, bind: &str) -> Server {
    llm_server_with_work(netns, bind, &[])
}

/// [`llm_server`] that, to a request offering the assistant's shell tool (Claude Code's `Bash`,
/// Gemini CLI's `run_shell_command`), answers with a call of that tool running `work[n]`, where
/// `n` is the number of tool results the request already carries; "ok" once all have run. The
/// assistant then works as in a real session: it runs commands, and calls the API again with
/// each result.
pub fn llm_server_with_work(netns: Option<&Netns>, bind: &str, work: &'static [&'static str]) -> Server {
    spawn_server(netns, bind, false, move |sock, stop| {
        accept_loop(sock, stop, |mut s| {
            serve_llm(&mut s, work);
        })
    })
}

/// Reads one request from `s` (its head, then a body of its Content-Length) and answers it as
/// [`llm_server_with_work`] does, closing the exchange (`Connection: close`). Any byte stream:
/// a TCP connection, or the plaintext side of a TLS one ([`crate::tls`]). Returns the request as
/// received (head and body), for mocks that keep what they were sent.
pub(crate) fn serve_llm(s: &mut (impl Read + Write), work: &[&'static str]) -> Vec<u8> {
    let mut buf = read_head(s);
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").map_or(buf.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut b = [0u8; 65536];
    while buf.len() < head_end + len {
        match s.read(&mut b) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&b[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end.min(buf.len())..]).replace(' ', "");
    let first = head.lines().next().unwrap_or("");
    let (ctype, answer) = llm_answer(first, &body, work);
    let _ = s.write_all(
        format!(
            "HTTP/1.1 {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            if ctype.is_empty() { "404 Not Found" } else { "200 OK" },
            answer.len()
        )
        .as_bytes(),
    );
    if !first.starts_with("HEAD ") {
        let _ = s.write_all(answer.as_bytes());
    }
    let _ = s.flush();
    buf
}

/// The next command of `work` for a request that offers the shell tool named `tool` and already
/// carries `done` results (the request body without spaces).
fn next_command(body: &str, tool: &str, done: &str, work: &[&'static str]) -> Option<&'static str> {
    if !body.contains(&format!("\"name\":\"{tool}\"")) {
        return None;
    }
    work.get(body.matches(done).count()).copied()
}

fn llm_answer(request_line: &str, body: &str, work: &[&'static str]) -> (&'static str, String) {
    use serde_json::{json, Value};
    let path = request_line.split(' ').nth(1).unwrap_or("");
    let candidate = |part: Value| {
        json!({"candidates":[{"content":{"parts":[part],"role":"model"},"finishReason":"STOP","index":0}],
               "usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":1,"totalTokenCount":2}})
        .to_string()
    };
    if path.contains(":streamGenerateContent") {
        let part = match next_command(body, "run_shell_command", "\"functionResponse\"", work) {
            Some(command) => json!({"functionCall":{"name":"run_shell_command","args":{"command":command}}}),
            None => json!({"text":"ok"}),
        };
        ("text/event-stream", format!("data: {}\r\n\r\n", candidate(part)))
    } else if path.contains(":generateContent") {
        // Gemini CLI's model router asks for a JSON decision.
        let text = if body.contains("application/json") {
            r#"{"reasoning":"simple","model_choice":"flash"}"#
        } else {
            "ok"
        };
        ("application/json", candidate(json!({ "text": text })))
    } else if path.contains(":countTokens") {
        ("application/json", r#"{"totalTokens":1}"#.to_string())
    } else if path.starts_with("/v1/messages") && request_line.starts_with("POST") {
        let command = next_command(body, "Bash", "\"type\":\"tool_result\"", work);
        let id = format!("toolu_mock_{}", body.matches("\"type\":\"tool_result\"").count());
        let (block, stop) = match command {
            Some(c) => (
                json!({"type":"tool_use","id":id,"name":"Bash","input":{"command":c,"description":"Run a command"}}),
                "tool_use",
            ),
            None => (json!({"type":"text","text":"ok"}), "end_turn"),
        };
        anthropic_message(block, stop, body.contains("\"stream\":true"))
    } else {
        ("", r#"{"error":"not found"}"#.to_string())
    }
}

/// An Anthropic Messages answer of one content block: one JSON message, or its server-sent
/// events (a tool call's input arrives as one `input_json_delta`).
fn anthropic_message(block: serde_json::Value, stop: &str, stream: bool) -> (&'static str, String) {
    use serde_json::json;
    let msg = json!({"id":"msg_1","type":"message","role":"assistant","model":"mock","content":[block.clone()],
                     "stop_reason":stop,"stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}});
    if !stream {
        return ("application/json", msg.to_string());
    }
    let mut start = msg.clone();
    start["content"] = json!([]);
    start["stop_reason"] = serde_json::Value::Null;
    let (empty, delta) = if block["type"] == "tool_use" {
        let mut empty = block.clone();
        empty["input"] = json!({});
        (empty, json!({"type":"input_json_delta","partial_json":block["input"].to_string()}))
    } else {
        (json!({"type":"text","text":""}), json!({"type":"text_delta","text":block["text"]}))
    };
    let events = [
        ("message_start", json!({"type":"message_start","message":start})),
        ("content_block_start", json!({"type":"content_block_start","index":0,"content_block":empty})),
        ("content_block_delta", json!({"type":"content_block_delta","index":0,"delta":delta})),
        ("content_block_stop", json!({"type":"content_block_stop","index":0})),
        (
            "message_delta",
            json!({"type":"message_delta","delta":{"stop_reason":stop,"stop_sequence":null},"usage":{"output_tokens":1}}),
        ),
        ("message_stop", json!({"type":"message_stop"})),
    ];
    ("text/event-stream", events.iter().map(|(e, d)| format!("event: {e}\ndata: {d}\n\n")).collect())
}
