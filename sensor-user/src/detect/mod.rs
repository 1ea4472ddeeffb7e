//! Stage 4, deciding what events mean: assistants and fingerprint categories, watched
//! variables, redaction, the parsers of untrusted bytes, connections, and correlation.

pub mod baseline;
pub mod classify;
pub mod content;
pub mod correlate;
pub mod egress;
pub mod i386;
pub mod markers;
pub mod parsers;
pub mod prompt_rule;
pub mod redact;
pub mod signatures;
pub mod variables;
pub mod version;
