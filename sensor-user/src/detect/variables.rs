//! Environment variables worth watching (proxy, API base URL, timezone, locale), and what of
//! their values may leave the host: never credentials, query strings, paths or tokens; by
//! default the scheme, host and port of a URL, the hosts of a NO_PROXY list, and short plain
//! values such as a timezone name.

use serde::Serialize;

pub use crate::config::ValuePolicy;
use crate::config::VariablesConfig;

/// A watched variable found in an exec's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variable {
    pub name: String,
    pub category: String,
    /// The value as far as the policy lets it out (absent with `none`, or when nothing is safe).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Something was removed from the value (credentials, path, query, an unsafe value).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

/// Compiled watch list: category → name globs (`*` matches any run of characters).
pub struct Watch {
    rules: Vec<(String, String)>,
    policy: ValuePolicy,
}

impl Watch {
    pub fn new(cfg: &VariablesConfig) -> Self {
        let rules = cfg
            .watch
            .iter()
            .flat_map(|(cat, names)| names.iter().map(move |n| (cat.clone(), n.0.clone())))
            .collect();
        Self { rules, policy: cfg.values }
    }

    /// Category of a variable name, if watched.
    pub fn category(&self, name: &str) -> Option<&str> {
        self.rules.iter().find(|(_, pat)| name_matches(pat, name)).map(|(c, _)| c.as_str())
    }

    /// The watched variables among `NAME=value` entries, values redacted.
    pub fn scan(&self, entries: &[String]) -> Vec<Variable> {
        entries
            .iter()
            .filter_map(|e| {
                let (name, value) = e.split_once('=')?;
                let category = self.category(name)?.to_string();
                let (value, redacted) = match self.policy {
                    ValuePolicy::None => (None, false),
                    ValuePolicy::Host => redact(value),
                };
                Some(Variable { name: name.to_string(), category, value, redacted })
            })
            .collect()
    }
}

fn name_matches(pat: &str, name: &str) -> bool {
    match pat.split_once('*') {
        None => pat == name,
        Some((pre, post)) => {
            name.len() >= pre.len() + post.len() && name.starts_with(pre) && name.ends_with(post)
        }
    }
}

/// What of `value` may be reported, and whether anything was removed.
pub fn redact(value: &str) -> (Option<String>, bool) {
    let v = value.trim();
    if v.is_empty() {
        return (Some(String::new()), false);
    }
    if let Some((scheme, rest)) = v.split_once("://") {
        if !scheme.is_empty() && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+.-".contains(&b)) {
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = &rest[..authority_end];
            let had_userinfo = authority.contains('@');
            let hostport = authority.rsplit('@').next().unwrap_or("");
            let dropped_tail = authority_end < rest.len() && &rest[authority_end..] != "/";
            if !safe_host(hostport) {
                return (None, true);
            }
            return (
                Some(format!("{}://{hostport}", scheme.to_ascii_lowercase())),
                had_userinfo || dropped_tail,
            );
        }
    }
    // host:port without a scheme (a proxy given bare), a host list (NO_PROXY), or a plain
    // value (TZ, LANG): kept only if it looks like nothing secret.
    if v.contains('@') {
        let hostport = v.rsplit('@').next().unwrap_or("");
        return if safe_host(hostport) { (Some(hostport.to_string()), true) } else { (None, true) };
    }
    let plain = v.len() <= 256
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b",.:/_-+*[]".contains(&b))
        && !crate::detect::redact::looks_like_secret(v)
        && !v.split(|c: char| !c.is_ascii_alphanumeric()).any(|run| run.len() >= 24);
    if plain {
        (Some(v.to_string()), false)
    } else {
        (None, true)
    }
}

fn safe_host(h: &str) -> bool {
    !h.is_empty() && h.len() <= 255 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_:[]".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_scheme_host_port_only() {
        assert_eq!(
            redact("http://user:s3cret@proxy.corp:3128/"),
            (Some("http://proxy.corp:3128".into()), true)
        );
        assert_eq!(redact("https://proxy.corp:3128"), (Some("https://proxy.corp:3128".into()), false));
        assert_eq!(
            redact("https://relay.example.com/v1?key=abc"),
            (Some("https://relay.example.com".into()), true)
        );
        assert_eq!(redact("http://[::1]:8080/"), (Some("http://[::1]:8080".into()), false));
        assert_eq!(redact("socks5h://u:p@10.0.0.1:1080"), (Some("socks5h://10.0.0.1:1080".into()), true));
        assert_eq!(redact("http://bad host/"), (None, true));
    }

    #[test]
    fn plain_values() {
        assert_eq!(
            redact("localhost,127.0.0.1,.corp.example"),
            (Some("localhost,127.0.0.1,.corp.example".into()), false)
        );
        assert_eq!(redact("Europe/Berlin"), (Some("Europe/Berlin".into()), false));
        assert_eq!(redact("en_US.UTF-8"), (Some("en_US.UTF-8".into()), false));
        assert_eq!(redact("user:pw@proxy:3128"), (Some("proxy:3128".into()), true));
        assert_eq!(redact("sk-ant-api03-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"), (None, true));
        assert_eq!(redact("has space"), (None, true));
        assert_eq!(redact(""), (Some(String::new()), false));
    }

    #[test]
    fn default_watch_list() {
        let w = Watch::new(&crate::config::Config::default().variables);
        for (name, cat) in [
            ("HTTPS_PROXY", "proxy"),
            ("https_proxy", "proxy"),
            ("NO_PROXY", "proxy"),
            ("ANTHROPIC_BASE_URL", "base_url"),
            ("GOOGLE_GEMINI_BASE_URL", "base_url"),
            ("TZ", "timezone"),
            ("TZDIR", "timezone"),
            ("LC_ALL", "locale"),
            ("LANGUAGE", "locale"),
        ] {
            assert_eq!(w.category(name), Some(cat), "{name}");
        }
        assert_eq!(w.category("PATH"), None);
        assert_eq!(w.category("_BASE_URLX"), None);
        let vars = w.scan(&[
            "PATH=/usr/bin".into(),
            "HTTPS_PROXY=http://a:b@p:1".into(),
            "TZ=UTC".into(),
            "junk".into(),
        ]);
        assert_eq!(vars.len(), 2);
        assert_eq!(vars[0].value.as_deref(), Some("http://p:1"));
        assert!(vars[0].redacted);
    }
}
