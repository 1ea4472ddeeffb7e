//! Checks of a plan's values: variable names, file paths, zones, host names, URLs.

use std::path::Path;

pub(super) fn valid_var(k: &str) -> bool {
    !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(super) fn check_file_path(p: &str) -> Result<(), String> {
    let rel = if let Some(r) = p.strip_prefix("~/") {
        r
    } else if let Some(r) = p.strip_prefix("/etc/") {
        r
    } else {
        return Err(format!("{p:?}: must start with ~/ (the run's home) or /etc/"));
    };
    if rel.is_empty() || rel.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(format!("{p:?}: must name a file without `.`, `..` or empty components"));
    }
    Ok(())
}

/// A zone name with a file under /usr/share/zoneinfo (or a plain `UTC`).
pub fn check_zone(z: &str) -> Result<(), String> {
    if z.is_empty() || z.starts_with('/') || z.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err(format!("{z:?}: not a timezone name like Europe/Berlin"));
    }
    let p = Path::new("/usr/share/zoneinfo").join(z);
    if !p.is_file() {
        return Err(format!("unknown timezone {z:?} (no {})", p.display()));
    }
    Ok(())
}

pub(super) fn check_hostname(h: &str) -> Result<(), String> {
    if h.len() > 64 {
        return Err(format!("{h:?}: longer than 64 bytes"));
    }
    check_dns_name(h)
}

pub(super) fn check_dns_name(h: &str) -> Result<(), String> {
    let ok = !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{h:?}: not a host name"))
    }
}

/// The parts of an `http(s)://[user:pass@]host[:port][/path]` URL the audit needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Url {
    pub scheme: String,
    pub host: String,
    pub port: u16,
}

pub fn parse_url(u: &str) -> Option<Url> {
    let (scheme, rest) = u.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']')?;
        (h.to_string(), after.strip_prefix(':').map(|p| p.parse().ok()).unwrap_or(Some(default))?)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().ok()?),
            None => (hostport.to_string(), default),
        }
    };
    if host.is_empty() || port == 0 {
        return None;
    }
    Some(Url { scheme, host: host.to_ascii_lowercase(), port })
}
