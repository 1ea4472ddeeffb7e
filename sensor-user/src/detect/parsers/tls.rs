//! TLS ClientHello: the server name (SNI) and ALPN, from the first bytes a client sends.
//! Handshake messages may span several records; a ClientHello cut short still yields what was
//! read before the cut.

use super::{is_hostname, Cursor};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientHello {
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    /// The bytes ended before the ClientHello did.
    pub truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    #[error("not a TLS handshake record")]
    NotTls,
    #[error("not a ClientHello")]
    NotClientHello,
    #[error("malformed ClientHello: {0}")]
    Malformed(&'static str),
}

const RECORD_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
const EXT_ALPN: u16 = 16;
/// A ClientHello larger than this is not one (the record layer allows 2^14 per record; post-
/// quantum hellos are a few KiB).
const MAX_HELLO: usize = 64 * 1024;

/// Whether `data` starts like a TLS handshake record.
pub fn looks_like_tls(data: &[u8]) -> bool {
    data.len() >= 3 && data[0] == RECORD_HANDSHAKE && data[1] == 3 && data[2] <= 4
}

pub fn parse_client_hello(data: &[u8]) -> Result<ClientHello, TlsError> {
    if !looks_like_tls(data) {
        return Err(TlsError::NotTls);
    }
    // Reassemble the handshake bytes from consecutive handshake records.
    let mut hs: Vec<u8> = Vec::new();
    let mut c = Cursor::new(data);
    let mut truncated = false;
    while c.remaining() > 0 && hs.len() < MAX_HELLO {
        let Some(hdr) = c.take(5) else {
            truncated = true;
            break;
        };
        if hdr[0] != RECORD_HANDSHAKE {
            break;
        }
        let len = usize::from(u16::from_be_bytes([hdr[3], hdr[4]]));
        let avail = len.min(c.remaining());
        hs.extend_from_slice(c.take(avail).unwrap_or_default());
        if avail < len {
            truncated = true;
            break;
        }
        // Stop once the whole ClientHello is in.
        if hs.len() >= 4 {
            let need = 4 + ((usize::from(hs[1]) << 16) | (usize::from(hs[2]) << 8) | usize::from(hs[3]));
            if hs.len() >= need {
                break;
            }
        }
    }
    let mut h = Cursor::new(&hs);
    let kind = h.u8().ok_or(TlsError::Malformed("empty handshake"))?;
    if kind != HANDSHAKE_CLIENT_HELLO {
        return Err(TlsError::NotClientHello);
    }
    let body_len = h.u24().ok_or(TlsError::Malformed("handshake length"))?;
    if body_len > MAX_HELLO {
        return Err(TlsError::Malformed("handshake length"));
    }
    if h.remaining() < body_len {
        truncated = true;
    }
    let mut out = ClientHello { truncated, ..Default::default() };
    // What follows may be cut: every step below stops quietly at the end of the bytes.
    let _ = parse_body(&mut h, &mut out);
    if out.sni.is_none() && out.alpn.is_empty() && !out.truncated && h.remaining() > 0 {
        return Err(TlsError::Malformed("extensions"));
    }
    Ok(out)
}

fn parse_body(h: &mut Cursor<'_>, out: &mut ClientHello) -> Option<()> {
    h.take(2 + 32)?; // legacy_version, random
    let sid = usize::from(h.u8()?);
    h.take(sid)?;
    let suites = usize::from(h.u16()?);
    h.take(suites)?;
    let comp = usize::from(h.u8()?);
    h.take(comp)?;
    let ext_len = usize::from(h.u16()?);
    let exts = match h.take(ext_len) {
        Some(e) => e,
        None => {
            out.truncated = true;
            let rest = h.remaining();
            h.take(rest)?
        }
    };
    let mut e = Cursor::new(exts);
    while e.remaining() >= 4 {
        let ty = e.u16()?;
        let len = usize::from(e.u16()?);
        let Some(body) = e.take(len) else {
            out.truncated = true;
            break;
        };
        match ty {
            EXT_SERVER_NAME => out.sni = server_name(body),
            EXT_ALPN => out.alpn = alpn(body),
            _ => {}
        }
    }
    Some(())
}

fn server_name(body: &[u8]) -> Option<String> {
    let mut c = Cursor::new(body);
    let list = usize::from(c.u16()?);
    let mut l = Cursor::new(c.take(list)?);
    while l.remaining() >= 3 {
        let ty = l.u8()?;
        let n = usize::from(l.u16()?);
        let name = l.take(n)?;
        if ty == 0 {
            let s = std::str::from_utf8(name).ok()?.trim_end_matches('.').to_ascii_lowercase();
            return is_hostname(&s).then_some(s);
        }
    }
    None
}

fn alpn(body: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut c = Cursor::new(body);
    let Some(list) = c.u16() else { return out };
    let Some(list) = c.take(usize::from(list)) else { return out };
    let mut l = Cursor::new(list);
    while let Some(n) = l.u8() {
        match l.take(usize::from(n)) {
            Some(p) if out.len() < 8 => out.push(String::from_utf8_lossy(p).into_owned()),
            _ => break,
        }
    }
    out
}

/// Builds a ClientHello (for tests and benchmarks): `sni` as the last extension, after a
/// key_share of `key_share` bytes, split over records of at most `record` bytes.
pub fn build_client_hello(sni: &str, key_share: usize, record: usize) -> Vec<u8> {
    fn ext(ty: u16, body: &[u8]) -> Vec<u8> {
        let mut v = ty.to_be_bytes().to_vec();
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }
    let mut exts = Vec::new();
    exts.extend(ext(EXT_ALPN, b"\x00\x0c\x02h2\x08http/1.1"));
    // key_share: group X25519MLKEM768 (0x11ec) with an opaque key of `key_share` bytes.
    let mut ks = ((key_share + 4) as u16).to_be_bytes().to_vec();
    ks.extend_from_slice(&0x11ecu16.to_be_bytes());
    ks.extend_from_slice(&(key_share as u16).to_be_bytes());
    ks.extend(std::iter::repeat_n(0xab, key_share));
    exts.extend(ext(51, &ks));
    let mut sn = ((sni.len() + 3) as u16).to_be_bytes().to_vec();
    sn.push(0);
    sn.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    sn.extend_from_slice(sni.as_bytes());
    exts.extend(ext(EXT_SERVER_NAME, &sn));
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.push(0);
    body.extend([0, 2, 0x13, 0x01]);
    body.extend([1, 0]);
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut hs = vec![HANDSHAKE_CLIENT_HELLO];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut out = Vec::new();
    for chunk in hs.chunks(record.max(1)) {
        out.extend([RECORD_HANDSHAKE, 3, 1]);
        out.extend_from_slice(&(chunk.len() as u16).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_client_hellos() {
        let openssl = parse_client_hello(include_bytes!("testdata/openssl_client_hello.bin")).unwrap();
        assert_eq!(openssl.sni.as_deref(), Some("api.anthropic.com"));
        assert!(!openssl.truncated);
        let curl = parse_client_hello(include_bytes!("testdata/curl_client_hello.bin")).unwrap();
        assert_eq!(curl.sni.as_deref(), Some("generativelanguage.googleapis.com"));
        assert_eq!(curl.alpn, vec!["h2", "http/1.1"]);
        let node = parse_client_hello(include_bytes!("testdata/node_client_hello.bin")).unwrap();
        assert_eq!(node.sni.as_deref(), Some("api.openai.com"));
    }

    #[test]
    fn large_post_quantum_hello_with_late_sni_over_records() {
        let hello = build_client_hello("api.example-relay.com", 2400, 16384);
        assert!(hello.len() > 2048);
        let p = parse_client_hello(&hello).unwrap();
        assert_eq!(p.sni.as_deref(), Some("api.example-relay.com"));
        assert_eq!(p.alpn, vec!["h2", "http/1.1"]);
        // The same hello fragmented into 512-byte records.
        let p = parse_client_hello(&build_client_hello("api.example-relay.com", 2400, 512)).unwrap();
        assert_eq!(p.sni.as_deref(), Some("api.example-relay.com"));
    }

    #[test]
    fn truncated_and_malformed() {
        let hello = build_client_hello("late.example.com", 3000, 16384);
        // Cut before the SNI (which is last): truncated, no name.
        let p = parse_client_hello(&hello[..1500]).unwrap();
        assert!(p.truncated && p.sni.is_none());
        // An early-SNI hello cut after its SNI still yields it.
        let real = include_bytes!("testdata/openssl_client_hello.bin");
        assert!(parse_client_hello(&real[..real.len() - 20]).unwrap().truncated);
        assert_eq!(parse_client_hello(b"GET / HTTP/1.1\r\n"), Err(TlsError::NotTls));
        assert_eq!(parse_client_hello(&[22, 3, 1, 0, 4, 2, 0, 0, 0]), Err(TlsError::NotClientHello));
        assert!(parse_client_hello(&[]).is_err());
        // An SNI that is not a host name is not reported.
        let bad = build_client_hello("bad name\u{1}", 10, 16384);
        assert_eq!(parse_client_hello(&bad).unwrap().sni, None);
    }

    #[test]
    fn never_panics() {
        let seeds: [&[u8]; 3] = [
            include_bytes!("testdata/openssl_client_hello.bin"),
            include_bytes!("testdata/curl_client_hello.bin"),
            &build_client_hello("x.example", 300, 100),
        ];
        for input in crate::detect::parsers::fuzzish::inputs(&seeds) {
            let _ = parse_client_hello(&input);
        }
    }
}
