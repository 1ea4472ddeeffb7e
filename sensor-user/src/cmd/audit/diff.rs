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

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use similar::{Algorithm, DiffTag};

use super::mock::Recorded;

// ---------- calendar ----------

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

// ---------- tokens ----------

/// One part of a date or time format.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    /// A numeric field: role (`Y`, `M`, `D`, `h`, `m`, `s`, `f`), width, and whether the width
    /// says something (a value below 10, where padding is a choice).
    Num {
        role: char,
        width: usize,
        telling: bool,
    },
    /// A month or weekday name: role (`N` month, `W` weekday), abbreviated, letter case
    /// (0 capitalized, 1 upper, 2 lower).
    Name {
        role: char,
        abbr: bool,
        case: u8,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct DateTok {
    parts: Vec<Part>,
    /// Candidate day numbers (two when day and month could be either way round); empty for a
    /// time of day alone.
    days: Vec<i64>,
}

impl DateTok {
    fn compatible(&self, o: &DateTok) -> bool {
        self.parts.len() == o.parts.len()
            && self.parts.iter().zip(&o.parts).all(|(a, b)| match (a, b) {
                (Part::Lit(x), Part::Lit(y)) => x == y,
                (
                    Part::Num { role: r1, width: w1, telling: t1 },
                    Part::Num { role: r2, width: w2, telling: t2 },
                ) => r1 == r2 && (w1 == w2 || !*t1 || !*t2),
                (a @ Part::Name { .. }, b @ Part::Name { .. }) => a == b,
                _ => false,
            })
    }

    /// The format, e.g. `YYYY-MM-DD`, `EEEE, MMMM D, YYYY`, `HH:mm:ss`.
    pub fn format(&self) -> String {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => s.push_str(l),
                Part::Num { role, width, .. } => {
                    let c = match role {
                        'M' => 'M',
                        'D' => 'D',
                        'Y' => 'Y',
                        'h' => 'H',
                        'm' => 'm',
                        's' => 's',
                        _ => 'S',
                    };
                    s.extend(std::iter::repeat_n(c, *width));
                }
                Part::Name { role, abbr, .. } => {
                    let c = if *role == 'N' { 'M' } else { 'E' };
                    s.extend(std::iter::repeat_n(c, if *abbr { 3 } else { 4 }));
                }
            }
        }
        s
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Class {
    Date(DateTok),
    Word,
    Number,
    Space,
    /// Zero-width and other format characters.
    Invisible,
    Other,
}

#[derive(Debug, Clone)]
struct Token<'a> {
    text: &'a str,
    class: Class,
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const WEEKDAYS: [&str; 7] = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

fn name_of(word: &str, names: &[&str]) -> Option<(usize, bool)> {
    let w = word.to_ascii_lowercase();
    let w = w.trim_end_matches('.');
    for (i, n) in names.iter().enumerate() {
        if w == *n {
            return Some((i, false));
        }
        if w.len() >= 3
            && w.len() < n.len()
            && n.starts_with(w)
            && (w.len() == 3 || (w.len() == 4 && *n == "september"))
        {
            return Some((i, true));
        }
    }
    None
}

fn case_of(w: &str) -> u8 {
    if w.chars().all(|c| !c.is_ascii_lowercase()) {
        1
    } else if w.chars().all(|c| !c.is_ascii_uppercase()) {
        2
    } else {
        0
    }
}

/// Digits at the start of `s`: (value, count).
fn digits(s: &[u8]) -> Option<(i64, usize)> {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > 9 {
        return None;
    }
    Some((std::str::from_utf8(&s[..n]).ok()?.parse().ok()?, n))
}

fn num(role: char, v: i64, width: usize) -> Part {
    Part::Num { role, width, telling: v < 10 }
}

fn valid_ymd(y: i64, m: i64, d: i64) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1900..=2200).contains(&y) {
        return None;
    }
    let z = days_from_civil(y, m, d);
    (civil_from_days(z) == (y, m, d)).then_some(z)
}

/// A time of day at the start of `s`: `H:MM[:SS[.fff]][ AM]`, with an optional zone suffix when
/// `zone` (`Z`, `+08:00`, `+0800`).
fn time_at(s: &[u8], zone: bool) -> Option<(Vec<Part>, usize)> {
    let (h, hw) = digits(s)?;
    if hw > 2 || h > 23 || s.get(hw) != Some(&b':') {
        return None;
    }
    let (mi, mw) = digits(&s[hw + 1..])?;
    if mw != 2 || mi > 59 {
        return None;
    }
    let mut parts = vec![num('h', h, hw), Part::Lit(":".into()), num('m', mi, 2)];
    let mut i = hw + 1 + mw;
    if s.get(i) == Some(&b':') {
        if let Some((sec, 2)) = digits(&s[i + 1..]) {
            if sec <= 60 {
                parts.push(Part::Lit(":".into()));
                parts.push(num('s', sec, 2));
                i += 3;
                if s.get(i) == Some(&b'.') {
                    if let Some((_, fw)) = digits(&s[i + 1..]) {
                        parts.push(Part::Lit(".".into()));
                        parts.push(Part::Num { role: 'f', width: fw, telling: false });
                        i += 1 + fw;
                    }
                }
            }
        }
    }
    for ampm in [" AM", " PM", "AM", "PM", " am", " pm", "am", "pm"] {
        let a = ampm.as_bytes();
        if s.len() >= i + a.len()
            && &s[i..i + a.len()] == a
            && s.get(i + a.len()).is_none_or(|b| !b.is_ascii_alphanumeric())
        {
            parts.push(Part::Lit(if ampm.starts_with(' ') { " AM".into() } else { "AM".into() }));
            i += a.len();
            break;
        }
    }
    if zone {
        if s.get(i) == Some(&b'Z') {
            parts.push(Part::Lit("Z".into()));
            i += 1;
        } else if matches!(s.get(i), Some(b'+') | Some(b'-')) {
            if let Some((_, 2)) = digits(&s[i + 1..]) {
                if s.get(i + 3) == Some(&b':') && digits(&s[i + 4..]).map(|d| d.1) == Some(2) {
                    parts.push(Part::Lit("±hh:mm".into()));
                    i += 6;
                } else if digits(&s[i + 1..]).map(|d| d.1) == Some(4) {
                    parts.push(Part::Lit("±hhmm".into()));
                    i += 5;
                }
            }
        }
    }
    Some((parts, i))
}

