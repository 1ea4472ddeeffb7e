//! What every record the kernel sends through the `EVENTS` ring buffer starts with.

/// Length of a task's `comm`, as the kernel defines it.
pub const COMM_LEN: usize = 16;
/// Bytes of a path copied from user memory; longer paths are cut and flagged.
pub const PATH_LEN: usize = 256;

u32_enum! {
    /// Kind of an event, sent as `u32` in [`EventHeader::kind`]; the label is the metric's.
    pub enum EventKind {
        Exec = 1 => "exec",
        Fork = 2 => "fork",
        Exit = 3 => "exit",
        File = 4 => "file",
        Connect = 5 => "connect",
        Data = 6 => "data",
        Close = 7 => "close",
        State = 8 => "tcp_state",
        EnvRead = 9 => "env_read",
        Ioctl = 10 => "ioctl",
        ExecEnv = 11 => "exec_env",
        Uname = 12 => "uname",
        UnixConnect = 13 => "unix_connect",
        Compat = 14 => "compat_syscall",
        TlsData = 15 => "tls_data",
    }
}

/// Bits of [`EventHeader::flags`].
pub mod flags {
    /// The path (or exec filename) filled its buffer and was cut.
    pub const PATH_TRUNCATED: u32 = 1 << 0;
    /// A packed string list (argv, or the environment of an exec-environment event) was cut:
    /// an entry at `ARG_LEN` bytes, or later entries left out.
    pub const ARGV_TRUNCATED: u32 = 1 << 1;
    /// A user-memory read failed; the affected field is empty or ends early.
    pub const READ_FAILED: u32 = 1 << 2;
    /// `execveat` with `AT_EMPTY_PATH`: an fd (e.g. a memfd) was executed.
    pub const EXEC_FD: u32 = 1 << 3;
    /// A close record covers a range of fds (`close_range`), not one socket.
    pub const FD_RANGE: u32 = 1 << 4;
    /// A data record copied for the content scan of a plain-HTTP request (not for naming the
    /// destination): one chunk of a send.
    pub const CONTENT: u32 = 1 << 5;
    /// With [`CONTENT`]: the first chunk of a send syscall (its `ret` is the syscall's byte
    /// count, so the daemon sees what the chunks after it leave out).
    pub const CONTENT_START: u32 = 1 << 6;
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
    /// [`TrackState`](crate::TrackState) as `u32`, as the kernel knew it.
    pub state: u32,
    pub comm: [u8; COMM_LEN],
}

/// A record of one [`EventKind`]: an [`EventHeader`] (field `hdr`, first), then its body. The
/// kind comes with the type, so a record cannot be sent under another kind's number.
pub trait Event {
    const KIND: EventKind;
    fn header_mut(&mut self) -> &mut EventHeader;
}

macro_rules! events {
    ($($ty:ident => $kind:ident,)*) => {$(
        impl Event for crate::$ty {
            const KIND: EventKind = EventKind::$kind;
            #[inline(always)]
            fn header_mut(&mut self) -> &mut EventHeader {
                &mut self.hdr
            }
        }
    )*};
}

events! {
    ExecEvent => Exec,
    ForkEvent => Fork,
    ExitEvent => Exit,
    FileEvent => File,
    ConnectEvent => Connect,
    DataEvent => Data,
    CloseEvent => Close,
    StateEvent => State,
    EnvReadEvent => EnvRead,
    IoctlEvent => Ioctl,
    ExecEnvEvent => ExecEnv,
    UnameEvent => Uname,
    UnixConnectEvent => UnixConnect,
    CompatEvent => Compat,
    TlsDataEvent => TlsData,
}

const _: () = assert!(core::mem::size_of::<EventHeader>() == 56);
