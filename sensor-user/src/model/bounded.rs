//! Maps with a fixed capacity for state an observed process can grow: a new key beyond the
//! capacity evicts the least recently used one, and the map counts what it evicted.

use std::{collections::HashMap, hash::Hash, sync::Arc};

/// A map of at most `cap` entries; inserting or reading through [`Recent::touch`] refreshes an
/// entry, and a new key beyond the capacity evicts the least recently used one.
#[derive(Debug, Clone)]
pub struct Recent<K, V> {
    map: HashMap<K, (V, u64)>,
    cap: usize,
    clock: u64,
    evicted: u64,
}

impl<K: Hash + Eq + Clone, V> Recent<K, V> {
    pub fn new(cap: usize) -> Self {
        Self { map: HashMap::new(), cap: cap.max(1), clock: 0, evicted: 0 }
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k).map(|(v, _)| v)
    }

    /// The entry, refreshed.
    pub fn touch(&mut self, k: &K) -> Option<&mut V> {
        self.clock += 1;
        let now = self.clock;
        self.map.get_mut(k).map(|(v, t)| {
            *t = now;
            v
        })
    }

    /// Inserts or replaces `k`; returns the value it replaced. May evict the oldest entry.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.clock += 1;
        if !self.map.contains_key(&k) && self.map.len() >= self.cap {
            self.evict_oldest();
        }
        self.map.insert(k, (v, self.clock)).map(|(old, _)| old)
    }

    /// Removes the least recently used entry, counting it as evicted.
    pub fn evict_oldest(&mut self) -> Option<(K, V)> {
        let oldest = self.map.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone())?;
        self.evicted += 1;
        self.map.remove(&oldest).map(|(v, _)| (oldest, v))
    }

    /// A new capacity (a reloaded config): entries past it are evicted, oldest first, and
    /// counted.
    pub fn set_cap(&mut self, cap: usize) {
        self.cap = cap.max(1);
        while self.map.len() > self.cap {
            self.evict_oldest();
        }
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.map.remove(k).map(|(v, _)| v)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Entries evicted so far.
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values().map(|(v, _)| v)
    }
}

/// Paths of the fds a process opened (for `*at` calls), bounded in count and in path bytes.
/// Cloning is cheap: a forked child shares its parent's table until either opens something,
/// and the paths themselves are shared after that.
#[derive(Debug, Clone)]
pub struct FdPaths(Arc<FdInner>);

#[derive(Debug, Clone)]
struct FdInner {
    paths: Recent<i32, Arc<str>>,
    bytes: usize,
}

/// Fds remembered per process: the most recently opened ones (a live process's older fds are
/// still found through `/proc/<pid>/fd`).
pub const FDS_PER_PROCESS: usize = 64;
/// Path bytes remembered per process.
pub const FD_BYTES_PER_PROCESS: usize = 16 * 1024;

impl Default for FdPaths {
    fn default() -> Self {
        Self(Arc::new(FdInner { paths: Recent::new(FDS_PER_PROCESS), bytes: 0 }))
    }
}

impl FdPaths {
    pub fn get(&self, fd: i32) -> Option<&str> {
        self.0.paths.get(&fd).map(|p| &**p)
    }

    /// Remembers `fd`'s path; returns how many older fds were forgotten to make room.
    pub fn insert(&mut self, fd: i32, path: &str) -> u64 {
        let inner = Arc::make_mut(&mut self.0);
        let before = inner.paths.evicted();
        let mut bytes = inner.bytes + path.len();
        if let Some(old) = inner.paths.remove(&fd) {
            bytes -= old.len();
        }
        if inner.paths.len() >= FDS_PER_PROCESS {
            bytes -= inner.paths.evict_oldest().map_or(0, |(_, p)| p.len());
        }
        while bytes > FD_BYTES_PER_PROCESS && !inner.paths.is_empty() {
            bytes -= inner.paths.evict_oldest().map_or(0, |(_, p)| p.len());
        }
        if path.len() <= FD_BYTES_PER_PROCESS {
            inner.paths.insert(fd, Arc::from(path));
        } else {
            bytes -= path.len();
        }
        inner.bytes = bytes;
        inner.paths.evicted() - before
    }

    pub fn len(&self) -> usize {
        self.0.paths.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.paths.is_empty()
    }

    /// Path bytes held.
    pub fn bytes(&self) -> usize {
        self.0.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_keeps_the_most_recent_and_counts_evictions() {
        let mut r = Recent::new(3);
        for k in 0..3 {
            r.insert(k, k * 10);
        }
        // 0 is read again, so 1 is the least recently used.
        assert_eq!(r.touch(&0).copied(), Some(0));
        r.insert(3, 30);
        assert_eq!(r.len(), 3);
        assert_eq!(r.get(&1), None);
        assert_eq!(r.get(&0), Some(&0));
        // Replacing an entry evicts nothing.
        r.insert(3, 31);
        assert_eq!(r.evicted(), 1);
        for k in 10..1010 {
            r.insert(k, k);
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.evicted(), 1001);
        assert_eq!(r.get(&1009), Some(&1009));
    }

    #[test]
    fn fd_paths_are_bounded_in_count_and_bytes() {
        let mut f = FdPaths::default();
        let mut evicted = 0;
        for fd in 0..1000 {
            evicted += f.insert(fd, &format!("/tmp/{fd}/{}", "x".repeat(240)));
        }
        assert!(f.len() <= FDS_PER_PROCESS && f.bytes() <= FD_BYTES_PER_PROCESS, "{} {}", f.len(), f.bytes());
        assert_eq!(evicted, 1000 - f.len() as u64);
        assert!(f.get(999).is_some_and(|p| p.starts_with("/tmp/999/")));
        assert!(f.get(0).is_none());
        // Count bound with short paths.
        for fd in 0..1000 {
            f.insert(fd, "/a");
        }
        assert_eq!(f.len(), FDS_PER_PROCESS);
        // A fork shares the table; a write copies it and leaves the parent's alone.
        let mut child = f.clone();
        child.insert(5000, "/child");
        assert!(f.get(5000).is_none() && child.get(5000).is_some());
        // An fd reused for another path replaces it.
        child.insert(5000, "/other");
        assert_eq!(child.get(5000), Some("/other"));
        assert_eq!(child.bytes(), 2 * (FDS_PER_PROCESS - 1) + "/other".len());
    }
}