/// A numeric date (with an optional time after it) at the start of `s`.
fn numeric_date_at(s: &[u8]) -> Option<(DateTok, usize)> {
    let (a, aw) = digits(s)?;
    let sep = *s.get(aw)?;
    if !matches!(sep, b'-' | b'/' | b'.') {
        return None;
    }
    let (b, bw) = digits(&s[aw + 1..])?;
    if s.get(aw + 1 + bw) != Some(&sep) {
        return None;
    }
    let (c, cw) = digits(&s[aw + 2 + bw..])?;
    let mut len = aw + 2 + bw + cw;
    let sep_s = (sep as char).to_string();
    let (mut parts, days) = if aw == 4 && bw <= 2 && cw <= 2 {
        let z = valid_ymd(a, b, c)?;
        (
            vec![
                num('Y', a, 4),
                Part::Lit(sep_s.clone()),
                num('M', b, bw),
                Part::Lit(sep_s),
                num('D', c, cw),
            ],
            vec![z],
        )
    } else if cw == 4 && aw <= 2 && bw <= 2 {
        let dm = valid_ymd(c, b, a); // D/M/Y
        let md = valid_ymd(c, a, b); // M/D/Y
        let (r1, r2) = match (dm.is_some(), md.is_some()) {
            (true, false) => ('D', 'M'),
            (false, true) => ('M', 'D'),
            (true, true) => ('M', 'D'),
            (false, false) => return None,
        };
        let days: Vec<i64> = [dm, md].into_iter().flatten().collect();
        (
            vec![num(r1, a, aw), Part::Lit(sep_s.clone()), num(r2, b, bw), Part::Lit(sep_s), num('Y', c, 4)],
            days,
        )
    } else {
        return None;
    };
    // An ISO-style time after it.
    if matches!(s.get(len), Some(b'T') | Some(b' ')) {
        if let Some((tp, tl)) = time_at(&s[len + 1..], true) {
            parts.push(Part::Lit(if s[len] == b'T' { "T".into() } else { " ".into() }));
            parts.extend(tp);
            len += 1 + tl;
        }
    }
    Some((DateTok { parts, days }, len))
}

/// `2026年11月28日`.
fn cjk_date_at(s: &str) -> Option<(DateTok, usize)> {
    let b = s.as_bytes();
    let (y, yw) = digits(b)?;
    let rest = s.get(yw..)?.strip_prefix('年')?;
    let (m, mw) = digits(rest.as_bytes())?;
    let rest2 = rest.get(mw..)?.strip_prefix('月')?;
    let (d, dw) = digits(rest2.as_bytes())?;
    rest2.get(dw..)?.strip_prefix('日')?;
    let z = valid_ymd(y, m, d)?;
    let len = yw + '年'.len_utf8() + mw + '月'.len_utf8() + dw + '日'.len_utf8();
    Some((
        DateTok {
            parts: vec![
                num('Y', y, yw),
                Part::Lit("年".into()),
                num('M', m, mw),
                Part::Lit("月".into()),
                num('D', d, dw),
                Part::Lit("日".into()),
            ],
            days: vec![z],
        },
        len,
    ))
}

/// The word at the start of `s` (ASCII letters and a trailing dot for abbreviations).
fn word(s: &str) -> &str {
    let n = s.bytes().take_while(u8::is_ascii_alphabetic).count();
    &s[..n]
}

