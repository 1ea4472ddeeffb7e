//! Stage 3, what the daemon knows about processes: the process table and its sessions, and
//! path resolution.

pub mod bounded;
pub mod paths;
pub mod procs;
pub mod rooted;
