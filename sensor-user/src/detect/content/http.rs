//! One HTTP/1.x request at a time from the bytes a client sends: its head, then its body by
//! `Content-Length` or chunked framing. The bytes come from the kernel's content copy, which
//! may leave gaps (a send larger than the copy, records shed under pressure): a gap is counted,
//! and the request it falls in is reported incomplete rather than guessed at.

/// A request head's size at most; beyond it the bytes are not a request we can frame.
const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 100;

/// A complete (or incomplete, with `missing` bytes) request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The target's path, without its query (a query may carry an API key).
    pub path: String,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body's length as the request framed it.
    pub body_len: u64,
    /// Bytes of the request the copy left out (0: the body is whole).
    pub missing: u64,
    /// The body went past the request budget and was cut there.
    pub cut: bool,
}

/// How a request's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    Chunked,
}

#[derive(Debug)]
struct Head {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    framing: Framing,
}

impl Head {
    fn into_request(self, body: Vec<u8>, body_len: u64, missing: u64, cut: bool) -> Request {
        Request { method: self.method, path: self.path, headers: self.headers, body, body_len, missing, cut }
    }
}

/// The requests of one connection, assembled from its sends.
#[derive(Debug, Default)]
pub struct Assembler {
    buf: Vec<u8>,
    head: Option<Head>,
    /// Bytes of the current request known lost.
    missing: u64,
    /// Body bytes dropped past the budget.
    cut: bool,
    /// Lost sync: bytes are skipped until a send starts a new request head.
    lost: bool,
}

impl Assembler {
    /// Bytes of a send (or a gap of `gap` bytes the copy left out before them); `budget` bounds
    /// the body kept per request. Returns the requests these bytes complete.
    pub fn push(&mut self, start_of_send: bool, gap: u64, data: &[u8], budget: usize) -> Vec<Request> {
        let mut done = Vec::new();
        if gap > 0 {
            match &self.head {
                // Within a Content-Length body: the gap is body bytes we do not have.
                Some(Head { framing: Framing::Length(_), .. }) => self.missing += gap,
                // Chunked framing (or a head) cannot be followed across a gap.
                _ => self.resync(),
            }
        }
        if start_of_send && self.head.is_some() && looks_like_request(data) {
            // A new request while the last one's body is unfinished: the kernel's budget for it
            // ran out, or its tail was lost. It ends here, incomplete.
            done.extend(self.flush_incomplete(budget));
        }
        if self.lost {
            if !(start_of_send && looks_like_request(data)) {
                return done;
            }
            self.lost = false;
        }
        self.buf.extend_from_slice(data);
        loop {
            if self.head.is_none() {
                match parse_head(&self.buf) {
                    Some(Ok((head, len))) => {
                        self.buf.drain(..len);
                        self.head = Some(head);
                    }
                    Some(Err(())) => {
                        self.resync();
                        return done;
                    }
                    None => return done,
                }
            }
            match self.take_body(budget) {
                Some(req) => done.push(req),
                None => return done,
            }
        }
    }

    /// Bytes held for the request in progress.
    pub fn held(&self) -> usize {
        self.buf.len()
    }

    /// Gives up the request in progress (memory is short): its bytes are dropped and the
    /// connection's next request starts afresh.
    pub fn give_up(&mut self) {
        self.resync();
    }

    /// The connection ended: the request in progress, if any, incomplete.
    pub fn finish(&mut self, budget: usize) -> Option<Request> {
        self.flush_incomplete(budget)
    }

    /// The current request as far as it came, with what it lacks counted.
    fn flush_incomplete(&mut self, budget: usize) -> Option<Request> {
        let head = self.head.take()?;
        let mut body = std::mem::take(&mut self.buf);
        let have = body.len() as u64 + self.missing;
        let body_len = match head.framing {
            Framing::Length(n) => n,
            Framing::Chunked => have + 1,
        };
        body.truncate(budget);
        let missing = body_len.saturating_sub(body.len() as u64).max(1);
        self.missing = 0;
        self.cut = false;
        Some(head.into_request(body, body_len, missing, false))
    }

    fn resync(&mut self) {
        self.buf.clear();
        self.head = None;
        self.missing = 0;
        self.cut = false;
        self.lost = true;
    }

