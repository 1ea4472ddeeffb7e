//! Stage 4, content: the HTTP requests sessions send to LLM APIs, reassembled from the kernel's
//! content copy (plain-HTTP sends, or the plaintext given to OpenSSL's `SSL_write`), scanned
//! for covert markers (detect::markers) and dropped. Only what the scan derives leaves this
//! module; the plaintext is never kept past the scan.

pub mod http;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use serde::Serialize;

use crate::{
    config::content::{ContentConfig, ContentMode},
    detect::{egress::Destination, markers},
};

/// Connections whose requests are being assembled, at most (the oldest is dropped).
const MAX_CONNECTIONS: usize = 1024;
/// Sessions whose scanned bytes are counted, at most.
const MAX_SESSIONS: usize = 4096;
/// Request bytes held across all connections at most: a session opening many plain-HTTP
/// connections with large bodies it never finishes must not grow the daemon.
const MAX_HELD: usize = 64 << 20;

/// Where a request's bytes come from: a socket's sends (plain HTTP), or the plaintext written
/// to one OpenSSL connection (`SSL *`) of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnKey {
    Sock { pid: u32, fd: i32 },
    Tls { pid: u32, ssl: u64 },
}

impl ConnKey {
    pub fn pid(self) -> u32 {
        match self {
            Self::Sock { pid, .. } | Self::Tls { pid, .. } => pid,
        }
    }

    fn transport(self) -> &'static str {
        match self {
            Self::Sock { .. } => "plain_http",
            Self::Tls { .. } => "tls_openssl",
        }
    }
}

/// A connection the egress stage named and classed.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub id: String,
    pub class: String,
    pub destination: Destination,
}

/// What one request was, and what the scan found in it.
#[derive(Debug, Clone, Serialize)]
pub struct RequestInfo {
    pub method: String,
    /// The target's path, without its query.
    pub path: String,
    /// `plain_http`, or `tls_openssl` (the plaintext given to OpenSSL's `SSL_write`).
    pub transport: &'static str,
    /// The body's length as the request framed it.
    pub body_bytes: u64,
    /// Body bytes scanned.
    pub scanned_bytes: u64,
    /// The whole body was scanned (no gap in the copy, within the budget).
    pub complete: bool,
}

/// One scanned request, ready for a `prompt_markers` record.
#[derive(Debug, Clone)]
pub struct Scanned {
    pub pid: u32,
    pub conn: ConnInfo,
    pub request: RequestInfo,
    pub found: markers::RequestMarkers,
    /// Why the body could not be scanned (not JSON, incomplete), if so.
    pub error: Option<String>,
}

/// Why a request was not scanned, for `aiwatch_prompt_requests_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// Its connection's destination is not an LLM API (or not named).
    NotLlm,
    /// The session's byte budget is spent.
    SessionBudget,
    /// The requests held in memory reached their bound: this one was dropped.
    MemoryCap,
}

#[derive(Default)]
struct Conn {
    info: Option<ConnInfo>,
    /// Opened to a destination of a class not scanned: its bytes are dropped as they come.
    skip: bool,
    asm: http::Assembler,
    /// Bytes of the current send still to come.
    expect: u64,
    /// Order of arrival, for dropping the oldest.
    seq: u64,
}

pub struct Content {
    cfg: ContentConfig,
    conns: HashMap<ConnKey, Conn>,
    /// Bytes scanned per session root.
    sessions: HashMap<u32, u64>,
    /// Request bytes held by all assemblers.
    held: usize,
    seq: u64,
}

impl Content {
    pub fn new(cfg: &ContentConfig) -> Self {
        Self { cfg: cfg.clone(), conns: HashMap::new(), sessions: HashMap::new(), held: 0, seq: 0 }
    }

    pub fn reconfigure(&mut self, cfg: &ContentConfig) {
        self.cfg = cfg.clone();
    }

