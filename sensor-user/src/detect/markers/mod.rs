//! Covert prompt markers (issue 17): what an LLM request body carries that a reader would not
//! see — quote look-alikes, invisible and bidi characters, tag characters, confusable letters in
//! ASCII words — and which date formats it writes. Pure: the caller hands over the plaintext,
//! gets back code points, names, counts and JSON paths, and drops the plaintext. The text itself,
//! the strings' values and anything tag characters spell never reach the result.
//!
//! Bounded: bodies up to `MAX_BODY`, JSON nesting up to `MAX_DEPTH`, `MAX_MARKERS` distinct
//! markers (the rest counted in `dropped`), `MAX_PATHS` paths each; the work is linear in the
//! body's size.

mod codepoints;
mod dates;
mod scan;
mod shape;
#[cfg(test)]
mod tests;
mod walk;

use std::collections::BTreeSet;

pub use dates::{DMY_DASH, DMY_DOT, NMY_SLASH, YMD_DASH, YMD_DOT, YMD_SLASH};
pub use shape::pattern;

/// Largest body scanned (the capture side bounds requests at about 1 MiB).
pub const MAX_BODY: usize = 16 << 20;
/// Deepest JSON nesting scanned (LLM requests nest about 6 levels).
pub const MAX_DEPTH: usize = 64;
/// Distinct (kind, code point) pairs kept per request; tag characters alone can be 128.
pub const MAX_MARKERS: usize = 160;
/// Paths kept per marker or date format.
pub const MAX_PATHS: usize = 8;
/// Path patterns per marker that feed the shape.
pub const MAX_PATTERNS: usize = 64;

/// What one request carried, never its text.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub struct RequestMarkers {
    /// Sorted by (kind, code point).
    pub markers: Vec<Marker>,
    /// Date formats found, sorted by format.
    pub dates: Vec<DateMarker>,
    /// 16 hex digits: a stable hash of the set of (kind, code point, path pattern) and
    /// (date format, path pattern); path pattern = JSON path with indices replaced by `[*]`.
    pub shape: String,
    /// JSON strings scanned (values and object keys).
    pub strings: u32,
    /// Characters scanned (JSON strings and header values).
    pub chars: u64,
    /// Header values scanned.
    pub headers: u32,
    /// Marker occurrences not reported because `MAX_MARKERS` distinct ones were already kept.
    pub dropped: u32,
    /// The set the shape hashes (path patterns only), kept so headers can be added later.
    #[serde(skip)]
    shape_parts: BTreeSet<String>,
}

#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct Marker {
    pub kind: MarkerKind,
    /// "U+2019".
    pub code_point: String,
    /// "RIGHT SINGLE QUOTATION MARK".
    pub name: String,
    pub count: u32,
    /// JSON paths ("$.messages[0].content") or "header:<name>", at most `MAX_PATHS`.
    pub paths: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paths_truncated: bool,
}

#[derive(Debug, Clone, serde::Serialize, PartialEq)]
pub struct DateMarker {
    /// One of the `dates` constants ("YYYY-MM-DD", "NN/NN/YYYY", ...).
    pub format: &'static str,
    pub count: u32,
    pub paths: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paths_truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkerKind {
    QuoteLookalike,
    Invisible,
    TagCharacter,
    BidiControl,
    Confusable,
}

impl MarkerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MarkerKind::QuoteLookalike => "quote_lookalike",
            MarkerKind::Invisible => "invisible",
            MarkerKind::TagCharacter => "tag_character",
            MarkerKind::BidiControl => "bidi_control",
            MarkerKind::Confusable => "confusable",
        }
    }
}

/// Why a body was not scanned. Carries no part of the body.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScanError {
    #[error("request body is empty")]
    Empty,
    #[error("request body is {len} bytes, more than the {limit} scanned")]
    TooLarge { len: usize, limit: usize },
    #[error("request body is not JSON: {reason} at line {line} column {column}")]
    NotJson { reason: String, line: usize, column: usize },
    #[error("request body nests deeper than {limit} levels")]
    TooDeep { limit: usize },
}

/// Scans an HTTP request body (JSON). A UTF-8 byte-order mark at the very start is transport,
/// not content, and is skipped; U+FEFF anywhere inside a string is a marker.
pub fn scan_json(body: &[u8]) -> Result<RequestMarkers, ScanError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ScanError::Empty);
    }
    if body.len() > MAX_BODY {
        return Err(ScanError::TooLarge { len: body.len(), limit: MAX_BODY });
    }
    // serde_json stops at 128 levels itself; `walk` enforces MAX_DEPTH below that.
    let value: serde_json::Value = serde_json::from_slice(body).map_err(not_json)?;
    let mut collector = walk::Collector::default();
    collector.walk_root(&value)?;
    Ok(collector.finish())
}

fn not_json(e: serde_json::Error) -> ScanError {
    use serde_json::error::Category;
    let message = e.to_string();
    if message.starts_with("recursion limit exceeded") {
        return ScanError::TooDeep { limit: MAX_DEPTH };
    }
    // Syntax and EOF messages are fixed phrases ("expected value", "EOF while parsing a
    // string"); keep only their text before the position, never anything else.
    let reason = match e.classify() {
        Category::Syntax | Category::Eof => {
            message.split(" at line ").next().unwrap_or("syntax error").to_string()
        }
        Category::Data => "invalid data".to_string(),
        Category::Io => "read error".to_string(),
    };
    ScanError::NotJson { reason, line: e.line(), column: e.column() }
}

/// Adds header values' code-point markers (path "header:<lowercased name>"). Header values carry
/// no dates of interest; only code points are looked at.
pub fn scan_headers(headers: &[(&str, &str)], into: &mut RequestMarkers) {
    let mut collector = walk::Collector::default();
    for (name, value) in headers {
        collector.header(name, value);
    }
    collector.merge_into(into);
}
