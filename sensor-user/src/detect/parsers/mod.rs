//! Parsers of untrusted bytes copied from processes' sends: pure functions that never panic,
//! never allocate more than a small bound, and say why they gave up.

pub mod dns;
pub mod http;
pub mod netlink;
pub mod sockaddr;
pub mod socks;
pub mod tls;

/// A bounds-checked reader over a byte slice.
#[derive(Clone, Copy)]
pub(crate) struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }
    pub fn pos(&self) -> usize {
        self.pos
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    pub fn u24(&mut self) -> Option<usize> {
        self.take(3).map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Whether `s` looks like a DNS host name (what SNI, Host and CONNECT should carry).
pub fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod fuzzish {
    //! Every parser against deterministic pseudo-random and mutated inputs: no panics.
    pub fn inputs(seeds: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut out = Vec::new();
        for len in [0usize, 1, 2, 5, 9, 12, 43, 100, 600, 5000] {
            out.push((0..len).map(|_| next() as u8).collect());
        }
        for seed in seeds {
            for cut in 0..seed.len().min(400) {
                out.push(seed[..cut].to_vec());
            }
            for _ in 0..300 {
                let mut m = seed.to_vec();
                for _ in 0..1 + next() % 4 {
                    if !m.is_empty() {
                        let i = (next() as usize) % m.len();
                        m[i] = next() as u8;
                    }
                }
                out.push(m);
            }
        }
        out
    }
}
