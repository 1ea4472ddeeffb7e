//! The live view: a snapshot of active sessions the pipeline refreshes every second, served as
//! JSON at `/status` (same loopback listener as `/metrics`) and shown by `aiwatch status`.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub version: String,
    pub host: String,
    /// RFC 3339 time of the snapshot.
    pub time: String,
    pub sessions: Vec<SessionStatus>,
    /// The health of this endpoint (filled in when `/status` is served).
    #[serde(default)]
    pub endpoint: EndpointStatus,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EndpointStatus {
    pub listen: String,
    /// Failed binds of `listen`, at start and on retry.
    pub bind_failures: u64,
    /// The last bind error, if a bind ever failed.
    pub last_bind_error: Option<String>,
    /// Connections closed unserved because `metrics.max_connections` were open.
    pub connections_rejected: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SessionStatus {
    pub id: String,
    pub assistant: String,
    pub root_pid: u32,
    pub uid: u32,
    pub user: String,
    pub started: String,
    pub processes: usize,
    /// Fingerprint categories read so far, with counts.
    pub signals: BTreeMap<String, u64>,
    /// Destinations contacted: host (or address), with the number of connections.
    pub egress: BTreeMap<String, u64>,
    pub findings: u64,
    /// Evasion techniques seen (`compat_syscall`), with counts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub evasion: BTreeMap<String, u64>,
}

/// Shared between the pipeline (writer) and the HTTP endpoint (reader).
pub type Shared = Arc<Mutex<Status>>;

/// `aiwatch status` output.
pub fn render(s: &Status) -> String {
    let mut out = format!("aiwatch {} on {} at {}\n", s.version, s.host, s.time);
    let e = &s.endpoint;
    if e.bind_failures > 0 || e.connections_rejected > 0 {
        out += &format!(
            "endpoint {}: {} failed bind(s){}, {} connection(s) rejected\n",
            e.listen,
            e.bind_failures,
            e.last_bind_error.as_deref().map(|x| format!(" (last: {x})")).unwrap_or_default(),
            e.connections_rejected
        );
    }
    if s.sessions.is_empty() {
        out += "no active assistant sessions\n";
        return out;
    }
    out += &format!("{} active session(s)\n", s.sessions.len());
    for x in &s.sessions {
        out += &format!(
            "\n{} (pid {}, user {}, {} process{}) since {}\n",
            x.assistant,
            x.root_pid,
            x.user,
            x.processes,
            if x.processes == 1 { "" } else { "es" },
            x.started
        );
        let join = |m: &BTreeMap<String, u64>| {
            if m.is_empty() {
                "-".to_string()
            } else {
                m.iter().map(|(k, v)| format!("{k} ×{v}")).collect::<Vec<_>>().join(", ")
            }
        };
        out += &format!(
            "  signals:  {}\n  egress:   {}\n  findings: {}\n",
            join(&x.signals),
            join(&x.egress),
            x.findings
        );
        if !x.evasion.is_empty() {
            out += &format!("  evasion:  {}\n", join(&x.evasion));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sessions() {
        let mut s =
            Status { version: "0.1.0".into(), host: "h".into(), time: "t".into(), ..Default::default() };
        assert!(render(&s).contains("no active assistant sessions"));
        assert!(!render(&s).contains("endpoint"));
        s.endpoint.bind_failures = 2;
        s.endpoint.last_bind_error = Some("Address in use".into());
        assert!(render(&s).contains("2 failed bind(s) (last: Address in use), 0 connection(s) rejected"));
        s.sessions.push(SessionStatus {
            assistant: "claude-code".into(),
            root_pid: 42,
            user: "alice".into(),
            processes: 3,
            signals: [("timezone".to_string(), 2)].into_iter().collect(),
            egress: [("api.anthropic.com".to_string(), 1)].into_iter().collect(),
            findings: 1,
            evasion: [("compat_syscall".to_string(), 4)].into_iter().collect(),
            ..Default::default()
        });
        let r = render(&s);
        assert!(r.contains("claude-code (pid 42, user alice, 3 processes)"), "{r}");
        assert!(
            r.contains("signals:  timezone ×2")
                && r.contains("egress:   api.anthropic.com ×1")
                && r.contains("findings: 1")
                && r.contains("evasion:  compat_syscall ×4")
        );
    }
}
