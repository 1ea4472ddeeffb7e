//! The tracepoint record fields the programs read, by name, offset and size.
//!
//! The programs read fields at these offsets; before attaching, the daemon checks each one
//! against the kernel's `format` file for the hook (`loader::tracefs`), so a kernel that lays a
//! record out differently is refused with the field's name instead of being misread. Fields that
//! only some kernels have (`sched_process_exit.group_dead`, Linux ≥ 6.16) select between
//! alternative programs instead.

/// A field of a tracepoint record as its `format` file names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub offset: usize,
    pub size: usize,
}

impl Field {
    pub const fn new(name: &'static str, offset: usize, size: usize) -> Self {
        Self { name, offset, size }
    }
}

/// Argument `index` of a `syscalls:sys_enter_*` record: the common header (8 bytes) and
/// `__syscall_nr` (4, padded to 8) come first, then one 8-byte slot per argument.
pub const fn sys_arg(name: &'static str, index: usize) -> Field {
    Field::new(name, 16 + 8 * index, 8)
}

/// `ret` of every `syscalls:sys_exit_*` record.
pub const SYS_EXIT_RET: Field = Field::new("ret", 16, 8);

/// Declares, per syscall, the `sys_enter_*` arguments the programs read.
macro_rules! syscall_args {
    ($($syscall:ident { $($konst:ident = $name:literal @ $index:literal),* $(,)? })*) => {
        /// Arguments of `syscalls:sys_enter_<syscall>` the programs read.
        pub mod sys {
            $(
                #[allow(missing_docs)]
                pub mod $syscall {
                    use super::super::{sys_arg, Field};
                    $(pub const $konst: Field = sys_arg($name, $index);)*
                    /// Every argument above: what the loader checks in the format file.
                    pub const READ: &[Field] = &[$($konst),*];
                }
            )*

            /// What the programs read of `sys_enter_<syscall>`, by the syscall's name.
            pub fn read(syscall: &str) -> Option<&'static [super::Field]> {
                match syscall {
                    $(stringify!($syscall) => Some($syscall::READ),)*
                    _ => None,
                }
            }
        }
    };
}

syscall_args! {
    execve { FILENAME = "filename" @ 0, ARGV = "argv" @ 1, ENVP = "envp" @ 2 }
    execveat { FD = "fd" @ 0, FILENAME = "filename" @ 1, ARGV = "argv" @ 2, ENVP = "envp" @ 3, FLAGS = "flags" @ 4 }
    open { FILENAME = "filename" @ 0, FLAGS = "flags" @ 1 }
    openat { DFD = "dfd" @ 0, FILENAME = "filename" @ 1, FLAGS = "flags" @ 2 }
    openat2 { DFD = "dfd" @ 0, FILENAME = "filename" @ 1, HOW = "how" @ 2 }
    readlink { PATH = "path" @ 0 }
    readlinkat { DFD = "dfd" @ 0, PATHNAME = "pathname" @ 1 }
    newfstatat { DFD = "dfd" @ 0, FILENAME = "filename" @ 1, FLAG = "flag" @ 3 }
    statx { DFD = "dfd" @ 0, FILENAME = "filename" @ 1, FLAGS = "flags" @ 2 }
    access { FILENAME = "filename" @ 0, MODE = "mode" @ 1 }
    faccessat { DFD = "dfd" @ 0, FILENAME = "filename" @ 1, MODE = "mode" @ 2 }
    faccessat2 { DFD = "dfd" @ 0, FILENAME = "filename" @ 1, FLAGS = "flags" @ 3 }
    newstat { FILENAME = "filename" @ 0 }
    newlstat { FILENAME = "filename" @ 0 }
    chdir { FILENAME = "filename" @ 0 }
    fchdir { FD = "fd" @ 0 }
    socket { FAMILY = "family" @ 0, TYPE = "type" @ 1, PROTOCOL = "protocol" @ 2 }
    connect { FD = "fd" @ 0, USERVADDR = "uservaddr" @ 1, ADDRLEN = "addrlen" @ 2 }
    write { FD = "fd" @ 0, BUF = "buf" @ 1, COUNT = "count" @ 2 }
    read { FD = "fd" @ 0, BUF = "buf" @ 1, COUNT = "count" @ 2 }
    sendto { FD = "fd" @ 0, BUFF = "buff" @ 1, LEN = "len" @ 2, ADDR = "addr" @ 4 }
    recvfrom { FD = "fd" @ 0, UBUF = "ubuf" @ 1, SIZE = "size" @ 2, ADDR = "addr" @ 4 }
    writev { FD = "fd" @ 0, VEC = "vec" @ 1, VLEN = "vlen" @ 2 }
    readv { FD = "fd" @ 0, VEC = "vec" @ 1 }
    sendmsg { FD = "fd" @ 0, MSG = "msg" @ 1 }
    recvmsg { FD = "fd" @ 0, MSG = "msg" @ 1 }
    sendmmsg { FD = "fd" @ 0, MMSG = "mmsg" @ 1 }
    recvmmsg { FD = "fd" @ 0, MMSG = "mmsg" @ 1 }
    close { FD = "fd" @ 0 }
    dup2 { OLDFD = "oldfd" @ 0, NEWFD = "newfd" @ 1 }
    dup3 { OLDFD = "oldfd" @ 0, NEWFD = "newfd" @ 1 }
    close_range { FD = "fd" @ 0, MAX_FD = "max_fd" @ 1, FLAGS = "flags" @ 2 }
    ioctl { FD = "fd" @ 0, CMD = "cmd" @ 1, ARG = "arg" @ 2 }
    newuname { NAME = "name" @ 0 }
}

