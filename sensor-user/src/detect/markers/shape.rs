//! The request's shape: a stable 64-bit hash of which markers appear where, so a fleet can see
//! that one host's requests carry a variant the others do not. Array indices are replaced by
//! `[*]` (the third message and the fifth carry the same shape); the hash is FNV-1a, fixed across
//! builds and platforms (std's hasher is not).

use std::collections::BTreeSet;

/// `$.messages[12].content[0].text` → `$.messages[*].content[*].text`.
pub fn pattern(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push_str("[*]");
            }
            ']' if in_index => in_index = false,
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// One element of the shape set: a marker or date format at a path pattern.
pub fn part(what: &str, pattern: &str) -> String {
    format!("{what} {pattern}")
}

/// 16 hex digits over the sorted set (order of discovery does not matter).
pub fn hash(parts: &BTreeSet<String>) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for p in parts {
        for &b in p.as_bytes().iter().chain(b"\n") {
            h ^= u64::from(b);
            h = h.wrapping_mul(PRIME);
        }
    }
    format!("{h:016x}")
}
