//! The code-point tables: which characters are markers on their own, which are markers only in
//! context (joiners, variation selectors, confusable letters), and the helpers the context rules
//! need (emoji, joining scripts). Everything not listed here is ordinary text: real prompts are
//! multilingual, so CJK (including its fullwidth punctuation, U+3000–U+303F, U+FF01, U+FF0C,
//! U+FF1F ...), accented Latin, Cyrillic, Greek, Arabic and Hebrew text raise nothing by itself.

use super::MarkerKind;

/// Apostrophe and quote look-alikes: characters a model or a reader takes for `'` or `"`, so a
/// prompt that carries one where ASCII is expected differs invisibly from its ASCII twin.
/// Deliberately not listed: U+0060 (ASCII), guillemets « » and CJK corner brackets 「」 (ordinary
/// punctuation that looks like no ASCII quote), U+301D–U+301F (CJK punctuation block).
const QUOTE_LOOKALIKES: &[u32] = &[
    0x2018, // LEFT SINGLE QUOTATION MARK: typographic ' (word processors, "smart quotes")
    0x2019, // RIGHT SINGLE QUOTATION MARK: the typographic apostrophe ("Today’s")
    0x201A, // SINGLE LOW-9 QUOTATION MARK: looks like a comma-quote
    0x201B, // SINGLE HIGH-REVERSED-9 QUOTATION MARK
    0x201C, // LEFT DOUBLE QUOTATION MARK: typographic "
    0x201D, // RIGHT DOUBLE QUOTATION MARK
    0x201E, // DOUBLE LOW-9 QUOTATION MARK (German opening quote, still a " look-alike)
    0x201F, // DOUBLE HIGH-REVERSED-9 QUOTATION MARK
    0x2032, // PRIME: renders like an apostrophe
    0x2033, // DOUBLE PRIME: renders like "
    0x2035, // REVERSED PRIME: renders like ` or '
    0x2036, // REVERSED DOUBLE PRIME
    0x02B9, // MODIFIER LETTER PRIME: a letter, so it also hides inside words
    0x02BA, // MODIFIER LETTER DOUBLE PRIME
    0x02BB, // MODIFIER LETTER TURNED COMMA (Hawaiian okina), looks like '
    0x02BC, // MODIFIER LETTER APOSTROPHE: a letter that looks exactly like '
    0x02BD, // MODIFIER LETTER REVERSED COMMA
    0x02EE, // MODIFIER LETTER DOUBLE APOSTROPHE
    0x00B4, // ACUTE ACCENT (spacing): commonly typed instead of '
    0xFF07, // FULLWIDTH APOSTROPHE: unlike the fullwidth comma, CJK text uses ' or ’ rarely
    0xFF02, // FULLWIDTH QUOTATION MARK
    0xA78C, // LATIN SMALL LETTER SALTILLO: a letter that looks like '
    0x05F3, // HEBREW PUNCTUATION GERESH: counted only when it does not follow a Hebrew letter
    0x05F4, // HEBREW PUNCTUATION GERSHAYIM: same rule (ordinary inside Hebrew abbreviations)
];

/// Zero-width and invisible characters. Context rules (see `scan.rs`): U+200C/U+200D between two
/// letters of a joining script (Arabic, Persian, Indic: U+0600–U+0DFF) and U+200D between two
/// emoji are ordinary; variation selectors are handled by `is_variation_selector`.
/// U+2800 BRAILLE PATTERN BLANK is counted: it renders as a space but is not whitespace, which is
/// why it is used to slip past trimming and filters; braille text in an LLM prompt is rare enough
/// that the false positive is acceptable. Ordinary spaces (U+00A0, U+2000–U+200A, U+202F, U+3000)
/// are not listed: French and CJK text use them.
const INVISIBLES: &[(u32, u32)] = &[
    (0x00AD, 0x00AD), // SOFT HYPHEN: invisible unless a line breaks there
    (0x034F, 0x034F), // COMBINING GRAPHEME JOINER
    (0x115F, 0x1160), // HANGUL CHOSEONG/JUNGSEONG FILLER: blank Hangul jamo
    (0x180E, 0x180E), // MONGOLIAN VOWEL SEPARATOR (zero width since Unicode 6.3)
    (0x200B, 0x200D), // ZERO WIDTH SPACE, ZERO WIDTH NON-JOINER, ZERO WIDTH JOINER
    (0x2060, 0x2064), // WORD JOINER, invisible math operators
    (0x206A, 0x206F), // deprecated invisible format characters
    (0x2800, 0x2800), // BRAILLE PATTERN BLANK (see above)
    (0x3164, 0x3164), // HANGUL FILLER
    (0xFEFF, 0xFEFF), // ZERO WIDTH NO-BREAK SPACE: inside a JSON string never a real BOM
    (0xFFA0, 0xFFA0), // HALFWIDTH HANGUL FILLER
    (0xFFF9, 0xFFFB), // interlinear annotation controls
];

/// Bidirectional controls: they reorder what a reader sees without changing what a model reads.
/// Reported always, even inside Arabic or Hebrew text where RLM/LRM occur legitimately: they are
/// rare in machine-built prompts and their own kind lets a reader weigh them separately.
const BIDI_CONTROLS: &[(u32, u32)] = &[
    (0x061C, 0x061C), // ARABIC LETTER MARK
    (0x200E, 0x200F), // LEFT-TO-RIGHT MARK, RIGHT-TO-LEFT MARK
    (0x202A, 0x202E), // embeddings, overrides, POP DIRECTIONAL FORMATTING
    (0x2066, 0x2069), // isolates, POP DIRECTIONAL ISOLATE
];