/// An English long date at the start of `s`: `[Weekday, ]Month D[st], YYYY` or
/// `[Weekday, ]D Month YYYY`.
fn long_date_at(s: &str) -> Option<(DateTok, usize)> {
    let mut parts = Vec::new();
    let mut i = 0;
    let w0 = word(s);
    if let Some((_, abbr)) = name_of(w0, &WEEKDAYS) {
        parts.push(Part::Name { role: 'W', abbr, case: case_of(w0) });
        i += w0.len();
        let sep: String = s[i..].chars().take_while(|c| *c == ',' || *c == ' ' || *c == '.').collect();
        if sep.is_empty() {
            return None;
        }
        parts.push(Part::Lit(sep.clone()));
        i += sep.len();
    }
    let rest = &s[i..];
    let bytes = rest.as_bytes();
    let (month, day, year, len);
    if let Some((d, dw)) = digits(bytes) {
        // D Month YYYY
        let mut j = dw;
        let suffix = word(&rest[j..]);
        let has_suffix = matches!(suffix, "st" | "nd" | "rd" | "th");
        if has_suffix {
            j += 2;
        }
        let sep1: String = rest[j..].chars().take_while(|c| *c == ' ' || *c == '.').collect();
        if sep1.is_empty() {
            return None;
        }
        j += sep1.len();
        let mw = word(&rest[j..]);
        let (m, abbr) = name_of(mw, &MONTHS)?;
        let mut k = j + mw.len();
        if rest[k..].starts_with('.') && abbr {
            k += 1;
        }
        let sep2: String = rest[k..].chars().take_while(|c| *c == ',' || *c == ' ').collect();
        if sep2.is_empty() {
            return None;
        }
        let (y, yw) = digits(&bytes[k + sep2.len()..])?;
        if yw != 4 {
            return None;
        }
        parts.push(num('D', d, dw));
        if has_suffix {
            parts.push(Part::Lit("th".into()));
        }
        parts.push(Part::Lit(sep1));
        parts.push(Part::Name { role: 'N', abbr, case: case_of(mw) });
        parts.push(Part::Lit(sep2.clone()));
        parts.push(num('Y', y, 4));
        (month, day, year, len) = (m as i64 + 1, d, y, k + sep2.len() + yw);
    } else {
        let mw = word(rest);
        let (m, abbr) = name_of(mw, &MONTHS)?;
        let mut j = mw.len();
        if rest[j..].starts_with('.') && abbr {
            j += 1;
        }
        let sep1: String = rest[j..].chars().take_while(|c| *c == ' ').collect();
        if sep1.is_empty() {
            return None;
        }
        j += sep1.len();
        let (d, dw) = digits(&bytes[j..])?;
        j += dw;
        let suffix = word(&rest[j..]);
        let has_suffix = matches!(suffix, "st" | "nd" | "rd" | "th");
        if has_suffix {
            j += 2;
        }
        let sep2: String = rest[j..].chars().take_while(|c| *c == ',' || *c == ' ').collect();
        if sep2.is_empty() {
            return None;
        }
        let (y, yw) = digits(&bytes[j + sep2.len()..])?;
        if yw != 4 {
            return None;
        }
        parts.push(Part::Name { role: 'N', abbr, case: case_of(mw) });
        parts.push(Part::Lit(sep1));
        parts.push(num('D', d, dw));
        if has_suffix {
            parts.push(Part::Lit("th".into()));
        }
        parts.push(Part::Lit(sep2.clone()));
        parts.push(num('Y', y, 4));
        (month, day, year, len) = (m as i64 + 1, d, y, j + sep2.len() + yw);
    }
    let z = valid_ymd(year, month, day)?;
    Some((DateTok { parts, days: vec![z] }, i + len))
}

fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFF8}' | '\u{E0000}'..='\u{E0FFF}')
}

fn tokenize(s: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    let b = s.as_bytes();
    while i < s.len() {
        let rest = &s[i..];
        let prev_alnum = s[..i].chars().next_back().is_some_and(char::is_alphanumeric);
        if !prev_alnum {
            let date = if b[i].is_ascii_digit() {
                numeric_date_at(&b[i..]).or_else(|| cjk_date_at(rest))
            } else if b[i].is_ascii_alphabetic() {
                long_date_at(rest)
            } else {
                None
            };
            let date = date.or_else(|| {
                if b[i].is_ascii_digit() {
                    time_at(&b[i..], false).map(|(parts, n)| (DateTok { parts, days: Vec::new() }, n))
                } else {
                    None
                }
            });
            if let Some((d, n)) = date {
                let next_alnum = s[i + n..].chars().next().is_some_and(char::is_alphanumeric);
                if !next_alnum && n > 0 {
                    out.push(Token { text: &s[i..i + n], class: Class::Date(d) });
                    i += n;
                    continue;
                }
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        if c.is_alphanumeric() || c == '_' {
            let n: usize =
                rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').map(char::len_utf8).sum();
            let t = &rest[..n];
            let class = if t.bytes().all(|b| b.is_ascii_digit()) { Class::Number } else { Class::Word };
            out.push(Token { text: t, class });
            i += n;
        } else {
            let class = if is_invisible(c) {
                Class::Invisible
            } else if c.is_whitespace() {
                Class::Space
            } else {
                Class::Other
            };
            out.push(Token { text: &rest[..c.len_utf8()], class });
            i += c.len_utf8();
        }
    }
    out
}

// ---------- code points ----------

/// One code point as a report names it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CodePoint {
    /// The character, shown as `⟨U+200B⟩` when it is invisible.
    pub shown: String,
    /// `U+2019`.
    pub code: String,
    /// `RIGHT SINGLE QUOTATION MARK`.
    pub name: String,
}

pub fn code_point(c: char) -> CodePoint {
    let name = unicode_names2::name(c).map(|n| n.to_string()).unwrap_or_else(|| {
        if c.is_control() {
            "<control>".into()
        } else {
            "<unnamed>".into()
        }
    });
    CodePoint { shown: visible(&c.to_string()), code: format!("U+{:04X}", c as u32), name }
}

/// `s` with invisible, control and unusual space characters written as `⟨U+XXXX⟩`.
pub fn visible(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if is_invisible(c)
            || (c.is_control() && c != '\n' && c != '\t')
            || (c.is_whitespace() && c != ' ' && c != '\n' && c != '\t')
        {
            out.push_str(&format!("⟨U+{:04X}⟩", c as u32));
        } else if c == '\n' {
            out.push_str("\\n");
        } else {
            out.push(c);
        }
    }
    out
}

