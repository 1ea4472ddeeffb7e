//! SOCKS5 (RFC 1928) as a client speaks it to a proxy: the greeting, and the CONNECT request
//! that names the destination. The user/password sub-negotiation (RFC 1929) between them is
//! recognised only so it is not mistaken for anything else; its bytes are never kept.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::Cursor;

/// One client message of a SOCKS5 handshake.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    /// Version 5 and the authentication methods offered.
    Greeting,
    /// A CONNECT request: the destination host (a name or an address) and port.
    Connect { host: String, port: u16 },
}

/// The message `data` is exactly, or `None` (each message is sent whole, and the lengths
/// are exact: anything longer or shorter is something else).
pub fn parse(data: &[u8]) -> Option<Message> {
    let mut c = Cursor::new(data);
    if c.u8()? != 5 {
        return None;
    }
    let second = c.u8()?;
    // Greeting: VER NMETHODS METHODS...
    if second >= 1 && data.len() == 2 + usize::from(second) {
        return Some(Message::Greeting);
    }
    // Request: VER CMD(1 = CONNECT) RSV(0) ATYP DST.ADDR DST.PORT
    if second != 1 || c.u8()? != 0 {
        return None;
    }
    let host = match c.u8()? {
        1 => Ipv4Addr::from(<[u8; 4]>::try_from(c.take(4)?).ok()?).to_string(),
        3 => {
            let n = c.u8()?;
            let name =
                std::str::from_utf8(c.take(usize::from(n))?).ok()?.trim_end_matches('.').to_ascii_lowercase();
            if !super::is_hostname(&name) {
                return None;
            }
            name
        }
        4 => Ipv6Addr::from(<[u8; 16]>::try_from(c.take(16)?).ok()?).to_string(),
        _ => return None,
    };
    let port = c.u16()?;
    (c.remaining() == 0).then_some(Message::Connect { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greeting_and_connect_requests() {
        assert_eq!(parse(&[5, 2, 0, 2]), Some(Message::Greeting));
        let mut req = vec![5, 1, 0, 3, 17];
        req.extend_from_slice(b"api.anthropic.com");
        req.extend_from_slice(&443u16.to_be_bytes());
        assert_eq!(parse(&req), Some(Message::Connect { host: "api.anthropic.com".into(), port: 443 }));
        assert_eq!(
            parse(&[5, 1, 0, 1, 10, 1, 2, 3, 0x1f, 0x90]),
            Some(Message::Connect { host: "10.1.2.3".into(), port: 8080 })
        );
        let mut v6 = vec![5, 1, 0, 4];
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&[0, 80]);
        assert_eq!(parse(&v6), Some(Message::Connect { host: "::1".into(), port: 80 }));
    }

    #[test]
    fn anything_else_is_not_socks() {
        // The user/password sub-negotiation (version 1), TLS, HTTP, truncated and padded requests.
        assert_eq!(parse(&[1, 4, b'u', b's', b'e', b'r', 2, b'p', b'w']), None);
        assert_eq!(parse(&[0x16, 3, 1, 0, 5]), None);
        assert_eq!(parse(b"CONNECT a:443 HTTP/1.1\r\n\r\n"), None);
        assert_eq!(parse(&[5, 1, 0, 3, 17, b'a']), None);
        assert_eq!(parse(&[5, 1, 0, 1, 10, 1, 2, 3, 0, 80, 0]), None);
        assert_eq!(parse(&[5, 1, 0, 3, 3, b'a', 0xff, b'b', 0, 80]), None);
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[5]), None);
    }
}
