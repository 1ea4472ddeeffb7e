//! What is probed: the libc files of this host and the file offsets of `getenv` and
//! `secure_getenv` in each.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use object::{Object, ObjectSegment, ObjectSymbol};

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

/// Distinct libc files on this host (by device and inode), plus configured ones.
pub fn libc_files(extra: &[String]) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for p in LIBC_CANDIDATES.iter().map(|s| s.to_string()).chain(extra.iter().cloned()) {
        let Ok(real) = std::fs::canonicalize(&p) else { continue };
        let Ok(md) = std::fs::metadata(&real) else { continue };
        if seen.insert((md.dev(), md.ino())) {
            out.push(real);
        }
    }
    out
}
