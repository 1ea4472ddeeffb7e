//! HTTP/1.x request heads: method, target and Host, from the first bytes a client sends.

/// What the first line and headers of a request say about where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub target: String,
    /// The Host header (without port), if present.
    pub host: Option<String>,
}

impl RequestHead {
    /// `CONNECT host:port`: the request opens a tunnel through a proxy.
    pub fn connect_target(&self) -> Option<(String, u16)> {
        if self.method != "CONNECT" {
            return None;
        }
        split_authority(&self.target)
    }

    /// `GET http://host/…`: a request to a forward proxy.
    pub fn absolute_host(&self) -> Option<String> {
        let rest = self.target.strip_prefix("http://").or_else(|| self.target.strip_prefix("https://"))?;
        let authority = rest.split(['/', '?', '#']).next()?;
        let authority = authority.rsplit('@').next()?;
        split_authority(authority).map(|(h, _)| h).or_else(|| valid_host(authority))
    }
}

const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 100;

/// Parses a request head; `None` if the bytes do not start one.
pub fn parse_request(data: &[u8]) -> Option<RequestHead> {
    let data = &data[..data.len().min(MAX_HEAD)];
    let mut lines = data.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = std::str::from_utf8(lines.next()?).ok()?;
    let mut parts = first.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some()
        || method.is_empty()
        || method.len() > 16
        || !method.bytes().all(|b| b.is_ascii_uppercase())
        || target.is_empty()
        || !version.starts_with("HTTP/1.")
    {
        return None;
    }
    let mut host = None;
    for line in lines.take(MAX_HEADERS) {
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        if line[..colon].eq_ignore_ascii_case(b"host") {
            let value = String::from_utf8_lossy(&line[colon + 1..]).trim().to_string();
            host = split_authority(&value).map(|(h, _)| h).or_else(|| valid_host(&value));
            break;
        }
    }
    Some(RequestHead { method: method.to_string(), target: target.to_string(), host })
}

fn valid_host(s: &str) -> Option<String> {
    let s = s.trim_end_matches('.').to_ascii_lowercase();
    let bracketed = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
    if let Some(v6) = bracketed {
        return v6.parse::<std::net::Ipv6Addr>().ok().map(|a| a.to_string());
    }
    (super::is_hostname(&s)).then_some(s)
}

/// `host:port` or `[v6]:port`.
fn split_authority(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    Some((valid_host(host)?, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_requests() {
        let connect = parse_request(include_bytes!("testdata/curl_connect.bin")).unwrap();
        assert_eq!(connect.connect_target(), Some(("api.anthropic.com".to_string(), 443)));
        let get = parse_request(include_bytes!("testdata/curl_http_get.bin")).unwrap();
        assert_eq!(get.method, "GET");
        assert_eq!(get.host.as_deref(), Some("api.example-relay.test"));
        assert_eq!(get.connect_target(), None);
    }

    #[test]
    fn proxy_forms_and_odd_hosts() {
        let r = parse_request(b"GET http://user:pw@Relay.Example.com:8080/v1?x HTTP/1.1\r\nHost: relay.example.com:8080\r\n\r\n").unwrap();
        assert_eq!(r.absolute_host().as_deref(), Some("relay.example.com"));
        let r = parse_request(b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(r.connect_target(), Some(("2001:db8::1".to_string(), 443)));
        let r = parse_request(b"POST /x HTTP/1.1\nhOsT:   API.Example.COM  \n\n").unwrap();
        assert_eq!(r.host.as_deref(), Some("api.example.com"));
        // Head cut before the Host header: method and target still known.
        let r = parse_request(b"POST /v1/messages HTTP/1.1\r\nContent-Le").unwrap();
        assert_eq!(r.host, None);
    }

    #[test]
    fn not_http() {
        for bad in [
            &b""[..],
            b"\x16\x03\x01\x02\x00",
            b"get / HTTP/1.1\r\n",
            b"GET /\r\n",
            b"GET / HTTP/2\r\n",
            b"GET  / HTTP/1.1",
        ] {
            assert_eq!(parse_request(bad), None, "{bad:?}");
        }
        let r = parse_request(b"GET / HTTP/1.1\r\nHost: bad host\r\n\r\n").unwrap();
        assert_eq!(r.host, None);
    }

    #[test]
    fn never_panics() {
        let seeds: [&[u8]; 2] =
            [include_bytes!("testdata/curl_connect.bin"), include_bytes!("testdata/curl_http_get.bin")];
        for input in crate::detect::parsers::fuzzish::inputs(&seeds) {
            if let Some(r) = parse_request(&input) {
                let _ = (r.connect_target(), r.absolute_host());
            }
        }
    }
}
