//! Maps shared by the programs. Sizes are defaults; the loader may override them from config.
//!
//! No LRU maps: an LRU map evicts without telling anyone (and may do so before it is full, from
//! per-CPU free lists). Every map is a plain hash map whose insert fails when it is full, and
//! every failed insert is counted in `STATS`. Entries are removed when what they describe ends,
//! so they cannot pile up: per-thread slots at the thread's exit (`process_enter_sched_exit_thread`),
//! `PARENTS` at the leader's exit, `SOCKS` at close or by user space (exit, untracked owners),
//! `SK_CONN` at `TCP_CLOSE`.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf},
};
use sensor_common::{
    CandidateKey, ExecEnvEvent, ExecEvent, RawSockAddr, SockInfo, SockKey, Stat, TlsKey, Tracked,
    SOCK_FD_SLOTS,
};

/// All events, in the order each thread produced them.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

/// Tracked processes by tgid. Bounded: a full map is counted, never fatal.
#[map]
pub static TRACKED: HashMap<u32, Tracked> = HashMap::with_max_entries(16384, 0);

/// Parent tgid of processes forked since the sensor started (every fork, not only tracked
/// ones), until their leader exits: an exec event carries its ppid even when the process is
/// gone before user space looks at `/proc`. Full: counted as `parent_map_full`.
#[map]
pub static PARENTS: HashMap<u32, u32> = HashMap::with_max_entries(16384, 0);

/// Executable basenames whose exec makes a process pending classification.
#[map]
pub static CANDIDATES: HashMap<CandidateKey, u32> = HashMap::with_max_entries(512, 0);

/// Exec arguments read at `sys_enter_execve*`, by tid, until `sched_process_exec` sends them.
#[map]
pub static EXEC_STASH: HashMap<u32, ExecEvent> = HashMap::with_max_entries(1024, 0);

/// Arguments of a path syscall in flight, by tid, until its exit.
#[map]
pub static FILE_ARGS: HashMap<u32, FileArgs> = HashMap::with_max_entries(8192, 0);

/// Exec environments read at `sys_enter_execve*`, by tid, sent with the exec.
#[map]
pub static ENV_STASH: HashMap<u32, ExecEnvEvent> = HashMap::with_max_entries(256, 0);

/// Per-CPU room to build an exec environment.
#[map]
pub static ENV_SCRATCH: PerCpuArray<ExecEnvEvent> = PerCpuArray::with_max_entries(1, 0);

/// An exec's arguments as `sys_enter_execve*` found them, for `process_enter_exec_args`.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct ExecArgs {
    pub filename: u64,
    pub argv: u64,
    pub envp: u64,
    /// 1 for an exec of a file descriptor (`execveat` with `AT_EMPTY_PATH`).
    pub exec_fd: u64,
}

/// This CPU's exec in progress (a tail call stays on the CPU).
#[map]
pub static EXEC_ARGS: PerCpuArray<ExecArgs> = PerCpuArray::with_max_entries(1, 0);

/// Slot 0: `process_enter_exec_args`, put there by the loader. Both exec programs tail-call it,
/// so its loops (the filename's basename, 24 arguments, 160 environment entries) are verified
/// once, not once per exec syscall (about 20 ms of start-up each).
#[map]
pub static EXEC_PROG: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// Per-CPU room to build an exec event (too large for the 512-byte stack).
#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(1, 0);

/// Counters indexed by [`Stat`].
/// When this CPU last forced a wake-up of the daemon (boot-time ns): see [`crate::emit::urgent`].
#[map]
pub static WAKES: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Stat::COUNT, 0);

/// What `sys_enter_*` keeps for `sys_exit_*`: the path is read at exit, when the kernel has
/// just faulted its page in.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct FileArgs {
    pub path: u64,
    pub syscall: u32,
    pub dirfd: i32,
    pub flags: u32,
    pub resolve: u32,
    /// The tracking entry at enter: the exit reports with it instead of looking it up again.
    pub tracked: Tracked,
}

/// Inet sockets of tracked processes, by (tgid, fd). Removed at close(); user space removes
/// what a process left open when it exits, and what a process no longer tracked left behind.
/// Full: counted as `socket_map_full`.
#[map]
pub static SOCKS: HashMap<SockKey, SockInfo> = HashMap::with_max_entries(16384, 0);