    /// The body of the current head, once all of it is here.
    fn take_body(&mut self, budget: usize) -> Option<Request> {
        let framing = self.head.as_ref()?.framing;
        let (body, body_len, consumed) = match framing {
            Framing::Length(n) => {
                let have = self.buf.len() as u64 + self.missing;
                if have < n {
                    // Past the budget the bytes are counted, not kept.
                    if self.buf.len() > budget {
                        self.missing += (self.buf.len() - budget) as u64;
                        self.buf.truncate(budget);
                        self.cut = true;
                    }
                    return None;
                }
                let take = (n - self.missing.min(n)) as usize;
                let body = self.buf[..take.min(self.buf.len())].to_vec();
                (body, n, take.min(self.buf.len()))
            }
            Framing::Chunked => match dechunk(&self.buf, budget) {
                Dechunked::Done { body, consumed, total } => (body, total, consumed),
                Dechunked::More => {
                    if self.buf.len() > budget.saturating_mul(2).max(MAX_HEAD) {
                        // Too much held for one chunked body: give it up.
                        self.resync();
                    }
                    return None;
                }
                Dechunked::Bad => {
                    self.resync();
                    return None;
                }
            },
        };
        let head = self.head.take()?;
        self.buf.drain(..consumed);
        let cut = std::mem::take(&mut self.cut) || body.len() > budget;
        let missing = std::mem::take(&mut self.missing);
        let mut body = body;
        body.truncate(budget);
        Some(head.into_request(body, body_len, missing, cut))
    }
}

fn looks_like_request(data: &[u8]) -> bool {
    data.starts_with(b"POST ") || data.starts_with(b"PUT ")
}

/// `None`: not all of the head is here yet; `Some(Err)`: not a request head.
#[allow(clippy::type_complexity)]
fn parse_head(buf: &[u8]) -> Option<Result<(Head, usize), ()>> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD { Some(Err(())) } else { None };
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| ());
    let Ok(text) = text else { return Some(Err(())) };
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version)) = (first.next(), first.next(), first.next()) else {
        return Some(Err(()));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) || !version.starts_with("HTTP/1.")
    {
        return Some(Err(()));
    }
    let mut headers = Vec::new();
    let mut framing = Framing::Length(0);
    for line in lines.take(MAX_HEADERS) {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_string());
        match name.as_str() {
            "content-length" => match value.parse() {
                Ok(n) => framing = Framing::Length(n),
                Err(_) => return Some(Err(())),
            },
            "transfer-encoding" if value.to_ascii_lowercase().contains("chunked") => {
                framing = Framing::Chunked
            }
            _ => {}
        }
        headers.push((name, value));
    }
    let path = target.split(['?', '#']).next().unwrap_or("").to_string();
    Some(Ok((Head { method: method.to_string(), path, headers, framing }, end + 4)))
}

enum Dechunked {
    Done { body: Vec<u8>, consumed: usize, total: u64 },
    More,
    Bad,
}

/// A chunked body: the data of its chunks (at most `budget` kept), once its last chunk and
/// trailer are here.
fn dechunk(buf: &[u8], budget: usize) -> Dechunked {
    let mut body = Vec::new();
    let mut at = 0usize;
    let mut total = 0u64;
    loop {
        let Some(eol) = buf[at..].windows(2).position(|w| w == b"\r\n") else { return Dechunked::More };
        let line = &buf[at..at + eol];
        let size = std::str::from_utf8(line).ok().and_then(|l| {
            let hex = l.split(';').next().unwrap_or("").trim();
            u64::from_str_radix(hex, 16).ok()
        });
        let Some(size) = size else { return Dechunked::Bad };
        at += eol + 2;
        if size == 0 {
            // Trailer: header lines until an empty one.
            loop {
                let Some(eol) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
                    return Dechunked::More;
                };
                at += eol + 2;
                if eol == 0 {
                    return Dechunked::Done { body, consumed: at, total };
                }
            }
        }
        let Ok(size) = usize::try_from(size) else { return Dechunked::Bad };
        if buf.len() < at.saturating_add(size).saturating_add(2) {
            return Dechunked::More;
        }
        let room = budget.saturating_sub(body.len());
        body.extend_from_slice(&buf[at..at + size.min(room)]);
        total += size as u64;
        at += size + 2;
    }
}

/// The head of a request in a send's first bytes, as a request without its body (`missing` is
/// the body's length): for scanning headers only.
pub fn head_only(data: &[u8]) -> Option<Request> {
    let (head, _) = parse_head(data)?.ok()?;
    let body_len = match head.framing {
        Framing::Length(n) => n,
        Framing::Chunked => 0,
    };
    Some(head.into_request(Vec::new(), body_len, body_len, false))
}
