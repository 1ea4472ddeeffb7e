//! Stage 3, what the daemon knows about processes: the process table and its sessions, and
//! path resolution.

pub mod paths;
pub mod procs;
