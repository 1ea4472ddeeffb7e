//! One record as an RFC 5424 message, and its octet-counted frame (RFC 6587 §3.4.1, which
//! RFC 5425 uses for TLS too):
//!
//! `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID - MSG`
//!
//! PRI from the facility and the record's severity, TIMESTAMP the record's time (microseconds,
//! RFC 5424's limit), MSGID the record's kind, no structured data, MSG the JSON record (no BOM:
//! RFC 5424 allows MSG-ANY, and receivers keep a BOM as part of the message).

use crate::{
    config::rules::Severity as FindingSeverity,
    output::report::{Body, Record},
};

/// Syslog severities used (RFC 5424 §6.2.1).
pub fn severity(body: &Body) -> u8 {
    match body {
        Body::Finding(f) => match f.finding.severity {
            FindingSeverity::Critical => 2,
            FindingSeverity::High => 3,
            FindingSeverity::Medium => 4,
            FindingSeverity::Low => 5,
            FindingSeverity::Info => 6,
        },
        // Informational.
        _ => 6,
    }
}

/// The fields of a header that do not come from the record.
pub struct Fixed {
    pub facility: u8,
    pub app_name: String,
    pub procid: u32,
}

/// The message for `rec` with `msg` (its rendered JSON) as MSG.
pub fn message(fixed: &Fixed, rec: &Record, msg: &str) -> Vec<u8> {
    let pri = u32::from(fixed.facility) * 8 + u32::from(severity(&rec.body));
    let head = format!(
        "<{pri}>1 {} {} {} {} {} - ",
        timestamp(&rec.time),
        field(&rec.host, 255),
        fixed.app_name,
        fixed.procid,
        rec.body.kind(),
    );
    let mut out = Vec::with_capacity(head.len() + msg.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(msg.as_bytes());
    out
}

/// `msg` framed for a stream: `LEN SP MSG`.
pub fn octet_counted(msg: &[u8]) -> Vec<u8> {
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg);
    out
}

/// A header field: printable ASCII without spaces, at most `max` bytes, `-` when empty.
fn field(v: &str, max: usize) -> String {
    let s: String = v.chars().map(|c| if c.is_ascii_graphic() { c } else { '_' }).take(max).collect();
    if s.is_empty() {
        "-".to_string()
    } else {
        s
    }
}

/// RFC 3339 with at most six fractional digits (RFC 5424's TIME-SECFRAC); the records carry
/// nanoseconds. `-` if the time is not in the expected form.
fn timestamp(t: &str) -> String {
    let Some(zone_at) = t.rfind(['Z', '+', '-']).filter(|&i| i > 10) else { return "-".to_string() };
    let (main, zone) = t.split_at(zone_at);
    let main = match main.split_once('.') {
        Some((secs, frac)) => format!("{secs}.{}", &frac[..frac.len().min(6)]),
        None => main.to_string(),
    };
    if !t.is_ascii() || main.len() < 19 {
        return "-".to_string();
    }
    format!("{main}{zone}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::report::SCHEMA;

    fn record(host: &str, time: &str) -> Record {
        Record {
            schema: SCHEMA,
            time: time.to_string(),
            boot_ns: 1,
            host: host.to_string(),
            body: Body::SessionEnd {
                session: crate::output::report::SessionRef {
                    id: "s".into(),
                    assistant: "a".into(),
                    root_pid: 1,
                    uid: 0,
                },
                duration_ms: 5,
            },
        }
    }

    #[test]
    fn header_fields_in_order() {
        let fixed = Fixed { facility: 16, app_name: "aiwatch".into(), procid: 42 };
        let rec = record("web-1", "2026-11-30T16:13:50.123456789Z");
        let m = message(&fixed, &rec, "{\"x\":1}");
        // local0 (16) * 8 + informational (6) = 134.
        assert_eq!(
            String::from_utf8(m).unwrap(),
            "<134>1 2026-11-30T16:13:50.123456Z web-1 aiwatch 42 session_end - {\"x\":1}"
        );
    }

    #[test]
    fn fields_are_printable_and_bounded() {
        let fixed = Fixed { facility: 1, app_name: "a".into(), procid: 1 };
        let m = message(&fixed, &record("my host\u{e9}", "2026-11-30T16:13:50Z"), "m");
        assert_eq!(String::from_utf8(m).unwrap(), "<14>1 2026-11-30T16:13:50Z my_host_ a 1 session_end - m");
        let m = message(&fixed, &record("", "yesterday"), "m");
        assert_eq!(String::from_utf8(m).unwrap(), "<14>1 - - a 1 session_end - m");
        assert_eq!(field(&"h".repeat(300), 255).len(), 255);
        assert_eq!(timestamp("2026-11-30T16:13:50.1+01:00"), "2026-11-30T16:13:50.1+01:00");
    }

    #[test]
    fn octet_counting_counts_bytes_not_chars() {
        assert_eq!(octet_counted(b"abc"), b"3 abc");
        let utf8 = "\u{e9}t\u{e9}".as_bytes();
        assert_eq!(octet_counted(utf8), [b"5 ".as_slice(), utf8].concat());
        assert_eq!(octet_counted(b""), b"0 ");
    }
}
