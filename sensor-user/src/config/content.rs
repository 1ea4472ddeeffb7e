//! `[content]`: the prompt-marker scan of the requests sessions send to LLM APIs.

use serde::{Deserialize, Serialize};

/// What of a request is scanned.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ContentMode {
    /// Headers and body (the kernel copies plain-HTTP request bodies).
    On,
    /// Headers only (from the first bytes the kernel copies anyway); no body is copied.
    HeadersOnly,
    Off,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ContentConfig {
    pub markers: ContentMode,
    /// Bytes of one request copied and scanned at most (1 to 1,048,576: the kernel's bound).
    pub request_budget: u32,
    /// Bytes scanned per session at most; its later requests are counted, not scanned.
    pub session_budget: u64,
    /// Destination classes (of `[destinations]`) scanned besides `llm_api` and `base_url`.
    pub destinations: Vec<String>,
}

impl Default for ContentConfig {
    fn default() -> Self {
        Self {
            markers: ContentMode::On,
            request_budget: 1 << 20,
            session_budget: 64 << 20,
            destinations: Vec::new(),
        }
    }
}

impl ContentConfig {
    /// Bytes of each request the kernel copies (0 unless bodies are scanned).
    pub fn kernel_budget(&self) -> u32 {
        if self.markers == ContentMode::On {
            self.request_budget
        } else {
            0
        }
    }

    /// The first setting that is wrong, with why; `classes` are the configured destination
    /// classes.
    pub fn check(&self, classes: &[&str]) -> Result<(), (String, String)> {
        if !(1..=sensor_common::CONTENT_BUDGET).contains(&self.request_budget) {
            return Err(("request_budget".into(), format!("must be 1 to {}", sensor_common::CONTENT_BUDGET)));
        }
        if self.session_budget == 0 {
            return Err(("session_budget".into(), "must be above 0".into()));
        }
        for (i, d) in self.destinations.iter().enumerate() {
            if !classes.contains(&d.as_str()) {
                return Err((
                    format!("destinations[{i}]"),
                    format!("{d:?} is not a class of [destinations]"),
                ));
            }
        }
        Ok(())
    }
}
