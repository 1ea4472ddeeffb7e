//! Types shared by the eBPF programs and the `aiwatch` daemon.
//!
//! Everything here crosses the kernel boundary: `#[repr(C)]`, explicit padding, no `bool` and no
//! Rust enums in the structs (enums travel as `u32` and come back through `TryFrom`). Every event
//! starts with [`EventHeader`]. Sizes are asserted so a layout change breaks the build, not the
//! decoder.
#![no_std]

pub mod event;
pub mod maps;
pub mod tracepoints;

pub use event::*;
pub use maps::*;
