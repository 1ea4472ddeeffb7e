//! Walks the decoded JSON, scans every string (object keys too) and gathers counts and paths.
//! Paths are rendered only for strings that carry something, once per string.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::codepoints::{code_point, name};
use super::{
    dates, scan, shape, DateMarker, Marker, MarkerKind, RequestMarkers, ScanError, MAX_DEPTH, MAX_MARKERS,
    MAX_PATHS, MAX_PATTERNS,
};

/// Longest object key shown in a path; longer keys, and keys with other characters than
/// `[A-Za-z0-9_-]`, are shown as `*` so a key can never carry text (or a secret) into the output.
const MAX_KEY: usize = 32;

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// Where a string sits: its path, the path's pattern, and which string it is.
struct Site {
    path: String,
    pattern: String,
    serial: u64,
}

#[derive(Default)]
struct Agg {
    count: u32,
    paths: Vec<String>,
    truncated: bool,
    patterns: BTreeSet<String>,
    /// The last string recorded here: a string with 10 000 markers adds its path once.
    last: u64,
}

impl Agg {
    fn record(&mut self, n: u32, site: &Site) {
        self.count = self.count.saturating_add(n);
        if self.last == site.serial {
            return;
        }
        self.last = site.serial;
        if !self.paths.contains(&site.path) {
            if self.paths.len() < MAX_PATHS {
                self.paths.push(site.path.clone());
            } else {
                self.truncated = true;
            }
        }
        if self.patterns.len() < MAX_PATTERNS {
            self.patterns.insert(site.pattern.clone());
        }
    }
}

#[derive(Default)]
pub struct Collector {
    markers: BTreeMap<(MarkerKind, char), Agg>,
    dates: BTreeMap<&'static str, Agg>,
    strings: u32,
    chars: u64,
    headers: u32,
    dropped: u32,
    /// Numbers the strings scanned, from 1.
    serial: u64,
}

fn render(path: &[Seg]) -> String {
    let mut out = String::from("$");
    for seg in path {
        match seg {
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
            Seg::Key(k) if plain_key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Key(_) => out.push_str(".*"),
        }
    }
    out
}

fn plain_key(k: &str) -> bool {
    (1..=MAX_KEY).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `header:<lowercased name>`, or `header:*` for a name that is not a plain token.
fn header_path(name: &str) -> String {
    if name.len() <= 64
        && !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        format!("header:{}", name.to_ascii_lowercase())
    } else {
        "header:*".to_string()
    }
}

impl Collector {
    pub fn walk_root(&mut self, v: &Value) -> Result<(), ScanError> {
        self.walk(v, &mut Vec::new(), 0)
    }

