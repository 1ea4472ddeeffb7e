//! The schema of finding rules (`[[rules]]`): what `detect::correlate` evaluates.

use serde::{Deserialize, Serialize};

/// How serious a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Informational: worth recording (a rule of the user's own), not worth an alert.
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// OCSF `severity_id`.
    pub fn ocsf_id(self) -> u8 {
        match self {
            Self::Info => 1,
            Self::Low => 2,
            Self::Medium => 3,
            Self::High => 4,
            Self::Critical => 5,
        }
    }
}

/// A finding rule (config `[[rules]]`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Severity when the assistant's own process made at least one of the reads.
    pub severity: Severity,
    /// Severity when only its descendants did.
    pub descendant_severity: Severity,
    /// Groups of categories; a read in any category of a group counts for the group.
    pub groups: Vec<Vec<String>>,
    /// How many distinct groups must have been read.
    pub min_groups: usize,
    /// Destination classes whose connection completes the pattern (`base_url`: a host the
    /// session was given in a `*_BASE_URL` variable).
    pub destinations: Vec<String>,
    /// Reads count for this long before the connection.
    pub window_seconds: u64,
    /// Whose reads count: `any` process of the session (the default), or only the `assistant`'s
    /// own process (what a relay asking for the host's identity does, not a tool it runs).
    #[serde(default)]
    pub readers: Readers,
    /// Artifacts whose reads do not count: a path glob (`/run/systemd/resolve/**`) or an exact
    /// artifact name (`uname`, `RTM_GETADDR`). The relay rule leaves out what every runtime
    /// reads to resolve a name and to name itself, or it would fire for every assistant.
    #[serde(default)]
    pub ignore: Vec<String>,
}

impl RuleConfig {
    /// Whether a read of `artifact` is left out by [`RuleConfig::ignore`].
    pub fn ignores(&self, artifact: &str) -> bool {
        self.ignore.iter().any(|p| {
            p == artifact
                || (p.starts_with('/')
                    && crate::config::glob::Glob::new(p).is_ok_and(|g| g.matches(artifact)))
        })
    }
}

/// Whose reads a rule counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Readers {
    #[default]
    Any,
    Assistant,
}
