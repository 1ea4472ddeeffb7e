//! The audit plan: a baseline host and the factors varied one at a time from it (TOML; the
//! built-in plan is `default-plan.toml`, a `--plan FILE` is laid over it), and the runs it makes.

use std::{collections::BTreeMap, path::Path, time::Duration};

use serde::{Deserialize, Serialize};

mod check;
pub use check::*;

/// The built-in plan, as printed by `aiwatch audit --print-plan`.
pub const DEFAULT_PLAN: &str = include_str!("default-plan.toml");

/// Where a plan file went wrong: `file:line:col: key: message`.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read plan file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path}:{line}:{column}: {key}: {message}")]
    Syntax { path: String, line: usize, column: usize, key: String, message: String },
    #[error("{path}: {key}: {message}")]
    Invalid { path: String, key: String, message: String },
}

// ---- the file as written ----

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    audit: Option<AuditSection>,
    baseline: Option<BaselineSection>,
    factors: Option<BTreeMap<String, FactorSection>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditSection {
    baseline_runs: Option<u32>,
    extra_baseline_on_difference: Option<bool>,
    timeout_seconds: Option<u64>,
    jobs: Option<usize>,
    factors: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BaselineSection {
    timezone: Option<String>,
    hostname: Option<String>,
    locale: Option<String>,
    hosts: Option<Vec<String>>,
    env: Option<BTreeMap<String, String>>,
    files: Option<Vec<FileEntry>>,
}

/// A file every run (or one factor's runs) gets.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// `~/…` (the run's home) or an absolute path under /etc.
    pub path: String,
    pub content: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FactorSection {
    values: Option<Vec<String>>,
    /// base_url: variable -> URL template with `{host}`.
    templates: Option<BTreeMap<String, String>>,
    /// proxy, locale: the variables set to the value.
    variables: Option<Vec<String>>,
    /// A custom factor: the variable set to the value …
    variable: Option<String>,
    /// … and/or the file whose content is the value.
    file: Option<String>,
}

// ---- the plan as used ----

#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub baseline_runs: u32,
    pub extra_baseline_on_difference: bool,
    pub timeout: Duration,
    pub jobs: usize,
    pub baseline: Baseline,
    pub factors: Vec<Factor>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    pub timezone: String,
    pub hostname: String,
    pub locale: String,
    pub hosts: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Factor {
    pub name: String,
    pub kind: FactorKind,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FactorKind {
    Timezone,
    BaseUrl { templates: BTreeMap<String, String> },
    Proxy { variables: Vec<String> },
    Locale { variables: Vec<String> },
    Hostname,
    Custom { variable: Option<String>, file: Option<String> },
}

const BUILTIN_ORDER: [&str; 5] = ["timezone", "base_url", "proxy", "locale", "hostname"];

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

fn parse_file(text: &str, origin: &str) -> Result<PlanFile, PlanError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        let (line, column) = inner.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
        PlanError::Syntax {
            path: origin.to_string(),
            line,
            column,
            key: if key == "." { "(top level)".to_string() } else { key },
            message: inner.message().trim().to_string(),
        }
    })
}

impl Plan {
    /// The built-in plan, with `file` laid over it.
    pub fn load(file: Option<&Path>) -> Result<Self, PlanError> {
        let base = parse_file(DEFAULT_PLAN, "built-in plan")?;
        let over = match file {
            Some(p) => {
                let shown = p.display().to_string();
                let text = std::fs::read_to_string(p)
                    .map_err(|source| PlanError::Read { path: shown.clone(), source })?;
                Some((parse_file(&text, &shown)?, shown))
            }
            None => None,
        };
        let origin = over.as_ref().map_or("built-in plan".to_string(), |(_, s)| s.clone());
        Self::merge(base, over.map(|(f, _)| f), &origin)
    }

