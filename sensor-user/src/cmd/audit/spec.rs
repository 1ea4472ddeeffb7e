//! What one run's host looks like: its clean environment, its `/etc` files, its home, its host
//! name, the listeners its namespace needs, and what would give the variant's value away if it
//! appeared in a request.

use std::{collections::BTreeMap, path::PathBuf};

use super::plan::{parse_url, FactorKind, Plan, Variant};

/// Where the audit's CA certificate is in every run.
pub const CA_PATH: &str = "/etc/ssl/certs/aiwatch-audit-ca.pem";

/// Dummy credentials the mock accepts, set in every run. The invoking user's own are never
/// passed: the environment starts empty.
pub const DUMMY_KEYS: [(&str, &str); 6] = [
    ("ANTHROPIC_API_KEY", "sk-ant-api03-aiwatch-audit-dummy-0000000000000000000000000000"),
    ("OPENAI_API_KEY", "sk-proj-aiwatch-audit-dummy-000000000000000000000000"),
    ("GEMINI_API_KEY", "AIzaSyAiwatchAuditDummy000000000000000"),
    ("DEEPSEEK_API_KEY", "sk-aiwatch-audit-dummy-000000000000"),
    ("DASHSCOPE_API_KEY", "sk-aiwatch-audit-dummy-000000000000"),
    ("MISTRAL_API_KEY", "aiwatch-audit-dummy-000000000000"),
];

/// The mock's plain and TLS ports, always open.
pub const HTTP_PORT: u16 = 80;
pub const HTTPS_PORT: u16 = 443;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Http,
    Https,
    Proxy,
}

/// An entry of the run's `/etc` (relative path).
#[derive(Debug, Clone, PartialEq)]
pub enum EtcEntry {
    File(String),
    Symlink(String),
}

#[derive(Debug, Clone)]
pub struct RunSpec {
    /// `baseline #1`, `timezone = Asia/Tokyo`.
    pub label: String,
    /// None for a baseline run.
    pub variant: Option<Variant>,
    pub env: BTreeMap<String, String>,
    pub etc: BTreeMap<String, EtcEntry>,
    /// Files of the run's home (path relative to it).
    pub home_files: Vec<(String, String)>,
    pub hostname: String,
    pub timezone: String,
    /// Listeners of the run's namespace.
    pub ports: BTreeMap<u16, Role>,
    /// Strings that would disclose the variant's value (the value itself and what follows from
    /// it: a zone's offset and abbreviation, a locale's language tag).
    pub tokens: Vec<String>,
}

/// The user-independent parts of every run.
#[derive(Debug, Clone)]
pub struct Common {
    pub user: String,
    /// PATH of the runs (the invoking PATH, with the command's directory first).
    pub path: String,
    pub ca_pem: String,
}

impl Common {
    pub fn home(&self) -> PathBuf {
        PathBuf::from("/home").join(&self.user)
    }

    pub fn workdir(&self) -> PathBuf {
        self.home().join("project")
    }
}

fn hosts_file(hostname: &str, hosts: &[String]) -> String {
    let mut s =
        format!("127.0.0.1\tlocalhost\n127.0.1.1\t{hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for h in hosts {
        if h != "localhost" && h.parse::<std::net::IpAddr>().is_err() {
            s.push_str(&format!("127.0.0.1\t{h}\n"));
        }
    }
    s
}

impl RunSpec {
    /// The baseline host.
    pub fn baseline(plan: &Plan, common: &Common, n: u32) -> Self {
        let b = &plan.baseline;
        let mut env = BTreeMap::new();
        let home = common.home().display().to_string();
        env.insert("PATH".into(), common.path.clone());
        env.insert("HOME".into(), home);
        env.insert("USER".into(), common.user.clone());
        env.insert("LOGNAME".into(), common.user.clone());
        let shell = if std::path::Path::new("/bin/bash").exists() { "/bin/bash" } else { "/bin/sh" };
        env.insert("SHELL".into(), shell.into());
        env.insert("LANG".into(), b.locale.clone());
        for v in ["NODE_EXTRA_CA_CERTS", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"] {
            env.insert(v.into(), CA_PATH.into());
        }
        for (k, v) in DUMMY_KEYS {
            env.insert(k.into(), v.into());
        }
        env.extend(b.env.clone());
        let mut spec = RunSpec {
            label: format!("baseline #{n}"),
            variant: None,
            env,
            etc: BTreeMap::new(),
            home_files: Vec::new(),
            hostname: b.hostname.clone(),
            timezone: b.timezone.clone(),
            ports: [(HTTP_PORT, Role::Http), (HTTPS_PORT, Role::Https)].into_iter().collect(),
            tokens: Vec::new(),
        };
        spec.etc.insert(
            "resolv.conf".into(),
            EtcEntry::File("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n".into()),
        );
        spec.etc.insert(CA_PATH.trim_start_matches("/etc/").into(), EtcEntry::File(common.ca_pem.clone()));
        for f in &b.files {
            spec.put_file(&f.path, &f.content);
        }
        spec.finish(&b.hosts);
        spec
    }

