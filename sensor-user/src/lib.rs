//! aiwatch, user side: the daemon and CLI around the eBPF programs of `sensor-ebpf`.
//!
//! One folder per stage, in the order an event goes through them (docs/design.md):
//! `kernel` (load, attach, decode), `pipeline` (one handler per event family), `model` (the
//! process table), `detect` (classification, parsers, egress, correlation), `output` (records,
//! metrics, sinks, the live view); around them `cmd` (the commands), `config` and `sys`.

pub mod cmd;
pub mod config;
pub mod detect;
pub mod kernel;
pub mod model;
pub mod output;
pub mod pipeline;
pub mod sys;
