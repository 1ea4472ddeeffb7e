//! Which fingerprint category a path falls in.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::config::{glob::Glob, PathPattern};

/// Compiled category patterns: exact paths in a hash map, globs in a list.
pub struct CategoryMatcher {
    exact: HashMap<String, Vec<usize>>,
    globs: Vec<(usize, Glob)>,
    names: Vec<String>,
}

impl CategoryMatcher {
    /// `homes` are the directories a `~/` pattern stands for.
    pub fn new(categories: &BTreeMap<String, Vec<PathPattern>>, homes: &[String]) -> Self {
        let mut m = Self { exact: HashMap::new(), globs: Vec::new(), names: Vec::new() };
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
    pub fn categories<'a>(&'a self, paths: &[&str]) -> Vec<&'a str> {
        let mut hits = BTreeSet::new();
        for path in paths {
            if let Some(idx) = self.exact.get(*path) {
                hits.extend(idx.iter().copied());
            }
            let parts = crate::config::glob::split(path);
            for (idx, g) in &self.globs {
                if g.matches_parts(&parts) {
                    hits.insert(*idx);
                }
            }
        }
        hits.into_iter().map(|i| self.names[i].as_str()).collect()
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
        let m = matcher();
        let cat = |p: &str| m.categories(&[p]);
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

    #[test]
    fn any_of_several_paths() {
        let m = matcher();
        assert_eq!(m.categories(&["/tmp/x/localtime", "/etc/localtime"]), vec!["timezone"]);
        assert_eq!(m.categories(&["/etc/localtime", "/usr/share/zoneinfo/UTC"]), vec!["timezone"]);
    }
}
