//! Map value types and the counters shared by kernel and user space.

u32_enum! {
    /// How a process came to be tracked, sent as `u32` in [`Tracked::state`].
    pub enum TrackState {
        /// Exec'd a candidate executable (an interpreter or an assistant's name); user space has
        /// not classified it yet. Its events are buffered in user space until it has.
        Pending = 1 => "pending",
        /// Classified as an assistant: the root of a session.
        Assistant = 2 => "assistant",
        /// A descendant of an assistant.
        Descendant = 3 => "descendant",
    }
}

/// Value of the `TRACKED` map, keyed by tgid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Tracked {
    /// Pid of the session's root assistant process; 0 while pending.
    pub session: u32,
    /// [`TrackState`] as `u32`.
    pub state: u32,
}

/// Key of the `CANDIDATES` map: an executable's basename, NUL-padded, cut to 15 bytes like `comm`.
pub type CandidateKey = [u8; crate::COMM_LEN];

u32_enum! {
    /// Indices of the per-CPU `STATS` counters; the label is the metric's `outcome`.
    pub enum Stat {
        /// Events written to the ring buffer.
        Emitted = 0 => "emitted",
        /// Events lost because the ring buffer was full.
        RingbufFull = 1 => "ringbuf_full",
        /// Processes not tracked because `TRACKED` was full.
        TrackedFull = 2 => "tracked_map_full",
        /// Syscalls not followed because a stash map was full.
        StashFull = 3 => "stash_full",
        /// Paths or filenames cut at their buffer size.
        PathTruncated = 4 => "path_truncated",
        /// Exec argv or environment lists with entries left out (no room, or past the maximum
        /// count); once per list.
        ArgvTruncated = 5 => "argv_truncated",
        /// User-memory reads that failed.
        ReadFailed = 6 => "read_failed",
        /// Sockets of tracked processes not followed because `SOCKS` (or `SK_CONN`, for a
        /// non-blocking connect's result) was full: their bytes, sends and close go unseen.
        SocketMapFull = 7 => "socket_map_full",
        /// Forks whose parent was not remembered because `PARENTS` was full: the child's exec
        /// reports no ppid (user space reads `/proc` instead, if the process is still there).
        ParentMapFull = 8 => "parent_map_full",
        /// 32-bit-entry syscalls of tracked processes not reported because the process had
        /// already made one with the same number (only those without a path or address).
        CompatRepeated = 9 => "compat_repeated",
        /// Batched events (path syscalls, variable reads, interface and host queries, 32-bit
        /// syscalls) not sent because the
        /// ring buffer was more than three quarters full: the last quarter is kept for process
        /// and connection events, so a flood of reads cannot cost a session its exec or exit.
        RingbufShed = 10 => "ringbuf_shed",
        /// Variable reads of tracked processes not sent because the process had read the same
        /// name less than a second before: each is counted here at once, and in
        /// `aiwatch_env_reads_total` with the next read of that name that is sent.
        EnvRepeated = 11 => "env_repeated",
    }
}

/// Key of the `SOCKS` map: an inet socket of a tracked process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct SockKey {
    pub tgid: u32,
    pub fd: u32,
}

/// Value of the `SOCKS` map: what the kernel keeps per tracked inet socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(C)]
pub struct SockInfo {
    pub family: u16,
    pub sock_type: u16,
    /// Bits from [`sock_flags`].
    pub flags: u32,
    pub bytes_sent: u64,
    pub bytes_recv: u64,
    /// Sends whose bytes were copied so far.
    pub captures: u32,
    /// A digest of the last peer a datagram was sent to without connect() (0: none yet): a
    /// datagram to another peer is copied whatever `captures` says.
    pub last_peer: u32,
    /// Bytes of the current plain-HTTP request still copied for the content scan
    /// ([`sock_flags::CONTENT`]).
    pub content_left: u32,
    pub _pad: u32,
}

