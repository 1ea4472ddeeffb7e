//! Process events: exec (with filename and argv), fork, exit.

use crate::{EventHeader, PATH_LEN};

/// Bytes of packed, NUL-separated argv kept per exec (a power of two: the kernel masks offsets).
pub const ARGV_LEN: usize = 1024;
/// Bytes of one argument (or environment entry) copied at most.
pub const ARG_LEN: usize = 256;
/// Arguments read at most per exec.
pub const MAX_ARGS: usize = 24;

/// A successful exec of a tracked or candidate process, sent from `sched_process_exec`, before
/// the new program runs a single instruction.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct ExecEvent {
    pub hdr: EventHeader,
    /// Bytes used in `filename`, without the NUL.
    pub filename_len: u32,
    /// Arguments packed in `argv`.
    pub argc: u32,
    /// Bytes used in `argv` (each argument NUL-terminated).
    pub argv_len: u32,
    /// Parent pid at fork (0 if the fork was not seen).
    pub ppid: u32,
    /// The file the kernel executed (`bprm->filename`).
    pub filename: [u8; PATH_LEN],
    /// NUL-separated arguments; sized so that a read of [`ARG_LEN`] at any offset below
    /// [`ARGV_LEN`] stays in bounds (the verifier needs that).
    pub argv: [u8; ARGV_LEN + ARG_LEN],
}

/// A new process (not a thread) created by a tracked process.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct ForkEvent {
    /// Header of the parent.
    pub hdr: EventHeader,
    pub child_pid: u32,
    pub _pad: u32,
}

/// The last thread of a tracked process exited.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct ExitEvent {
    pub hdr: EventHeader,
}

const _: () = assert!(ARGV_LEN.is_power_of_two());
const _: () = assert!(core::mem::size_of::<ExecEvent>() == 56 + 16 + PATH_LEN + ARGV_LEN + ARG_LEN);
const _: () = assert!(core::mem::size_of::<ForkEvent>() == 64);
const _: () = assert!(core::mem::size_of::<ExitEvent>() == 56);
