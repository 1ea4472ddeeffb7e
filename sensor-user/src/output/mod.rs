//! Stage 5, what leaves the daemon: the one emitter (`emit.rs`) that counts, logs and writes
//! what the pipeline returns; records (native, OCSF, human), sinks, metrics, the live view, and
//! the HTTP endpoint that serves the last two.

pub mod counters;
pub mod emit;
pub mod human;
pub mod metrics;
pub mod ocsf;
pub mod report;
pub mod rollup;
pub mod server;
pub mod sinks;
pub mod status;
pub mod syslog;
