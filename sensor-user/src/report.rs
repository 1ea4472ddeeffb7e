//! What aiwatch reports: the records of the JSON-lines schema (`aiwatch.v1`, documented in
//! docs/events.md) and their one-line human form.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::procs::{Proc, Session};

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
        environment: Vec<crate::variables::Variable>,
    },
    /// The last process of a session exited.
    SessionEnd { session: SessionRef, duration_ms: u64 },
    /// A process of a session exec'd a program.
    ProcessExec {
        session: SessionRef,
        process: ProcessRef,
        reader: Reader,
        /// Watched variables in the new program's environment (values redacted).
        #[serde(skip_serializing_if = "Vec::is_empty")]
        environment: Vec<crate::variables::Variable>,
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
    /// A process of a session touched a fingerprint file.
    FingerprintRead(Box<FingerprintRead>),
    /// An outbound connection, once its destination is named (or it failed, or stayed silent
    /// for a second).
    ConnectionOpen(Box<ConnectionRecord>),
    /// The connection closed (or its process exited), with bytes and duration.
    ConnectionClose(Box<ConnectionRecord>),
    /// A rule matched: the session fingerprinted the host, then talked to an LLM API.
    Finding(Box<FindingRecord>),
    /// A DNS answer a session received.
    DnsLookup { session: SessionRef, process: ProcessRef, reader: Reader, dns: crate::egress::DnsLookup },
}

#[derive(Debug, Clone, Serialize)]
pub struct ConnectionRecord {
    pub session: SessionRef,
    pub process: ProcessRef,
    pub reader: Reader,
    pub connection: crate::egress::Connection,
    /// The session's fingerprint reads shortly before (on `connection_open`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<crate::correlate::Annotation>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FindingRecord {
    /// Unique finding id.
    pub id: String,
    pub session: SessionRef,
    /// The process that made the connection.
    pub process: ProcessRef,
    pub reader: Reader,
    pub finding: crate::correlate::Finding,
    pub destination: Destination,
    pub connection_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Destination {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub addr: String,
    pub port: u16,
    pub proxy: bool,
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

fn is_zero(v: &u32) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Reader {
    /// The assistant's own process.
    Assistant,
    /// A process it spawned (at any depth).
    Descendant,
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
            argv: crate::redact::argv(&p.argv),
        }
    }
}

impl Reader {
    pub fn of(p: &Proc) -> Self {
        if p.pid == p.session {
            Self::Assistant
        } else {
            Self::Descendant
        }
    }
}

/// Converts kernel boot-time stamps to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Wall-clock nanoseconds at boot time zero.
    offset_ns: i128,
}

