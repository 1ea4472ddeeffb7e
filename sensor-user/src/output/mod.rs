//! Stage 5, what leaves the daemon: records (native, OCSF, human), sinks, metrics, the live
//! view.

pub mod emit;
pub mod human;
pub mod metrics;
pub mod ocsf;
pub mod report;
pub mod sinks;
pub mod status;
