//! Which fingerprint category a path falls in.

use std::collections::{BTreeMap, HashMap};

use crate::config::{glob::Glob, PathPattern};

/// Paths whose categories are remembered: a session reads the same few files over and over,
/// and matching every glob against each read was a tenth of the daemon's time per event.
const CACHE_MAX: usize = 4096;

/// Compiled category patterns: exact paths in a hash map, globs in a list.
pub struct CategoryMatcher {
    exact: HashMap<String, Vec<usize>>,
    globs: Vec<(usize, Glob)>,
    names: Vec<String>,
    /// Category bits by path (bit i = `names[i]`); emptied when full.
    cache: HashMap<String, u64>,
    /// Categories past the 64th are matched without the cache.
    cacheable: bool,
}

impl CategoryMatcher {
    /// `homes` are the directories a `~/` pattern stands for.
    pub fn new(categories: &BTreeMap<String, Vec<PathPattern>>, homes: &[String]) -> Self {
        let mut m = Self {
            exact: HashMap::new(),
            globs: Vec::new(),
            names: Vec::new(),
            cache: HashMap::new(),
            cacheable: categories.len() <= 64,
        };
        for (name, patterns) in categories {
            let idx = m.names.len();
            m.names.push(name.clone());
            for p in patterns {
                let expanded: Vec<String> = match p.0.strip_prefix("~/") {
                    Some(rest) => {
                        homes.iter().map(|h| format!("{}/{rest}", h.trim_end_matches('/'))).collect()
                    }
                    None => vec![p.0.clone()],
                };
                for pat in expanded {
                    if pat.contains(['*', '?', '[']) {
                        // Validated when the config was parsed.
                        if let Ok(g) = Glob::new(&pat) {
                            m.globs.push((idx, g));
                        }
                    } else {
                        m.exact.entry(normalize_literal(&pat)).or_default().push(idx);
                    }
                }
            }
        }
        m
    }

    /// Categories any of `paths` (absolute, normalized) falls in, sorted, without duplicates.
    pub fn categories(&mut self, paths: &[&str]) -> Vec<&str> {
        if !self.cacheable {
            let mut hits: Vec<usize> = paths.iter().flat_map(|p| self.matches(p)).collect();
            hits.sort_unstable();
            hits.dedup();
            return hits.into_iter().map(|i| self.names[i].as_str()).collect();
        }
        let mut bits = 0u64;
        for path in paths {
            bits |= match self.cache.get(*path) {
                Some(b) => *b,
                None => {
                    let b = self.matches(path).fold(0u64, |b, i| b | 1 << i);
                    if self.cache.len() >= CACHE_MAX {
                        self.cache.clear();
                    }
                    self.cache.insert(path.to_string(), b);
                    b
                }
            };
        }
        // Names are in index order (sorted, as the map they came from).
        (0..self.names.len()).filter(|i| bits & 1 << i != 0).map(|i| self.names[i].as_str()).collect()
    }

    /// Indices of the categories one path falls in (may repeat).
    fn matches<'a>(&'a self, path: &'a str) -> impl Iterator<Item = usize> + 'a {
        let exact = self.exact.get(path).into_iter().flatten().copied();
        let parts = crate::config::glob::split(path);
        let globs = self.globs.iter().filter(move |(_, g)| g.matches_parts(&parts)).map(|(i, _)| *i);
        exact.chain(globs)
    }
}

fn normalize_literal(p: &str) -> String {
    let joined = p.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>().join("/");
    format!("/{joined}")
}

/// Home directories for `~/` patterns: `/root`, `/home/*`, and those in `/etc/passwd`.
pub fn home_dirs() -> Vec<String> {
    let mut homes = vec!["/root".to_string(), "/home/*".to_string()];
    if let Ok(passwd) = std::fs::read_to_string("/etc/passwd") {
        for line in passwd.lines() {
            if let Some(home) = line.split(':').nth(5) {
                let ok = home.starts_with('/')
                    && home != "/"
                    && !home.starts_with("/home/")
                    && !home.contains(['*', '?', '[']);
                if ok && !homes.iter().any(|h| h == home) {
                    homes.push(home.to_string());
                }
            }
        }
    }
    homes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher() -> CategoryMatcher {
        CategoryMatcher::new(
            &crate::config::Config::default().categories,
            &["/root".to_string(), "/home/*".to_string()],
        )
    }

    #[test]
    fn default_categories() {
        let mut m = matcher();
        let mut cat = |p: &str| m.categories(&[p]).iter().map(|c| c.to_string()).collect::<Vec<_>>();
        assert_eq!(cat("/etc/localtime"), vec!["timezone"]);
        assert_eq!(cat("/usr/share/zoneinfo/Europe/Berlin"), vec!["timezone"]);
        assert_eq!(cat("/etc/resolv.conf"), vec!["network_config"]);
        assert_eq!(cat("/proc/net/route"), vec!["network_config"]);
        assert_eq!(cat("/sys/class/net/eth0/address"), vec!["network_config"]);
        assert_eq!(cat("/etc/environment"), vec!["proxy_config"]);
        assert_eq!(cat("/home/alice/.npmrc"), vec!["proxy_config"]);
        assert_eq!(cat("/root/.config/pip/pip.conf"), vec!["proxy_config"]);
        assert_eq!(cat("/etc/machine-id"), vec!["host_identity"]);
        assert_eq!(cat("/sys/class/dmi/id/product_uuid"), vec!["host_identity"]);
        assert_eq!(cat("/etc/default/locale"), vec!["locale"]);
        assert!(cat("/etc/passwd").is_empty());
        assert!(cat("/usr/lib/node_modules/x.js").is_empty());
        assert!(cat("/home/alice/.bashrc").is_empty());
    }

    /// Answers from the cache are the answers without it, also after it was emptied when full.
    #[test]
    fn remembered_categories_match_fresh_ones() {
        let mut m = matcher();
        let paths = ["/etc/localtime", "/etc/passwd", "/home/bob/.npmrc", "/usr/share/zoneinfo/UTC"];
        let fresh: Vec<Vec<String>> =
            paths.iter().map(|p| m.categories(&[p]).iter().map(|c| c.to_string()).collect()).collect();
        for round in 0..3 {
            for (p, want) in paths.iter().zip(&fresh) {
                assert_eq!(&m.categories(&[p]), want, "round {round}: {p}");
            }
            // Fill the cache past its bound: it is emptied, never wrong.
            for i in 0..CACHE_MAX + 1 {
                assert!(m.categories(&[&format!("/tmp/f{i}")]).is_empty());
            }
            assert!(m.cache.len() <= CACHE_MAX);
        }
        assert_eq!(fresh[0], ["timezone"]);
        assert_eq!(fresh[2], ["proxy_config"]);
    }

    #[test]
    fn any_of_several_paths() {
        let mut m = matcher();
        assert_eq!(m.categories(&["/tmp/x/localtime", "/etc/localtime"]), vec!["timezone"]);
        assert_eq!(m.categories(&["/etc/localtime", "/usr/share/zoneinfo/UTC"]), vec!["timezone"]);
    }
}