    /// Parses plan text (for tests and `--plan`), laid over the built-in plan.
    pub fn parse(text: &str, origin: &str) -> Result<Self, PlanError> {
        let base = parse_file(DEFAULT_PLAN, "built-in plan")?;
        Self::merge(base, Some(parse_file(text, origin)?), origin)
    }

    fn merge(base: PlanFile, over: Option<PlanFile>, origin: &str) -> Result<Self, PlanError> {
        let invalid = |key: &str, message: String| PlanError::Invalid {
            path: origin.to_string(),
            key: key.to_string(),
            message,
        };
        let over = over.unwrap_or_default();
        let (ba, oa) = (base.audit.unwrap_or_default(), over.audit.unwrap_or_default());
        let (bb, ob) = (base.baseline.unwrap_or_default(), over.baseline.unwrap_or_default());
        let baseline_runs = oa.baseline_runs.or(ba.baseline_runs).unwrap_or(2);
        if !(2..=10).contains(&baseline_runs) {
            return Err(invalid("audit.baseline_runs", format!("{baseline_runs}: must be 2 to 10")));
        }
        let timeout_seconds = oa.timeout_seconds.or(ba.timeout_seconds).unwrap_or(120);
        if !(1..=3600).contains(&timeout_seconds) {
            return Err(invalid("audit.timeout_seconds", format!("{timeout_seconds}: must be 1 to 3600")));
        }
        let jobs = oa.jobs.or(ba.jobs).unwrap_or(0);
        if jobs > 64 {
            return Err(invalid("audit.jobs", format!("{jobs}: must be 0 (automatic) to 64")));
        }
        let mut env = bb.env.unwrap_or_default();
        env.extend(ob.env.unwrap_or_default());
        for k in env.keys() {
            if !valid_var(k) {
                return Err(invalid(&format!("baseline.env.{k}"), "not a valid variable name".into()));
            }
        }
        // Checked apart so that an error's index is the one in the file that has the entry.
        let (mut files, extra) = (bb.files.unwrap_or_default(), ob.files.unwrap_or_default());
        for (i, f) in extra.iter().enumerate() {
            check_file_path(&f.path).map_err(|m| invalid(&format!("baseline.files[{i}].path"), m))?;
        }
        files.extend(extra);
        let baseline = Baseline {
            timezone: ob.timezone.or(bb.timezone).unwrap_or_else(|| "Etc/UTC".into()),
            hostname: ob.hostname.or(bb.hostname).unwrap_or_else(|| "workstation".into()),
            locale: ob.locale.or(bb.locale).unwrap_or_else(|| "C.UTF-8".into()),
            hosts: ob.hosts.or(bb.hosts).unwrap_or_default(),
            env,
            files,
        };
        check_zone(&baseline.timezone).map_err(|m| invalid("baseline.timezone", m))?;
        check_hostname(&baseline.hostname).map_err(|m| invalid("baseline.hostname", m))?;
        for (i, h) in baseline.hosts.iter().enumerate() {
            check_dns_name(h).map_err(|m| invalid(&format!("baseline.hosts[{i}]"), m))?;
        }

        let factors = merge_factors(base.factors, over.factors, oa.factors.or(ba.factors), origin)?;
        Ok(Plan {
            baseline_runs,
            extra_baseline_on_difference: oa
                .extra_baseline_on_difference
                .or(ba.extra_baseline_on_difference)
                .unwrap_or(true),
            timeout: Duration::from_secs(timeout_seconds),
            jobs,
            baseline,
            factors,
        })
    }

