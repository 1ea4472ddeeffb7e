//! Stage 1, the kernel side as user space sees it: loading and attaching the programs
//! (`loader`), the maps, the per-session getenv probes, what the pipeline asks of them
//! (`tracker`), and the ring-buffer records decoded (`events`).

pub mod events;
pub mod loader;
pub mod maps;
pub mod tracker;
pub mod uprobes;
