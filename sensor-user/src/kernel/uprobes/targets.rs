//! What is probed: the libc files of this host (and of each session's root, when the daemon's
//! root is not theirs) and the file offsets of `getenv` and
//! `secure_getenv` in each.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use object::{Object, ObjectSegment, ObjectSymbol};

use crate::model::rooted;

/// libc files probed when present (glibc and musl on common distributions).
pub(super) const LIBC_CANDIDATES: &[&str] = &[
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/usr/lib/x86_64-linux-gnu/libc.so.6",
    "/lib64/libc.so.6",
    "/usr/lib64/libc.so.6",
    "/lib/aarch64-linux-gnu/libc.so.6",
    "/usr/lib/aarch64-linux-gnu/libc.so.6",
    "/lib/ld-musl-x86_64.so.1",
    "/lib/ld-musl-aarch64.so.1",
    "/usr/lib/libc.so",
];

/// (symbol, entry program) — both returns share `env_exit_getenv`.
pub(super) const FUNCS: [(&str, &str); 2] =
    [("getenv", "env_enter_getenv"), ("secure_getenv", "env_enter_secure_getenv")];

/// A libc's file offset of each probed function.
pub(super) fn offsets(path: &Path) -> anyhow::Result<Vec<(&'static str, &'static str, u64)>> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let file = object::File::parse(&*data).with_context(|| format!("parsing {} as ELF", path.display()))?;
    let mut out = Vec::new();
    for (func, prog) in FUNCS {
        let Some(sym) = file.dynamic_symbols().find(|s| s.name() == Ok(func) && s.is_definition()) else {
            continue;
        };
        let addr = sym.address();
        // uprobes take a file offset: translate the virtual address through its segment.
        let off = file.segments().find_map(|seg| {
            let (foff, fsize) = seg.file_range();
            (addr >= seg.address() && addr < seg.address() + fsize).then(|| addr - seg.address() + foff)
        });
        if let Some(off) = off {
            out.push((func, prog, off));
        }
    }
    Ok(out)
}

/// A libc file to probe: the path the kernel is given (through `/proc/<pid>/root` for a
/// process whose root is not the daemon's), and its identity, so one file gets one probe.
#[derive(Debug, Clone)]
pub(super) struct Libc {
    pub path: PathBuf,
    pub key: (u64, u64),
}

/// The libc files among `paths` (as a process sees them) inside `root` (`""`: the daemon's own
/// root; `/proc/<pid>/root`: that process's), resolved there.
pub(super) fn libcs_in<'a>(root: &str, paths: impl IntoIterator<Item = &'a str>) -> Vec<Libc> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for p in paths {
        let Ok(inside) = rooted::canonicalize_in(root, p, &rooted::RealLinks) else { continue };
        let path = PathBuf::from(format!("{root}{inside}"));
        match std::fs::metadata(&path) {
            Ok(md) if md.is_file() => out.push(Libc { path, key: (md.dev(), md.ino()) }),
            _ => {}
        }
    }
    out
}

/// The libc files a process may call `getenv` in: the usual places inside its root, and what
/// its `/proc/<pid>/maps` shows mapped (inside its root, and as the daemon sees the path: a
/// process in a container whose files the daemon reaches directly).
pub(super) fn libcs_of(pid: u32) -> Vec<Libc> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let mapped = mapped_libcs(&maps);
    let mut out = libcs_in(
        &rooted::proc_root(pid),
        LIBC_CANDIDATES.iter().copied().chain(mapped.iter().map(String::as_str)),
    );
    out.extend(libcs_in("", mapped.iter().map(String::as_str)));
    out
}

/// The libc files at start-up: the daemon's own, and those of pid 1's root (the host's, when
/// the daemon runs in a container with the host's PID namespace), plus configured ones (looked
/// for in both).
pub(super) fn libc_files(extra: &[String]) -> Vec<Libc> {
    let wanted = || LIBC_CANDIDATES.iter().copied().chain(extra.iter().map(String::as_str));
    let mut all = libcs_in("", wanted());
    all.extend(libcs_in(&rooted::proc_root(1), wanted()));
    distinct(all, &mut HashSet::new())
}

/// The libc files of `libcs` not in `known` (by device and inode), added to it.
pub(super) fn distinct(libcs: Vec<Libc>, known: &mut HashSet<(u64, u64)>) -> Vec<Libc> {
    libcs.into_iter().filter(|l| known.insert(l.key)).collect()
}

/// Paths of libc files in a `/proc/<pid>/maps` text, each once.
pub(super) fn mapped_libcs(maps: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode path: the path is the sixth field (it may hold spaces).
        let Some(path) = line.splitn(6, char::is_whitespace).nth(5).map(str::trim_start) else { continue };
        let name = path.rsplit('/').next().unwrap_or("");
        if path.starts_with('/') && is_libc_name(name) && !out.iter().any(|p| p == path) {
            out.push(path.to_string());
        }
    }
    out
}

/// glibc (`libc.so.6`, old `libc-2.31.so`) and musl (`ld-musl-<arch>.so.1`, `libc.musl-…`).
fn is_libc_name(name: &str) -> bool {
    name == "libc.so.6"
        || name == "libc.so"
        || (name.starts_with("libc-") && name.ends_with(".so"))
        || (name.starts_with("ld-musl-") && name.ends_with(".so.1"))
        || name.starts_with("libc.musl-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libc_paths_from_maps() {
        let maps = "\
55d0c0a00000-55d0c0a28000 r--p 00000000 fe:01 1835023                    /usr/bin/node
7f1c2a000000-7f1c2a028000 r--p 00000000 fe:01 1837355                    /usr/lib/x86_64-linux-gnu/libc.so.6
7f1c2a028000-7f1c2a1bd000 r-xp 00028000 fe:01 1837355                    /usr/lib/x86_64-linux-gnu/libc.so.6
7f1c2a300000-7f1c2a301000 r--p 00000000 00:2a 42                         /opt/my app/lib/ld-musl-x86_64.so.1
7f1c2a400000-7f1c2a401000 r--p 00000000 fe:01 99                         /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f1c2a500000-7f1c2a501000 rw-p 00000000 00:00 0                          [heap]
7f1c2a600000-7f1c2a601000 r--p 00000000 fe:01 77                         /lib/libc-2.31.so (deleted)
";
        assert_eq!(
            mapped_libcs(maps),
            ["/usr/lib/x86_64-linux-gnu/libc.so.6", "/opt/my app/lib/ld-musl-x86_64.so.1"]
        );
    }

    #[test]
    fn one_probe_per_file() {
        let l = |p: &str, ino| Libc { path: p.into(), key: (1, ino) };
        let mut known = HashSet::new();
        let first =
            distinct(vec![l("/usr/lib/libc.so.6", 5), l("/proc/1/root/usr/lib/libc.so.6", 5)], &mut known);
        assert_eq!(first.len(), 1);
        assert!(distinct(vec![l("/proc/9/root/lib/libc.so.6", 5)], &mut known).is_empty());
        assert_eq!(distinct(vec![l("/proc/9/root/lib/libc.so.6", 6)], &mut known).len(), 1);
    }

    #[test]
    fn this_processes_libc_through_its_proc_root() {
        let me = std::process::id();
        let libcs = libcs_of(me);
        let root = rooted::proc_root(me);
        assert!(libcs.iter().any(|l| l.path.starts_with(&root)), "{libcs:?}");
        // The same file as the daemon's own view: one probe for both.
        let mut known = HashSet::new();
        let own = distinct(libc_files(&[]), &mut known);
        assert!(!own.is_empty());
        assert!(distinct(libcs, &mut known).is_empty());
    }
}