/// The Latin letter a look-alike stands for (Cyrillic, Greek, fullwidth), for telling a
/// homoglyph swap from a change of word.
fn skeleton(c: char) -> char {
    const PAIRS: &[(char, char)] = &[
        ('а', 'a'),
        ('е', 'e'),
        ('о', 'o'),
        ('р', 'p'),
        ('с', 'c'),
        ('у', 'y'),
        ('х', 'x'),
        ('і', 'i'),
        ('ј', 'j'),
        ('ѕ', 's'),
        ('ԁ', 'd'),
        ('ɡ', 'g'),
        ('һ', 'h'),
        ('ӏ', 'l'),
        ('А', 'A'),
        ('В', 'B'),
        ('Е', 'E'),
        ('К', 'K'),
        ('М', 'M'),
        ('Н', 'H'),
        ('О', 'O'),
        ('Р', 'P'),
        ('С', 'C'),
        ('Т', 'T'),
        ('Х', 'X'),
        ('І', 'I'),
        ('Ј', 'J'),
        ('Ѕ', 'S'),
        ('ο', 'o'),
        ('α', 'a'),
        ('ν', 'v'),
        ('ι', 'i'),
        ('Α', 'A'),
        ('Β', 'B'),
        ('Ε', 'E'),
        ('Ζ', 'Z'),
        ('Η', 'H'),
        ('Ι', 'I'),
        ('Κ', 'K'),
        ('Μ', 'M'),
        ('Ν', 'N'),
        ('Ο', 'O'),
        ('Ρ', 'P'),
        ('Τ', 'T'),
        ('Υ', 'Y'),
        ('Χ', 'X'),
        ('ı', 'i'),
    ];
    if let Some((_, l)) = PAIRS.iter().find(|(k, _)| *k == c) {
        return *l;
    }
    let u = c as u32;
    if (0xFF01..=0xFF5E).contains(&u) {
        return char::from_u32(u - 0xFF01 + 0x21).unwrap_or(c);
    }
    c
}

/// One character-level change inside a hunk.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CharChange {
    /// `replace`, `insert` or `delete`.
    pub op: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<CodePoint>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub inserted: Vec<CodePoint>,
}

/// The minimal character-level changes from `a` to `b` (each side cut at 16 code points).
pub fn char_changes(a: &str, b: &str) -> Vec<CharChange> {
    let (ac, bc): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(200);
    let ops = similar::capture_diff_slices_deadline(Algorithm::Myers, &ac, &bc, Some(deadline));
    let mut out = Vec::new();
    for op in merge(&ops) {
        let (o, n) = (&ac[op.0.clone()], &bc[op.1.clone()]);
        let kind = match (o.is_empty(), n.is_empty()) {
            (true, _) => "insert",
            (_, true) => "delete",
            _ => "replace",
        };
        out.push(CharChange {
            op: kind,
            removed: o.iter().take(16).map(|c| code_point(*c)).collect(),
            inserted: n.iter().take(16).map(|c| code_point(*c)).collect(),
        });
        if out.len() >= 32 {
            break;
        }
    }
    out
}

