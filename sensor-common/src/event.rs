//! Events the kernel sends to user space through the `EVENTS` ring buffer.

/// Length of a task's `comm`, as the kernel defines it.
pub const COMM_LEN: usize = 16;
/// Bytes of a path copied from user memory; longer paths are cut and flagged.
pub const PATH_LEN: usize = 256;
/// Bytes of packed, NUL-separated argv kept per exec (a power of two: the kernel masks offsets).
pub const ARGV_LEN: usize = 1024;
/// Bytes of one argument copied at most.
pub const ARG_LEN: usize = 256;
/// Arguments read at most per exec.
pub const MAX_ARGS: usize = 24;
/// `AT_FDCWD`, as a dirfd value in [`FileEvent::dirfd`].
pub const AT_FDCWD: i32 = -100;

/// Kind of an event, sent as `u32` in [`EventHeader::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum EventKind {
    Exec = 1,
    Fork = 2,
    Exit = 3,
    File = 4,
    Connect = 5,
    Data = 6,
    Close = 7,
    State = 8,
    EnvRead = 9,
    Ioctl = 10,
    ExecEnv = 11,
}

impl TryFrom<u32> for EventKind {
    type Error = u32;
    fn try_from(v: u32) -> Result<Self, u32> {
        Ok(match v {
            1 => Self::Exec,
            2 => Self::Fork,
            3 => Self::Exit,
            4 => Self::File,
            5 => Self::Connect,
            6 => Self::Data,
            7 => Self::Close,
            8 => Self::State,
            9 => Self::EnvRead,
            10 => Self::Ioctl,
            11 => Self::ExecEnv,
            other => return Err(other),
        })
    }
}

/// Bits of [`EventHeader::flags`].
pub mod flags {
    /// The path (or exec filename) filled its buffer and was cut.
    pub const PATH_TRUNCATED: u32 = 1 << 0;
    /// argv did not fit: later arguments are missing.
    pub const ARGV_TRUNCATED: u32 = 1 << 1;
    /// A user-memory read failed; the affected field is empty.
    pub const READ_FAILED: u32 = 1 << 2;
    /// `execveat` with `AT_EMPTY_PATH`: an fd (e.g. a memfd) was executed.
    pub const EXEC_FD: u32 = 1 << 3;
}

/// Syscall behind a [`FileEvent`], sent as `u32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Syscall {
    Open = 1,
    Openat = 2,
    Openat2 = 3,
    Readlink = 4,
    Readlinkat = 5,
    Newfstatat = 6,
    Statx = 7,
    Access = 8,
    Faccessat = 9,
    Faccessat2 = 10,
    Newstat = 11,
    Newlstat = 12,
    Chdir = 13,
    Fchdir = 14,
}

impl Syscall {
    pub const ALL: [Syscall; 14] = [
        Self::Open,
        Self::Openat,
        Self::Openat2,
        Self::Readlink,
        Self::Readlinkat,
        Self::Newfstatat,
        Self::Statx,
        Self::Access,
        Self::Faccessat,
        Self::Faccessat2,
        Self::Newstat,
        Self::Newlstat,
        Self::Chdir,
        Self::Fchdir,
    ];

    /// The kernel's name for the syscall, as in `syscalls:sys_enter_<name>`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Openat => "openat",
            Self::Openat2 => "openat2",
            Self::Readlink => "readlink",
            Self::Readlinkat => "readlinkat",
            Self::Newfstatat => "newfstatat",
            Self::Statx => "statx",
            Self::Access => "access",
            Self::Faccessat => "faccessat",
            Self::Faccessat2 => "faccessat2",
            Self::Newstat => "newstat",
            Self::Newlstat => "newlstat",
            Self::Chdir => "chdir",
            Self::Fchdir => "fchdir",
        }
    }

    /// Whether a successful call returns a new file descriptor.
    pub const fn returns_fd(self) -> bool {
        matches!(self, Self::Open | Self::Openat | Self::Openat2)
    }

    /// Whether the call changes the working directory.
    pub const fn changes_cwd(self) -> bool {
        matches!(self, Self::Chdir | Self::Fchdir)
    }
}

impl TryFrom<u32> for Syscall {
    type Error = u32;
    fn try_from(v: u32) -> Result<Self, u32> {
        match v {
            1..=14 => Ok(Self::ALL[(v - 1) as usize]),
            other => Err(other),
        }
    }
}

/// Common header of every event.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct EventHeader {
    /// [`EventKind`] as `u32`.
    pub kind: u32,
    /// Bits from [`flags`].
    pub flags: u32,
    /// `CLOCK_BOOTTIME` in nanoseconds (`bpf_ktime_get_boot_ns`).
    pub ts_ns: u64,
    /// Thread group id (the process id user space sees).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Session root pid as the kernel knew it when the event was made (0 while pending).
    pub session: u32,
    /// [`TrackState`] as `u32`, as the kernel knew it.
    pub state: u32,
    pub comm: [u8; COMM_LEN],
}

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

/// Bytes of a send copied at most (a post-quantum TLS ClientHello is well past 2 KiB).
pub const DATA_LEN: usize = 8192;
/// Bytes of a received DNS message copied at most.
pub const DNS_RECV_LEN: usize = 2048;

/// A `struct sockaddr` as the process passed it (or as the kernel built it): family, then
/// port and address in network order, exactly the C layout of `sockaddr_in`/`sockaddr_in6`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct RawSockAddr {
    /// Bytes of `data` that are valid.
    pub len: u32,
    pub data: [u8; 28],
}

/// Direction of a [`DataEvent`], sent as `u32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Direction {
    Send = 1,
    Recv = 2,
}

