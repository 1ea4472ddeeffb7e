//! An assistant's version, and version ranges (`>=1.0.30, <1.0.40`) for the signature file.
//!
//! Nothing in the exec says which version runs, so it is read from the installation: the
//! `package.json` of the npm package the script an interpreter runs (its first argument that
//! is not an option, if absolute) or else the binary is part of, found next to it or
//! up to three directories above (not past a `node_modules` directory), or else a version-like
//! file or directory name (`…/claude/versions/2.0.1`). Paths are resolved through symlinks
//! (`/usr/local/bin/claude` → `…/@anthropic-ai/claude-code/cli.js`), as this host sees them.

use std::{
    cmp::Ordering,
    io::Read,
    path::{Path, PathBuf},
};

/// `package.json` bytes read at most.
const MAX_PACKAGE_JSON: u64 = 1 << 20;

/// The version of the assistant run as `exe` with `argv`, if the installation says.
pub fn assistant_version(exe: &str, argv: &[String]) -> Option<String> {
    // The script an interpreter runs comes first: the interpreter's own version is not it.
    // Only an interpreter's: another program's arguments are the user's files (a project
    // directory has a package.json of its own).
    let name = Path::new(exe).file_name().and_then(|n| n.to_str()).unwrap_or("");
    let script = match crate::config::defaults::RUNTIMES.contains(&name) {
        true => argv.iter().skip(1).find(|a| !a.starts_with('-')).filter(|a| a.starts_with('/')),
        false => None,
    };
    let candidates = script.map(String::as_str).into_iter().chain([exe]);
    for path in candidates {
        let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
        if let Some(v) = from_path_name(&resolved).or_else(|| from_package_json(&resolved)) {
            return Some(v);
        }
    }
    None
}

/// A version written as the file's or its directory's name (`versions/2.0.1`).
fn from_path_name(path: &Path) -> Option<String> {
    let names = [path.file_name(), path.parent().and_then(Path::file_name)];
    names.into_iter().flatten().filter_map(|n| n.to_str()).find(|n| looks_like_version(n)).map(str::to_string)
}

/// The `version` of the nearest `package.json` at or above the file's directory.
fn from_package_json(path: &Path) -> Option<String> {
    let mut dir = path.parent();
    for _ in 0..4 {
        let d = dir?;
        if let Some(v) = read_version(&d.join("package.json")) {
            return Some(v);
        }
        if d.file_name().is_some_and(|n| n == "node_modules") {
            return None;
        }
        dir = d.parent();
    }
    None
}

fn read_version(file: &Path) -> Option<String> {
    let mut text = String::new();
    std::fs::File::open(file).ok()?.take(MAX_PACKAGE_JSON).read_to_string(&mut text).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let version = v.get("version")?.as_str()?;
    looks_like_version(version).then(|| version.to_string())
}

/// Digits and dots with at least one dot, an optional `-pre`/`+build` tail; 64 bytes at most.
fn looks_like_version(s: &str) -> bool {
    let core = s.split(['-', '+']).next().unwrap_or("");
    s.len() <= 64
        && core.contains('.')
        && core.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b".-+".contains(&b))
}

/// A version's numeric components (`1.0.35-beta` → [1, 0, 35]); a pre-release tail is ignored.
fn components(s: &str) -> Option<Vec<u64>> {
    let core = s.trim().split(['-', '+']).next()?;
    core.split('.').map(|p| p.parse::<u64>().ok()).collect()
}

fn compare(a: &[u64], b: &[u64]) -> Ordering {
    // Missing components are 0: 1.0 == 1.0.0.
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| a.get(i).unwrap_or(&0).cmp(b.get(i).unwrap_or(&0)))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// A version range: comparisons joined by commas, all of which must hold (`>=1.0.30, <1.0.40`),
/// or `*` for any version. Operators: `>=`, `>`, `<=`, `<`, `=` (or none: exactly).
#[derive(Clone, Debug, PartialEq)]
pub struct VersionRange {
    text: String,
    bounds: Vec<(Ordering, bool, Vec<u64>)>,
}

