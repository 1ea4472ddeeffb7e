//! Resolving a path inside another process's root (`/proc/<pid>/root`), as that process would.
//!
//! A daemon in a container (the DaemonSet: host PID namespace, its own image as `/`) must not
//! follow symlinks through its own filesystem: `/etc/localtime` of the image is not the host's,
//! and neither is its libc. Through `/proc/<pid>/root` the kernel walks the process's root, but
//! an *absolute* symlink met on the way would be resolved against the daemon's root again, so
//! the walk is done here, one component at a time, with absolute targets restarted at the
//! process's root.

use std::{
    cell::RefCell,
    collections::HashMap,
    io,
    os::{
        fd::{AsRawFd as _, OwnedFd},
        unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    },
    path::Path,
    time::{Duration, Instant},
};

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

/// Each process's root directory, held open while it is in use: a read is often resolved after
/// its process exited (or became a zombie, whose `/proc/<pid>/root` is gone), and the held fd
/// still leads to the root it had. Processes whose root is the daemon's hold nothing.
pub struct Roots {
    own: Option<(u64, u64)>,
    ttl: Duration,
    max: usize,
    held: RefCell<HashMap<u32, (Instant, Option<OwnedFd>)>>,
}

impl Roots {
    /// At most `max` processes held (the map is cleared when full); each looked at again after `ttl`.
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self { own: identity(Path::new("/")), ttl, max, held: RefCell::new(HashMap::new()) }
    }

    /// The prefix through which `pid`'s root is walked (`/proc/self/fd/N`), or `None` when it is
    /// the daemon's own root (or unknown: then the daemon's view is the best there is).
    pub fn prefix(&self, pid: u32) -> Option<String> {
        self.prefix_at(pid, Instant::now())
    }

    /// [`Self::prefix`] at `now`, for a caller that has just read the clock itself.
    pub fn prefix_at(&self, pid: u32, now: Instant) -> Option<String> {
        let mut held = self.held.borrow_mut();
        let fresh = held.get(&pid).is_some_and(|(at, _)| now.duration_since(*at) < self.ttl);
        if !fresh {
            match self.open(pid) {
                Some(root) => {
                    if held.len() >= self.max {
                        held.clear();
                    }
                    held.insert(pid, (now, root));
                }
                // Gone: what was held (if anything) stays the answer; if nothing was, the
                // daemon's root, remembered too, so a gone process's many records (a storm of
                // short processes) do not each try `/proc/<pid>/root` again.
                None => match held.get_mut(&pid) {
                    Some(e) => e.0 = now,
                    None => {
                        if held.len() >= self.max {
                            held.clear();
                        }
                        held.insert(pid, (now, None));
                    }
                },
            }
        }
        let fd = held.get(&pid)?.1.as_ref()?;
        Some(format!("/proc/self/fd/{}", fd.as_raw_fd()))
    }

    /// `Some(None)`: the daemon's root; `Some(Some(fd))`: another, held; `None`: unreachable.
    fn open(&self, pid: u32) -> Option<Option<OwnedFd>> {
        let path = proc_root(pid);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(&path)
            .ok()?;
        let md = f.metadata().ok()?;
        Some(((Some((md.dev(), md.ino()))) != self.own).then(|| f.into()))
    }
}

fn identity(p: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
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
