//! Differences between recorded requests, with noise told apart from signal.
//!
//! A request becomes fields (`header.x`, `query.y`, `body.messages[1].content[0].text`, JSON in
//! strings expanded). A text field becomes tokens: dates and times (one token each, with their
//! format), words, numbers, and every other code point alone. The baseline's runs are diffed with
//! each other: the tokens where they differ are volatile (ids, timestamps, durations, nonces).
//! A variant is diffed against the first baseline run; a hunk is noise when it only replaces
//! volatile tokens with tokens of the same shape, or a date with another date of the same format
//! that is a current date somewhere on Earth (the zone crossed midnight). What is left is
//! reported with a character-level diff that names each code point, and classed:
//!
//! - **disclosure**: the variant's value (or what follows from it, such as a zone's offset)
//!   appears in the request where no baseline run had it;
//! - **encoding**: only format or characters changed — punctuation, spaces, invisible or
//!   look-alike code points, a date's format — while the value itself does not appear;
//! - **content**: anything else (words, numbers, fields or requests added or removed).

mod chars;
mod loose;
mod request;
#[cfg(test)]
mod tests;
mod tokens;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use similar::{Algorithm, DiffTag};

use super::mock::Recorded;

pub use chars::*;
pub use request::*;
pub use tokens::*;

// ---------- fields ----------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Disclosure,
    Encoding,
    Content,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Disclosure => "disclosure",
            Kind::Encoding => "encoding",
            Kind::Content => "content",
        }
    }
}

/// One changed stretch of a field.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hunk {
    pub kind: Kind,
    /// The baseline's text there, and the variant's.
    pub removed: String,
    pub inserted: String,
    /// Up to 40 characters of the variant's text before and after.
    pub before: String,
    pub after: String,
    /// What changed, said plainly: `date format YYYY-MM-DD → YYYY/MM/DD`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub chars: Vec<CharChange>,
}

/// A field of a request that differs from the baseline.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FieldDiff {
    /// `body.messages[0].content[1].text`, `header.anthropic-beta`, `query.alt`.
    pub field: String,
    /// `changed`, `added` (no baseline run had it) or `removed` (every baseline run had it).
    pub change: &'static str,
    pub kinds: BTreeSet<Kind>,
    /// The variant's value strings found here and in no baseline run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disclosed: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hunks: Vec<Hunk>,
    /// Excerpts (cut at 300 characters) of the baseline's and the variant's value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// The day numbers a date may fall on and still be "today" somewhere during the runs.
#[derive(Debug, Clone, Copy)]
pub struct DayWindow {
    pub first: i64,
    pub last: i64,
}

impl DayWindow {
    pub fn around(start: std::time::SystemTime, end: std::time::SystemTime) -> Self {
        let day = |t: std::time::SystemTime| {
            t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64) / 86_400
        };
        Self { first: day(start) - 1, last: day(end) + 1 }
    }

    fn current(&self, d: &DateTok) -> bool {
        d.days.is_empty() || d.days.iter().any(|z| (self.first..=self.last).contains(z))
    }
}

/// The same shape of token: what one volatile token may become without it being news.
fn same_shape(a: &Class, b: &Class) -> bool {
    match (a, b) {
        (Class::Word | Class::Number, Class::Word | Class::Number) => true,
        (Class::Date(x), Class::Date(y)) => x.compatible(y),
        _ => false,
    }
}

fn cut(s: &str, n: usize) -> String {
    let v = visible(s);
    if v.chars().count() <= n {
        v
    } else {
        format!("{}…", v.chars().take(n).collect::<String>())
    }
}

fn tail_chars(s: &str, n: usize) -> String {
    let v: Vec<char> = s.chars().collect();
    visible(&v[v.len().saturating_sub(n)..].iter().collect::<String>())
}