impl VersionRange {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut bounds = Vec::new();
        if text.trim() != "*" {
            for part in text.split(',') {
                let part = part.trim();
                let (op, rest) = [(">=", Ordering::Greater, true), ("<=", Ordering::Less, true)]
                    .into_iter()
                    .chain([(">", Ordering::Greater, false), ("<", Ordering::Less, false)])
                    .chain([("=", Ordering::Equal, true)])
                    .find_map(|(p, o, eq)| part.strip_prefix(p).map(|r| ((o, eq), r)))
                    .unwrap_or(((Ordering::Equal, true), part));
                let v = components(rest).filter(|c| !c.is_empty()).ok_or_else(|| {
                    format!("{part:?} is not a comparison (>=, >, <=, <, = and a version such as 1.0.30)")
                })?;
                bounds.push((op.0, op.1, v));
            }
        }
        Ok(Self { text: text.trim().to_string(), bounds })
    }

    /// Whether `version` is in the range (an unparsable version is in none but `*`).
    pub fn contains(&self, version: &str) -> bool {
        if self.bounds.is_empty() {
            return true;
        }
        let Some(v) = components(version) else { return false };
        self.bounds.iter().all(|(op, or_equal, b)| {
            let o = compare(&v, b);
            o == *op || (*or_equal && o == Ordering::Equal)
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        let r = VersionRange::parse(">=1.0.30, <1.0.40").unwrap();
        for (v, inside) in [
            ("1.0.30", true),
            ("1.0.35", true),
            ("1.0.39", true),
            ("1.0.40", false),
            ("1.0.29", false),
            ("1.0.35-beta.1", true),
            ("2.0.0", false),
            ("1.0", false),
            ("garbage", false),
        ] {
            assert_eq!(r.contains(v), inside, "{v}");
        }
        assert!(VersionRange::parse("*").unwrap().contains("anything"));
        assert!(VersionRange::parse("1.2").unwrap().contains("1.2.0"));
        assert!(!VersionRange::parse("=1.2.1").unwrap().contains("1.2.0"));
        assert!(VersionRange::parse("<=2, >1.9").unwrap().contains("2.0.0"));
        assert!(!VersionRange::parse(">2").unwrap().contains("2.0.0"));
        for bad in ["", ">=", "~1.0", ">=1.0,", "1.x", ">= one"] {
            assert!(VersionRange::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn versions_from_the_installation() {
        let dir = std::env::temp_dir().join(format!("aiwatch-version-{}", std::process::id()));
        let pkg = dir.join("node_modules/@acme/agent");
        std::fs::create_dir_all(pkg.join("dist")).unwrap();
        std::fs::write(pkg.join("package.json"), r#"{"name":"@acme/agent","version":"1.0.35"}"#).unwrap();
        std::fs::write(pkg.join("dist/cli.js"), "").unwrap();
        let script = pkg.join("dist/cli.js").display().to_string();
        let argv = vec!["node".to_string(), script];
        assert_eq!(assistant_version("/usr/bin/node", &argv).as_deref(), Some("1.0.35"));
        // Not past node_modules: a package.json above it is someone else's.
        std::fs::write(dir.join("package.json"), r#"{"version":"9.9.9"}"#).unwrap();
        std::fs::create_dir_all(dir.join("node_modules/x")).unwrap();
        let lone = dir.join("node_modules/x/run.js").display().to_string();
        assert_eq!(assistant_version("/usr/bin/node", &["node".into(), lone]), None);
        assert_eq!(
            assistant_version("/root/.local/share/claude/versions/2.0.1", &["claude".into()]).as_deref(),
            Some("2.0.1")
        );
        // A native binary's arguments are the user's files, not its installation.
        let project = pkg.join("dist").display().to_string();
        assert_eq!(assistant_version("/usr/bin/true", &["true".into(), project]), None);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(!looks_like_version("1"));
        assert!(!looks_like_version("a.b"));
    }
}