/// `sched:sched_process_exec`.
pub mod sched_process_exec {
    use super::Field;
    /// `__data_loc char[] filename`: offset (low 16 bits) and length of the string in the record.
    pub const FILENAME: Field = Field::new("filename", 8, 4);
    pub const PID: Field = Field::new("pid", 12, 4);
    pub const OLD_PID: Field = Field::new("old_pid", 16, 4);
    pub const READ: &[Field] = &[FILENAME, PID, OLD_PID];
}

/// `sched:sched_process_exit`.
pub mod sched_process_exit {
    use super::Field;
    /// `bool group_dead`: the last thread of the group is exiting. Linux ≥ 6.16 only; before
    /// that the exit program reads the group's live-thread count instead.
    pub const GROUP_DEAD: Field = Field::new("group_dead", 32, 1);
}

/// `task:task_newtask`.
pub mod task_newtask {
    use super::Field;
    pub const PID: Field = Field::new("pid", 8, 4);
    pub const CLONE_FLAGS: Field = Field::new("clone_flags", 32, 8);
    pub const READ: &[Field] = &[PID, CLONE_FLAGS];
}

/// `raw_syscalls:sys_enter`: every syscall of the host, whatever its entry.
pub mod raw_sys_enter {
    use super::Field;
    /// `long id`: the syscall number in the numbering of the entry it came through.
    pub const ID: Field = Field::new("id", 8, 8);
    /// `unsigned long args[6]`.
    pub const ARGS: Field = Field::new("args", 16, 48);
    pub const READ: &[Field] = &[ID, ARGS];
}

/// `sock:inet_sock_set_state`.
pub mod inet_sock_set_state {
    use super::Field;
    pub const SKADDR: Field = Field::new("skaddr", 8, 8);
    pub const OLDSTATE: Field = Field::new("oldstate", 16, 4);
    pub const NEWSTATE: Field = Field::new("newstate", 20, 4);
    pub const SPORT: Field = Field::new("sport", 24, 2);
    pub const DPORT: Field = Field::new("dport", 26, 2);
    pub const FAMILY: Field = Field::new("family", 28, 2);
    pub const PROTOCOL: Field = Field::new("protocol", 30, 2);
    pub const SADDR: Field = Field::new("saddr", 32, 4);
    pub const DADDR: Field = Field::new("daddr", 36, 4);
    pub const SADDR_V6: Field = Field::new("saddr_v6", 40, 16);
    pub const DADDR_V6: Field = Field::new("daddr_v6", 56, 16);
    pub const READ: &[Field] =
        &[SKADDR, OLDSTATE, NEWSTATE, SPORT, DPORT, FAMILY, PROTOCOL, SADDR, DADDR, SADDR_V6, DADDR_V6];
}