fn contains_token(hay: &str, t: &str) -> bool {
    let (h, n) = (hay.to_lowercase(), t.to_lowercase());
    let mut from = 0;
    while let Some(p) = h[from..].find(&n) {
        let s = from + p;
        let e = s + n.len();
        let before = h[..s].chars().next_back();
        let after = h[e..].chars().next();
        let edge = |c: Option<char>, inner: Option<char>| {
            // A token that ends in a letter or digit must not run on into one.
            c.is_none_or(|c| !(c.is_alphanumeric() && inner.is_some_and(char::is_alphanumeric)))
        };
        if edge(before, n.chars().next()) && edge(after, n.chars().next_back()) {
            return true;
        }
        from = s + n.chars().next().map_or(1, char::len_utf8);
    }
    false
}

/// The baseline's tokens (of `b1`, the first run's text) that differ in another baseline run,
/// and the gaps between tokens where another run has more: volatile, noise.
struct Volatile {
    tokens: Vec<bool>,
    gaps: Vec<bool>,
}

fn diff_deadline() -> Option<std::time::Instant> {
    Some(std::time::Instant::now() + std::time::Duration::from_secs(2))
}

fn learn_volatile(bt: &[Token<'_>], b1: &str, others: &[&str]) -> Volatile {
    let btexts: Vec<&str> = bt.iter().map(|t| t.text).collect();
    let mut v = Volatile { tokens: vec![false; bt.len()], gaps: vec![false; bt.len() + 1] };
    for other in others.iter().filter(|o| **o != b1) {
        let ot = tokenize(other);
        let otexts: Vec<&str> = ot.iter().map(|t| t.text).collect();
        let ops = similar::capture_diff_slices_deadline(Algorithm::Myers, &btexts, &otexts, diff_deadline());
        for (o, _) in merge(&ops) {
            if o.is_empty() {
                v.gaps[o.start] = true;
            }
            for i in o {
                v.tokens[i] = true;
            }
        }
    }
    v
}

/// Whether the baseline tokens `o` (`ot`) replaced by `nt` are noise: volatile tokens replaced by
/// tokens of the same shape, an insertion where the baseline runs differ too, or dates and times
/// of the same format that are current somewhere (the clock or the zone).
fn is_noise(
    o: &std::ops::Range<usize>,
    ot: &[Token<'_>],
    nt: &[Token<'_>],
    vol: &Volatile,
    window: DayWindow,
) -> bool {
    let pairwise = ot.len() == nt.len();
    let all_volatile = if o.is_empty() { vol.gaps[o.start] } else { o.clone().all(|i| vol.tokens[i]) };
    if all_volatile
        && ((o.is_empty() && nt.iter().all(|t| !matches!(t.class, Class::Invisible)))
            || (pairwise
                && ot.iter().zip(nt).all(|(a, b)| a.text == b.text || same_shape(&a.class, &b.class))))
    {
        return true;
    }
    pairwise
        && ot.iter().zip(nt).all(|(a, b)| {
            a.text == b.text
                || matches!((&a.class, &b.class), (Class::Date(x), Class::Date(y)) if x.compatible(y) && window.current(y))
        })
}

/// The kind of a hunk that is not noise, and a note saying why.
fn classify(
    ot: &[Token<'_>],
    nt: &[Token<'_>],
    (removed, inserted): (&str, &str),
    chars: &[CharChange],
    disclosed: &[String],
) -> (Kind, Option<String>) {
    let pairwise = ot.len() == nt.len();
    let date_pairs: Vec<(&DateTok, &DateTok)> = if pairwise {
        ot.iter()
            .zip(nt)
            .filter_map(|(a, b)| match (&a.class, &b.class) {
                (Class::Date(x), Class::Date(y)) if a.text != b.text => Some((x, y)),
                _ => None,
            })
            .collect()
    } else {
        Vec::new()
    };
    let only_dates = !date_pairs.is_empty()
        && ot.iter().zip(nt).all(|(a, b)| {
            a.text == b.text || matches!((&a.class, &b.class), (Class::Date(_), Class::Date(_)))
        });
    if disclosed.iter().any(|t| contains_token(inserted, t)) {
        return (Kind::Disclosure, None);
    }
    if only_dates {
        return match date_pairs.iter().find(|(x, y)| !x.compatible(y)) {
            Some((x, y)) => (Kind::Encoding, Some(format!("date format {} → {}", x.format(), y.format()))),
            None => (Kind::Content, Some("date changed to one that is not current anywhere".to_string())),
        };
    }
    let changed: Vec<char> = chars
        .iter()
        .flat_map(|c| c.removed.iter().chain(&c.inserted))
        .filter_map(|cp| u32::from_str_radix(&cp.code[2..], 16).ok().and_then(char::from_u32))
        .collect();
    let sk = |s: &str| s.chars().map(skeleton).collect::<String>();
    let look_alike = removed != inserted && sk(removed) == sk(inserted);
    if look_alike {
        (Kind::Encoding, Some("look-alike characters".into()))
    } else if !changed.is_empty() && changed.iter().all(|c| !c.is_alphanumeric()) {
        let note = if changed.iter().any(|c| is_invisible(*c)) {
            "invisible characters"
        } else {
            "punctuation or spacing"
        };
        (Kind::Encoding, Some(note.into()))
    } else {
        (Kind::Content, None)
    }
}

/// Compares one text field of the variant with the same field of the baseline runs; None when
/// nothing but noise differs.
pub fn compare_text(
    field: &str,
    baselines: &[&str],
    v: &str,
    tokens: &[String],
    window: DayWindow,
) -> Option<FieldDiff> {
    let disclosed: Vec<String> = tokens
        .iter()
        .filter(|t| contains_token(v, t) && !baselines.iter().any(|b| contains_token(b, t)))
        .cloned()
        .collect();
    let b1 = *baselines.first()?;
    if b1 == v && disclosed.is_empty() {
        return None;
    }
    let bt = tokenize(b1);
    let vol = learn_volatile(&bt, b1, &baselines[1..]);
    let vt = tokenize(v);
    let btexts: Vec<&str> = bt.iter().map(|t| t.text).collect();
    let vtexts: Vec<&str> = vt.iter().map(|t| t.text).collect();
    let mut hunks = Vec::new();
    let ops = similar::capture_diff_slices_deadline(Algorithm::Myers, &btexts, &vtexts, diff_deadline());
    for (o, n) in merge(&ops) {
        let (ot, nt) = (&bt[o.clone()], &vt[n.clone()]);
        if is_noise(&o, ot, nt, &vol, window) {
            continue;
        }
        let removed: String = ot.iter().map(|t| t.text).collect();
        let inserted: String = nt.iter().map(|t| t.text).collect();
        let before: String = vt[..n.start].iter().map(|t| t.text).collect();
        let after: String = vt[n.end..].iter().map(|t| t.text).collect();
        let chars = char_changes(&removed, &inserted);
        let (kind, note) = classify(ot, nt, (&removed, &inserted), &chars, &disclosed);
        hunks.push(Hunk {
            kind,
            removed: cut(&removed, 200),
            inserted: cut(&inserted, 200),
            before: tail_chars(&before, 40),
            after: cut(&after, 40),
            note,
            chars,
        });
        if hunks.len() >= 20 {
            break;
        }
    }
    if hunks.is_empty() && disclosed.is_empty() {
        return None;
    }
    let mut kinds: BTreeSet<Kind> = hunks.iter().map(|h| h.kind).collect();
    if !disclosed.is_empty() {
        kinds.insert(Kind::Disclosure);
    }
    Some(FieldDiff {
        field: field.to_string(),
        change: "changed",
        kinds,
        disclosed,
        hunks,
        baseline: Some(cut(b1, 300)),
        variant: Some(cut(v, 300)),
    })
}