    /// The egress stage opened (named and classed) a connection.
    pub fn opened(&mut self, (pid, fd): (u32, i32), info: ConnInfo) {
        let scanned = self.scanned_class(&info.class);
        let c = self.conn(ConnKey::Sock { pid, fd });
        // Kept either way: a TLS request finds its destination through it.
        c.info = Some(info);
        if !scanned {
            c.skip = true;
            let dropped = c.asm.held();
            c.asm.give_up();
            self.held = self.held.saturating_sub(dropped);
        }
    }

    /// A connection (or its process) ended: a request it was still sending is reported
    /// incomplete (the kernel's budget ran out, or its tail was lost); the rest is dropped.
    pub fn closed(&mut self, (pid, fd): (u32, i32)) -> Option<Scanned> {
        self.end(ConnKey::Sock { pid, fd })
    }

    /// A process exited: its TLS connections end (its sockets end through the egress stage).
    pub fn process_exit(&mut self, pid: u32) -> Vec<Scanned> {
        let tls: Vec<ConnKey> = self
            .conns
            .keys()
            .filter(|k| matches!(k, ConnKey::Tls { pid: p, .. } if *p == pid))
            .copied()
            .collect();
        tls.into_iter().filter_map(|k| self.end(k)).collect()
    }

    fn end(&mut self, key: ConnKey) -> Option<Scanned> {
        let mut c = self.conns.remove(&key)?;
        self.held = self.held.saturating_sub(c.asm.held());
        let info = c.info.filter(|_| !c.skip)?;
        let req = c.asm.finish(self.cfg.request_budget as usize)?;
        Some(scan(key, info, req, true))
    }

    /// A session ended.
    pub fn session_end(&mut self, root: u32) {
        self.sessions.remove(&root);
    }

    fn scanned_class(&self, class: &str) -> bool {
        class == "llm_api" || class == "base_url" || self.cfg.destinations.iter().any(|d| d == class)
    }

    fn conn(&mut self, key: ConnKey) -> &mut Conn {
        if !self.conns.contains_key(&key) && self.conns.len() >= MAX_CONNECTIONS {
            if let Some(oldest) = self.conns.iter().min_by_key(|(_, c)| c.seq).map(|(k, _)| *k) {
                if let Some(c) = self.conns.remove(&oldest) {
                    self.held = self.held.saturating_sub(c.asm.held());
                }
            }
        }
        self.seq += 1;
        let seq = self.seq;
        self.conns.entry(key).or_insert_with(|| Conn { seq, ..Conn::default() })
    }

    /// One chunk of the kernel's content copy of a send on `key` (`start`: the send's first,
    /// with the send's byte count). Returns the requests it completes, scanned, and those that
    /// were not.
    pub fn chunk(
        &mut self,
        key: ConnKey,
        root: u32,
        start: Option<u64>,
        data: &[u8],
    ) -> (Vec<Scanned>, Vec<Skipped>) {
        if self.cfg.markers != ContentMode::On {
            return (Vec::new(), Vec::new());
        }
        let budget = self.cfg.request_budget as usize;
        let held_total = self.held;
        let c = self.conn(key);
        if c.skip {
            return (Vec::new(), Vec::new());
        }
        // What the copy left out before these bytes: the rest of the last send, or (a chunk
        // whose send's first was lost) an unknown amount.
        let gap = match start {
            Some(len) => std::mem::replace(&mut c.expect, len),
            None if c.expect == 0 => u64::MAX,
            None => 0,
        };
        c.expect = c.expect.saturating_sub(data.len() as u64);
        let before = c.asm.held();
        if held_total + data.len() > MAX_HELD {
            c.asm.give_up();
            self.held = held_total.saturating_sub(before);
            return (Vec::new(), vec![Skipped::MemoryCap]);
        }
        let requests = c.asm.push(start.is_some(), gap, data, budget);
        let after = c.asm.held();
        let info = c.info.clone();
        self.held = (held_total + after).saturating_sub(before);
        let mut scanned = Vec::new();
        let mut skipped = Vec::new();
        for req in requests {
            let info = match (key, &info) {
                (ConnKey::Tls { pid, .. }, None) => self.tls_destination(key, pid, &req),
                _ => info.clone(),
            };
            let Some(info) = info else {
                skipped.push(Skipped::NotLlm);
                continue;
            };
            let used = self.sessions.get(&root).copied().unwrap_or(0);
            if used >= self.cfg.session_budget {
                skipped.push(Skipped::SessionBudget);
                continue;
            }
            if self.sessions.len() >= MAX_SESSIONS && !self.sessions.contains_key(&root) {
                self.sessions.clear();
            }
            *self.sessions.entry(root).or_default() += req.body.len() as u64;
            scanned.push(scan(key, info, req, true));
        }
        (scanned, skipped)
    }
}