/// Where a path syscall keeps the arguments the file programs read.
#[derive(Clone, Copy, Debug)]
pub struct FileLayout {
    pub dirfd: Option<Field>,
    pub path: Option<Field>,
    pub flags: Option<Field>,
    /// `openat2`: flags and resolve flags come from a user `struct open_how`.
    pub open_how: Option<Field>,
}

impl crate::Syscall {
    /// The arguments of this syscall's `sys_enter_*` record the file programs read.
    pub const fn layout(self) -> FileLayout {
        use crate::Syscall::*;
        const fn at(dirfd: Field, path: Field, flags: Option<Field>) -> FileLayout {
            FileLayout { dirfd: Some(dirfd), path: Some(path), flags, open_how: None }
        }
        const fn path0(path: Field, flags: Option<Field>) -> FileLayout {
            FileLayout { dirfd: None, path: Some(path), flags, open_how: None }
        }
        match self {
            Open => path0(sys::open::FILENAME, Some(sys::open::FLAGS)),
            Openat => at(sys::openat::DFD, sys::openat::FILENAME, Some(sys::openat::FLAGS)),
            Openat2 => FileLayout {
                open_how: Some(sys::openat2::HOW),
                ..at(sys::openat2::DFD, sys::openat2::FILENAME, None)
            },
            Readlink => path0(sys::readlink::PATH, None),
            Readlinkat => at(sys::readlinkat::DFD, sys::readlinkat::PATHNAME, None),
            Newfstatat => at(sys::newfstatat::DFD, sys::newfstatat::FILENAME, Some(sys::newfstatat::FLAG)),
            Statx => at(sys::statx::DFD, sys::statx::FILENAME, Some(sys::statx::FLAGS)),
            Access => path0(sys::access::FILENAME, Some(sys::access::MODE)),
            Faccessat => at(sys::faccessat::DFD, sys::faccessat::FILENAME, Some(sys::faccessat::MODE)),
            Faccessat2 => at(sys::faccessat2::DFD, sys::faccessat2::FILENAME, Some(sys::faccessat2::FLAGS)),
            Newstat => path0(sys::newstat::FILENAME, None),
            Newlstat => path0(sys::newlstat::FILENAME, None),
            Chdir => path0(sys::chdir::FILENAME, None),
            Fchdir => FileLayout { dirfd: Some(sys::fchdir::FD), path: None, flags: None, open_how: None },
        }
    }
}

impl FileLayout {
    /// The fields read, for the loader's format check.
    pub fn fields(&self) -> impl Iterator<Item = Field> {
        [self.dirfd, self.path, self.flags, self.open_how].into_iter().flatten()
    }
}

/// Offsets into kernel structs that no tracepoint carries, found in the kernel's BTF by the
/// daemon and written into the object's read-only data before loading (there is no CO-RE for
/// Rust programs). Zero means unknown: the program using them is not loaded.
pub mod kernel_offsets {
    /// `struct task_struct` member `signal` (`struct signal_struct *`).
    pub const TASK_SIGNAL: &str = "AIWATCH_TASK_SIGNAL_OFFSET";
    /// `struct signal_struct` member `live` (`atomic_t`: live threads of the group).
    pub const SIGNAL_LIVE: &str = "AIWATCH_SIGNAL_LIVE_OFFSET";
    /// `struct task_struct` member `thread_info`, plus `struct thread_info` member `status`
    /// (x86: `TS_COMPAT` is set there while a 32-bit-entry syscall runs).
    pub const TASK_STATUS: &str = "AIWATCH_TASK_STATUS_OFFSET";
    /// Not an offset: bytes of each plain-HTTP request copied for the content scan (0: none).
    pub const CONTENT_BUDGET: &str = "AIWATCH_CONTENT_BUDGET";
    /// Not an offset: bytes of the `EVENTS` ring buffer (`u64`; 0: the programs ask the ring).
    pub const RING_BYTES: &str = "AIWATCH_RING_BYTES";
}

const _: () = assert!(sys::execveat::FLAGS.offset == 48);
const _: () = assert!(sys::sendto::ADDR.offset == 48);