/// Tag characters: invisible, and able to spell any ASCII text ("ASCII smuggling").
pub const TAGS: (u32, u32) = (0xE0000, 0xE007F);
/// CANCEL TAG, which ends an emoji tag sequence (subdivision flags such as England's).
pub const CANCEL_TAG: char = '\u{E007F}';
/// WAVING BLACK FLAG, the only base of the RGI emoji tag sequences.
pub const BLACK_FLAG: char = '\u{1F3F4}';

/// Letters of other scripts that look like Latin letters. A marker only inside a word whose
/// other letters are ASCII Latin ("pаypal" with a Cyrillic а); whole Cyrillic or Greek words are
/// ordinary text. Fullwidth Latin letters and mathematical alphanumerics are in `is_confusable`.
/// Cyrillic: а е о р с у х і ј ѕ ԁ ԛ ԝ һ and А В Е К М Н О Р С Т Х Ѕ І Ј.
const CYRILLIC_CONFUSABLES: &[u32] = &[
    0x0430, 0x0435, 0x043E, 0x0440, 0x0441, 0x0443, 0x0445, 0x0456, 0x0458, 0x0455, 0x0501, 0x051B, 0x051D,
    0x04BB, 0x0410, 0x0412, 0x0415, 0x041A, 0x041C, 0x041D, 0x041E, 0x0420, 0x0421, 0x0422, 0x0425, 0x0405,
    0x0406, 0x0408,
];
/// Greek: ο ν α and Α Β Ε Ζ Η Ι Κ Μ Ν Ο Ρ Τ Υ Χ; Armenian: օ.
const OTHER_CONFUSABLES: &[u32] = &[
    0x03BF, 0x03BD, 0x03B1, 0x0391, 0x0392, 0x0395, 0x0396, 0x0397, 0x0399, 0x039A, 0x039C, 0x039D, 0x039F,
    0x03A1, 0x03A4, 0x03A5, 0x03A7, 0x0585,
];

fn in_ranges(c: u32, ranges: &[(u32, u32)]) -> bool {
    ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// The kind of a character that is a marker by itself (before context rules), if any.
pub fn base_kind(c: char) -> Option<MarkerKind> {
    let u = c as u32;
    if u < 0x80 {
        return None; // fast path: ASCII is never a marker
    }
    if QUOTE_LOOKALIKES.contains(&u) {
        Some(MarkerKind::QuoteLookalike)
    } else if in_ranges(u, INVISIBLES) {
        Some(MarkerKind::Invisible)
    } else if in_ranges(u, BIDI_CONTROLS) {
        Some(MarkerKind::BidiControl)
    } else if (TAGS.0..=TAGS.1).contains(&u) {
        Some(MarkerKind::TagCharacter)
    } else {
        None
    }
}

/// A Latin look-alike from another script, fullwidth Latin letters (U+FF21–U+FF3A,
/// U+FF41–U+FF5A) or a mathematical alphanumeric (U+1D400–U+1D7FF).
pub fn is_confusable(c: char) -> bool {
    let u = c as u32;
    CYRILLIC_CONFUSABLES.contains(&u)
        || OTHER_CONFUSABLES.contains(&u)
        || (0xFF21..=0xFF3A).contains(&u)
        || (0xFF41..=0xFF5A).contains(&u)
        || ((0x1D400..=0x1D7FF).contains(&u) && c.is_alphanumeric())
}

/// Variation selectors (VS1–VS16 and the supplement VS17–VS256). One after a non-ASCII base is
/// ordinary (U+FE0F after ❤, ideographic variation sequences after CJK ideographs); a run of
/// them, or one after an ASCII letter, is how data is hidden in "emoji smuggling".
pub fn is_variation_selector(c: char) -> bool {
    let u = c as u32;
    (0xFE00..=0xFE0F).contains(&u) || (0xE0100..=0xE01EF).contains(&u)
}

/// Emoji and pictographic symbols, close enough for the ZWJ rule: the blocks that hold
/// Extended_Pictographic characters, including skin-tone modifiers (U+1F3FB–U+1F3FF).
pub fn is_emoji(c: char) -> bool {
    let u = c as u32;
    matches!(u, 0x00A9 | 0x00AE | 0x203C | 0x2049 | 0x2122 | 0x2139)
        || (0x2190..=0x21FF).contains(&u)
        || (0x2300..=0x23FF).contains(&u)
        || (0x24C2..=0x25FF).contains(&u)
        || (0x2600..=0x27BF).contains(&u)
        || (0x2900..=0x297F).contains(&u)
        || (0x2B00..=0x2BFF).contains(&u)
        || (0x3030..=0x303D).contains(&u)
        || (0x1F000..=0x1FAFF).contains(&u)
}

/// Scripts that use ZWJ/ZWNJ inside words (Arabic, Syriac, Thaana, N'Ko and the Indic scripts,
/// U+0600–U+0DFF; Persian writes ZWNJ in everyday words).
pub fn is_joining_script(c: char) -> bool {
    (0x0600..=0x0DFF).contains(&(c as u32))
}

/// Hebrew letters, after which geresh/gershayim are ordinary punctuation.
pub fn is_hebrew_letter(c: char) -> bool {
    ('\u{05D0}'..='\u{05EA}').contains(&c)
}

/// "U+2019", "U+E0061": at least four hex digits, as Unicode writes them.
pub fn code_point(c: char) -> String {
    format!("U+{:04X}", c as u32)
}

/// The character's Unicode name ("RIGHT SINGLE QUOTATION MARK"), or a placeholder for
/// unassigned code points (U+E0000).
pub fn name(c: char) -> String {
    unicode_names2::name(c).map(|n| n.to_string()).unwrap_or_else(|| format!("UNNAMED {}", code_point(c)))
}
