//! One string's code-point markers, with the context rules that keep ordinary text quiet:
//! - U+200D ZERO WIDTH JOINER between two emoji (👨‍👩‍👧, ❤️‍🔥) is how emoji sequences are built,
//!   and U+200C/U+200D between two letters of a joining script (Persian, Indic) are spelling:
//!   neither counts. Any other joiner does.
//! - One variation selector after a non-ASCII base (U+FE0F after ❤, an ideographic variation
//!   selector after a CJK ideograph) and U+FE0F in a keycap (1️⃣) are ordinary; a second one in a
//!   row, or one after ASCII, is a marker (data hidden in selectors, "emoji smuggling").
//! - Tag characters spelling a subdivision flag (🏴 + 1..=6 tags a-z/0-9 + CANCEL TAG, as in the
//!   England flag) are ordinary; every other tag character counts (ASCII smuggling).
//! - Geresh/gershayim after a Hebrew letter are Hebrew punctuation.
//! - A confusable letter counts only inside a word whose other letters are ASCII Latin.
//!
//! Only code points and counts come out: never the text, never what tag characters spell.

use super::codepoints::{self as cp, BLACK_FLAG, CANCEL_TAG, TAGS};
use super::MarkerKind;

const ZWNJ: char = '\u{200C}';
const ZWJ: char = '\u{200D}';
const KEYCAP: char = '\u{20E3}';
/// Longest tag spelling of a subdivision flag we accept as ordinary ("gbeng" is 5).
const MAX_FLAG_TAGS: usize = 6;
/// Distinct confusables remembered per word (a word of thousands of different ones is still
/// reported, by its first ones).
const MAX_WORD_CONFUSABLES: usize = 16;

/// Receives (kind, character, count) for each marker found.
pub type Emit<'a> = dyn FnMut(MarkerKind, char, u32) + 'a;

/// A character whose status depends on the character after it.
enum Pending {
    /// A joiner and the base character before it.
    Joiner(char, Option<char>),
    /// A variation selector after 0-9, # or *: ordinary only if U+20E3 follows.
    Keycap(char),
}

#[derive(Default)]
struct Word {
    ascii_letters: bool,
    other_letters: bool,
    confusables: Vec<(char, u32)>,
}

impl Word {
    fn push(&mut self, c: char) {
        if c.is_ascii_alphabetic() {
            self.ascii_letters = true;
        } else if cp::is_confusable(c) {
            if let Some(e) = self.confusables.iter_mut().find(|e| e.0 == c) {
                e.1 = e.1.saturating_add(1);
            } else if self.confusables.len() < MAX_WORD_CONFUSABLES {
                self.confusables.push((c, 1));
            }
        } else if c.is_alphabetic() {
            self.other_letters = true;
        }
    }

    /// The word ended: its confusables count if its other letters are all ASCII Latin.
    fn finish(&mut self, emit: &mut Emit) {
        if self.ascii_letters && !self.other_letters {
            for &(c, n) in &self.confusables {
                emit(MarkerKind::Confusable, c, n);
            }
        }
        self.ascii_letters = false;
        self.other_letters = false;
        self.confusables.clear();
    }
}

/// Tag characters held back after 🏴 until CANCEL TAG shows whether they spell a flag.
#[derive(Default)]
struct FlagTags {
    active: bool,
    held: Vec<char>,
}

impl FlagTags {
    /// Releases what was held as markers (the sequence turned out not to be a flag).
    fn flush(&mut self, emit: &mut Emit) {
        for &t in &self.held {
            emit(MarkerKind::TagCharacter, t, 1);
        }
        self.held.clear();
        self.active = false;
    }

    /// Handles one tag character.
    fn tag(&mut self, c: char, emit: &mut Emit) {
        if !self.active {
            emit(MarkerKind::TagCharacter, c, 1);
        } else if c == CANCEL_TAG {
            let spells_flag = !self.held.is_empty()
                && self.held.iter().all(|&t| {
                    let a = (t as u32 - TAGS.0) as u8;
                    a.is_ascii_lowercase() || a.is_ascii_digit()
                });
            if spells_flag {
                self.held.clear();
                self.active = false;
            } else {
                self.flush(emit);
                emit(MarkerKind::TagCharacter, c, 1);
            }
        } else if self.held.len() < MAX_FLAG_TAGS {
            self.held.push(c);
        } else {
            self.flush(emit);
            emit(MarkerKind::TagCharacter, c, 1);
        }
    }
}

fn is_tag(c: char) -> bool {
    (TAGS.0..=TAGS.1).contains(&(c as u32))
}

fn resolve(p: Pending, next: Option<char>, emit: &mut Emit) {
    match p {
        Pending::Joiner(j, before) => {
            let (Some(b), Some(n)) = (before, next) else {
                return emit(MarkerKind::Invisible, j, 1);
            };
            let emoji = j == ZWJ && cp::is_emoji(b) && cp::is_emoji(n);
            let script = cp::is_joining_script(b) && cp::is_joining_script(n);
            if !(emoji || script) {
                emit(MarkerKind::Invisible, j, 1);
            }
        }
        Pending::Keycap(vs) => {
            if next != Some(KEYCAP) {
                emit(MarkerKind::Invisible, vs, 1);
            }
        }
    }
}

/// Scans one string; returns the number of characters scanned.
pub fn scan_text(s: &str, emit: &mut Emit) -> u64 {
    let mut chars = 0u64;
    let mut base: Option<char> = None; // last character that is not a variation selector
    let mut selectors = 0u32; // variation selectors since `base`
    let mut pending: Option<Pending> = None;
    let mut word = Word::default();
    let mut flag = FlagTags::default();
    for c in s.chars() {
        chars += 1;
        if let Some(p) = pending.take() {
            resolve(p, Some(c), emit);
        }
        if c.is_alphanumeric() {
            word.push(c);
        } else {
            word.finish(emit);
        }
        if is_tag(c) {
            flag.tag(c, emit);
            continue;
        }
        if flag.active {
            flag.flush(emit);
        }
        if cp::is_variation_selector(c) {
            selectors += 1;
            match base {
                Some(b) if selectors == 1 && matches!(b, '0'..='9' | '#' | '*') => {
                    pending = Some(Pending::Keycap(c));
                }
                Some(b) if selectors == 1 && !b.is_ascii() && !b.is_whitespace() => {}
                _ => emit(MarkerKind::Invisible, c, 1),
            }
            continue;
        }
        if c == ZWJ || c == ZWNJ {
            pending = Some(Pending::Joiner(c, base));
        } else if let Some(kind) = cp::base_kind(c) {
            let hebrew = matches!(c, '\u{05F3}' | '\u{05F4}') && base.is_some_and(cp::is_hebrew_letter);
            if !hebrew {
                emit(kind, c, 1);
            }
        }
        flag.active = c == BLACK_FLAG;
        base = Some(c);
        selectors = 0;
    }
    if let Some(p) = pending.take() {
        resolve(p, None, emit);
    }
    flag.flush(emit);
    word.finish(emit);
    chars
}
