//! Path globs: `*`, `?` and `[...]` within one segment, `**` for any number of segments.
//! Matching is linear in practice and bounded in the worst case (segment DP, no backtracking
//! blow-up), because it runs on every reported path.

#[derive(Clone, Debug, PartialEq)]
pub struct Glob {
    segs: Vec<Seg>,
}

#[derive(Clone, Debug, PartialEq)]
enum Seg {
    /// `**`
    AnyDepth,
    Literal(String),
    Pattern(Vec<Tok>),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Char(char),
    /// `*`
    Star,
    /// `?`
    One,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Glob {
    /// Parses an absolute glob.
    pub fn new(pattern: &str) -> Result<Self, String> {
        if !pattern.starts_with('/') {
            return Err(format!("{pattern:?} is not an absolute path"));
        }
        let segs = pattern
            .split('/')
            .filter(|s| !s.is_empty())
            .map(|s| parse_segment(s).map_err(|e| format!("{pattern:?}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { segs })
    }

    /// Whether the absolute, normalized `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        self.matches_parts(&split(path))
    }

    /// [`Glob::matches`] on a path already split by [`split`]: callers matching one path
    /// against many globs split it once. No allocation for paths under 128 segments.
    pub fn matches_parts(&self, parts: &[&str]) -> bool {
        // Most globs start with a literal (`/etc`, `/proc`, a home directory): reject early.
        if let Some(Seg::Literal(first)) = self.segs.first() {
            if parts.first() != Some(&first.as_str()) {
                return false;
            }
        }
        if parts.len() < 128 {
            self.matches_bits(parts)
        } else {
            self.matches_vec(parts)
        }
    }

    /// Segment DP with bit j of `reach` meaning "the pattern so far matches parts[..j]".
    fn matches_bits(&self, parts: &[&str]) -> bool {
        let n = parts.len();
        let all: u128 = if n + 1 == 128 { u128::MAX } else { (1u128 << (n + 1)) - 1 };
        let mut reach: u128 = 1;
        for seg in &self.segs {
            let next = match seg {
                // Every position at or after the first reachable one.
                Seg::AnyDepth => all & !((reach & reach.wrapping_neg()) - 1),
                _ => {
                    let mut next = 0u128;
                    let mut bits = reach & (all >> 1);
                    while bits != 0 {
                        let j = bits.trailing_zeros() as usize;
                        bits &= bits - 1;
                        if seg_matches(seg, parts[j]) {
                            next |= 1 << (j + 1);
                        }
                    }
                    next
                }
            };
            if next == 0 {
                return false;
            }
            reach = next;
        }
        reach & (1 << n) != 0
    }

    fn matches_vec(&self, parts: &[&str]) -> bool {
        // reach[j]: the pattern prefix seen so far matches parts[..j].
        let mut reach = vec![false; parts.len() + 1];
        reach[0] = true;
        for seg in &self.segs {
            let mut next = vec![false; parts.len() + 1];
            match seg {
                Seg::AnyDepth => {
                    let mut on = false;
                    for j in 0..=parts.len() {
                        on |= reach[j];
                        next[j] = on;
                    }
                }
                _ => {
                    for j in 0..parts.len() {
                        if reach[j] && seg_matches(seg, parts[j]) {
                            next[j + 1] = true;
                        }
                    }
                }
            }
            reach = next;
            if !reach.iter().any(|&r| r) {
                return false;
            }
        }
        reach[parts.len()]
    }
}

/// The non-empty segments of a path, as [`Glob::matches_parts`] takes them.
pub fn split(path: &str) -> Vec<&str> {
    path.split('/').filter(|s| !s.is_empty()).collect()
}

fn parse_segment(s: &str) -> Result<Seg, String> {
    if s == "**" {
        return Ok(Seg::AnyDepth);
    }
    if !s.contains(['*', '?', '[']) {
        return Ok(Seg::Literal(s.to_string()));
    }
    let mut toks = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                if chars.peek() == Some(&'*') {
                    return Err("`**` must be a whole path segment".to_string());
                }
                toks.push(Tok::Star)
            }
            '?' => toks.push(Tok::One),
            '[' => {
                let negated = matches!(chars.peek(), Some('!' | '^'));
                if negated {
                    chars.next();
                }
                let mut ranges = Vec::new();
                loop {
                    let Some(lo) = chars.next() else {
                        return Err("unclosed `[`".to_string());
                    };
                    if lo == ']' && !ranges.is_empty() {
                        break;
                    }
                    if chars.peek() == Some(&'-') {
                        chars.next();
                        match chars.next() {
                            Some(']') => {
                                ranges.push((lo, lo));
                                ranges.push(('-', '-'));
                                break;
                            }
                            Some(hi) if hi >= lo => ranges.push((lo, hi)),
                            Some(hi) => return Err(format!("bad range {lo}-{hi}")),
                            None => return Err("unclosed `[`".to_string()),
                        }
                    } else {
                        ranges.push((lo, lo));
                    }
                }
                toks.push(Tok::Class { negated, ranges });
            }
            c => toks.push(Tok::Char(c)),
        }
    }
    Ok(Seg::Pattern(toks))
}

