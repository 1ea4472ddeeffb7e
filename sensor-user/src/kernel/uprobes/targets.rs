//! What is probed: the libc files of this host (and of each session's root, when the daemon's
//! root is not theirs) and the file offset of `getenv` in each; with the
//! content scan on, OpenSSL's `SSL_write` and `SSL_write_ex` in the system's libssl and in
//! executables that carry OpenSSL inside and export them (official Node.js builds).

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

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

/// OpenSSL's libssl where distributions put it.
pub(super) const LIBSSL_CANDIDATES: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/libssl.so.3",
    "/usr/lib/x86_64-linux-gnu/libssl.so.1.1",
    "/usr/lib64/libssl.so.3",
    "/usr/lib64/libssl.so.1.1",
    "/usr/lib/aarch64-linux-gnu/libssl.so.3",
    "/usr/lib/libssl.so.3",
];
/// Executables that may carry OpenSSL inside (official and NodeSource Node.js builds export
/// `SSL_write`); a file without the symbols gets no probe. A session's own executables are
/// looked at too.
pub(super) const TLS_EXE_CANDIDATES: &[&str] = &["/usr/bin/node", "/usr/local/bin/node"];

/// A probed function: its entry program, and its return program if it has one.
#[derive(Debug)]
pub(super) struct Probe {
    pub func: &'static str,
    pub program: &'static str,
    pub ret: Option<&'static str>,
}

/// The entry only: one trap per call, and one perf event that every child of a session inherits
/// (each inherited event costs a fork and exit about 15 µs: the kernel walks its list of trace
/// events for every copy). `secure_getenv` has no probe of its own: glibc's and musl's call
/// `getenv`, whose probe reports them (a second inherited event made a session's fork+exit
/// +95-105 µs instead of +65-70 µs).
pub(super) const LIBC_PROBES: &[Probe] = &[Probe { func: "getenv", program: "env_enter_getenv", ret: None }];
/// Both returns share `tls_exit_ssl_write`: the copy is made there, of what OpenSSL took.
pub(super) const TLS_PROBES: &[Probe] = &[
    Probe { func: "SSL_write", program: "tls_enter_ssl_write", ret: Some("tls_exit_ssl_write") },
    Probe { func: "SSL_write_ex", program: "tls_enter_ssl_write_ex", ret: Some("tls_exit_ssl_write") },
];

/// What a file is probed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Libc,
    Tls,
}

impl Kind {
    pub fn probes(self) -> &'static [Probe] {
        match self {
            Self::Libc => LIBC_PROBES,
            Self::Tls => TLS_PROBES,
        }
    }
}

/// A file's offset of each of `probes` it defines.
///
/// Only what the lookup needs is read (headers, the dynamic symbol table and its strings, each
/// in one read): a Node.js executable is about 100 MB, and reading it whole took the start-up
/// about 60 ms. Not mapped: a file in a session's own tree could be truncated under the
/// mapping, which would kill the daemon (SIGBUS); a read only sees it shorter.
pub(super) fn offsets(path: &Path, probes: &'static [Probe]) -> anyhow::Result<Vec<(&'static Probe, u64)>> {
    use object::{
        elf::{FileHeader64, SHT_DYNSYM},
        read::elf::{FileHeader, ProgramHeader, SectionHeader, Sym},
        Endianness, ReadCache,
    };
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let data = ReadCache::new(f);
    let elf = |e: object::Error| anyhow::anyhow!("parsing {} as ELF: {e}", path.display());
    let header = FileHeader64::<Endianness>::parse(&data).map_err(elf)?;
    let endian = header.endian().map_err(elf)?;
    let sections = header.sections(endian, &data).map_err(elf)?;
    let Some(dynsym) = sections.iter().find(|s| s.sh_type(endian) == SHT_DYNSYM) else {
        return Ok(Vec::new());
    };
    let syms: &[object::elf::Sym64<Endianness>] = dynsym.data_as_array(endian, &data).map_err(elf)?;
    let strings = sections
        .section(object::SectionIndex(dynsym.sh_link(endian) as usize))
        .and_then(|s| s.data(endian, &data))
        .map_err(elf)?;
    let segments = header.program_headers(endian, &data).map_err(elf)?;
    let mut out = Vec::new();
    for probe in probes {
        let func = probe.func.as_bytes();
        let named = |sym: &&object::elf::Sym64<Endianness>| {
            let at = sym.st_name(endian) as usize;
            strings.get(at..).is_some_and(|s| s.starts_with(func) && s.get(func.len()) == Some(&0))
        };
        let Some(sym) = syms.iter().filter(|s| s.st_shndx(endian) != object::elf::SHN_UNDEF).find(named)
        else {
            continue;
        };
        let addr = sym.st_value(endian);
        // uprobes take a file offset: translate the virtual address through its segment.
        let off = segments.iter().filter(|p| p.p_type(endian) == object::elf::PT_LOAD).find_map(|p| {
            let (vaddr, foff, fsize) = (p.p_vaddr(endian), p.p_offset(endian), p.p_filesz(endian));
            (addr >= vaddr && addr < vaddr + fsize).then(|| addr - vaddr + foff)
        });
        if let Some(off) = off {
            out.push((probe, off));
        }
    }
    Ok(out)
}