    /// Keeps only the factors named (in the plan's order); an unknown name is an error.
    pub fn only(&mut self, names: &[String]) -> Result<(), String> {
        for n in names {
            if !self.factors.iter().any(|f| &f.name == n) {
                return Err(format!(
                    "--factor {n}: no such factor in the plan (factors: {})",
                    self.factors.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        if !names.is_empty() {
            self.factors.retain(|f| names.contains(&f.name));
        }
        Ok(())
    }

    /// Every run the plan makes: the baseline runs, then each factor's values in order.
    pub fn variants(&self) -> Vec<Variant> {
        let mut out = Vec::new();
        for (fi, f) in self.factors.iter().enumerate() {
            for v in &f.values {
                out.push(Variant { factor: Some(fi), factor_name: f.name.clone(), value: v.clone() });
            }
        }
        out
    }
}

fn names(s: &BTreeMap<String, FactorSection>) -> String {
    s.keys().cloned().collect::<Vec<_>>().join(", ")
}

/// The factors of the built-in plan with the plan file's laid over them, in the order that
/// `[audit] factors` gives (else the built-in factors, then the file's new ones by name);
/// factors with no values are off.
fn merge_factors(
    base: Option<BTreeMap<String, FactorSection>>,
    over: Option<BTreeMap<String, FactorSection>>,
    order: Option<Vec<String>>,
    origin: &str,
) -> Result<Vec<Factor>, PlanError> {
    let invalid = |key: &str, message: String| PlanError::Invalid {
        path: origin.to_string(),
        key: key.to_string(),
        message,
    };
    let mut sections = base.unwrap_or_default();
    for (name, o) in over.unwrap_or_default() {
        let s = sections.entry(name).or_default();
        s.values = o.values.or(s.values.take());
        s.templates = o.templates.or(s.templates.take());
        s.variables = o.variables.or(s.variables.take());
        s.variable = o.variable.or(s.variable.take());
        s.file = o.file.or(s.file.take());
    }
    let order: Vec<String> = match order {
        Some(list) => {
            for (i, n) in list.iter().enumerate() {
                if !sections.contains_key(n) {
                    return Err(invalid(
                        &format!("audit.factors[{i}]"),
                        format!("no factor named {n:?} (factors: {})", names(&sections)),
                    ));
                }
            }
            list
        }
        None => {
            let mut v: Vec<String> =
                BUILTIN_ORDER.iter().filter(|n| sections.contains_key(**n)).map(|n| n.to_string()).collect();
            v.extend(sections.keys().filter(|k| !BUILTIN_ORDER.contains(&k.as_str())).cloned());
            v
        }
    };
    let mut factors = Vec::new();
    for name in order {
        let s = &sections[&name];
        let f = build_factor(&name, s).map_err(|(k, m)| invalid(&format!("factors.{name}.{k}"), m))?;
        if !f.values.is_empty() {
            factors.push(f);
        }
    }
    Ok(factors)
}

fn build_factor(name: &str, s: &FactorSection) -> Result<Factor, (String, String)> {
    let values = s.values.clone().unwrap_or_default();
    let kind = factor_kind(name, s, !values.is_empty())?;
    check_values(&kind, &values)?;
    let mut seen = std::collections::BTreeSet::new();
    for (i, v) in values.iter().enumerate() {
        if !seen.insert(v) {
            return Err((format!("values[{i}]"), format!("{v:?} is listed twice")));
        }
    }
    Ok(Factor { name: name.to_string(), kind, values })
}

/// What a factor does, from its name and keys; an error names the key.
fn factor_kind(name: &str, s: &FactorSection, has_values: bool) -> Result<FactorKind, (String, String)> {
    let allowed: &[&str] = match name {
        "timezone" | "hostname" => &[],
        "base_url" => &["templates"],
        "proxy" | "locale" => &["variables"],
        _ => &["variable", "file"],
    };
    let set = [
        ("templates", s.templates.is_some()),
        ("variables", s.variables.is_some()),
        ("variable", s.variable.is_some()),
        ("file", s.file.is_some()),
    ];
    if let Some((key, _)) = set.iter().find(|(k, is_set)| *is_set && !allowed.contains(k)) {
        return Err((key.to_string(), format!("not a key of the {name} factor")));
    }
    Ok(match name {
        "timezone" => FactorKind::Timezone,
        "hostname" => FactorKind::Hostname,
        "base_url" => FactorKind::BaseUrl { templates: url_templates(s, has_values)? },
        "proxy" | "locale" => {
            let variables = s.variables.clone().unwrap_or_default();
            if variables.is_empty() && has_values {
                return Err(("variables".into(), "needs at least one variable".into()));
            }
            for (i, v) in variables.iter().enumerate() {
                if !valid_var(v) {
                    return Err((format!("variables[{i}]"), format!("{v:?}: not a valid variable name")));
                }
            }
            if name == "proxy" {
                FactorKind::Proxy { variables }
            } else {
                FactorKind::Locale { variables }
            }
        }
        _ => custom_kind(s)?,
    })
}

fn url_templates(s: &FactorSection, has_values: bool) -> Result<BTreeMap<String, String>, (String, String)> {
    let templates = s.templates.clone().unwrap_or_default();
    if templates.is_empty() && has_values {
        return Err(("templates".into(), "needs at least one VARIABLE = \"https://{host}\"".into()));
    }
    for (k, t) in &templates {
        if !valid_var(k) {
            return Err((format!("templates.{k}"), "not a valid variable name".into()));
        }
        let probe = t.replace("{host}", "example.com");
        if !t.contains("{host}") || parse_url(&probe).is_none() {
            return Err((
                format!("templates.{k}"),
                format!("{t:?}: must be an http:// or https:// URL containing {{host}}"),
            ));
        }
    }
    Ok(templates)
}

fn custom_kind(s: &FactorSection) -> Result<FactorKind, (String, String)> {
    if s.variable.is_none() && s.file.is_none() {
        return Err((
            "variable".into(),
            "a custom factor needs `variable` (set to each value) and/or `file` (written with each value)"
                .into(),
        ));
    }
    if let Some(v) = &s.variable {
        if !valid_var(v) {
            return Err(("variable".into(), format!("{v:?}: not a valid variable name")));
        }
    }
    if let Some(f) = &s.file {
        check_file_path(f).map_err(|m| ("file".to_string(), m))?;
    }
    Ok(FactorKind::Custom { variable: s.variable.clone(), file: s.file.clone() })
}

/// Each value makes sense for the factor: a known zone, a host name, an http:// proxy URL.
fn check_values(kind: &FactorKind, values: &[String]) -> Result<(), (String, String)> {
    for (i, v) in values.iter().enumerate() {
        let key = format!("values[{i}]");
        match kind {
            FactorKind::Timezone => check_zone(v).map_err(|m| (key.clone(), m))?,
            FactorKind::Hostname => check_hostname(v).map_err(|m| (key.clone(), m))?,
            FactorKind::BaseUrl { .. } => check_dns_name(v).map_err(|m| (key.clone(), m))?,
            FactorKind::Proxy { .. } => {
                let u = parse_url(v).ok_or_else(|| {
                    (key.clone(), format!("{v:?}: must be an http:// URL like http://proxy.example:3128"))
                })?;
                if u.scheme != "http" {
                    return Err((key, format!("{v:?}: the audit's proxy speaks http:// (CONNECT) only")));
                }
                if u.host.parse::<std::net::IpAddr>().is_ok_and(|ip| !ip.is_loopback()) {
                    return Err((
                        key,
                        format!("{v:?}: use a host name (it is mapped to loopback) or 127.0.0.1"),
                    ));
                }
            }
            FactorKind::Locale { .. } | FactorKind::Custom { .. } => {
                if v.contains('\0') {
                    return Err((key, "contains a NUL byte".into()));
                }
            }
        }
    }
    Ok(())
}

/// One run beyond the baseline: one factor set to one value.
#[derive(Debug, Clone)]
pub struct Variant {
    pub factor: Option<usize>,
    pub factor_name: String,
    pub value: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_plan_parses_and_covers_every_region() {
        let p = Plan::load(None).unwrap();
        let names: Vec<&str> = p.factors.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["timezone", "base_url", "proxy", "locale", "hostname"]);
        let hosts = &p.factors[1].values;
        for h in
            ["dashscope.aliyuncs.com", "qianfan.baidubce.com", "ark.cn-beijing.volces.com", "api.moonshot.cn"]
        {
            assert!(hosts.iter().any(|x| x == h), "{h}");
        }
        for h in
            ["api.mistral.ai", "clovastudio.stream.ntruss.com", "llm.api.cloud.yandex.net", "api.sarvam.ai"]
        {
            assert!(hosts.iter().any(|x| x == h), "{h}");
        }
        let zones = &p.factors[0].values;
        assert!(zones.len() >= 13 && zones.iter().any(|z| z == "Asia/Urumqi"));
        assert_eq!(p.baseline_runs, 2);
        assert!(p.variants().len() > 50);
    }

    #[test]
    fn a_plan_file_replaces_what_it_names() {
        let p = Plan::parse(
            "[audit]\nfactors = [\"timezone\", \"region\"]\n[factors.timezone]\nvalues = [\"Asia/Tokyo\"]\n\
             [factors.region]\nvariable = \"AWS_REGION\"\nvalues = [\"us-east-1\", \"cn-north-1\"]\n",
            "t.toml",
        )
        .unwrap();
        assert_eq!(p.factors.len(), 2);
        assert_eq!(p.factors[0].values, ["Asia/Tokyo"]);
        assert_eq!(p.factors[1].kind, FactorKind::Custom { variable: Some("AWS_REGION".into()), file: None });
        assert_eq!(p.variants().len(), 3);
    }

    #[test]
    fn errors_name_the_key() {
        let e = |t: &str| Plan::parse(t, "p.toml").unwrap_err().to_string();
        let m = e("[factors.timezone]\nvalues = \"UTC\"\n");
        assert!(m.starts_with("p.toml:2:10: factors.timezone.values: invalid type"), "{m}");
        let m = e("[factors.timezone]\nvalus = []\n");
        assert!(m.contains("factors.timezone.valus") && m.contains("unknown field"), "{m}");
        let m = e("[factors.timezone]\nvalues = [\"UTC\", \"Mars/Olympus\"]\n");
        assert!(m.contains("factors.timezone.values[1]: unknown timezone \"Mars/Olympus\""), "{m}");
        let m = e("[factors.proxy]\nvalues = [\"socks5://p:1080\"]\n");
        assert!(m.contains("factors.proxy.values[0]"), "{m}");
        let m = e("[factors.base_url]\ntemplates = { X_URL = \"https://fixed\" }\n");
        assert!(m.contains("factors.base_url.templates.X_URL"), "{m}");
        let m = e("[audit]\nbaseline_runs = 1\n");
        assert!(m.contains("audit.baseline_runs: 1: must be 2 to 10"), "{m}");
        let m = e("[factors.thing]\nvalues = [\"a\"]\n");
        assert!(m.contains("factors.thing.variable: a custom factor needs"), "{m}");
        let m = e("[[baseline.files]]\npath = \"/usr/x\"\ncontent = \"\"\n");
        assert!(m.contains("baseline.files[0].path"), "{m}");
        let m = e("[audit]\nfactors = [\"tz\"]\n");
        assert!(m.contains("audit.factors[0]: no factor named \"tz\""), "{m}");
        let m = e("[factors.timezone]\nvariables = [\"TZ\"]\n");
        assert!(m.contains("factors.timezone.variables: not a key of the timezone factor"), "{m}");
        let m = e("[factors.proxy]\nvalues = [\"http://10.1.2.3:3128\"]\n");
        assert!(m.contains("use a host name"), "{m}");
    }

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://u:p@Proxy.Corp:3128/x"),
            Some(Url { scheme: "http".into(), host: "proxy.corp".into(), port: 3128 })
        );
        assert_eq!(parse_url("https://h/v1").unwrap().port, 443);
        assert_eq!(parse_url("socks5://h:1"), None);
    }
}