impl Content {
    /// With `markers = "headers-only"`: the headers of a request head in a send's first bytes
    /// (the copy that names the destination) on a scanned connection.
    pub fn head(&mut self, (pid, fd): (u32, i32), data: &[u8]) -> Option<Scanned> {
        if self.cfg.markers != ContentMode::HeadersOnly {
            return None;
        }
        let key = ConnKey::Sock { pid, fd };
        let c = self.conns.get(&key)?;
        let info = c.info.clone().filter(|_| !c.skip)?;
        let req = http::head_only(data)?;
        Some(scan(key, info, req, false))
    }

    /// The destination of a request written to an OpenSSL connection: the process's socket
    /// whose named host (or address) the request's `Host` header names, the latest if several.
    /// Not found, or of a class not scanned: none (the request is not scanned). Remembered for
    /// the connection's next requests.
    fn tls_destination(&mut self, key: ConnKey, pid: u32, req: &http::Request) -> Option<ConnInfo> {
        let host = req.headers.iter().find(|(n, _)| n == "host").map(|(_, v)| host_of(v))?;
        let (_, sock) = self
            .conns
            .iter()
            .filter(|(k, c)| {
                matches!(k, ConnKey::Sock { pid: p, .. } if *p == pid)
                    && c.info.as_ref().is_some_and(|i| names(&i.destination, host))
            })
            .max_by_key(|(_, c)| c.seq)?;
        let (info, skip) = (sock.info.clone(), sock.skip);
        let c = self.conns.get_mut(&key)?;
        c.info = info.clone();
        c.skip = skip;
        info.filter(|_| !skip)
    }
}

/// The host of a `Host` header value (`name`, `name:port`, `[v6]:port`).
fn host_of(value: &str) -> &str {
    let v = value.trim();
    if let Some(rest) = v.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match v.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => v,
    }
}

/// Whether `host` names `d`: its host name, or its address.
fn names(d: &Destination, host: &str) -> bool {
    d.host.as_deref().is_some_and(|h| h.eq_ignore_ascii_case(host)) || d.addr == host
}

/// Scans one request (its body too when `body`); its bytes are dropped on return.
fn scan(key: ConnKey, conn: ConnInfo, req: http::Request, body: bool) -> Scanned {
    let complete = req.missing == 0 && !req.cut;
    let (mut found, error) = if !body {
        (markers::RequestMarkers::default(), None)
    } else if complete {
        match markers::scan_json(&req.body) {
            Ok(found) => (found, None),
            Err(e) => (markers::RequestMarkers::default(), Some(e.to_string())),
        }
    } else {
        let why = format!("incomplete: {} of {} body bytes copied", req.body.len(), req.body_len);
        (markers::RequestMarkers::default(), Some(why))
    };
    let headers: Vec<(&str, &str)> = req.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    markers::scan_headers(&headers, &mut found);
    let request = RequestInfo {
        method: req.method,
        path: req.path,
        transport: key.transport(),
        body_bytes: req.body_len,
        scanned_bytes: if complete && body { req.body.len() as u64 } else { 0 },
        complete: complete && body,
    };
    Scanned { pid: key.pid(), conn, request, found, error }
}