/// Runs of non-equal ops merged into (old range, new range).
fn merge(ops: &[similar::DiffOp]) -> Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> {
    let mut out: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> = Vec::new();
    let mut cur: Option<(std::ops::Range<usize>, std::ops::Range<usize>)> = None;
    for op in ops {
        let (tag, o, n) = op.as_tag_tuple();
        if tag == DiffTag::Equal {
            if let Some(c) = cur.take() {
                out.push(c);
            }
            continue;
        }
        cur = Some(match cur.take() {
            Some((co, cn)) => (co.start..o.end.max(co.end), cn.start..n.end.max(cn.end)),
            None => (o, n),
        });
    }
    if let Some(c) = cur {
        out.push(c);
    }
    out
}

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
    let btexts: Vec<&str> = bt.iter().map(|t| t.text).collect();
    let mut volatile = vec![false; bt.len()];
    let mut vgap = vec![false; bt.len() + 1];
    let deadline = || Some(std::time::Instant::now() + std::time::Duration::from_secs(2));
    for other in &baselines[1..] {
        if *other == b1 {
            continue;
        }
        let ot = tokenize(other);
        let otexts: Vec<&str> = ot.iter().map(|t| t.text).collect();
        for (o, _) in
            merge(&similar::capture_diff_slices_deadline(Algorithm::Myers, &btexts, &otexts, deadline()))
        {
            if o.is_empty() {
                vgap[o.start] = true;
            }
            for i in o {
                volatile[i] = true;
            }
        }
    }
    let vt = tokenize(v);
    let vtexts: Vec<&str> = vt.iter().map(|t| t.text).collect();
    let mut hunks = Vec::new();
    for (o, n) in
        merge(&similar::capture_diff_slices_deadline(Algorithm::Myers, &btexts, &vtexts, deadline()))
    {
        let (ot, nt) = (&bt[o.clone()], &vt[n.clone()]);
        let pairwise = ot.len() == nt.len();
        // Volatile tokens replaced by tokens of the same shape, or an insertion where the
        // baseline runs differ too.
        let all_volatile = if o.is_empty() { vgap[o.start] } else { o.clone().all(|i| volatile[i]) };
        if all_volatile
            && ((o.is_empty() && nt.iter().all(|t| !matches!(t.class, Class::Invisible)))
                || (pairwise
                    && ot.iter().zip(nt).all(|(a, b)| a.text == b.text || same_shape(&a.class, &b.class))))
        {
            continue;
        }
        // Dates and times of the same format that are current somewhere: the clock or the zone.
        if pairwise
            && ot.iter().zip(nt).all(|(a, b)| {
                a.text == b.text
                    || matches!((&a.class, &b.class), (Class::Date(x), Class::Date(y)) if x.compatible(y) && window.current(y))
            })
        {
            continue;
        }
        let removed: String = ot.iter().map(|t| t.text).collect();
        let inserted: String = nt.iter().map(|t| t.text).collect();
        let before: String = vt[..n.start].iter().map(|t| t.text).collect();
        let after: String = vt[n.end..].iter().map(|t| t.text).collect();
        let chars = char_changes(&removed, &inserted);
        let mut note = None;
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
        let only_dates = pairwise
            && !date_pairs.is_empty()
            && ot.iter().zip(nt).all(|(a, b)| {
                a.text == b.text || matches!((&a.class, &b.class), (Class::Date(_), Class::Date(_)))
            });
        let kind = if disclosed.iter().any(|t| contains_token(&inserted, t)) {
            Kind::Disclosure
        } else if only_dates && date_pairs.iter().any(|(x, y)| !x.compatible(y)) {
            let (x, y) = date_pairs.iter().find(|(x, y)| !x.compatible(y)).copied().unwrap_or(date_pairs[0]);
            note = Some(format!("date format {} → {}", x.format(), y.format()));
            Kind::Encoding
        } else if only_dates {
            note = Some("date changed to one that is not current anywhere".to_string());
            Kind::Content
        } else {
            let changed: Vec<char> = chars
                .iter()
                .flat_map(|c| c.removed.iter().chain(&c.inserted))
                .filter_map(|cp| u32::from_str_radix(&cp.code[2..], 16).ok().and_then(char::from_u32))
                .collect();
            let look_alike = {
                let sk = |s: &str| s.chars().map(skeleton).collect::<String>();
                removed != inserted && sk(&removed) == sk(&inserted)
            };
            if look_alike || (!changed.is_empty() && changed.iter().all(|c| !c.is_alphanumeric())) {
                if look_alike {
                    note = Some("look-alike characters".into());
                } else if changed.iter().any(|c| is_invisible(*c)) {
                    note = Some("invisible characters".into());
                } else {
                    note = Some("punctuation or spacing".into());
                }
                Kind::Encoding
            } else {
                Kind::Content
            }
        };
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

// ---------- requests ----------

/// Headers that follow from how the request was carried (host, proxy, length), not from what
/// the assistant chose to say.
const TRANSPORT_HEADERS: [&str; 9] = [
    "host",
    "content-length",
    "connection",
    "proxy-connection",
    "proxy-authorization",
    "transfer-encoding",
    "keep-alive",
    "te",
    "upgrade",
];

/// A request as fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Flat {
    /// `POST /v1/messages`: what requests are matched by across runs (ids in the path masked).
    pub key: String,
    pub fields: BTreeMap<String, String>,
    pub llm_call: bool,
}