/// Which fds of a process may be in `SOCKS`, by tgid: byte `fd` (the last byte: any fd from
/// `SOCK_FD_SLOTS - 1` up) is set before a socket enters `SOCKS` and cleared when it leaves at
/// close, so `close()` of a file skips both `TRACKED` and `SOCKS` (one lookup here instead of
/// two). Bytes, not bits: threads of one process set and clear their own fds with plain stores
/// (5.10 has no atomic OR), which must not undo each other's. Only processes that had a socket
/// followed have an entry; it goes with the process (its exit, or user space once it is no
/// longer tracked). Sized like `TRACKED` by the loader; a full map keeps the socket out of
/// `SOCKS` (counted as `socket_map_full`), so no followed socket's close is skipped.
#[map]
pub static SOCK_FDS: HashMap<u32, [u8; SOCK_FD_SLOTS]> = HashMap::with_max_entries(16384, 0);

/// Arguments of a socket syscall in flight, by tid, until its exit.
#[map]
pub static NET_ARGS: HashMap<u32, NetArgs> = HashMap::with_max_entries(8192, 0);

/// TCP sockets (kernel address) a tracked process is connecting, to its (tgid, fd): state
/// changes arrive in softirq context, where the current task is anybody. Removed at `TCP_CLOSE`,
/// which every TCP socket reaches before it is freed.
#[map]
pub static SK_CONN: HashMap<u64, SockKey> = HashMap::with_max_entries(8192, 0);

/// What `sys_enter_*` of a socket syscall keeps for its exit.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct NetArgs {
    /// Which syscall (`OP_*` in `probes::net`); 0 marks a used slot.
    pub op: u32,
    pub fd: i32,
    /// User buffer (first iovec for vectored calls); ioctl: the argument.
    pub buf: u64,
    /// Bytes in `buf`.
    pub len: u64,
    /// User sockaddr of sendto/recvfrom/msg_name, 0 if none.
    pub addr: u64,
    /// `mmsghdr` array of sendmmsg/recvmmsg.
    pub mmsg: u64,
    /// socket(): family and type.
    pub family: u32,
    pub sock_type: u32,
    /// ioctl(): the command.
    pub cmd: u32,
    /// writev/sendmsg: iovecs in `iov` (0 for a plain buffer).
    pub iovcnt: u32,
    /// writev/sendmsg: the iovec array, for the content copy (which walks them all).
    pub iov: u64,
    /// connect(): the address, read at enter.
    pub sa: RawSockAddr,
}

/// A plain-HTTP send whose bytes are copied for the content scan: what `net_exit_syscall`
/// hands to `net_exit_content`, which it tail-calls, and which tail-calls itself once per
/// iovec (a loop over chunks and iovecs together exceeds the verifier's budget).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct ContentArgs {
    pub fd: i32,
    /// iovecs at `iov` (0: the plain buffer `buf`, `len`).
    pub iovcnt: u32,
    pub buf: u64,
    pub len: u64,
    pub iov: u64,
    pub tracked: Tracked,
    /// Bytes the syscall sent.
    pub bytes: u64,
    /// Bytes of the syscall still to copy (within the request's budget).
    pub left: u64,
    /// The iovec to copy next.
    pub iov_i: u32,
    /// [`sensor_common::flags::CONTENT_START`] until the send's first chunk is out.
    pub start: u32,
    pub sock_type: u16,
    pub family: u16,
    /// Chunks of the segment in progress copied so far (at most `CONTENT_CHUNKS`).
    pub seg_chunks: u32,
    pub _pad: u32,
    /// The segment in progress: where its next chunk starts, and its bytes still to copy (0:
    /// the next call starts the segment at `iov_i`).
    pub seg_base: u64,
    pub seg_left: u64,
}

#[map]
pub static CONTENT_ARGS: PerCpuArray<ContentArgs> = PerCpuArray::with_max_entries(1, 0);

/// Slot 0: `net_exit_content`, put there by the loader.
#[map]
pub static CONTENT_PROG: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// A process's variable name, as the `getenv` uprobes read it (zero past its end), in
/// [`ENV_SEEN`]: names of [`ENV_SHORT_LEN`] bytes or more.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct EnvKey {
    pub tgid: u32,
    pub len: u32,
    pub name: [u8; sensor_common::ENV_NAME_LEN],
}

/// Names shorter than this (nearly all: `HTTPS_PROXY`, `ANTHROPIC_BASE_URL`) are keyed in
/// [`ENV_SEEN_SHORT`]: the map hashes and compares the whole key on every read, and a 32-byte
/// key is a quarter of the work of a 136-byte one.
pub const ENV_SHORT_LEN: usize = 24;