    fn walk<'v>(&mut self, v: &'v Value, path: &mut Vec<Seg<'v>>, depth: usize) -> Result<(), ScanError> {
        let too_deep = ScanError::TooDeep { limit: MAX_DEPTH };
        match v {
            Value::String(s) => {
                self.text(s, path, true);
            }
            Value::Array(items) => {
                if depth >= MAX_DEPTH {
                    return Err(too_deep);
                }
                for (i, item) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    self.walk(item, path, depth + 1)?;
                    path.pop();
                }
            }
            Value::Object(members) => {
                if depth >= MAX_DEPTH {
                    return Err(too_deep);
                }
                for (key, item) in members {
                    path.push(Seg::Key(key));
                    self.text(key, path, false);
                    self.walk(item, path, depth + 1)?;
                    path.pop();
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
        Ok(())
    }

    /// Scans one JSON string (values for dates too, keys for code points only).
    fn text(&mut self, s: &str, path: &[Seg], with_dates: bool) {
        self.serial += 1;
        self.strings = self.strings.saturating_add(1);
        let serial = self.serial;
        let mut site: Option<Site> = None;
        let locate = |site: &mut Option<Site>| {
            if site.is_none() {
                let p = render(path);
                *site = Some(Site { pattern: shape::pattern(&p), path: p, serial });
            }
        };
        self.chars += self.code_points(s, &mut site, &locate);
        if with_dates {
            let found = &mut self.dates;
            dates::scan_dates(s, &mut |format| {
                locate(&mut site);
                if let Some(site) = &site {
                    found.entry(format).or_default().record(1, site);
                }
            });
        }
    }

    fn code_points(&mut self, s: &str, site: &mut Option<Site>, locate: &dyn Fn(&mut Option<Site>)) -> u64 {
        let (markers, dropped) = (&mut self.markers, &mut self.dropped);
        scan::scan_text(s, &mut |kind, c, n| {
            locate(site);
            let Some(site) = site.as_ref() else { return };
            let kept = markers.len();
            match markers.entry((kind, c)) {
                Entry::Occupied(e) => e.into_mut().record(n, site),
                Entry::Vacant(e) if kept < MAX_MARKERS => e.insert(Agg::default()).record(n, site),
                Entry::Vacant(_) => *dropped = dropped.saturating_add(n),
            }
        })
    }

    pub fn header(&mut self, name: &str, value: &str) {
        self.serial += 1;
        self.headers = self.headers.saturating_add(1);
        let mut site: Option<Site> = None;
        let path = header_path(name);
        let serial = self.serial;
        let locate = |site: &mut Option<Site>| {
            if site.is_none() {
                *site = Some(Site { pattern: path.clone(), path: path.clone(), serial });
            }
        };
        self.chars += self.code_points(value, &mut site, &locate);
    }

    pub fn finish(self) -> RequestMarkers {
        let mut out = RequestMarkers {
            strings: self.strings,
            chars: self.chars,
            headers: self.headers,
            dropped: self.dropped,
            ..RequestMarkers::default()
        };
        for ((kind, c), agg) in self.markers {
            let what = format!("{} {}", kind.as_str(), code_point(c));
            for p in &agg.patterns {
                out.shape_parts.insert(shape::part(&what, p));
            }
            out.markers.push(Marker {
                kind,
                code_point: code_point(c),
                name: name(c),
                count: agg.count,
                paths: agg.paths,
                paths_truncated: agg.truncated,
            });
        }
        for (format, agg) in self.dates {
            for p in &agg.patterns {
                out.shape_parts.insert(shape::part(format, p));
            }
            out.dates.push(DateMarker {
                format,
                count: agg.count,
                paths: agg.paths,
                paths_truncated: agg.truncated,
            });
        }
        out.shape = shape::hash(&out.shape_parts);
        out
    }

    /// Adds what this collector found (headers) to an earlier result.
    pub fn merge_into(self, into: &mut RequestMarkers) {
        let found = self.finish();
        into.chars += found.chars;
        into.headers = into.headers.saturating_add(found.headers);
        into.dropped = into.dropped.saturating_add(found.dropped);
        into.shape_parts.extend(found.shape_parts);
        for m in found.markers {
            merge_marker(into, m);
        }
        into.markers.sort_by_key(|m| (m.kind, code_point_value(&m.code_point)));
        into.shape = shape::hash(&into.shape_parts);
    }
}

fn code_point_value(cp: &str) -> u32 {
    cp.strip_prefix("U+").and_then(|h| u32::from_str_radix(h, 16).ok()).unwrap_or(u32::MAX)
}

fn merge_marker(into: &mut RequestMarkers, m: Marker) {
    let same = |e: &&mut Marker| e.kind == m.kind && e.code_point == m.code_point;
    let Some(existing) = into.markers.iter_mut().find(same) else {
        if into.markers.len() < MAX_MARKERS {
            into.markers.push(m);
        } else {
            into.dropped = into.dropped.saturating_add(m.count);
        }
        return;
    };
    existing.count = existing.count.saturating_add(m.count);
    for p in m.paths {
        if existing.paths.contains(&p) {
            continue;
        }
        if existing.paths.len() < MAX_PATHS {
            existing.paths.push(p);
        } else {
            existing.paths_truncated = true;
        }
    }
    existing.paths_truncated |= m.paths_truncated;
}
