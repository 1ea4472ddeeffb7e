//! Fields whose position is noise. Telemetry batches (Claude Code's `event_logging` requests)
//! hold events whose number and order differ from run to run, and how many batches a run sends
//! differs too: comparing `events[100]` of a variant with `events[100]` of the baseline compares
//! two different events. Where the baseline runs and the variant disagree on how often a field
//! occurs (indices masked: `body.events[*].name`), a variant's value is compared with every value
//! the baseline runs had at that masked path instead: it is noise when one of them, with the
//! others as the noise learned, explains it. Disclosures, new fields and changed characters (an
//! apostrophe, a zero-width space) are still findings: only volatile tokens of the same shape
//! and exact values seen in the baseline are forgiven.

use super::*;

/// At most this many distinct baseline values are tried per masked path.
const MAX_CANDIDATES: usize = 64;

/// `body.events[12].data[0].x` → `body.events[*].data[*].x`.
pub(super) fn masked(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '[' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push('*');
        }
    }
    out
}

fn counts(f: &Flat) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for k in f.fields.keys() {
        *m.entry(masked(k)).or_insert(0) += 1;
    }
    m
}

/// Masked paths that occur a different number of times in the baseline runs' requests or the
/// variant's: their positions cannot be compared index by index.
pub(super) fn unstable(bs: &[&Flat], v: &Flat) -> BTreeSet<String> {
    let all: Vec<BTreeMap<String, usize>> = bs.iter().copied().chain([v]).map(counts).collect();
    let names: BTreeSet<&String> = all.iter().flat_map(BTreeMap::keys).collect();
    names
        .into_iter()
        .filter(|n| {
            let c: BTreeSet<usize> = all.iter().map(|m| m.get(*n).copied().unwrap_or(0)).collect();
            c.len() > 1
        })
        .cloned()
        .collect()
}

/// The findings of the variant `v` at the masked paths `paths`, against every value the baseline
/// requests `bs` had there.
pub(super) fn compare_loose(
    bs: &[&Flat],
    v: &Flat,
    paths: &BTreeSet<String>,
    tokens: &[String],
    window: DayWindow,
) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    for path in paths {
        let mut cands: Vec<&str> = Vec::new();
        for (_, x) in bs.iter().flat_map(|b| b.fields.iter()).filter(|(k, _)| masked(k) == *path) {
            if !cands.contains(&x.as_str()) && cands.len() < MAX_CANDIDATES {
                cands.push(x);
            }
        }
        let here: Vec<(&String, &String)> = v.fields.iter().filter(|(k, _)| masked(k) == *path).collect();
        let in_every = bs.iter().all(|b| b.fields.keys().any(|k| masked(k) == *path));
        if here.is_empty() && in_every {
            out.push(FieldDiff {
                field: path.clone(),
                change: "removed",
                kinds: [Kind::Content].into_iter().collect(),
                disclosed: Vec::new(),
                hunks: Vec::new(),
                baseline: cands.first().map(|c| cut(c, 300)),
                variant: None,
            });
        }
        for (name, x) in here {
            if cands.contains(&x.as_str()) {
                continue;
            }
            if let Some(d) = explain(name, &cands, x, tokens, window) {
                out.push(d);
            }
            if out.len() >= 50 {
                return out;
            }
        }
    }
    out
}

/// None when some baseline value explains `x` (the others as the noise learned); else the
/// difference from the closest one, or `added` when the baseline had no value there.
fn explain(name: &str, cands: &[&str], x: &str, tokens: &[String], window: DayWindow) -> Option<FieldDiff> {
    if cands.is_empty() {
        let disclosed: Vec<String> = tokens.iter().filter(|t| contains_token(x, t)).cloned().collect();
        let kinds = if disclosed.is_empty() { Kind::Content } else { Kind::Disclosure };
        return Some(FieldDiff {
            field: name.to_string(),
            change: "added",
            kinds: [kinds].into_iter().collect(),
            disclosed,
            hunks: Vec::new(),
            baseline: None,
            variant: Some(cut(x, 300)),
        });
    }
    // A measurement (cpu, memory, uptime) whose position is noise cannot be told from noise:
    // a number where the baseline had only numbers is none of the kinds the audit looks for.
    let number = |s: &str| s.parse::<f64>().is_ok_and(f64::is_finite);
    if number(x) && cands.iter().all(|c| number(c)) {
        return None;
    }
    // The closest one's difference: the fewest characters removed and inserted.
    let size = |d: &FieldDiff| d.hunks.iter().map(|h| h.removed.len() + h.inserted.len()).sum::<usize>();
    let mut closest: Option<FieldDiff> = None;
    for i in 0..cands.len() {
        let mut order = vec![cands[i]];
        order.extend(cands.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, c)| *c));
        match compare_text(name, &order, x, tokens, window) {
            None => return None,
            Some(d) if closest.as_ref().is_none_or(|c| size(&d) < size(c)) => closest = Some(d),
            Some(_) => {}
        }
    }
    closest
}