    fn put_file(&mut self, path: &str, content: &str) {
        if let Some(rel) = path.strip_prefix("~/") {
            self.home_files.retain(|(p, _)| p != rel);
            self.home_files.push((rel.to_string(), content.to_string()));
        } else if let Some(rel) = path.strip_prefix("/etc/") {
            self.etc.insert(rel.to_string(), EtcEntry::File(content.to_string()));
        }
    }

    /// Writes the derived /etc entries (hosts, hostname, localtime, timezone).
    fn finish(&mut self, hosts: &[String]) {
        self.etc.insert("hosts".into(), EtcEntry::File(hosts_file(&self.hostname, hosts)));
        self.etc.insert("hostname".into(), EtcEntry::File(format!("{}\n", self.hostname)));
        self.etc
            .insert("localtime".into(), EtcEntry::Symlink(format!("/usr/share/zoneinfo/{}", self.timezone)));
        self.etc.insert("timezone".into(), EtcEntry::File(format!("{}\n", self.timezone)));
    }

    /// The baseline with `variant`'s one factor set.
    pub fn variant(plan: &Plan, common: &Common, variant: &Variant) -> Self {
        let mut s = Self::baseline(plan, common, 0);
        let mut hosts = plan.baseline.hosts.clone();
        let value = variant.value.clone();
        s.label = format!("{} = {}", variant.factor_name, value);
        let factor = variant.factor.map(|i| &plan.factors[i]);
        match factor.map(|f| &f.kind) {
            Some(FactorKind::Timezone) => {
                s.env.insert("TZ".into(), value.clone());
                s.timezone = value.clone();
                s.tokens = zone_tokens(&value);
            }
            Some(FactorKind::BaseUrl { templates }) => {
                for (var, t) in templates {
                    let url = t.replace("{host}", &value);
                    if let Some(u) = parse_url(&url) {
                        let role = if u.scheme == "https" { Role::Https } else { Role::Http };
                        s.ports.entry(u.port).or_insert(role);
                    }
                    s.env.insert(var.clone(), url);
                }
                if !hosts.contains(&value) {
                    hosts.push(value.clone());
                }
                s.tokens = vec![value.clone()];
            }
            Some(FactorKind::Proxy { variables }) => {
                for v in variables {
                    s.env.insert(v.clone(), value.clone());
                }
                if let Some(u) = parse_url(&value) {
                    s.ports.insert(u.port, Role::Proxy);
                    if !hosts.contains(&u.host) {
                        hosts.push(u.host.clone());
                    }
                    s.tokens = vec![value.clone(), u.host.clone()];
                    if let Some(ui) =
                        value.split_once("://").and_then(|(_, r)| r.split_once('@')).map(|(u, _)| u)
                    {
                        s.tokens.push(ui.to_string());
                    }
                }
            }
            Some(FactorKind::Locale { variables }) => {
                for v in variables {
                    s.env.insert(v.clone(), value.clone());
                }
                let lang = value.split(['.', '@']).next().unwrap_or(&value).to_string();
                s.tokens = vec![value.clone(), lang.clone(), lang.replace('_', "-")];
            }
            Some(FactorKind::Hostname) => {
                s.hostname = value.clone();
                s.tokens = vec![value.clone()];
            }
            Some(FactorKind::Custom { variable, file }) => {
                if let Some(v) = variable {
                    s.env.insert(v.clone(), value.clone());
                }
                if let Some(f) = file {
                    s.put_file(f, &value);
                }
                s.tokens = vec![value.clone()];
            }
            None => {}
        }
        s.tokens.retain(|t| t.chars().count() >= 3);
        s.tokens.sort();
        s.tokens.dedup();
        s.variant = Some(variant.clone());
        s.finish(&hosts);
        s
    }
}

