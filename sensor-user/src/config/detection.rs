//! `[detection]`: the learned baseline's state and the signature file.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

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
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            // Unit tests run pipelines on the defaults: they must not write the host's state.
            state_dir: (!cfg!(test)).then(|| PathBuf::from(DEFAULT_STATE_DIR)),
            baseline_learning_sessions: 5,
            baseline_max_entries: 256,
            signatures: None,
        }
    }
}
