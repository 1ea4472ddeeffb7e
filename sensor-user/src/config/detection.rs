//! `[detection]`: the learned baseline's state and the signature file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::rules::Severity;

/// The state directory unless the config says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/aiwatch";

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// Where the learned baseline (`baseline.json`) is kept across restarts; none or `""` keeps
    /// it in memory only.
    pub state_dir: Option<PathBuf>,
    /// Sessions of an assistant and version learned before a category they do not read is a
    /// finding.
    pub baseline_learning_sessions: u32,
    /// (assistant, version) pairs the baseline keeps; the least recently seen goes first.
    pub baseline_max_entries: u32,
    /// A TOML file of known behaviours per assistant and version range (docs/config.md);
    /// reloaded on SIGHUP.
    pub signatures: Option<PathBuf>,
    /// `[detection.prompt_rule]`: the built-in finding on prompt markers.
    pub prompt_rule: PromptRuleConfig,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            // Unit tests run pipelines on the defaults: they must not write the host's state.
            state_dir: (!cfg!(test)).then(|| PathBuf::from(DEFAULT_STATE_DIR)),
            baseline_learning_sessions: 5,
            baseline_max_entries: 256,
            signatures: None,
            prompt_rule: PromptRuleConfig::default(),
        }
    }
}

/// The built-in rule `prompt_marker_anomaly` (`detect::prompt_rule`): a request carrying a
/// marker its assistant version's other sessions on this host do not, or a date format that
/// changed after a read of the host's timezone or base URL.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PromptRuleConfig {
    pub enabled: bool,
    /// Other sessions of an assistant version whose requests were learned before a marker or
    /// date format they do not carry is a finding (before: learning, no finding).
    pub learning_sessions: u32,
    /// Distinct other sessions that must have carried a marker (or date format) at a path for it
    /// to be usual there: repeating it within one session never makes it usual.
    pub usual_sessions: u32,
    /// Severity of a new marker.
    pub marker_severity: Severity,
    /// Severity of a date format that changed after one of `date_reads`.
    pub date_severity: Severity,
    /// Categories whose read (any time before the request in the session) makes a changed date
    /// format a finding.
    pub date_reads: Vec<String>,
    /// (assistant, version) histories kept; the least recently used goes first.
    pub max_entries: u32,
}

impl Default for PromptRuleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            learning_sessions: 3,
            usual_sessions: 2,
            marker_severity: Severity::Medium,
            date_severity: Severity::High,
            date_reads: vec!["timezone".into(), "base_url".into()],
            max_entries: 256,
        }
    }
}

impl PromptRuleConfig {
    /// The first setting that is wrong, with why; `categories` are the configured categories
    /// (of files and of variables).
    pub fn check(&self, categories: &[&str]) -> Result<(), (String, String)> {
        let sessions = 1..=100_000;
        if !sessions.contains(&self.learning_sessions) {
            return Err(("learning_sessions".into(), "must be 1 to 100000 (sessions)".into()));
        }
        if !sessions.contains(&self.usual_sessions) {
            return Err(("usual_sessions".into(), "must be 1 to 100000 (sessions)".into()));
        }
        if !(1..=65_536).contains(&self.max_entries) {
            return Err(("max_entries".into(), "must be 1 to 65536".into()));
        }
        if self.date_reads.is_empty() {
            return Err(("date_reads".into(), "must name at least one category".into()));
        }
        for (i, c) in self.date_reads.iter().enumerate() {
            if !categories.contains(&c.as_str()) {
                return Err((format!("date_reads[{i}]"), format!("{c:?} is not a category")));
            }
        }
        Ok(())
    }
}
