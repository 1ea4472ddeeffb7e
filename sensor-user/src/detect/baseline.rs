//! The learned baseline: per assistant and version, which fingerprint categories its sessions
//! read on this host, learned from the sessions that ended, kept in `<state_dir>/baseline.json`
//! across restarts (written whole to a temporary file, then renamed over it). Bounded: so many
//! (assistant, version) entries (the least recently seen goes), [`MAX_CATEGORIES`] per entry.
//! A corrupt file is logged, set aside as `baseline.json.corrupt`, and learning starts again.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use serde::{Deserialize, Serialize};

/// Categories remembered per entry.
pub const MAX_CATEGORIES: usize = 64;
const FILE: &str = "baseline.json";

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Entry {
    /// Sessions learned.
    pub sessions: u64,
    /// Category → sessions that read it.
    pub categories: BTreeMap<String, u64>,
    /// When a session of it last ended (a learning counter, not a clock).
    pub last_seen: u64,
}

#[derive(Default, Serialize, Deserialize)]
struct StateFile {
    /// assistant → version (`unknown` when the installation did not say) → entry.
    entries: BTreeMap<String, BTreeMap<String, Entry>>,
    /// Sessions learned in all (orders `last_seen`).
    clock: u64,
}

pub struct Baseline {
    state: StateFile,
    dir: Option<PathBuf>,
    pub learning_sessions: u32,
    pub max_entries: usize,
    /// Failures to read or write the state file so far.
    pub errors: u64,
    /// Learned since the file was last written.
    dirty: bool,
}

/// The version key of a session.
fn key(version: Option<&str>) -> &str {
    version.unwrap_or("unknown")
}

impl Baseline {
    /// The baseline in `dir` (none: in memory only). A file that cannot be read is logged and
    /// counted, never fatal.
    pub fn load(dir: Option<PathBuf>, learning_sessions: u32, max_entries: usize) -> Self {
        let mut b = Self {
            state: StateFile::default(),
            dir,
            learning_sessions,
            max_entries,
            errors: 0,
            dirty: false,
        };
        let Some(path) = b.path() else { return b };
        match std::fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<StateFile>(&bytes) {
                Ok(s) => b.state = s,
                Err(e) => {
                    b.errors += 1;
                    let aside = path.with_extension("json.corrupt");
                    let moved = std::fs::rename(&path, &aside);
                    tracing::error!(path = %path.display(), error = %e, set_aside = moved.is_ok(),
                        "baseline state file is corrupt; learning starts again");
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                b.errors += 1;
                tracing::error!(path = %path.display(), error = %e, "cannot read the baseline state file");
            }
        }
        b.trim();
        b
    }

    fn path(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(FILE))
    }

    pub fn entry(&self, assistant: &str, version: Option<&str>) -> Option<&Entry> {
        self.state.entries.get(assistant)?.get(key(version))
    }

    /// The categories read that no learned session of this assistant and version read, once
    /// it has learned enough sessions (none while learning).
    pub fn unusual(&self, assistant: &str, version: Option<&str>, read: &BTreeSet<String>) -> Vec<String> {
        match self.entry(assistant, version) {
            Some(e) if e.sessions >= u64::from(self.learning_sessions) => {
                read.iter().filter(|c| !e.categories.contains_key(*c)).cloned().collect()
            }
            _ => Vec::new(),
        }
    }

    /// A session of `assistant` `version` ended having read `read`: learned; written by the next
    /// [`Baseline::save_if_learned`] (each second, and at stop), not per session, which a storm of
    /// short sessions would turn into a file write each on the event loop.
    pub fn learn(&mut self, assistant: &str, version: Option<&str>, read: &BTreeSet<String>) {
        self.state.clock += 1;
        let clock = self.state.clock;
        let e = self
            .state
            .entries
            .entry(assistant.to_string())
            .or_default()
            .entry(key(version).into())
            .or_default();
        e.sessions += 1;
        e.last_seen = clock;
        for c in read {
            if let Some(n) = e.categories.get_mut(c) {
                *n += 1;
            } else if e.categories.len() < MAX_CATEGORIES {
                e.categories.insert(c.clone(), 1);
            }
        }
        self.trim();
        self.dirty = true;
    }

    /// Writes the state file if something was learned since it was last written.
    pub fn save_if_learned(&mut self) {
        if std::mem::take(&mut self.dirty) {
            self.save();
        }
    }

    fn len(&self) -> usize {
        self.state.entries.values().map(BTreeMap::len).sum()
    }

    /// Drops the least recently seen entries past `max_entries`.
    fn trim(&mut self) {
        while self.len() > self.max_entries.max(1) {
            let oldest = self
                .state
                .entries
                .iter()
                .flat_map(|(a, vs)| vs.iter().map(move |(v, e)| (e.last_seen, a.clone(), v.clone())))
                .min();
            let Some((_, a, v)) = oldest else { return };
            if let Some(vs) = self.state.entries.get_mut(&a) {
                vs.remove(&v);
                if vs.is_empty() {
                    self.state.entries.remove(&a);
                }
            }
        }
    }

    /// Writes the state whole to a temporary file and renames it over the old one, so a crash
    /// leaves either the old file or the new one.
    fn save(&mut self) {
        let Some(path) = self.path() else { return };
        let tmp = path.with_extension("json.tmp");
        let result = serde_json::to_vec(&self.state)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&tmp, bytes)
            })
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = result {
            self.errors += 1;
            tracing::warn!(path = %path.display(), error = %e, "cannot write the baseline state file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[&str]) -> BTreeSet<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn learns_then_flags_and_persists() {
        let dir = std::env::temp_dir().join(format!("aiwatch-baseline-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut b = Baseline::load(Some(dir.clone()), 2, 16);
        let usual = set(&["timezone", "locale"]);
        let odd = set(&["timezone", "host_identity"]);
        b.learn("a", Some("1.0"), &usual);
        assert!(b.unusual("a", Some("1.0"), &odd).is_empty(), "still learning");
        b.learn("a", Some("1.0"), &usual);
        assert_eq!(b.unusual("a", Some("1.0"), &odd), ["host_identity"]);
        assert!(b.unusual("a", Some("2.0"), &odd).is_empty(), "another version learns on its own");
        assert!(!dir.join(FILE).exists(), "written each second, not per session");
        b.save_if_learned();
        // A restart keeps it.
        let b = Baseline::load(Some(dir.clone()), 2, 16);
        assert_eq!(b.unusual("a", Some("1.0"), &odd), ["host_identity"]);
        assert_eq!(b.errors, 0);
        // A corrupt file: an error, set aside, learning anew.
        std::fs::write(dir.join(FILE), b"{not json").unwrap();
        let b = Baseline::load(Some(dir.clone()), 2, 16);
        assert_eq!(b.errors, 1);
        assert!(b.entry("a", Some("1.0")).is_none());
        assert!(dir.join("baseline.json.corrupt").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bounded_in_entries_and_categories() {
        let mut b = Baseline::load(None, 1, 8);
        for i in 0..100 {
            b.learn(&format!("a{i}"), None, &set(&["timezone"]));
        }
        assert_eq!(b.len(), 8);
        assert!(b.entry("a99", None).is_some() && b.entry("a91", None).is_none(), "the oldest went");
        let many: BTreeSet<String> = (0..500).map(|i| format!("c{i}")).collect();
        b.learn("wide", Some("1"), &many);
        assert_eq!(b.entry("wide", Some("1")).unwrap().categories.len(), MAX_CATEGORIES);
    }
}