/// Bits of [`SockInfo::flags`].
pub mod sock_flags {
    /// connect() was called (successfully or in progress).
    pub const CONNECTED: u32 = 1 << 0;
    /// Peer port 53: every message is copied (DNS), sent and received.
    pub const DNS: u32 = 1 << 1;
    /// The first send was a proxy handshake (HTTP CONNECT, a SOCKS5 greeting): sends are
    /// copied until a TLS record is, or [`CAPTURE_PROXY`](super::CAPTURE_PROXY) of them.
    pub const PROXY: u32 = 1 << 2;
    /// The first send was a TLS record: the content is not readable here, and later sends'
    /// first bytes are not looked at.
    pub const TLS: u32 = 1 << 3;
    /// A plain-HTTP request with a body (`POST`, `PUT`) was sent: each such request is copied
    /// whole, up to [`CONTENT_BUDGET`](super::CONTENT_BUDGET), for the prompt-marker scan.
    pub const CONTENT: u32 = 1 << 4;
}

/// Bytes of one plain-HTTP request copied at most for the content scan (prompts are large;
/// the daemon's `content.request_budget` can only lower it).
pub const CONTENT_BUDGET: u32 = 1 << 20;
/// Chunks of [`DATA_LEN`](super::DATA_LEN) bytes copied at most per send syscall (256 KiB);
/// what a larger write carries beyond them is a gap the daemon sees and counts.
pub const CONTENT_CHUNKS: u32 = 32;
/// iovecs of a `writev`/`sendmsg` walked at most for the content copy.
pub const CONTENT_IOVECS: u32 = 4;

/// Bytes of a `SOCK_FDS` value: one per fd below `SOCK_FD_SLOTS - 1`, the last one for every
/// fd from there up.
pub const SOCK_FD_SLOTS: usize = 64;

/// Sends per socket whose first bytes are copied (HTTP CONNECT, then the ClientHello behind it).
pub const CAPTURE_SENDS: u32 = 3;
/// Sends copied at most on a socket whose first send was a proxy handshake (a SOCKS5 greeting,
/// authentication and request, or a CONNECT head written a header at a time, then the
/// tunnelled ClientHello).
pub const CAPTURE_PROXY: u32 = 32;
/// Requests per `NETLINK_ROUTE` socket whose first bytes are copied (interface enumeration).
pub const CAPTURE_NETLINK: u32 = 16;
/// `AF_NETLINK`.
pub const AF_NETLINK: u16 = 16;

const _: () = assert!(core::mem::size_of::<Tracked>() == 8);
const _: () = assert!(core::mem::size_of::<SockKey>() == 8);
const _: () = assert!(core::mem::size_of::<SockInfo>() == 40);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `repr(C)` data without padding holes or invalid bit patterns.
    unsafe impl aya::Pod for super::Tracked {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SockKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SockInfo {}
    // SAFETY: as above.
    unsafe impl aya::Pod for crate::TlsKey {}
}

/// Wake-up batching of the event ring buffer. High-volume events (file syscalls, variable reads,
/// interface ioctls) are submitted without waking the daemon, which drains the buffer every `BATCH_MS` anyway.
/// Waking it per event cost the daemon about 20 µs of CPU per event at 10,000-25,000 events/s
/// (7-11 µs batched) and a traced getenv 0.7 µs more; a traced open costs the same either way.
/// Process events and the bytes copied from connections, rare and latency-sensitive, force a
/// wake-up (the default, adaptive one is skipped while batched events are unread), and the ring
/// keeps order, so the file events before a connection are handled before it. A connection's
/// result, TCP state and close do not (a forced wake-up cost a tracked refused connect 7-15 µs
/// each: docs/perf-connect.md); they are never shed, and come in with the next drain or wake-up.
pub const BATCH_MS: u64 = 5;

/// Forced wake-ups are coalesced per CPU: an urgent event within this long after the last one
/// its CPU forced is submitted without one, and the daemon drains the ring again this long
/// after each wake-up, so such an event waits at most about this long (plus the timer's slack).
pub const WAKE_COALESCE_US: u64 = 1000;