impl TryFrom<u32> for Direction {
    type Error = u32;
    fn try_from(v: u32) -> Result<Self, u32> {
        match v {
            1 => Ok(Self::Send),
            2 => Ok(Self::Recv),
            other => Err(other),
        }
    }
}

/// `connect()` of a tracked process on an `AF_INET`/`AF_INET6` socket, with its result.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct ConnectEvent {
    pub hdr: EventHeader,
    pub fd: i32,
    /// `SOCK_STREAM`, `SOCK_DGRAM`, … (0 when the socket was created before tracking).
    pub sock_type: u32,
    /// 0, or `-errno` (`-EINPROGRESS` for a non-blocking connect: see [`StateEvent`]).
    pub ret: i64,
    pub addr: RawSockAddr,
}

/// The first bytes a tracked process sent on (or, for DNS, received from) an inet socket.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct DataEvent {
    pub hdr: EventHeader,
    pub fd: i32,
    /// [`Direction`] as `u32`.
    pub direction: u32,
    /// Bytes the syscall transferred.
    pub ret: i64,
    pub sock_type: u16,
    /// `AF_INET`, `AF_INET6` or `AF_NETLINK`.
    pub family: u16,
    /// Bytes of `data` that are valid.
    pub len: u32,
    /// Peer given to `sendto`/`sendmsg`/`recvfrom` (len 0 when none).
    pub peer: RawSockAddr,
    pub data: [u8; DATA_LEN],
}

/// `close()` of a tracked inet socket, with what went through it.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct CloseEvent {
    pub hdr: EventHeader,
    pub fd: i32,
    pub sock_type: u32,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
}

/// A TCP state change of a connection a tracked process started (from
/// `sock:inet_sock_set_state`, often in softirq context: the header's pid is the owner's, taken
/// from the map, and its comm and uid are empty).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct StateEvent {
    pub hdr: EventHeader,
    pub fd: i32,
    pub oldstate: u32,
    pub newstate: u32,
    pub _pad: u32,
    pub local: RawSockAddr,
    pub remote: RawSockAddr,
}

/// Bytes of packed `NAME=value` strings kept per exec (a power of two, like [`ARGV_LEN`]).
pub const ENV_LEN: usize = 8192;
/// Environment entries read at most per exec.
pub const MAX_ENV: usize = 160;

/// The environment a tracked or candidate exec starts with, sent just before its
/// [`ExecEvent`]. User space keeps the watched names and redacted values only.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct ExecEnvEvent {
    pub hdr: EventHeader,
    /// Entries packed in `data`.
    pub count: u32,
    /// Bytes used in `data` (each entry NUL-terminated).
    pub len: u32,
    /// `NAME=value` strings, each cut at [`ARG_LEN`] bytes; room past `ENV_LEN` as for argv.
    pub data: [u8; ENV_LEN + ARG_LEN],
}

/// Bytes of a variable name copied at most.
pub const ENV_NAME_LEN: usize = 128;

/// Which libc function read a variable, sent as `u32`.
pub mod env_func {
    pub const GETENV: u32 = 1;
    pub const SECURE_GETENV: u32 = 2;
}

/// A tracked process asked libc for an environment variable (uprobe on `getenv` and
/// `secure_getenv`), with whether it was set. The value is not copied.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct EnvReadEvent {
    pub hdr: EventHeader,
    /// [`env_func`] value.
    pub func: u32,
    /// 1 if the variable was set (non-NULL result), else 0.
    pub set: u32,
    pub name_len: u32,
    pub _pad: u32,
    pub name: [u8; ENV_NAME_LEN],
}

/// An interface-enumeration `ioctl` of a tracked process (`SIOCGIFCONF`, `SIOCGIFHWADDR`, …).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct IoctlEvent {
    pub hdr: EventHeader,
    pub fd: i32,
    pub cmd: u32,
    pub ret: i64,
    /// `ifr_name` of the `struct ifreq` argument (empty for `SIOCGIFCONF`).
    pub ifname: [u8; 16],
}

/// TCP states as the kernel numbers them (`TCP_ESTABLISHED` …).
pub mod tcp_state {
    pub const ESTABLISHED: u32 = 1;
    pub const SYN_SENT: u32 = 2;
    pub const CLOSE: u32 = 7;
}

const _: () = assert!(core::mem::size_of::<EventHeader>() == 56);
const _: () = assert!(core::mem::size_of::<RawSockAddr>() == 32);
const _: () = assert!(core::mem::size_of::<ConnectEvent>() == 56 + 16 + 32);
const _: () = assert!(core::mem::size_of::<DataEvent>() == 56 + 24 + 32 + DATA_LEN);
const _: () = assert!(core::mem::size_of::<CloseEvent>() == 56 + 24);
const _: () = assert!(core::mem::size_of::<StateEvent>() == 56 + 16 + 64);
const _: () = assert!(DATA_LEN.is_power_of_two() && DNS_RECV_LEN <= DATA_LEN);
const _: () = assert!(core::mem::size_of::<EnvReadEvent>() == 56 + 16 + ENV_NAME_LEN);
const _: () = assert!(core::mem::size_of::<IoctlEvent>() == 56 + 16 + 16);
const _: () = assert!(core::mem::size_of::<ExecEnvEvent>() == 56 + 8 + ENV_LEN + ARG_LEN);
const _: () = assert!(ENV_LEN.is_power_of_two());
const _: () = assert!(core::mem::size_of::<ExecEvent>() == 56 + 16 + PATH_LEN + ARGV_LEN + ARG_LEN);
const _: () = assert!(core::mem::size_of::<ForkEvent>() == 64);
const _: () = assert!(core::mem::size_of::<ExitEvent>() == 56);
const _: () = assert!(core::mem::size_of::<FileEvent>() == 56 + 32 + PATH_LEN);
const _: () = assert!(ARGV_LEN.is_power_of_two());
