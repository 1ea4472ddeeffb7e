//! Date formats in prompt text: which format a date was written in, never the date. An
//! assistant that writes "2026/11/30" on one host and "2026-11-30" on the others carries a
//! host-dependent variant (issue 17).
//!
//! Conservative on purpose: a match needs a separator-delimited date with a valid month
//! (01–12), a valid day for that month (leap years included) and a year in 1970–2100, not glued to
//! a letter or digit before it, nor continued by another `<sep><digit>` (versions like
//! 2026.11.30.1). Day and month have exactly two digits. YYYYMMDD is not reported: eight digits
//! are as often an id, a build number or a count as a date.

pub const YMD_DASH: &str = "YYYY-MM-DD";
pub const YMD_SLASH: &str = "YYYY/MM/DD";
pub const YMD_DOT: &str = "YYYY.MM.DD";
pub const DMY_DOT: &str = "DD.MM.YYYY";
pub const DMY_DASH: &str = "DD-MM-YYYY";
/// DD/MM/YYYY and MM/DD/YYYY cannot be told apart in general: one name for both.
pub const NMY_SLASH: &str = "NN/NN/YYYY";

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let part = b.get(at..at + n)?;
    part.iter().try_fold(0u32, |acc, &d| d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0')))
}

fn valid(year: u32, month: u32, day: u32) -> bool {
    let leap = year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1970..=2100).contains(&year) && (1..=days).contains(&day)
}

/// The date starting at `i` (a digit after a non-digit): its format and length.
fn date_at(b: &[u8], i: usize) -> Option<(&'static str, usize)> {
    let sep = |at: usize| b.get(at).copied().filter(|s| matches!(s, b'-' | b'/' | b'.'));
    if let (Some(y), Some(s)) = (digits(b, i, 4), sep(i + 4)) {
        let (m, d) = (digits(b, i + 5, 2)?, digits(b, i + 8, 2)?);
        if b.get(i + 7) != Some(&s) || !valid(y, m, d) {
            return None;
        }
        let format = match s {
            b'-' => YMD_DASH,
            b'/' => YMD_SLASH,
            _ => YMD_DOT,
        };
        return Some((format, 10));
    }
    let (a, s) = (digits(b, i, 2)?, sep(i + 2)?);
    let (c, y) = (digits(b, i + 3, 2)?, digits(b, i + 6, 4)?);
    if b.get(i + 5) != Some(&s) {
        return None;
    }
    let format = match s {
        b'.' if valid(y, c, a) => DMY_DOT,
        b'-' if valid(y, c, a) => DMY_DASH,
        b'/' if valid(y, c, a) || valid(y, a, c) => NMY_SLASH,
        _ => return None,
    };
    Some((format, 10))
}

/// Calls `found` with the format of each date in `s`.
pub fn scan_dates(s: &str, found: &mut dyn FnMut(&'static str)) {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let starts = b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric());
        // "1.30.11.2026": the digit run before a separator makes this part of something longer.
        let chained = i >= 2 && matches!(b[i - 1], b'-' | b'/' | b'.') && b[i - 2].is_ascii_digit();
        if starts && !chained {
            if let Some((format, len)) = date_at(b, i) {
                let end = i + len;
                let glued = b.get(end).is_some_and(|c| c.is_ascii_digit());
                let continued = matches!(b.get(end), Some(b'-' | b'/' | b'.'))
                    && b.get(end + 1).is_some_and(|c| c.is_ascii_digit());
                if !glued && !continued {
                    found(format);
                }
                i = end;
                continue;
            }
        }
        i += 1;
    }
}
