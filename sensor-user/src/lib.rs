//! aiwatch, user side: the daemon and CLI around the eBPF programs of `sensor-ebpf`.

pub mod check;
pub mod classify;
pub mod cli;
pub mod config;
pub mod correlate;
pub mod daemon;
pub mod egress;
pub mod events;
pub mod loader;
pub mod metrics;
pub mod ocsf;
pub mod parsers;
pub mod paths;
pub mod pipeline;
pub mod privileges;
pub mod procs;
pub mod redact;
pub mod report;
pub mod sinks;
pub mod status;
pub mod uprobes;
pub mod variables;
