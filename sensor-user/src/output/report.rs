//! What aiwatch reports: the records of the JSON-lines schema (`aiwatch.v1`, documented in
//! docs/events.md); `human.rs` has their one-line form, `ocsf.rs` their OCSF mapping.

use serde::Serialize;

use crate::{
    detect::classify::Reader,
    model::procs::{Proc, Session},
};

pub const SCHEMA: &str = "aiwatch.v1";

/// One output record.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub schema: &'static str,
    /// RFC 3339 wall-clock time of the kernel event.
    pub time: String,
    /// `CLOCK_BOOTTIME` nanoseconds of the kernel event.
    pub boot_ns: u64,
    pub host: String,
    #[serde(flatten)]
    pub body: Body,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Body {
    /// A process was classified as an assistant (live, or found by the start-up scan).
    SessionStart {
        session: SessionRef,
        process: ProcessRef,
        found_by: &'static str,
        /// Watched variables in the assistant's environment (values redacted).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        environment: Vec<crate::detect::variables::Variable>,
    },
    /// The last process of a session exited.
    SessionEnd { session: SessionRef, duration_ms: u64 },
    /// A session's profile: what it read (artifacts counted, with readers), where it connected
    /// (with bytes); at its end and every `output.rollup_interval` while it runs.
    SessionRollup(Box<crate::output::rollup::session::SessionRollup>),
    /// A process of a session exec'd a program.
    ProcessExec {
        session: SessionRef,
        process: ProcessRef,
        reader: Reader,
        /// Watched variables in the new program's environment (values redacted).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        environment: Vec<crate::detect::variables::Variable>,
    },
    /// A session's process asked libc for a watched environment variable.
    EnvRead {
        session: SessionRef,
        process: ProcessRef,
        reader: Reader,
        variable: String,
        category: String,
        /// The variable was set (getenv returned non-NULL).
        set: bool,
        function: &'static str,
    },
    /// A session's process enumerated network interfaces (netlink dump or ioctl).
    InterfaceQuery {
        session: SessionRef,
        process: ProcessRef,
        reader: Reader,
        /// `netlink` or `ioctl`.
        method: &'static str,
        /// `RTM_GETLINK`, `RTM_GETADDR`, `SIOCGIFHWADDR`, …
        request: &'static str,
        /// Interface named in an ifreq (ioctl).
        #[serde(skip_serializing_if = "Option::is_none")]
        interface: Option<String>,
        /// A netlink dump (every interface) rather than one object.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        dump: bool,
        /// ioctl result (0, or -errno).
        #[serde(skip_serializing_if = "Option::is_none")]
        result: Option<i64>,
        /// `network_config`, and `host_identity` for requests that return MAC addresses.
        categories: Vec<&'static str>,
    },
    /// A session's process asked the kernel for host identity without a file (`uname(2)`).
    HostQuery {
        session: SessionRef,
        process: ProcessRef,
        reader: Reader,
        /// `uname`.
        request: &'static str,
        /// `host_identity`.
        category: &'static str,
    },
    /// A session's process connected an `AF_UNIX` socket (a local proxy, agent or daemon).
    UnixConnect {
        session: SessionRef,
        process: ProcessRef,
        reader: Reader,
        fd: i32,
        /// The socket's path; an abstract name as `@name`.
        path: String,
        /// 0, or -errno.
        result: i64,
    },
    /// A process of a session touched a fingerprint file.
    FingerprintRead(Box<FingerprintRead>),
    /// An outbound connection, once its destination is named (or it failed, or stayed silent
    /// for a second).
    ConnectionOpen(Box<ConnectionRecord>),
    /// The connection closed (or its process exited), with bytes and duration.
    ConnectionClose(Box<ConnectionRecord>),
    /// A rule matched: the session fingerprinted the host, then talked to an LLM API.
    Finding(Box<FindingRecord>),
    /// A session's process made a syscall through a 32-bit entry (`int $0x80`), which the
    /// 64-bit syscall tracepoints do not see.
    CompatSyscall(Box<CompatSyscall>),
    /// What a session's request to an LLM API carried: covert-marker code points, date
    /// formats, its shape; never its text.
    PromptMarkers(Box<PromptMarkersRecord>),
    /// A DNS answer a session received.
    DnsLookup {
        session: SessionRef,
        process: ProcessRef,
        reader: Reader,
        dns: crate::detect::egress::DnsLookup,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionRecord {
    pub session: SessionRef,
    pub process: ProcessRef,
    pub reader: Reader,
    pub connection: crate::detect::egress::Connection,
    /// The session's fingerprint reads shortly before (on `connection_open`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<crate::detect::correlate::Annotation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PromptMarkersRecord {
    pub session: SessionRef,
    pub process: ProcessRef,
    pub reader: Reader,
    pub connection_id: String,
    pub destination: crate::detect::egress::Destination,
    pub destination_class: String,
    pub request: crate::detect::content::RequestInfo,
    #[serde(flatten)]
    pub found: crate::detect::markers::RequestMarkers,
    /// Why the body was not scanned (not JSON, incomplete), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FindingRecord {
    /// Unique finding id.
    pub id: String,
    pub session: SessionRef,
    /// The process that made the connection.
    pub process: ProcessRef,
    pub reader: Reader,
    pub finding: crate::detect::correlate::Finding,
    pub destination: crate::detect::egress::Destination,
    pub connection_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct FingerprintRead {
    pub session: SessionRef,
    pub process: ProcessRef,
    pub reader: Reader,
    /// First matching category (sorted); all of them in `categories`.
    pub category: String,
    pub categories: Vec<String>,
    pub syscall: &'static str,
    /// The path exactly as the process passed it.
    pub path: String,
    /// The directory fd for `*at` calls, when not `AT_FDCWD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dirfd: Option<i32>,
    /// Absolute path, lexically normalized (`..`, `.`, `//` and `/proc/self/root` removed).
    pub absolute_path: String,
    /// Directories resolved through symlinks, final component kept.
    pub resolved_path: String,
    /// Where the final component leads when it is a symlink.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_path: Option<String>,
    /// The process whose /proc entry was read (`/proc/<pid>/environ`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_pid: Option<u32>,
    /// Syscall flags (open flags, access mode or AT_* flags).
    pub flags: u32,
    /// openat2 RESOLVE_* flags.
    #[serde(skip_serializing_if = "is_zero")]
    pub resolve_flags: u32,
    /// Return value: fd or 0 on success, -errno on failure.
    pub result: i64,
    pub success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    /// The path filled the kernel's buffer and may be cut.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

/// A syscall through a 32-bit entry, as seen at its entry (the result is not known).
#[derive(Debug, Clone, Serialize)]
pub struct CompatSyscall {
    pub session: SessionRef,
    pub process: ProcessRef,
    pub reader: Reader,
    /// `i386` (`int $0x80`, `sysenter`, a 32-bit binary) or `x32`.
    pub abi: &'static str,
    /// The syscall number in the ABI's numbering.
    pub number: u32,
    /// The i386 name (`open`, `socketcall`, …), or `<abi>#<number>`.
    pub syscall: String,
    /// `socketcall`'s call (`connect`, `socket`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socketcall: Option<String>,
    /// The raw arguments (i386: the low 32 bits the kernel uses).
    pub args: [u64; 6],
    /// The path argument as passed, for syscalls that take one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub absolute_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_path: Option<String>,
    /// Fingerprint categories the path matches.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<String>,
    /// The address of a `connect` (`ip:port`, `unix:/path`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// The path or address could not be read at the syscall's entry.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_failed: bool,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionRef {
    pub id: String,
    pub assistant: String,
    pub root_pid: u32,
    pub uid: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessRef {
    pub pid: u32,
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    pub exe: String,
    pub argv: Vec<String>,
}

impl SessionRef {
    pub fn of(s: &Session) -> Self {
        Self { id: s.id.clone(), assistant: s.assistant.clone(), root_pid: s.root_pid, uid: s.uid }
    }
}

impl ProcessRef {
    /// `comm` and `tid` come from the event (comm may have changed since exec).
    pub fn of(p: &Proc, tid: u32, comm: &str) -> Self {
        Self {
            pid: p.pid,
            tid,
            ppid: p.ppid,
            uid: p.uid,
            gid: p.gid,
            comm: comm.to_string(),
            exe: p.exe.clone(),
            argv: p.argv.clone(),
        }
    }
}

impl Body {
    /// The record's `type` (also a bounded metric label and the syslog MSGID).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SessionStart { .. } => "session_start",
            Self::SessionEnd { .. } => "session_end",
            Self::SessionRollup(_) => "session_rollup",
            Self::ProcessExec { .. } => "process_exec",
            Self::EnvRead { .. } => "env_read",
            Self::InterfaceQuery { .. } => "interface_query",
            Self::HostQuery { .. } => "host_query",
            Self::UnixConnect { .. } => "unix_connect",
            Self::FingerprintRead(_) => "fingerprint_read",
            Self::ConnectionOpen(_) => "connection_open",
            Self::ConnectionClose(_) => "connection_close",
            Self::Finding(_) => "finding",
            Self::CompatSyscall(_) => "compat_syscall",
            Self::DnsLookup { .. } => "dns_lookup",
            Self::PromptMarkers(_) => "prompt_markers",
        }
    }
}