/// A zone's name, city, abbreviation and UTC offset as a request could spell them
/// (`Asia/Kolkata`, `Kolkata`, `IST`, `+05:30`, `+0530`, `UTC+5:30`, `GMT+05:30`).
pub fn zone_tokens(zone: &str) -> Vec<String> {
    let mut t = vec![zone.to_string()];
    if let Some(city) = zone.rsplit('/').next().filter(|c| *c != zone) {
        t.push(city.to_string());
        t.push(city.replace('_', " "));
    }
    let out = std::process::Command::new("date")
        .env_clear()
        .env("TZ", zone)
        .arg("+%Z %z")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    if let Some((abbr, off)) = out.split_once(' ') {
        if abbr.chars().all(|c| c.is_ascii_alphabetic()) {
            t.push(abbr.to_string());
        }
        if off.len() == 5 {
            let (sign, hh, mm) = (&off[..1], &off[1..3], &off[3..5]);
            let h = hh.trim_start_matches('0');
            let h = if h.is_empty() { "0" } else { h };
            t.push(format!("{sign}{hh}:{mm}"));
            t.push(off.to_string());
            for p in ["UTC", "GMT"] {
                t.push(format!("{p}{sign}{hh}:{mm}"));
                if mm == "00" {
                    t.push(format!("{p}{sign}{h}"));
                } else {
                    t.push(format!("{p}{sign}{h}:{mm}"));
                }
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common() -> Common {
        Common { user: "nobody".into(), path: "/usr/bin:/bin".into(), ca_pem: "PEM".into() }
    }

    #[test]
    fn baseline_and_variants_differ_in_one_factor() {
        let plan = Plan::load(None).unwrap();
        let b = RunSpec::baseline(&plan, &common(), 1);
        assert_eq!(b.env["HOME"], "/home/nobody");
        assert!(!b.env.contains_key("TZ") && b.env["ANTHROPIC_API_KEY"].contains("dummy"));
        assert_eq!(b.etc["localtime"], EtcEntry::Symlink("/usr/share/zoneinfo/Etc/UTC".into()));
        assert!(matches!(&b.etc["hosts"], EtcEntry::File(h) if h.contains("127.0.0.1\tapi.anthropic.com\n")));
        assert_eq!(b.home_files[0].0, ".gemini/settings.json");
        for v in plan.variants() {
            let s = RunSpec::variant(&plan, &common(), &v);
            let changed: Vec<&String> =
                s.env.keys().filter(|k| b.env.get(*k) != s.env.get(*k)).collect::<Vec<_>>();
            match v.factor_name.as_str() {
                "timezone" => {
                    assert_eq!(changed, ["TZ"]);
                    assert_eq!(s.etc["timezone"], EtcEntry::File(format!("{}\n", v.value)));
                }
                "base_url" => {
                    assert_eq!(s.env["ANTHROPIC_BASE_URL"], format!("https://{}", v.value));
                    assert_eq!(s.env["OPENAI_BASE_URL"], format!("https://{}/v1", v.value));
                    assert!(
                        matches!(&s.etc["hosts"], EtcEntry::File(h) if h.contains(&format!("127.0.0.1\t{}\n", v.value)))
                    );
                }
                "proxy" => {
                    assert_eq!(changed.len(), 6);
                    assert!(s.ports.values().any(|r| *r == Role::Proxy));
                }
                "locale" => assert_eq!(changed, ["LANG", "LC_ALL"]),
                "hostname" => {
                    assert!(changed.is_empty());
                    assert_eq!(s.hostname, v.value);
                }
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn zone_tokens_spell_the_offset() {
        let t = zone_tokens("Asia/Kolkata");
        for want in ["Asia/Kolkata", "Kolkata", "IST", "+05:30", "+0530", "UTC+5:30", "GMT+05:30"] {
            assert!(t.iter().any(|x| x == want), "{want} in {t:?}");
        }
        let t = zone_tokens("Asia/Shanghai");
        assert!(t.iter().any(|x| x == "UTC+8") && t.iter().any(|x| x == "CST"), "{t:?}");
    }
}