impl Clock {
    pub fn new() -> Self {
        let boot = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
            .map(|t| t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128)
            .unwrap_or(0);
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i128).unwrap_or(0);
        Self { offset_ns: wall - boot }
    }

    pub fn wall(&self, boot_ns: u64) -> SystemTime {
        let ns = (self.offset_ns + boot_ns as i128).max(0) as u128;
        UNIX_EPOCH + Duration::new((ns / 1_000_000_000) as u64, (ns % 1_000_000_000) as u32)
    }

    pub fn rfc3339(&self, boot_ns: u64) -> String {
        humantime::format_rfc3339_nanos(self.wall(boot_ns)).to_string()
    }

    /// Boot-time nanoseconds now.
    pub fn now_boot_ns() -> u64 {
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
            .map(|t| t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64)
            .unwrap_or(0)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Symbolic name of the errno in a negative syscall return (`-2` is `ENOENT`).
pub fn errno_name(ret: i64) -> Option<String> {
    if ret >= 0 {
        return None;
    }
    let raw = ret.checked_neg().and_then(|v| i32::try_from(v).ok()).unwrap_or(i32::MAX);
    Some(match nix::errno::Errno::from_raw(raw) {
        nix::errno::Errno::UnknownErrno => format!("E{raw}"),
        // Debug of nix's Errno is the symbolic name.
        e => format!("{e:?}"),
    })
}

impl Record {
    /// The compact line shown on a terminal, with every control character escaped (a process
    /// name, argument, path or DNS name must not move the cursor, retitle the terminal or start
    /// a fake line).
    pub fn human(&self) -> String {
        escape_controls(&self.human_raw())
    }

    fn human_raw(&self) -> String {
        let time = self.time.get(11..23).unwrap_or(&self.time);
        match &self.body {
            Body::SessionStart { session, process, found_by, .. } => format!(
                "{time} session start  {} pid {} uid {} ({found_by}): {}",
                session.assistant,
                session.root_pid,
                session.uid,
                process.argv.join(" ")
            ),
            Body::SessionEnd { session, duration_ms } => {
                format!(
                    "{time} session end    {} pid {} after {} ms",
                    session.assistant, session.root_pid, duration_ms
                )
            }
            Body::ProcessExec { session, process, .. } => format!(
                "{time} exec           {}[{}] {} {}: {}",
                session.assistant,
                session.root_pid,
                process.comm,
                process.pid,
                process.argv.join(" ")
            ),
            Body::ConnectionOpen(c) | Body::ConnectionClose(c) => {
                let k = &c.connection;
                let phase = if matches!(self.body, Body::ConnectionOpen(_)) { "connect" } else { "close  " };
                let host = k
                    .host
                    .as_deref()
                    .map(|h| format!("{h} ({}) ", k.host_source.map_or("", |s| s.label())))
                    .unwrap_or_default();
                format!(
                    "{time} {phase}        {}[{}] {} {}: {}{}:{} {} {} sent {} recv {}{}",
                    c.session.assistant,
                    c.session.root_pid,
                    c.process.comm,
                    c.process.pid,
                    host,
                    k.remote_addr,
                    k.remote_port,
                    k.protocol,
                    k.result,
                    k.bytes_sent,
                    k.bytes_received,
                    if k.proxy { " via proxy" } else { "" }
                )
            }
            Body::EnvRead { session, process, variable, category, set, .. } => format!(
                "{time} {category:<14} {}[{}] {} {}: getenv {variable} ({})",
                session.assistant,
                session.root_pid,
                process.comm,
                process.pid,
                if *set { "set" } else { "unset" }
            ),
            Body::InterfaceQuery { session, process, method, request, interface, .. } => format!(
                "{time} interfaces     {}[{}] {} {}: {method} {request}{}",
                session.assistant,
                session.root_pid,
                process.comm,
                process.pid,
                interface.as_deref().map(|i| format!(" {i}")).unwrap_or_default()
            ),
            Body::Finding(f) => format!(
                "{time} FINDING {:<6} {}[{}] {}: {} then {} ({})",
                f.finding.severity.label(),
                f.session.assistant,
                f.session.root_pid,
                f.finding.rule,
                f.finding.categories.join("+"),
                f.destination.host.as_deref().unwrap_or(&f.destination.addr),
                f.finding.destination_class
            ),
            Body::DnsLookup { session, process, dns, .. } => format!(
                "{time} dns            {}[{}] {} {}: {} -> {}",
                session.assistant,
                session.root_pid,
                process.comm,
                process.pid,
                dns.name,
                dns.answers.join(", ")
            ),
            Body::FingerprintRead(r) => {
                let who = match r.reader {
                    Reader::Assistant => "self".to_string(),
                    Reader::Descendant => format!("child {} {}", r.process.comm, r.process.pid),
                };
                let result = r.errno.clone().unwrap_or_else(|| r.result.to_string());
                format!(
                    "{time} {:<14} {}[{}] ({who}) {} {} -> {} = {result}",
                    r.category, r.session.assistant, r.session.root_pid, r.syscall, r.path, r.resolved_path
                )
            }
        }
    }
}

/// `s` with control characters (C0, DEL, C1), line and paragraph separators and bidirectional
/// controls written as `\u{..}` escapes.
pub fn escape_controls(s: &str) -> String {
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !s.chars().any(unsafe_char) {
        return s.to_string();
    }
    s.chars().fold(String::with_capacity(s.len() + 8), |mut out, c| {
        if unsafe_char(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped() {
        assert_eq!(escape_controls("plain /etc/hosts é"), "plain /etc/hosts é");
        assert_eq!(
            escape_controls("a\x1b[2J\nFAKE\u{202e}b\u{85}"),
            "a\\u{1b}[2J\\u{a}FAKE\\u{202e}b\\u{85}"
        );
    }

    #[test]
    fn errno_names() {
        assert_eq!(errno_name(-2).as_deref(), Some("ENOENT"));
        assert_eq!(errno_name(-13).as_deref(), Some("EACCES"));
        assert_eq!(errno_name(3), None);
        assert_eq!(errno_name(-100000).as_deref(), Some("E100000"));
        assert_eq!(errno_name(i64::MIN).as_deref(), Some("E2147483647"));
    }

    #[test]
    fn clock_is_close_to_now() {
        let c = Clock::new();
        let now = SystemTime::now();
        let w = c.wall(Clock::now_boot_ns());
        let diff = now.duration_since(w).unwrap_or_else(|e| e.duration());
        assert!(diff < Duration::from_secs(1), "{diff:?}");
        assert!(c.rfc3339(Clock::now_boot_ns()).ends_with('Z'));
    }
}
