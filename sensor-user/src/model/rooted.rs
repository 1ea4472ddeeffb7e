//! Resolving a path inside another process's root (`/proc/<pid>/root`), as that process would.
//!
//! A daemon in a container (the DaemonSet: host PID namespace, its own image as `/`) must not
//! follow symlinks through its own filesystem: `/etc/localtime` of the image is not the host's,
//! and neither is its libc. Through `/proc/<pid>/root` the kernel walks the process's root, but
//! an *absolute* symlink met on the way would be resolved against the daemon's root again, so
//! the walk is done here, one component at a time, with absolute targets restarted at the
//! process's root.

use std::io;

/// Symlinks the walk follows (as the kernel's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// What the walk needs of a filesystem, so tests can give a fake one.
pub trait Links {
    /// `Ok(Some(target))` for a symlink, `Ok(None)` for anything else that exists, an error
    /// when `path` does not exist.
    fn read_link(&self, path: &str) -> io::Result<Option<String>>;
}

/// The real filesystem.
pub struct RealLinks;

impl Links for RealLinks {
    fn read_link(&self, path: &str) -> io::Result<Option<String>> {
        if !std::fs::symlink_metadata(path)?.file_type().is_symlink() {
            return Ok(None);
        }
        Ok(Some(std::fs::read_link(path)?.to_string_lossy().into_owned()))
    }
}

/// The directory through which the daemon sees `pid`'s root.
pub fn proc_root(pid: u32) -> String {
    format!("/proc/{pid}/root")
}

/// `path` canonicalized inside `root` (a prefix such as `/proc/42/root`; `""` is the daemon's
/// own root), like realpath(3) run by a process whose root that is: every component must exist,
/// symlinks are followed, absolute targets start again at `root`, `..` never climbs above it.
/// The answer is the path as seen from inside `root`.
pub fn canonicalize_in(root: &str, path: &str, fs: &dyn Links) -> io::Result<String> {
    let mut todo: Vec<String> = path.split('/').rev().map(String::from).collect();
    let mut done: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(seg) = todo.pop() {
        match seg.as_str() {
            "" | "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => done.push(seg),
        }
        let here = format!("{root}/{}", done.join("/"));
        let Some(target) = fs.read_link(&here)? else { continue };
        links += 1;
        if links > MAX_LINKS {
            return Err(io::Error::from_raw_os_error(libc::ELOOP));
        }
        done.pop();
        if target.starts_with('/') {
            done.clear();
        }
        todo.extend(target.split('/').rev().map(String::from));
    }
    Ok(format!("/{}", done.join("/")))
}

/// Whether the daemon's `/` is the root of the host's init (pid 1 in its PID namespace): then
/// its own view of paths is the processes' view, and the plain realpath(3) is right. In a
/// container with the host's PID namespace it is not. Unknown (no access to pid 1): shared.
pub fn shares_init_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    let id = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    match (id("/"), id(&proc_root(1))) {
        (Ok(own), Ok(init)) => own == init,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A fake filesystem: `links` maps a full path to a symlink target; `files` lists what
    /// else exists (full paths, under whatever root prefix the test uses).
    struct Fake {
        links: HashMap<&'static str, &'static str>,
        files: Vec<&'static str>,
    }

    impl Links for Fake {
        fn read_link(&self, path: &str) -> io::Result<Option<String>> {
            if let Some(t) = self.links.get(path) {
                return Ok(Some(t.to_string()));
            }
            if self.files.contains(&path) {
                return Ok(None);
            }
            Err(io::Error::from(io::ErrorKind::NotFound))
        }
    }

    /// The host under /proc/7/root (as the daemon in a container sees it), and the image's own
    /// different files at /.
    fn fake() -> Fake {
        Fake {
            links: HashMap::from([
                ("/proc/7/root/etc/localtime", "/usr/share/zoneinfo/Europe/Paris"),
                ("/proc/7/root/lib", "usr/lib"),
                ("/proc/7/root/etc/alt", "../usr/lib/../lib/x86_64-linux-gnu"),
                ("/proc/7/root/loop", "/loop"),
                ("/etc/localtime", "/usr/share/zoneinfo/Etc/UTC"),
            ]),
            files: vec![
                "/proc/7/root/etc",
                "/proc/7/root/usr",
                "/proc/7/root/usr/share",
                "/proc/7/root/usr/share/zoneinfo",
                "/proc/7/root/usr/share/zoneinfo/Europe",
                "/proc/7/root/usr/share/zoneinfo/Europe/Paris",
                "/proc/7/root/usr/lib",
                "/proc/7/root/usr/lib/x86_64-linux-gnu",
                "/proc/7/root/usr/lib/x86_64-linux-gnu/libc.so.6",
                "/etc",
                "/usr",
                "/usr/share",
                "/usr/share/zoneinfo",
                "/usr/share/zoneinfo/Etc",
                "/usr/share/zoneinfo/Etc/UTC",
            ],
        }
    }

    #[test]
    fn absolute_links_stay_in_the_processes_root() {
        let fs = fake();
        // Through the process's root, the host's zone, not the image's.
        assert_eq!(
            canonicalize_in("/proc/7/root", "/etc/localtime", &fs).unwrap(),
            "/usr/share/zoneinfo/Europe/Paris"
        );
        assert_eq!(canonicalize_in("", "/etc/localtime", &fs).unwrap(), "/usr/share/zoneinfo/Etc/UTC");
    }

    #[test]
    fn relative_links_dots_and_the_top() {
        let fs = fake();
        let root = "/proc/7/root";
        assert_eq!(
            canonicalize_in(root, "/lib/x86_64-linux-gnu/libc.so.6", &fs).unwrap(),
            "/usr/lib/x86_64-linux-gnu/libc.so.6"
        );
        assert_eq!(
            canonicalize_in(root, "/etc/alt/libc.so.6", &fs).unwrap(),
            "/usr/lib/x86_64-linux-gnu/libc.so.6"
        );
        // `..` at the top stays there: a process cannot climb out of its root.
        assert_eq!(
            canonicalize_in(root, "/../../etc/./localtime", &fs).unwrap(),
            "/usr/share/zoneinfo/Europe/Paris"
        );
        assert_eq!(canonicalize_in(root, "/", &fs).unwrap(), "/");
    }

    #[test]
    fn missing_components_and_loops_are_errors() {
        let fs = fake();
        assert!(canonicalize_in("/proc/7/root", "/etc/nope", &fs).is_err());
        let e = canonicalize_in("/proc/7/root", "/loop/x", &fs).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
    }

    #[test]
    fn the_real_filesystem_agrees_with_realpath() {
        for p in ["/proc/self/root/etc/../etc/hostname", "/etc/localtime", "/usr/bin/env"] {
            let want = std::fs::canonicalize(p).ok().map(|p| p.to_string_lossy().into_owned());
            assert_eq!(canonicalize_in("", p, &RealLinks).ok(), want, "{p}");
        }
    }
}
