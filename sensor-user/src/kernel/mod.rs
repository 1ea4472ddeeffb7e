//! Stage 1, the kernel side as user space sees it: loading and attaching the programs, the maps,
//! the per-session getenv probes, and the ring-buffer records decoded.

pub mod events;
pub mod loader;
pub mod uprobes;