/// A file to probe: the path the kernel is given (through `/proc/<pid>/root` for a process
/// whose root is not the daemon's), its identity, so one file gets one probe, and what for.
#[derive(Debug, Clone)]
pub(super) struct Libc {
    pub path: PathBuf,
    pub key: (u64, u64),
    pub kind: Kind,
}

/// The files among `paths` (as a process sees them) inside `root` (`""`: the daemon's own
/// root; `/proc/<pid>/root`: that process's), resolved there.
pub(super) fn libcs_in<'a>(root: &str, paths: impl IntoIterator<Item = &'a str>) -> Vec<Libc> {
    files_in(root, paths, Kind::Libc)
}

fn files_in<'a>(root: &str, paths: impl IntoIterator<Item = &'a str>, kind: Kind) -> Vec<Libc> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for p in paths {
        let Ok(inside) = rooted::canonicalize_in(root, p, &rooted::RealLinks) else { continue };
        let path = PathBuf::from(format!("{root}{inside}"));
        match std::fs::metadata(&path) {
            Ok(md) if md.is_file() => out.push(Libc { path, key: (md.dev(), md.ino()), kind }),
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

/// The TLS libraries a process calls `SSL_write` in now: the libssl files its maps show, and
/// its own executable (OpenSSL inside). (One it opens later is reported by its open.)
pub(super) fn tls_files_of(pid: u32) -> Vec<Libc> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let mapped = mapped_files(&maps, is_libssl_name);
    let root = rooted::proc_root(pid);
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let exe = exe.as_ref().and_then(|p| p.to_str()).map(|p| p.trim_end_matches(" (deleted)").to_string());
    let inside = mapped.iter().map(String::as_str).chain(exe.as_deref());
    let mut out = files_in(&root, inside, Kind::Tls);
    // As the daemon sees them too: /proc/<pid>/exe and maps give paths in the reader's view,
    // which is where the file is when the process's root is not below the daemon's (a tree
    // switched to, or pivoted into, after the daemon started).
    out.extend(files_in("", mapped.iter().map(String::as_str).chain(exe.as_deref()), Kind::Tls));
    // And the executable through `/proc/<pid>/exe` itself, which the kernel follows to the file
    // whatever either view names it (a process chrooted below a path the daemon does not see);
    // the same file found above is one file (by device and inode) to the definer.
    out.extend(proc_exe(pid));
    out
}

/// `pid`'s executable as `/proc/<pid>/exe`, identified by the file the link leads to.
fn proc_exe(pid: u32) -> Option<Libc> {
    use std::os::unix::fs::MetadataExt;
    let path = PathBuf::from(format!("/proc/{pid}/exe"));
    let md = std::fs::metadata(&path).ok().filter(|md| md.is_file())?;
    Some(Libc { path, key: (md.dev(), md.ino()), kind: Kind::Tls })
}

/// A TLS library `pid` opened, `path` as it sees it: inside its root, and in the daemon's view.
pub(super) fn tls_files_at(pid: u32, path: &str) -> Vec<Libc> {
    let mut out = files_in(&rooted::proc_root(pid), [path], Kind::Tls);
    out.extend(files_in("", [path], Kind::Tls));
    out
}

/// Whether a path names a TLS library worth probing (libssl).
pub(super) fn is_tls_library(path: &str) -> bool {
    is_libssl_name(path.rsplit('/').next().unwrap_or(""))
}

/// The TLS libraries at start-up: libssl and the Node.js executables, in the daemon's root and
/// pid 1's.
pub(super) fn tls_files() -> Vec<Libc> {
    let wanted = || LIBSSL_CANDIDATES.iter().chain(TLS_EXE_CANDIDATES).copied();
    let mut all = files_in("", wanted(), Kind::Tls);
    all.extend(files_in(&rooted::proc_root(1), wanted(), Kind::Tls));
    distinct(all, &mut HashSet::new())
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
    mapped_files(maps, is_libc_name)
}

/// Paths of the files in a `/proc/<pid>/maps` text whose name `wanted` accepts, each once.
fn mapped_files(maps: &str, wanted: fn(&str) -> bool) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in maps.lines() {
        // address perms offset dev inode path: the path is the sixth field (it may hold spaces).
        let Some(path) = line.splitn(6, char::is_whitespace).nth(5).map(str::trim_start) else { continue };
        let name = path.rsplit('/').next().unwrap_or("");
        if path.starts_with('/') && wanted(name) && !out.iter().any(|p| p == path) {
            out.push(path.to_string());
        }
    }
    out
}

