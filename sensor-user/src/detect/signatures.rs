//! The signature file: known behaviours of assistants per version range, and the conditions
//! under which a session of an affected version is a finding (`docs/config.md`).
//!
//! ```toml
//! [[signature]]
//! id = "acme-agent-tz-in-date-format"
//! assistant = "acme-agent"
//! versions = ">=1.0.30, <1.0.40"
//! severity = "high"                  # the default
//! description = "encodes the timezone into the date format of its requests"
//! when.categories = ["timezone"]     # every one read by the session (any process)
//! when.destinations = ["base_url"]   # the connection's class is one of these
//! when.base_url_given = true         # the session was (or was not) given a *_BASE_URL
//! when.env = ["ANTHROPIC_BASE_URL"]  # watched variables set in the session's environment
//! ```

use std::{collections::BTreeSet, path::Path};

use serde::Deserialize;

use crate::{config::rules::Severity, detect::version::VersionRange};

/// Entries a file may hold.
const MAX_SIGNATURES: usize = 1024;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    signature: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    id: String,
    assistant: String,
    versions: String,
    #[serde(default = "high")]
    severity: Severity,
    #[serde(default)]
    description: String,
    when: When,
}

fn high() -> Severity {
    Severity::High
}

/// The triggering conditions; all that are given must hold.
#[derive(Deserialize, Clone, Debug, Default)]
#[serde(deny_unknown_fields)]
pub struct When {
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub destinations: Vec<String>,
    pub base_url_given: Option<bool>,
    #[serde(default)]
    pub env: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct Signature {
    pub id: String,
    pub assistant: String,
    pub versions: VersionRange,
    pub severity: Severity,
    pub description: String,
    pub when: When,
}

/// What a session is, as the conditions ask.
pub struct SessionFacts<'a> {
    pub assistant: &'a str,
    pub version: Option<&'a str>,
    pub categories: &'a BTreeSet<String>,
    pub destination_class: &'a str,
    pub base_url_given: bool,
    pub env: &'a BTreeSet<String>,
}

impl Signature {
    /// A session of an affected version under the triggering conditions.
    pub fn matches(&self, s: &SessionFacts<'_>) -> bool {
        let w = &self.when;
        self.assistant == s.assistant
            && s.version.is_some_and(|v| self.versions.contains(v))
            && w.categories.iter().all(|c| s.categories.contains(c))
            && (w.destinations.is_empty() || w.destinations.iter().any(|d| d == s.destination_class))
            && w.base_url_given.is_none_or(|b| b == s.base_url_given)
            && w.env.iter().all(|e| s.env.contains(e))
    }
}

/// Loads and checks `path`; an error names the file, the entry and the field.
pub fn load(path: &Path) -> Result<Vec<Signature>, String> {
    let shown = path.display();
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read signature file {shown}: {e}"))?;
    parse(&text, &shown.to_string())
}

pub fn parse(text: &str, origin: &str) -> Result<Vec<Signature>, String> {
    let de = toml::Deserializer::new(text);
    let file: File = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        let at = inner.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
        format!("{origin}:{}: {field}: {}", at.unwrap_or(0), inner.message().trim())
    })?;
    if file.signature.len() > MAX_SIGNATURES {
        return Err(format!("{origin}: more than {MAX_SIGNATURES} signatures"));
    }
    let mut out: Vec<Signature> = Vec::with_capacity(file.signature.len());
    for (i, e) in file.signature.into_iter().enumerate() {
        let err = |field: &str, msg: String| format!("{origin}: signature[{i}] ({:?}): {field}: {msg}", e.id);
        if e.id.is_empty() || !e.id.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
            return Err(err("id", "must be [A-Za-z0-9_.-]+".into()));
        }
        if out.iter().any(|s| s.id == e.id) {
            return Err(err("id", "is used twice".into()));
        }
        if e.assistant.is_empty() {
            return Err(err("assistant", "must not be empty".into()));
        }
        let versions = VersionRange::parse(&e.versions).map_err(|m| err("versions", m))?;
        let w = &e.when;
        if w.categories.is_empty()
            && w.destinations.is_empty()
            && w.base_url_given.is_none()
            && w.env.is_empty()
        {
            return Err(err(
                "when",
                "needs at least one of categories, destinations, base_url_given, env".into(),
            ));
        }
        if let Some(bad) = w.categories.iter().chain(&w.destinations).chain(&w.env).find(|c| c.is_empty()) {
            return Err(err("when", format!("{bad:?}: names must not be empty")));
        }
        out.push(Signature {
            id: e.id.clone(),
            assistant: e.assistant.clone(),
            versions,
            severity: e.severity,
            description: e.description.clone(),
            when: e.when.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE: &str = r#"
[[signature]]
id = "acme-tz"
assistant = "acme"
versions = ">=1.0.30, <1.0.40"
description = "puts the zone into its dates"
when.categories = ["timezone"]
when.base_url_given = true
"#;

    #[test]
    fn matches_version_and_conditions() {
        let s = parse(ONE, "sig.toml").unwrap();
        assert_eq!(s[0].severity, Severity::High);
        let cats: BTreeSet<String> = ["timezone".to_string()].into();
        let env = BTreeSet::new();
        let facts = |version, categories, given| SessionFacts {
            assistant: "acme",
            version,
            categories,
            destination_class: "base_url",
            base_url_given: given,
            env: &env,
        };
        assert!(s[0].matches(&facts(Some("1.0.35"), &cats, true)));
        assert!(!s[0].matches(&facts(Some("1.0.40"), &cats, true)));
        assert!(!s[0].matches(&facts(None, &cats, true)));
        assert!(!s[0].matches(&facts(Some("1.0.35"), &cats, false)));
        assert!(!s[0].matches(&facts(Some("1.0.35"), &BTreeSet::new(), true)));
    }

    #[test]
    fn errors_name_file_entry_and_field() {
        assert!(parse("", "s.toml").unwrap().is_empty());
        let e = parse(&ONE.replace(">=1.0.30, <1.0.40", "~1.0"), "s.toml").unwrap_err();
        assert!(e.starts_with("s.toml: signature[0] (\"acme-tz\"): versions: "), "{e}");
        let e = parse(&ONE.replace("when.categories", "when.categorys"), "s.toml").unwrap_err();
        assert!(e.starts_with("s.toml:") && e.contains("signature[0].when"), "{e}");
        let e = parse(&format!("{ONE}{ONE}"), "s.toml").unwrap_err();
        assert!(e.contains("signature[1]") && e.contains("id: is used twice"), "{e}");
        let e = parse(
            &ONE.replace("severity", "x")
                .replace("when.categories = [\"timezone\"]\nwhen.base_url_given = true", "when = {}"),
            "s.toml",
        )
        .unwrap_err();
        assert!(e.contains("when: needs at least one"), "{e}");
    }
}
