//! Deciding what things are: which processes are assistants, which paths are fingerprint reads.

pub mod assistant;
pub mod files;
