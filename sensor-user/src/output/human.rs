//! The one-line human form of a record (format `human`, and `auto` on a terminal).

use crate::{
    detect::classify::Reader,
    output::report::{Body, Record},
};

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
            Body::SessionRollup(r) => {
                let reads: u64 = r.artifacts.iter().map(|a| a.count).sum();
                let egress: Vec<String> = r
                    .egress
                    .iter()
                    .map(|e| format!("{}:{} x{} {}B out", e.destination, e.port, e.connections, e.bytes_sent))
                    .collect();
                format!(
                    "{time} rollup{}  {} pid {}: {} artifacts, {reads} reads, {} summarized; egress: {}",
                    if r.is_final { " (end)" } else { "      " },
                    r.session.assistant,
                    r.session.root_pid,
                    r.artifacts.len(),
                    r.records_summarized,
                    if egress.is_empty() { "none".to_string() } else { egress.join(", ") }
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
            Body::HostQuery { session, process, request, category, .. } => format!(
                "{time} {category:<14} {}[{}] {} {}: {request}",
                session.assistant, session.root_pid, process.comm, process.pid
            ),
            Body::UnixConnect { session, process, path, result, .. } => format!(
                "{time} unix connect   {}[{}] {} {}: {path}{}",
                session.assistant,
                session.root_pid,
                process.comm,
                process.pid,
                if *result == 0 { String::new() } else { format!(" (error {})", -result) }
            ),
            Body::Finding(f) => format!(
                "{time} FINDING {:<6} {}[{}] {}: {} then {} ({}){}",
                f.finding.severity.label(),
                f.session.assistant,
                f.session.root_pid,
                f.finding.signature.as_deref().unwrap_or(&f.finding.rule),
                finding_what(&f.finding),
                f.destination.host.as_deref().unwrap_or(&f.destination.addr),
                f.finding.destination_class,
                if f.finding.evasion.is_empty() {
                    String::new()
                } else {
                    format!(" evasion: {}", f.finding.evasion.join(", "))
                }
            ),
            Body::PromptMarkers(p) => format!(
                "{time} prompt         {}[{}] {} {}: {} {} {} markers {}{}",
                p.session.assistant,
                p.session.root_pid,
                p.process.comm,
                p.process.pid,
                p.request.method,
                p.destination.host.as_deref().unwrap_or(&p.destination.addr),
                p.request.path,
                if p.found.markers.is_empty() {
                    "none".to_string()
                } else {
                    p.found
                        .markers
                        .iter()
                        .map(|k| format!("{}×{}", k.code_point, k.count))
                        .collect::<Vec<_>>()
                        .join(" ")
                },
                p.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default()
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
            Body::CompatSyscall(c) => format!(
                "{time} compat_syscall {}[{}] {} {}: {} {}{}{}{}",
                c.session.assistant,
                c.session.root_pid,
                c.process.comm,
                c.process.pid,
                c.abi,
                c.syscall,
                c.socketcall.as_deref().map(|s| format!(" {s}")).unwrap_or_default(),
                c.path.as_deref().or(c.address.as_deref()).map(|p| format!(" {p}")).unwrap_or_default(),
                if c.categories.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", c.categories.join(", "))
                },
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
            || matches!(
                c,
                '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            )
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

/// What a finding is about: the categories read, or (the prompt-marker rule) the markers and
/// date formats a request carried, with the reads before a changed format.
fn finding_what(f: &crate::detect::correlate::Finding) -> String {
    if f.new_markers.is_empty() && f.date_changes.is_empty() {
        return f.categories.join("+");
    }
    let mut what: Vec<String> =
        f.new_markers.iter().map(|m| format!("{} {} at {}", m.kind.as_str(), m.code_point, m.path)).collect();
    what.extend(f.date_changes.iter().map(|d| {
        format!("date {} -> {} at {} after {}", d.before.join("|"), d.after, d.path, f.categories.join("+"))
    }));
    format!("request carried {}", what.join(", "))
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
    fn a_prompt_finding_says_what_the_request_carried() {
        use crate::detect::{
            correlate::{Finding, Severity},
            markers::MarkerKind,
            prompt_rule::{DateChange, NewMarker},
        };
        let mut f = Finding {
            rule: "prompt_marker_anomaly".into(),
            severity: Severity::High,
            description: String::new(),
            destination_class: "llm_api".into(),
            groups: Vec::new(),
            categories: vec!["timezone".into()],
            evidence: Vec::new(),
            by_assistant: true,
            evasion: Vec::new(),
            signature: None,
            assistant_version: None,
            new_categories: Vec::new(),
            new_markers: Vec::new(),
            date_changes: Vec::new(),
        };
        assert_eq!(finding_what(&f), "timezone");
        f.new_markers.push(NewMarker {
            kind: MarkerKind::Invisible,
            code_point: "U+200B".into(),
            name: "ZERO WIDTH SPACE".into(),
            path: "$.system".into(),
            other_sessions: 0,
        });
        f.date_changes.push(DateChange {
            path: "$.system".into(),
            before: vec!["YYYY-MM-DD"],
            after: "YYYY/MM/DD",
            compared_with: "session",
        });
        assert_eq!(
            finding_what(&f),
            "request carried invisible U+200B at $.system, date YYYY-MM-DD -> YYYY/MM/DD at $.system after timezone"
        );
    }
}
