//! Code points: their names, a visible form of invisible ones, look-alike skeletons, and the
//! character-level diff that names each changed code point.

use super::*;

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
pub(super) fn skeleton(c: char) -> char {
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
pub(super) fn merge(ops: &[similar::DiffOp]) -> Vec<(std::ops::Range<usize>, std::ops::Range<usize>)> {
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