fn seg_matches(seg: &Seg, part: &str) -> bool {
    match seg {
        Seg::AnyDepth => true,
        Seg::Literal(l) => l == part,
        Seg::Pattern(toks) => tokens_match(toks, part),
    }
}

/// Wildcard match with single-star backtracking: O(len(toks) * len(text)).
fn tokens_match(toks: &[Tok], text: &str) -> bool {
    if text.is_ascii() {
        let b = text.as_bytes();
        chars_match(toks, b.len(), |i| char::from(b[i]))
    } else {
        let chars: Vec<char> = text.chars().collect();
        chars_match(toks, chars.len(), |i| chars[i])
    }
}

fn chars_match(toks: &[Tok], len: usize, at: impl Fn(usize) -> char) -> bool {
    let (mut t, mut s) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while s < len {
        match toks.get(t) {
            Some(Tok::Star) => {
                star = Some((t, s));
                t += 1;
            }
            Some(tok) if one_matches(tok, at(s)) => {
                t += 1;
                s += 1;
            }
            _ => match star {
                Some((st, ss)) => {
                    t = st + 1;
                    s = ss + 1;
                    star = Some((st, ss + 1));
                }
                None => return false,
            },
        }
    }
    toks[t..].iter().all(|tok| *tok == Tok::Star)
}

fn one_matches(tok: &Tok, c: char) -> bool {
    match tok {
        Tok::Char(x) => *x == c,
        Tok::One => true,
        Tok::Star => false,
        Tok::Class { negated, ranges } => ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&c)) != *negated,
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    fn m(p: &str, path: &str) -> bool {
        Glob::new(p).unwrap().matches(path)
    }

    #[test]
    fn long_paths_match_like_short_ones() {
        // Past 127 segments the DP falls back from a bitmask to a vector.
        let deep = format!("/usr/share/zoneinfo{}", "/d".repeat(200));
        assert!(m("/usr/share/zoneinfo/**", &deep));
        assert!(m("/usr/**/d", &deep));
        assert!(!m("/usr/**/e", &deep));
        assert!(m(&format!("/usr/share/zoneinfo{}/*", "/d".repeat(199)), &deep));
        let at127 = format!("/a{}", "/b".repeat(126));
        assert!(m("/a/**/b", &at127));
        assert!(m("/a/**", &at127));
        assert!(!m("/x/**", &at127));
    }

    #[test]
    fn literals_and_depth() {
        assert!(m("/etc/localtime", "/etc/localtime"));
        assert!(!m("/etc/localtime", "/etc/localtime2"));
        assert!(!m("/etc/localtime", "/etc"));
        assert!(m("/usr/share/zoneinfo/**", "/usr/share/zoneinfo/Europe/Paris"));
        assert!(m("/usr/share/zoneinfo/**", "/usr/share/zoneinfo"));
        assert!(!m("/usr/share/zoneinfo/**", "/usr/share/zoneinfo2/x"));
        assert!(m("/sys/devices/**/net/*/address", "/sys/devices/pci0000:00/0000:00:03.0/net/eth0/address"));
        assert!(!m("/sys/devices/**/net/*/address", "/sys/devices/net/address"));
        assert!(m("/**", "/anything/at/all"));
    }

    #[test]
    fn wildcards_in_a_segment() {
        assert!(m("/proc/[0-9]*/net/**", "/proc/4242/net/route"));
        assert!(!m("/proc/[0-9]*/net/**", "/proc/self/net/route"));
        assert!(m("/etc/profile.d/*proxy*", "/etc/profile.d/http-proxy.sh"));
        assert!(m("/etc/?ostname", "/etc/hostname"));
        assert!(m("/x/[!a]b", "/x/cb"));
        assert!(!m("/x/[!a]b", "/x/ab"));
        assert!(m("/x/a*b*c", "/x/aXXbYYc"));
        assert!(!m("/x/a*b*c", "/x/aXXbYY"));
        assert!(!m("/etc/*", "/etc/a/b"));
    }

    #[test]
    fn bad_patterns() {
        assert!(Glob::new("etc/x").is_err());
        assert!(Glob::new("/etc/[abc").is_err());
        assert!(Glob::new("/etc/a**").is_err());
        assert!(Glob::new("/etc/[z-a]").is_err());
    }

    #[test]
    fn pathological_pattern_is_fast() {
        let p = format!("/{}", ["**"; 40].join("/"));
        let path = format!("/{}", ["a"; 200].join("/"));
        assert!(m(&p, &path));
        let star = format!("/{}b", "*a".repeat(50));
        assert!(!m(&star, &format!("/{}", "a".repeat(200))));
    }
}
