//! Syscalls made through a 32-bit entry (`int $0x80` or `sysenter` from any process, a 32-bit
//! binary's syscalls): the kernel runs them but does not fire the `syscalls:sys_*` tracepoints
//! for them, so a program on `sys_enter` reports them for tracked processes.

use crate::{EventHeader, PATH_LEN};

u32_enum! {
    /// The entry a [`CompatEvent`]'s syscall came through, sent as `u32`; the label is the
    /// report's `abi`.
    pub enum CompatAbi {
        /// i386 numbering: `int $0x80`/`sysenter` (`TS_COMPAT` set in the thread's status).
        I386 = 1 => "i386",
        /// The x32 ABI (x86_64 numbering with bit 30 set), when the kernel enables it.
        X32 = 2 => "x32",
    }
}

u32_enum! {
    /// What [`CompatEvent::data`] holds, sent as `u32`.
    pub enum CompatData {
        None = 0 => "none",
        /// A NUL-terminated path read from the syscall's path argument.
        Path = 1 => "path",
        /// The sockaddr of a `connect` (or `socketcall(SYS_CONNECT)`), `data_len` bytes.
        SockAddr = 2 => "sockaddr",
    }
}

/// `x32` syscall numbers carry this bit (`__X32_SYSCALL_BIT`).
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// i386 syscall numbers the kernel copies an argument of (a path, or a connect address); every
/// call of these is reported. Any other compat syscall is reported once per process and number.
pub mod i386 {
    pub const OPEN: u32 = 5;
    pub const CREAT: u32 = 8;
    pub const EXECVE: u32 = 11;
    pub const CHDIR: u32 = 12;
    pub const OLDSTAT: u32 = 18;
    pub const ACCESS: u32 = 33;
    pub const OLDLSTAT: u32 = 84;
    pub const READLINK: u32 = 85;
    pub const SOCKETCALL: u32 = 102;
    pub const STAT: u32 = 106;
    pub const LSTAT: u32 = 107;
    pub const STAT64: u32 = 195;
    pub const LSTAT64: u32 = 196;
    pub const OPENAT: u32 = 295;
    pub const FSTATAT64: u32 = 300;
    pub const READLINKAT: u32 = 305;
    pub const FACCESSAT: u32 = 307;
    pub const EXECVEAT: u32 = 358;
    pub const CONNECT: u32 = 362;
    pub const STATX: u32 = 383;
    pub const OPENAT2: u32 = 437;
    pub const FACCESSAT2: u32 = 439;
    /// `socketcall`'s call number for connect (`SYS_CONNECT`).
    pub const SYS_CONNECT: u32 = 3;

    /// Which argument of syscall `nr` is a path, if one is.
    pub const fn path_arg(nr: u32) -> Option<usize> {
        match nr {
            OPEN | CREAT | EXECVE | CHDIR | OLDSTAT | ACCESS | OLDLSTAT | READLINK | STAT | LSTAT
            | STAT64 | LSTAT64 => Some(0),
            OPENAT | FSTATAT64 | READLINKAT | FACCESSAT | EXECVEAT | STATX | OPENAT2 | FACCESSAT2 => Some(1),
            _ => None,
        }
    }
}

/// Bytes of [`CompatEvent::data`].
pub const COMPAT_DATA_LEN: usize = PATH_LEN;

/// A syscall of a tracked process made through a 32-bit entry, seen at its entry (its result
/// is not: a `sys_exit` program would cost every syscall of the host a second run).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct CompatEvent {
    pub hdr: EventHeader,
    /// The syscall number in the ABI's numbering (x32: without [`X32_SYSCALL_BIT`]).
    pub nr: u32,
    /// [`CompatAbi`] as `u32`.
    pub abi: u32,
    /// The six arguments; i386 ones cut to the 32 bits the kernel uses.
    pub args: [u64; 6],
    /// [`CompatData`] as `u32`.
    pub data_kind: u32,
    /// Bytes used in `data` (a path without its NUL).
    pub data_len: u32,
    pub data: [u8; COMPAT_DATA_LEN],
}

const _: () = assert!(core::mem::size_of::<CompatEvent>() == 56 + 8 + 48 + 8 + COMPAT_DATA_LEN);