/// OpenSSL's `libssl.so.3`, `libssl.so.1.1`, `libssl.so`.
fn is_libssl_name(name: &str) -> bool {
    name == "libssl.so" || name.starts_with("libssl.so.")
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
    fn libssl_paths_from_maps() {
        let maps = "\
7f1c2a400000-7f1c2a401000 r--p 00000000 fe:01 99                         /usr/lib/x86_64-linux-gnu/libcrypto.so.3
7f1c2a400000-7f1c2a401000 r--p 00000000 fe:01 98                         /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1c2a400000-7f1c2a401000 r-xp 00001000 fe:01 98                         /usr/lib/x86_64-linux-gnu/libssl.so.3
7f1c2a400000-7f1c2a401000 r--p 00000000 fe:01 97                         /opt/x/libssl3.so
";
        assert_eq!(mapped_files(maps, is_libssl_name), ["/usr/lib/x86_64-linux-gnu/libssl.so.3"]);
    }

    /// This host's libssl and its Node.js (a NodeSource build, OpenSSL inside) both export
    /// the two functions; libc does not.
    #[test]
    fn finds_ssl_write_in_libssl_and_node() {
        let files = tls_files();
        let with = |name: &str| {
            files.iter().filter(|f| f.path.to_string_lossy().contains(name)).any(|f| {
                let offs = offsets(&f.path, TLS_PROBES).unwrap();
                offs.len() == 2 && offs.iter().all(|(_, off)| *off > 0)
            })
        };
        assert!(with("libssl.so"), "{files:?}");
        assert!(with("node"), "{files:?}");
        let libc = &libc_files(&[])[0];
        assert!(offsets(&libc.path, TLS_PROBES).unwrap().is_empty());
    }

    #[test]
    fn one_probe_per_file() {
        let l = |p: &str, ino| Libc { path: p.into(), key: (1, ino), kind: Kind::Libc };
        let mut known = HashSet::new();
        let first =
            distinct(vec![l("/usr/lib/libc.so.6", 5), l("/proc/1/root/usr/lib/libc.so.6", 5)], &mut known);
        assert_eq!(first.len(), 1);
        assert!(distinct(vec![l("/proc/9/root/lib/libc.so.6", 5)], &mut known).is_empty());
        assert_eq!(distinct(vec![l("/proc/9/root/lib/libc.so.6", 6)], &mut known).len(), 1);
    }

    #[test]
    fn this_processes_executable_through_proc_exe() {
        use std::os::unix::fs::MetadataExt;
        let exe = proc_exe(std::process::id()).expect("own executable");
        let md = std::fs::metadata(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(exe.key, (md.dev(), md.ino()));
        assert_eq!(exe.path, PathBuf::from(format!("/proc/{}/exe", std::process::id())));
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