/// A process's variable name shorter than [`ENV_SHORT_LEN`] (zero past its end).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct EnvShortKey {
    pub tgid: u32,
    pub len: u32,
    pub name: [u8; ENV_SHORT_LEN],
}

/// When a process's read of a name was last sent, and the reads since (not sent).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct EnvSeen {
    pub sent_ns: u64,
    pub repeats: u32,
    pub _pad: u32,
}

/// Compat syscall numbers each tracked process has been reported for (bit `nr & 511` of
/// 8 words), so that one spinning on `int $0x80` sends each number once. The exit of a process
/// removes its own; in a full map a process has no entry and its numbers are all reported (the
/// ring buffer counts what it cannot take), so nothing is lost unseen.
#[map]
pub static COMPAT_SEEN: HashMap<u32, [u64; 8]> = HashMap::with_max_entries(4096, 0);

/// TLS connections (`SSL *` of a tracked process) whose HTTP request is being copied: the bytes
/// of its budget left. Removed when the budget is used up; user space removes those of
/// processes no longer tracked.
#[map]
pub static TLS_STREAMS: HashMap<TlsKey, u32> = HashMap::with_max_entries(4096, 0);

/// An `SSL_write`/`SSL_write_ex` call in flight: what its uprobe keeps for its return.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct TlsCall {
    pub ssl: u64,
    /// The plaintext's user address; 0 marks a used slot.
    pub buf: u64,
    /// `SSL_write_ex`'s `size_t *written` (0 for `SSL_write`).
    pub written: u64,
    /// [`sensor_common::TlsFunc`] as `u32`.
    pub func: u32,
    pub _pad: u32,
}

/// `SSL_write` calls in flight, by tid, until their return.
#[map]
pub static TLS_CALLS: HashMap<u32, TlsCall> = HashMap::with_max_entries(4096, 0);

/// A TLS write being copied, for `tls_exit_content` (per CPU: a tail call stays on it).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct TlsContent {
    pub tracked: Tracked,
    pub ssl: u64,
    /// Bytes OpenSSL took (the records' `bytes`).
    pub bytes: u64,
    /// Where the next chunk starts, and the bytes still to copy.
    pub src: u64,
    pub left: u64,
    pub func: u32,
    /// [`sensor_common::flags::CONTENT_START`] until the call's first chunk is out.
    pub start: u32,
    /// Chunks copied so far (at most `CONTENT_CHUNKS`).
    pub chunks: u32,
    pub _pad: u32,
}

#[map]
pub static TLS_CONTENT: PerCpuArray<TlsContent> = PerCpuArray::with_max_entries(1, 0);

/// Slot 0: `tls_exit_content`, put there when the TLS programs are loaded.
#[map]
pub static TLS_PROG: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// A variable read whose name could not be read yet, by tid (see `probes::env`).
#[derive(Clone, Copy)]
#[repr(C)]
pub struct EnvPending {
    pub ptr: u64,
    pub ts_ns: u64,
}

#[map]
pub static ENV_PENDING: HashMap<u32, EnvPending> = HashMap::with_max_entries(4096, 0);

/// Each tracked process's variable reads: the last one sent and the repeats since. Least
/// recently used entries make room (an exited process's are never read again).
#[map]
pub static ENV_SEEN: LruHashMap<EnvKey, EnvSeen> = LruHashMap::with_max_entries(2048, 0);

/// As [`ENV_SEEN`], for names shorter than [`ENV_SHORT_LEN`].
#[map]
pub static ENV_SEEN_SHORT: LruHashMap<EnvShortKey, EnvSeen> = LruHashMap::with_max_entries(8192, 0);

// These go to map helpers from the stack, where the verifier refuses uninitialized bytes: no
// implicit padding (explicit `_pad` fields; the sizes say there is none left).
const _: () = assert!(core::mem::size_of::<FileArgs>() == 32);
const _: () = assert!(core::mem::size_of::<NetArgs>() == 96);
const _: () = assert!(core::mem::size_of::<ContentArgs>() == 96);
const _: () = assert!(core::mem::size_of::<EnvKey>() == 8 + sensor_common::ENV_NAME_LEN);
const _: () = assert!(core::mem::size_of::<EnvShortKey>() == 8 + ENV_SHORT_LEN);
const _: () = assert!(core::mem::size_of::<EnvSeen>() == 16);
const _: () = assert!(core::mem::size_of::<EnvPending>() == 16);
const _: () = assert!(core::mem::size_of::<TlsCall>() == 32);
const _: () = assert!(core::mem::size_of::<TlsContent>() == 56);
