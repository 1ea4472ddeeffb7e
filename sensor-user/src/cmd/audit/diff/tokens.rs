//! Text as tokens: dates and times (one token each, with their format), words, numbers, and
//! every other code point alone; the calendar arithmetic the dates need.

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
pub(super) enum Part {
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
    pub(super) parts: Vec<Part>,
    /// Candidate day numbers (two when day and month could be either way round); empty for a
    /// time of day alone.
    pub(super) days: Vec<i64>,
}

impl DateTok {
    pub(super) fn compatible(&self, o: &DateTok) -> bool {
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
pub(super) enum Class {
    Date(DateTok),
    Word,
    Number,
    Space,
    /// Zero-width and other format characters.
    Invisible,
    Other,
}

#[derive(Debug, Clone)]
pub(super) struct Token<'a> {
    pub(super) text: &'a str,
    pub(super) class: Class,
}

pub(super) const MONTHS: [&str; 12] = [
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
pub(super) const WEEKDAYS: [&str; 7] =
    ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"];

pub(super) fn name_of(word: &str, names: &[&str]) -> Option<(usize, bool)> {
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

pub(super) fn case_of(w: &str) -> u8 {
    if w.chars().all(|c| !c.is_ascii_lowercase()) {
        1
    } else if w.chars().all(|c| !c.is_ascii_uppercase()) {
        2
    } else {
        0
    }
}

/// Digits at the start of `s`: (value, count).
pub(super) fn digits(s: &[u8]) -> Option<(i64, usize)> {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > 9 {
        return None;
    }
    Some((std::str::from_utf8(&s[..n]).ok()?.parse().ok()?, n))
}

pub(super) fn num(role: char, v: i64, width: usize) -> Part {
    Part::Num { role, width, telling: v < 10 }
}

pub(super) fn valid_ymd(y: i64, m: i64, d: i64) -> Option<i64> {
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || !(1900..=2200).contains(&y) {
        return None;
    }
    let z = days_from_civil(y, m, d);
    (civil_from_days(z) == (y, m, d)).then_some(z)
}

/// A time of day at the start of `s`: `H:MM[:SS[.fff]][ AM]`, with an optional zone suffix when
/// `zone` (`Z`, `+08:00`, `+0800`).
pub(super) fn time_at(s: &[u8], zone: bool) -> Option<(Vec<Part>, usize)> {
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
pub(super) fn numeric_date_at(s: &[u8]) -> Option<(DateTok, usize)> {
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
pub(super) fn cjk_date_at(s: &str) -> Option<(DateTok, usize)> {
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
pub(super) fn word(s: &str) -> &str {
    let n = s.bytes().take_while(u8::is_ascii_alphabetic).count();
    &s[..n]
}

/// An English long date at the start of `s`: `[Weekday, ]Month D[st], YYYY` or
/// `[Weekday, ]D Month YYYY`.
pub(super) fn long_date_at(s: &str) -> Option<(DateTok, usize)> {
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
    let (month, day, year, len) = if digits(rest.as_bytes()).is_some() {
        day_month_year(rest, &mut parts)?
    } else {
        month_day_year(rest, &mut parts)?
    };
    let z = valid_ymd(year, month, day)?;
    Some((DateTok { parts, days: vec![z] }, i + len))
}

/// `D Month YYYY` (`1st Dec. 2026`) at the start of `rest`: month, day, year, length.
fn day_month_year(rest: &str, parts: &mut Vec<Part>) -> Option<(i64, i64, i64, usize)> {
    let bytes = rest.as_bytes();
    let (d, dw) = digits(bytes)?;
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
    Some((m as i64 + 1, d, y, k + sep2.len() + yw))
}

/// `Month D, YYYY` (`December 1st, 2026`) at the start of `rest`: month, day, year, length.
fn month_day_year(rest: &str, parts: &mut Vec<Part>) -> Option<(i64, i64, i64, usize)> {
    let bytes = rest.as_bytes();
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
    Some((m as i64 + 1, d, y, j + sep2.len() + yw))
}

pub(super) fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
        | '\u{FFF0}'..='\u{FFF8}' | '\u{E0000}'..='\u{E0FFF}')
}

pub(super) fn tokenize(s: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let mut i = 0;
    let b = s.as_bytes();
    while i < s.len() {
        let rest = &s[i..];
        let prev_alnum = s[..i].chars().next_back().is_some_and(char::is_alphanumeric);
        if !prev_alnum {
            let date = if b[i].is_ascii_digit() {
                numeric_date_at(&b[i..]).or_else(|| cjk_date_at(rest)).or_else(|| long_date_at(rest))
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
