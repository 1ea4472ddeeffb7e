//! What a record is to the rollup: always sent, the read of an artifact (a path, a variable, a
//! request, a program), a connection to a destination, or its close; and the artifact
//! *pattern* under which reads are counted (`/proc/<pid>/environ` → `/proc/*/environ`).

use std::borrow::Cow;

use crate::{detect::classify::Reader, output::report::Body};

/// A read of one artifact by one process.
#[derive(Debug)]
pub struct Artifact<'a> {
    /// `file`, `variable`, `interface`, `host_query`, `unix_socket`, `dns`, `exec`,
    /// `compat_syscall`.
    pub kind: &'static str,
    /// The artifact with every all-digit path segment replaced by `*`; `LC_*` for a locale
    /// variable.
    pub pattern: String,
    /// The artifact as read, when the pattern collapsed it (counted as a distinct value).
    pub value: Option<String>,
    pub categories: Vec<String>,
    /// The read succeeded (a file opened, a variable set, a request answered).
    pub success: bool,
    pub reader: Reader,
    pub comm: &'a str,
    /// The reading process's executable (`reads` sends each program's first read).
    pub exe: &'a str,
}

/// What one record is to the rollup.
#[derive(Debug)]
pub enum Seen<'a> {
    /// Sent at every detail level, not counted (session start, findings, unknown kinds).
    Always,
    /// The session's last process exited: its final rollup goes first.
    End,
    Read(Artifact<'a>),
    /// A connection opened (`connection_open`).
    Open {
        dest: Destination,
        class: Option<&'a str>,
        failed: bool,
    },
    /// A connection closed, with its bytes.
    Close {
        dest: Destination,
        sent: u64,
        received: u64,
    },
}

/// Where a connection went: the host name when known, else the address; and the port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Destination {
    pub name: String,
    pub port: u16,
    pub addr: String,
}

/// The session id a record belongs to, if any.
pub fn session_of(body: &Body) -> Option<&crate::output::report::SessionRef> {
    Some(match body {
        Body::SessionStart { session, .. }
        | Body::SessionEnd { session, .. }
        | Body::ProcessExec { session, .. }
        | Body::EnvRead { session, .. }
        | Body::InterfaceQuery { session, .. }
        | Body::HostQuery { session, .. }
        | Body::UnixConnect { session, .. }
        | Body::DnsLookup { session, .. } => session,
        Body::SessionRollup(r) => &r.session,
        Body::FingerprintRead(r) => &r.session,
        Body::ConnectionOpen(c) | Body::ConnectionClose(c) => &c.session,
        Body::Finding(f) => &f.session,
        Body::CompatSyscall(c) => &c.session,
        Body::PromptMarkers(p) => &p.session,
    })
}

/// What `body` is to the rollup.
pub fn seen(body: &Body) -> Seen<'_> {
    let read = |kind, artifact: &str, categories, success, reader, p| {
        Seen::Read(artifact_of(kind, artifact, categories, success, reader, p))
    };
    match body {
        Body::FingerprintRead(r) => {
            read("file", &r.resolved_path, r.categories.clone(), r.success, r.reader, &r.process)
        }
        Body::EnvRead { process, reader, variable, category, set, .. } => {
            let mut a = artifact_of("variable", variable, vec![category.clone()], *set, *reader, process);
            // setlocale() asks for every LC_* variable in every child: one pattern.
            if variable.starts_with("LC_") {
                (a.pattern, a.value) = ("LC_*".to_string(), Some(variable.clone()));
            }
            Seen::Read(a)
        }
        Body::InterfaceQuery { process, reader, method, request, interface, result, categories, .. } => {
            let artifact = match interface {
                Some(i) => format!("{method} {request} {i}"),
                None => format!("{method} {request}"),
            };
            let cats = categories.iter().map(|c| c.to_string()).collect();
            read("interface", &artifact, cats, result.unwrap_or(0) >= 0, *reader, process)
        }
        Body::HostQuery { process, reader, request, category, .. } => {
            read("host_query", request, vec![category.to_string()], true, *reader, process)
        }
        Body::UnixConnect { process, reader, path, result, .. } => {
            read("unix_socket", path, Vec::new(), *result == 0, *reader, process)
        }
        Body::DnsLookup { process, reader, dns, .. } => {
            read("dns", &dns.name, Vec::new(), dns.rcode == 0, *reader, process)
        }
        Body::ProcessExec { process, reader, .. } => {
            read("exec", &process.exe, Vec::new(), true, *reader, process)
        }
        Body::CompatSyscall(c) => {
            let what = c.resolved_path.as_deref().or(c.address.as_deref()).unwrap_or("");
            let artifact = format!("{} {what}", c.syscall);
            read("compat_syscall", artifact.trim_end(), c.categories.clone(), true, c.reader, &c.process)
        }
        Body::ConnectionOpen(c) => Seen::Open {
            dest: destination(&c.connection),
            class: c.fingerprint.as_ref().map(|a| a.destination_class.as_str()),
            failed: c.connection.result == "failed",
        },
        Body::ConnectionClose(c) => Seen::Close {
            dest: destination(&c.connection),
            sent: c.connection.bytes_sent,
            received: c.connection.bytes_received,
        },
        // A request's shape is its artifact: the first request of each shape is sent, the
        // same shape again is counted (a marker that appears changes the shape).
        Body::PromptMarkers(p) => {
            let artifact = format!("{} {} {}", p.request.method, p.request.path, p.found.shape);
            read("request", &artifact, Vec::new(), p.error.is_none(), p.reader, &p.process)
        }
        Body::SessionEnd { .. } => Seen::End,
        Body::SessionStart { .. } | Body::SessionRollup(_) | Body::Finding(_) => Seen::Always,
    }
}

fn artifact_of<'a>(
    kind: &'static str,
    artifact: &str,
    categories: Vec<String>,
    success: bool,
    reader: Reader,
    p: &'a crate::output::report::ProcessRef,
) -> Artifact<'a> {
    let pattern = pattern(artifact);
    let value = matches!(pattern, Cow::Owned(_)).then(|| artifact.to_string());
    Artifact {
        kind,
        pattern: pattern.into_owned(),
        value,
        categories,
        success,
        reader,
        comm: &p.comm,
        exe: &p.exe,
    }
}

fn destination(c: &crate::detect::egress::Connection) -> Destination {
    Destination {
        name: c.host.clone().unwrap_or_else(|| c.remote_addr.clone()),
        port: c.remote_port,
        addr: c.remote_addr.clone(),
    }
}

/// `artifact` with every path segment made only of digits replaced by `*`: artifacts that
/// differ only by a pid or a number (`/proc/123/task/456/environ`) are one pattern
/// (`/proc/*/task/*/environ`). Borrowed when nothing changed.
pub fn pattern(artifact: &str) -> Cow<'_, str> {
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !artifact.split('/').any(numeric) {
        return Cow::Borrowed(artifact);
    }
    let parts: Vec<&str> = artifact.split('/').map(|s| if numeric(s) { "*" } else { s }).collect();
    Cow::Owned(parts.join("/"))
}
