//! Path syscalls: which ones, and the event that reports one with its result.

use crate::{EventHeader, PATH_LEN};

/// `AT_FDCWD`, as a dirfd value in [`FileEvent::dirfd`].
pub const AT_FDCWD: i32 = -100;

u32_enum! {
    /// Syscall behind a [`FileEvent`], sent as `u32`; the label is the kernel's name for it, as
    /// in `syscalls:sys_enter_<name>`.
    pub enum Syscall {
        Open = 1 => "open",
        Openat = 2 => "openat",
        Openat2 = 3 => "openat2",
        Readlink = 4 => "readlink",
        Readlinkat = 5 => "readlinkat",
        Newfstatat = 6 => "newfstatat",
        Statx = 7 => "statx",
        Access = 8 => "access",
        Faccessat = 9 => "faccessat",
        Faccessat2 = 10 => "faccessat2",
        Newstat = 11 => "newstat",
        Newlstat = 12 => "newlstat",
        Chdir = 13 => "chdir",
        Fchdir = 14 => "fchdir",
    }
}

impl Syscall {
    /// Whether a successful call returns a new file descriptor.
    pub const fn returns_fd(self) -> bool {
        matches!(self, Self::Open | Self::Openat | Self::Openat2)
    }

    /// Whether the call changes the working directory.
    pub const fn changes_cwd(self) -> bool {
        matches!(self, Self::Chdir | Self::Fchdir)
    }
}

/// A path syscall of a tracked process, with its result.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct FileEvent {
    pub hdr: EventHeader,
    /// [`Syscall`] as `u32`.
    pub syscall: u32,
    /// Directory fd for `*at` calls, [`AT_FDCWD`] otherwise; the fd for `fchdir`.
    pub dirfd: i32,
    /// Open flags, access mode or `AT_*` flags, depending on the syscall.
    pub flags: u32,
    /// `openat2` `RESOLVE_*` flags; 0 otherwise.
    pub resolve: u32,
    /// Syscall return value: fd or 0 on success, `-errno` on failure.
    pub ret: i64,
    /// Bytes used in `path`, without the NUL.
    pub path_len: u32,
    pub _pad: u32,
    pub path: [u8; PATH_LEN],
}

const _: () = assert!(core::mem::size_of::<FileEvent>() == 56 + 32 + PATH_LEN);
