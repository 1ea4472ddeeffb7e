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
}

/// Shared between the pipeline (writer) and the HTTP endpoint (reader).
pub type Shared = Arc<Mutex<Status>>;

/// `aiwatch status` output.
pub fn render(s: &Status) -> String {
    let mut out = format!("aiwatch {} on {} at {}\n", s.version, s.host, s.time);
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
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_sessions() {
        let mut s = Status { version: "0.1.0".into(), host: "h".into(), time: "t".into(), sessions: vec![] };
        assert!(render(&s).contains("no active assistant sessions"));
        s.sessions.push(SessionStatus {
            assistant: "claude-code".into(),
            root_pid: 42,
            user: "alice".into(),
            processes: 3,
            signals: [("timezone".to_string(), 2)].into_iter().collect(),
            egress: [("api.anthropic.com".to_string(), 1)].into_iter().collect(),
            findings: 1,
            ..Default::default()
        });
        let r = render(&s);
        assert!(r.contains("claude-code (pid 42, user alice, 3 processes)"), "{r}");
        assert!(
            r.contains("signals:  timezone ×2")
                && r.contains("egress:   api.anthropic.com ×1")
                && r.contains("findings: 1")
        );
    }
}