fn id_like(seg: &str) -> bool {
    let digits = seg.chars().filter(char::is_ascii_digit).count();
    let alnum = seg.chars().filter(char::is_ascii_alphanumeric).count();
    // Lower-case words between separators are a name (`gemini-3.5-flash`), not an id.
    let wordy = seg.contains(['-', '.']) && !seg.chars().any(|c| c.is_ascii_uppercase());
    (digits >= 4 && digits == seg.len())
        || (seg.len() >= 16 && digits > 0 && !wordy && alnum * 10 >= seg.len() * 7)
        || (seg.len() >= 8 && digits > 0 && seg.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
}

fn path_key(path: &str) -> String {
    let route = path.split('?').next().unwrap_or(path);
    route
        .split('/')
        .map(|seg| {
            let (head, verb) = seg.split_once(':').map_or((seg, None), |(h, v)| (h, Some(v)));
            let head = if id_like(head) { "{id}" } else { head };
            match verb {
                Some(v) => format!("{head}:{v}"),
                None => head.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn flatten_json(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, String>, depth: usize) {
    use serde_json::Value;
    match v {
        Value::Object(m) if !m.is_empty() && depth < 64 => {
            for (k, x) in m {
                flatten_json(&format!("{prefix}.{k}"), x, out, depth + 1);
            }
        }
        Value::Array(a) if !a.is_empty() && depth < 64 => {
            for (i, x) in a.iter().enumerate() {
                flatten_json(&format!("{prefix}[{i}]"), x, out, depth + 1);
            }
        }
        Value::String(s) => {
            let t = s.trim_start();
            if (t.starts_with('{') || t.starts_with('[')) && depth < 64 {
                if let Ok(inner @ (Value::Object(_) | Value::Array(_))) = serde_json::from_str::<Value>(s) {
                    flatten_json(&format!("{prefix}⟨json⟩"), &inner, out, depth + 1);
                    return;
                }
            }
            out.insert(prefix.to_string(), s.clone());
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

pub fn flatten(r: &Recorded) -> Flat {
    let mut fields = BTreeMap::new();
    let (route, query) = r.path.split_once('?').unwrap_or((&r.path, ""));
    fields.insert("path".to_string(), route.to_string());
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let e = fields.entry(format!("query.{k}")).or_insert_with(String::new);
        if !e.is_empty() {
            e.push('&');
        }
        e.push_str(v);
    }
    for (k, v) in &r.headers {
        if TRANSPORT_HEADERS.contains(&k.as_str()) {
            continue;
        }
        let e = fields.entry(format!("header.{k}")).or_insert_with(String::new);
        if !e.is_empty() {
            e.push_str(", ");
        }
        e.push_str(v);
    }
    if r.binary {
        fields.insert("body".into(), format!("<{} bytes, not text>", r.body_bytes));
    } else if !r.body.is_empty() {
        match serde_json::from_str::<serde_json::Value>(&r.body) {
            Ok(v) => flatten_json("body", &v, &mut fields, 0),
            Err(_) => {
                fields.insert("body".into(), r.body.clone());
            }
        }
    }
    Flat { key: format!("{} {}", r.method, path_key(&r.path)), fields, llm_call: r.llm_call }
}

/// How a request differs between the baseline and a variant.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestDiff {
    /// `POST /v1/messages #1` (the first request with that method and path).
    pub request: String,
    pub llm_call: bool,
    /// Sent under the variant more often than in any baseline run (`extra`), or less often than
    /// in every one (`missing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldDiff>,
}

impl RequestDiff {
    /// Counts as a finding: a changed field, or a request no baseline run sent.
    pub fn is_finding(&self) -> bool {
        !self.fields.is_empty() || self.presence.as_deref().is_some_and(|p| p.starts_with("extra"))
    }
}

fn by_key(reqs: &[Flat]) -> BTreeMap<&str, Vec<&Flat>> {
    let mut m: BTreeMap<&str, Vec<&Flat>> = BTreeMap::new();
    for r in reqs {
        m.entry(r.key.as_str()).or_default().push(r);
    }
    m
}

/// Every difference between a variant's requests and the baseline runs'.
pub fn compare_run(
    baselines: &[Vec<Flat>],
    variant: &[Flat],
    tokens: &[String],
    window: DayWindow,
) -> Vec<RequestDiff> {
    let bmaps: Vec<BTreeMap<&str, Vec<&Flat>>> = baselines.iter().map(|b| by_key(b)).collect();
    let vmap = by_key(variant);
    let keys: BTreeSet<&str> =
        bmaps.iter().flat_map(|m| m.keys().copied()).chain(vmap.keys().copied()).collect();
    // Keep the variant's order of first appearance, then the rest.
    let mut ordered: Vec<&str> = Vec::new();
    for r in variant.iter().chain(baselines.first().map(Vec::as_slice).unwrap_or(&[])) {
        if keys.contains(r.key.as_str()) && !ordered.contains(&r.key.as_str()) {
            ordered.push(r.key.as_str());
        }
    }
    for k in &keys {
        if !ordered.contains(k) {
            ordered.push(k);
        }
    }
    let mut out = Vec::new();
    for key in ordered {
        let counts: Vec<usize> = bmaps.iter().map(|m| m.get(key).map_or(0, Vec::len)).collect();
        let (lo, hi) = (counts.iter().copied().min().unwrap_or(0), counts.iter().copied().max().unwrap_or(0));
        let vs = vmap.get(key).cloned().unwrap_or_default();
        let llm = vs.first().map(|f| f.llm_call).unwrap_or_else(|| {
            bmaps.iter().find_map(|m| m.get(key).and_then(|v| v.first()).map(|f| f.llm_call)).unwrap_or(false)
        });
        for (k, v) in vs.iter().enumerate().take(lo) {
            let bs: Vec<&Flat> = bmaps.iter().map(|m| m[key][k]).collect();
            let fields = compare_fields(&bs, v, tokens, window);
            if !fields.is_empty() {
                out.push(RequestDiff {
                    request: format!("{key} #{}", k + 1),
                    llm_call: llm,
                    presence: None,
                    fields,
                });
            }
        }
        if vs.len() > hi {
            // Sent only under the variant: what it carries is all new.
            for (k, v) in vs.iter().enumerate().skip(hi) {
                let disclosed: Vec<String> = tokens
                    .iter()
                    .filter(|t| v.fields.values().any(|f| contains_token(f, t)))
                    .cloned()
                    .collect();
                let mut fields = Vec::new();
                if !disclosed.is_empty() {
                    fields.push(FieldDiff {
                        field: "(request)".into(),
                        change: "added",
                        kinds: [Kind::Disclosure].into_iter().collect(),
                        disclosed,
                        hunks: Vec::new(),
                        baseline: None,
                        variant: None,
                    });
                }
                out.push(RequestDiff {
                    request: format!("{key} #{}", k + 1),
                    llm_call: llm,
                    presence: Some(format!(
                        "extra: sent {} time(s), at most {hi} in the baseline runs",
                        vs.len()
                    )),
                    fields,
                });
            }
        } else if vs.len() < lo {
            out.push(RequestDiff {
                request: format!("{key} #{}", vs.len() + 1),
                llm_call: llm,
                presence: Some(format!(
                    "missing: sent {} time(s), at least {lo} in every baseline run",
                    vs.len()
                )),
                fields: Vec::new(),
            });
        }
    }
    out
}

fn compare_fields(bs: &[&Flat], v: &Flat, tokens: &[String], window: DayWindow) -> Vec<FieldDiff> {
    let names: BTreeSet<&String> = bs.iter().flat_map(|b| b.fields.keys()).chain(v.fields.keys()).collect();
    let mut out = Vec::new();
    for name in names {
        let in_b: Vec<&str> = bs.iter().filter_map(|b| b.fields.get(name).map(String::as_str)).collect();
        let in_v = v.fields.get(name);
        match (in_b.len() == bs.len(), in_b.is_empty(), in_v) {
            (true, _, Some(x)) => {
                if let Some(d) = compare_text(name, &in_b, x, tokens, window) {
                    out.push(d);
                }
            }
            (true, _, None) => out.push(FieldDiff {
                field: name.clone(),
                change: "removed",
                kinds: [Kind::Content].into_iter().collect(),
                disclosed: Vec::new(),
                hunks: Vec::new(),
                baseline: Some(cut(in_b[0], 300)),
                variant: None,
            }),
            (false, true, Some(x)) => {
                let disclosed: Vec<String> =
                    tokens.iter().filter(|t| contains_token(x, t)).cloned().collect();
                let mut kinds: BTreeSet<Kind> = [Kind::Content].into_iter().collect();
                if !disclosed.is_empty() {
                    kinds = [Kind::Disclosure].into_iter().collect();
                }
                out.push(FieldDiff {
                    field: name.clone(),
                    change: "added",
                    kinds,
                    disclosed,
                    hunks: Vec::new(),
                    baseline: None,
                    variant: Some(cut(x, 300)),
                });
            }
            // In some baseline runs only: its presence is noise.
            _ => {}
        }
        if out.len() >= 50 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: DayWindow = DayWindow { first: 20_000, last: 30_000 };

    fn classes(s: &str) -> Vec<(String, String)> {
        tokenize(s)
            .into_iter()
            .map(|t| {
                let c = match &t.class {
                    Class::Date(d) => format!("date {}", d.format()),
                    c => format!("{c:?}"),
                };
                (t.text.to_string(), c)
            })
            .collect()
    }

    #[test]
    fn calendar_round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(days_from_civil(2026, 11, 28)), (2026, 11, 28));
        assert_eq!(days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28), 2);
    }

    #[test]
    fn dates_and_times_are_single_tokens_with_a_format() {
        let c = classes("Today is 2026-11-28, or 2026/11/28 or 11/28/2026 at 07:44:06 (v2.1.332)");
        let dates: Vec<&(String, String)> = c.iter().filter(|(_, k)| k.starts_with("date")).collect();
        assert_eq!(dates.len(), 4, "{c:?}");
        assert_eq!(dates[0].1, "date YYYY-MM-DD");
        assert_eq!(dates[1].1, "date YYYY/MM/DD");
        assert_eq!(dates[2].1, "date MM/DD/YYYY");
        assert_eq!(dates[3].1, "date HH:mm:ss");
        assert!(c.iter().any(|(t, k)| t == "332" && k == "Number"));
        let c = classes("Today's date is Monday, November 30, 2026 (local)");
        assert!(
            c.iter().any(|(t, k)| t == "Monday, November 30, 2026" && k == "date EEEE, MMMM DD, YYYY"),
            "{c:?}"
        );
        let c = classes("at 2026-11-28T07:44:06.123Z and 2026年11月28日");
        assert_eq!(c[2], ("2026-11-28T07:44:06.123Z".into(), "date YYYY-MM-DDTHH:mm:ss.SSSZ".into()));
        assert!(c.iter().any(|(t, _)| t == "2026年11月28日"));
    }

    #[test]
    fn a_date_format_change_is_encoding_with_the_code_points_named() {
        let d = compare_text("f", &["Today is 2026-11-28."], "Today is 2026/11/28.", &[], W).unwrap();
        assert_eq!(d.kinds, [Kind::Encoding].into_iter().collect());
        let h = &d.hunks[0];
        assert_eq!(h.note.as_deref(), Some("date format YYYY-MM-DD → YYYY/MM/DD"));
        assert_eq!(h.chars.len(), 2);
        assert_eq!(h.chars[0].removed[0].name, "HYPHEN-MINUS");
        assert_eq!(h.chars[0].inserted[0].name, "SOLIDUS");
    }

    #[test]
    fn midnight_and_volatile_values_are_noise() {
        // The zone crossed midnight: same format, a current date.
        assert_eq!(
            compare_text(
                "f",
                &["on Monday, November 30, 2026 ok"],
                "on Tuesday, December 1, 2026 ok",
                &[],
                DayWindow { first: days_from_civil(2026, 11, 29), last: days_from_civil(2026, 12, 1) }
            ),
            None
        );
        // …but a date far from today is news.
        let d = compare_text(
            "f",
            &["on 2026-11-30"],
            "on 2021-01-01",
            &[],
            DayWindow { first: days_from_civil(2026, 11, 29), last: days_from_civil(2026, 12, 1) },
        )
        .unwrap();
        assert_eq!(d.kinds, [Kind::Content].into_iter().collect());
        // Ids that differ between baseline runs.
        let b = ["id=3f2a9c1e-77 took 12 ms", "id=88aa01bb-02 took 9 ms"];
        assert_eq!(compare_text("f", &b, "id=12345678-ab took 31 ms", &[], W), None);
        // An invisible character next to a volatile id is not.
        let d = compare_text("f", &b, "id=12345678-ab took\u{200B} 31 ms", &[], W).unwrap();
        assert_eq!(d.hunks[0].kind, Kind::Encoding);
        assert_eq!(d.hunks[0].chars[0].inserted[0].code, "U+200B");
        assert_eq!(d.hunks[0].chars[0].inserted[0].name, "ZERO WIDTH SPACE");
        assert_eq!(d.hunks[0].chars[0].inserted[0].shown, "⟨U+200B⟩");
    }

    #[test]
    fn apostrophes_look_alikes_words_and_disclosure() {
        let d = compare_text("f", &["It's fine"], "It\u{2019}s fine", &[], W).unwrap();
        assert_eq!(d.kinds, [Kind::Encoding].into_iter().collect());
        assert_eq!(d.hunks[0].chars[0].removed[0].name, "APOSTROPHE");
        assert_eq!(d.hunks[0].chars[0].inserted[0].name, "RIGHT SINGLE QUOTATION MARK");
        let d = compare_text("f", &["a cat"], "a \u{0441}at", &[], W).unwrap();
        assert_eq!(
            (d.hunks[0].kind, d.hunks[0].note.as_deref()),
            (Kind::Encoding, Some("look-alike characters"))
        );
        let d = compare_text("f", &["a cat"], "a dog", &[], W).unwrap();
        assert_eq!(d.kinds, [Kind::Content].into_iter().collect());
        let toks = vec!["Asia/Tokyo".to_string(), "+09:00".to_string()];
        let d = compare_text("f", &["zone: UTC"], "zone: Asia/Tokyo", &toks, W).unwrap();
        assert_eq!(d.kinds, [Kind::Disclosure].into_iter().collect());
        assert_eq!(d.disclosed, ["Asia/Tokyo"]);
        // Present in the baseline too: not disclosed by the variant.
        assert_eq!(compare_text("f", &["Asia/Tokyo"], "Asia/Tokyo", &toks, W), None);
        assert!(!contains_token("api.moonshot.cnx", "api.moonshot.cn"));
        assert!(contains_token("url=https://api.moonshot.cn/v1", "api.moonshot.cn"));
    }

    fn rec(method: &str, path: &str, body: &str) -> Recorded {
        Recorded {
            seq: 0,
            ms: 0,
            listener: "https:443".into(),
            tls_sni: None,
            proxy: None,
            method: method.into(),
            path: path.into(),
            headers: vec![("host".into(), "x".into()), ("x-id".into(), "a".into())],
            body: body.into(),
            body_bytes: body.len(),
            binary: false,
            api: "other",
            status: 200,
            llm_call: false,
        }
    }

    #[test]
    fn requests_flatten_match_and_compare() {
        let f = flatten(&rec("POST", "/v1/messages?beta=true", r#"{"a":{"b":[1,"x"]},"m":"{\"k\":\"v\"}"}"#));
        assert_eq!(f.key, "POST /v1/messages");
        assert_eq!(f.fields["query.beta"], "true");
        assert_eq!(f.fields["body.a.b[0]"], "1");
        assert_eq!(f.fields["body.m⟨json⟩.k"], "v");
        assert!(!f.fields.contains_key("header.host"));
        assert_eq!(path_key("/api/eval/3f2a9c1e-77aa-4bcd-9012-aabbccddeeff"), "/api/eval/{id}");
        assert_eq!(
            path_key("/v1beta/models/gemini-3.5-flash:generateContent"),
            "/v1beta/models/gemini-3.5-flash:generateContent"
        );
        let b1 = vec![flatten(&rec("POST", "/m", r#"{"t":"x"}"#)), flatten(&rec("GET", "/t", ""))];
        let b2 = vec![flatten(&rec("POST", "/m", r#"{"t":"x"}"#))];
        let v = vec![
            flatten(&rec("POST", "/m", r#"{"t":"y","n":"Asia/Tokyo"}"#)),
            flatten(&rec("GET", "/new", "")),
        ];
        let d = compare_run(&[b1, b2], &v, &["Asia/Tokyo".into()], W);
        assert_eq!(d.len(), 2, "{d:#?}");
        assert_eq!(d[0].fields.len(), 2);
        assert_eq!(d[0].fields[0].field, "body.n");
        assert_eq!(d[0].fields[0].change, "added");
        assert!(d[0].fields[0].kinds.contains(&Kind::Disclosure));
        assert!(d[1].presence.as_deref().unwrap().starts_with("extra"));
        assert!(d.iter().all(RequestDiff::is_finding));
    }
}
