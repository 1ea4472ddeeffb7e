//! Deciding what things are: which processes are assistants, which paths are fingerprint reads.

pub mod assistant;
pub mod files;

use serde::Serialize;

/// Whose read (or connection) it was: the assistant's own process or one it spawned. The one
/// label of a process's part in its session, in records, metrics and correlation signals.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Reader {
    /// The assistant's own process.
    Assistant,
    /// A process it spawned (at any depth).
    Descendant,
}

impl Reader {
    /// The label in metrics (the same as in records).
    pub fn label(self) -> &'static str {
        match self {
            Self::Assistant => "assistant",
            Self::Descendant => "descendant",
        }
    }
}
