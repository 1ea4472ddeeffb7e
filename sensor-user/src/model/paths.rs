//! Turning the path a process passed into the absolute paths it names, as the kernel would:
//! relative paths against the dirfd or cwd, `.`/`..`, repeated slashes, symlinked directories,
//! and `/proc/self`, `/proc/<pid>/root`, `/proc/<pid>/cwd` prefixes seen from the caller.

use std::{
    borrow::Cow,
    cell::RefCell,
    collections::HashMap,
    io,
    path::Path,
    time::{Duration, Instant},
};

/// The views of one path that category patterns are matched against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Absolute, lexically normalized, with `/proc` magic rewritten for the caller.
    pub absolute: String,
    /// Directories resolved through symlinks, final component kept (what `lstat` would see).
    pub resolved: String,
    /// Where the final component leads, when it is a symlink to somewhere else.
    pub target: Option<String>,
}

impl Resolution {
    /// Every distinct view to match, with `/proc/<pid>/net` seen as `/proc/net`.
    pub fn match_views(&self) -> Vec<Cow<'_, str>> {
        let mut views: Vec<Cow<'_, str>> = vec![Cow::Borrowed(&self.absolute), Cow::Borrowed(&self.resolved)];
        views.extend(self.target.as_deref().map(Cow::Borrowed));
        let extra: Vec<Cow<'_, str>> =
            views.iter().filter_map(|v| proc_net_alias(v)).map(Cow::Owned).collect();
        views.extend(extra);
        views.sort();
        views.dedup();
        views
    }
}

/// What the resolver needs to know of the reading process.
pub struct Caller<'a> {
    pub pid: u32,
    pub tid: u32,
    /// Working directory of `pid`, when known.
    pub cwd: Option<&'a str>,
    /// Directory a dirfd stands for, when known.
    pub dirfd_path: Option<&'a str>,
    /// What fd `fd` of process `pid` stands for, when known: `/proc/<pid>/fd/N/...` and
    /// `/dev/fd/N/...` go through it (the reader's fd, not the daemon's).
    pub fds: Option<&'a dyn Fn(u32, i32) -> Option<String>>,
}

/// Whether a syscall's path is resolved against its dirfd (relative, or empty with
/// `AT_EMPTY_PATH`), against the cwd, or is already absolute.
pub fn resolve(raw: &str, caller: &Caller<'_>, fs: &dyn Canonicalize) -> Option<Resolution> {
    let joined = if raw.starts_with('/') {
        raw.to_string()
    } else {
        let base = caller.dirfd_path.or(caller.cwd)?;
        if raw.is_empty() {
            base.to_string()
        } else {
            format!("{}/{raw}", base.trim_end_matches('/'))
        }
    };
    // Symlinks are followed as the caller sees them (its root may not be the daemon's).
    let fs = &As { fs, pid: caller.pid };
    let mut joined = joined;
    let mut absolute = proc_magic(&normalize(&joined), caller);
    // An fd's magic link, followed through the reader's fd (a few levels at most: the link
    // of an fd is an absolute path already).
    for _ in 0..4 {
        let Some(through) = through_fd(&absolute, caller) else { break };
        joined = through;
        absolute = proc_magic(&normalize(&joined), caller);
    }
    if absolute == "/proc" || absolute.starts_with("/proc/") {
        // /proc's links point at whoever reads them: resolving them as the daemon would be wrong.
        return Some(Resolution { resolved: absolute.clone(), absolute, target: None });
    }
    // Walk the path as given, unless /proc magic was rewritten (the daemon's /proc/self is not
    // the caller's).
    let walk = if normalize(&joined).starts_with("/proc/") { absolute.as_str() } else { joined.as_str() };
    let resolved = resolve_dirs(walk, &absolute, fs);
    let target = fs.canonicalize(&resolved).ok().filter(|t| *t != resolved);
    Some(Resolution { absolute, resolved, target })
}

/// Canonicalization of the final path, so tests can give a fake filesystem.
pub trait Canonicalize {
    fn canonicalize(&self, path: &str) -> io::Result<String>;
    /// As process `pid` would resolve it; the daemon's view unless the filesystem knows better.
    fn canonicalize_as(&self, _pid: u32, path: &str) -> io::Result<String> {
        self.canonicalize(path)
    }
}

/// A filesystem seen as one process sees it.
struct As<'a> {
    fs: &'a dyn Canonicalize,
    pid: u32,
}

impl Canonicalize for As<'_> {
    fn canonicalize(&self, path: &str) -> io::Result<String> {
        self.fs.canonicalize_as(self.pid, path)
    }
}

/// The real filesystem, seen from the daemon.
pub struct HostFs;

impl Canonicalize for HostFs {
    fn canonicalize(&self, path: &str) -> io::Result<String> {
        std::fs::canonicalize(Path::new(path)).map(|p| p.to_string_lossy().into_owned())
    }
}

/// The real filesystem with recent answers remembered: realpath(3) costs one readlink per
/// component, which was nearly half the daemon's time for a process re-reading the same file
/// (`/etc/localtime` at 100,000 reads/s). Resolution already happens after the syscall, so an
/// answer up to `ttl` old changes what a symlink swapped meanwhile is reported as, not whether the
/// read is seen. Bounded: the map is cleared when full.
///
/// When the daemon's root is not the processes' (a container with the host's PID namespace),
/// paths are resolved inside each process's `/proc/<pid>/root` instead (see
/// [`super::rooted`]), remembered per process.
pub struct CachedFs {
    ttl: Duration,
    max: usize,
    per_process: bool,
    roots: super::rooted::Roots,
    seen: RefCell<Seen>,
}

/// Answers by pid (0 when the answer is the same for every process), then path: two levels, so
/// a lookup borrows the path instead of building an owned key (three lookups per watched read).
#[derive(Default)]
struct Seen {
    by_pid: HashMap<u32, HashMap<String, (Instant, Option<String>)>>,
    len: usize,
}

impl Seen {
    fn get(&self, pid: u32, path: &str) -> Option<&(Instant, Option<String>)> {
        self.by_pid.get(&pid)?.get(path)
    }

    fn insert(&mut self, pid: u32, path: &str, entry: (Instant, Option<String>)) {
        if self.by_pid.entry(pid).or_default().insert(path.to_string(), entry).is_none() {
            self.len += 1;
        }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn clear(&mut self) {
        self.by_pid.clear();
        self.len = 0;
    }
}

impl CachedFs {
    pub fn new(ttl: Duration, max: usize) -> Self {
        let roots = super::rooted::Roots::new(ttl, max.min(256));
        Self { ttl, max, per_process: false, roots, seen: RefCell::new(Seen::default()) }
    }

    /// Resolves through each process's root (`true`) or the daemon's own (`false`, the default).
    pub fn per_process(mut self, yes: bool) -> Self {
        self.per_process = yes;
        self
    }
}

impl Canonicalize for CachedFs {
    fn canonicalize(&self, path: &str) -> io::Result<String> {
        self.canonicalize_as(0, path)
    }

    fn canonicalize_as(&self, pid: u32, path: &str) -> io::Result<String> {
        // Looked up by (pid, path) only when the answer depends on the pid: its root is not ours.
        let now = Instant::now();
        let root = if self.per_process && pid != 0 { self.roots.prefix_at(pid, now) } else { None };
        let mut seen = self.seen.borrow_mut();
        let key = if root.is_some() { pid } else { 0 };
        let answer = match seen.get(key, path) {
            Some((at, answer)) if now.duration_since(*at) < self.ttl => answer.clone(),
            _ => {
                let answer = if let Some(root) = &root {
                    super::rooted::canonicalize_in(root, path, &super::rooted::RealLinks).ok()
                } else {
                    HostFs.canonicalize(path).ok()
                };
                if seen.len() >= self.max {
                    seen.clear();
                }
                seen.insert(key, path, (now, answer.clone()));
                answer
            }
        };
        answer.ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}

/// Resolves the directory part through symlinks, the way the kernel walks `joined` (so `..`
/// after a symlinked directory goes to the target's parent); keeps the final component.
fn resolve_dirs(joined: &str, absolute: &str, fs: &dyn Canonicalize) -> String {
    let trimmed = joined.trim_end_matches('/');
    let (dir, last) = match trimmed.rsplit_once('/') {
        Some((d, l)) => (if d.is_empty() { "/" } else { d }, l),
        None => return absolute.to_string(),
    };
    if last == "." || last == ".." || last.is_empty() {
        return canonicalize_lenient(trimmed, fs).unwrap_or_else(|| absolute.to_string());
    }
    match canonicalize_lenient(dir, fs) {
        Some(d) if d == "/" => format!("/{last}"),
        Some(d) => format!("{d}/{last}"),
        None => absolute.to_string(),
    }
}

/// Canonicalizes the longest existing prefix of `path` and appends the rest lexically. A
/// prefix of a missing path is missing too, so the longest existing one is found by bisection:
/// a path thousands of missing components deep costs a dozen resolutions, not one per component.
fn canonicalize_lenient(path: &str, fs: &dyn Canonicalize) -> Option<String> {
    if let Ok(c) = fs.canonicalize(path) {
        return Some(c);
    }
    let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let prefix = |keep: usize| format!("/{}", parts[..keep].join("/"));
    // Invariant: prefix(lo) resolves (or lo == 0, "/", tried last), prefix(hi) does not.
    let (mut lo, mut hi, mut base) = (0, parts.len(), None);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match fs.canonicalize(&prefix(mid)) {
            Ok(c) => (lo, base) = (mid, Some(c)),
            Err(_) => hi = mid,
        }
    }
    let base = match base {
        Some(b) => b,
        None => fs.canonicalize("/").ok()?,
    };
    Some(normalize(&format!("{base}/{}", parts[lo..].join("/"))))
}

/// Lexical normalization of an absolute path: no empty, `.` or `..` segments (never above `/`).
pub fn normalize(path: &str) -> String {
    // Most paths are normal already: copy them (this runs for every watched read).
    if is_normal(path) {
        return path.to_string();
    }
    let mut out = String::with_capacity(path.len() + 1);
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => out.truncate(out.rfind('/').unwrap_or(0)),
            s => {
                out.push('/');
                out.push_str(s);
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Absolute, with no empty, `.` or `..` segment and no trailing `/` (except `/` itself).
fn is_normal(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else { return false };
    rest.is_empty() || rest.split('/').all(|seg| !matches!(seg, "" | "." | ".."))
}

/// Rewrites `/proc/self`, `/proc/thread-self`, `/proc/<caller>/root` and `/proc/<caller>/cwd`
/// (and the task forms) into what they mean for the caller.
fn proc_magic(path: &str, r: &Caller<'_>) -> String {
    // /dev/fd is a symlink to /proc/self/fd.
    let dev_fd = path.strip_prefix("/dev/fd/").map(|rest| format!("/proc/self/fd/{rest}"));
    let path = dev_fd.as_deref().unwrap_or(path);
    let Some(rest) = path.strip_prefix("/proc/") else {
        return path.to_string();
    };
    let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let (pid, tail) = match first {
        "self" => (r.pid.to_string(), tail.to_string()),
        "thread-self" => (r.pid.to_string(), format!("task/{}/{tail}", r.tid)),
        p if p.bytes().all(|b| b.is_ascii_digit()) => (p.to_string(), tail.to_string()),
        _ => return path.to_string(),
    };
    // /proc/<pid>/task/<tid>/X is the same as /proc/<pid>/X for what we match.
    let tail = match tail.strip_prefix("task/").and_then(|t| t.split_once('/')) {
        Some((tid, t)) if tid.bytes().all(|b| b.is_ascii_digit()) => t.to_string(),
        _ => tail,
    };
    let (link, after) = tail.split_once('/').unwrap_or((tail.as_str(), ""));
    let own = pid == r.pid.to_string();
    match link {
        // Processes here share the daemon's root; containers are resolved lexically.
        "root" => normalize(&format!("/{after}")),
        "cwd" if own && r.cwd.is_some() => normalize(&format!("{}/{after}", r.cwd.unwrap_or("/"))),
        _ => normalize(&format!("/proc/{pid}/{tail}")),
    }
}

/// `/proc/<pid>/fd/N[/rest]` as the path fd N of `pid` stands for, then `rest`.
fn through_fd(absolute: &str, caller: &Caller<'_>) -> Option<String> {
    let rest = absolute.strip_prefix("/proc/")?;
    let (pid, rest) = rest.split_once("/fd/")?;
    let pid: u32 = pid.parse().ok()?;
    let (fd, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let base = (caller.fds?)(pid, fd.parse().ok()?)?;
    // Only a path: "socket:[…]", "pipe:[…]" and "anon_inode:…" name nothing to walk.
    if !base.starts_with('/') {
        return None;
    }
    Some(if tail.is_empty() { base } else { format!("{}/{tail}", base.trim_end_matches('/')) })
}

/// `/proc/<pid>/net/...` is `/proc/net/...` for matching purposes.
fn proc_net_alias(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/proc/")?;
    let (pid, tail) = rest.split_once('/')?;
    if !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    (tail == "net" || tail.starts_with("net/")).then(|| format!("/proc/{tail}"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// A fake filesystem: `links` maps a directory or file to its target; `exists` lists real
    /// entries. Canonicalization follows links component by component, like realpath(3).
    struct FakeFs {
        links: HashMap<&'static str, &'static str>,
        exists: Vec<&'static str>,
    }

    impl Canonicalize for FakeFs {
        fn canonicalize(&self, path: &str) -> io::Result<String> {
            let mut cur = String::from("/");
            let mut pending: Vec<String> =
                path.split('/').filter(|s| !s.is_empty()).rev().map(String::from).collect();
            let mut hops = 0;
            while let Some(seg) = pending.pop() {
                match seg.as_str() {
                    "." => continue,
                    ".." => {
                        cur = normalize(&format!("{cur}/.."));
                        continue;
                    }
                    _ => {}
                }
                let next = normalize(&format!("{cur}/{seg}"));
                if let Some(t) = self.links.get(next.as_str()) {
                    hops += 1;
                    if hops > 40 {
                        return Err(io::Error::other("loop"));
                    }
                    for s in t.split('/').filter(|s| !s.is_empty()).rev() {
                        pending.push(s.to_string());
                    }
                    if t.starts_with('/') {
                        cur = "/".into();
                    }
                    continue;
                }
                if !self.exists.contains(&next.as_str()) {
                    return Err(io::Error::from(io::ErrorKind::NotFound));
                }
                cur = next;
            }
            Ok(cur)
        }
    }

    fn fs() -> FakeFs {
        FakeFs {
            links: HashMap::from([
                ("/tmp/etclink", "/etc"),
                ("/etc/localtime", "/usr/share/zoneinfo/Etc/UTC"),
                ("/tmp/tzlink", "/etc/localtime"),
            ]),
            exists: vec![
                "/etc",
                "/etc/resolv.conf",
                "/tmp",
                "/usr",
                "/usr/share",
                "/usr/share/zoneinfo",
                "/usr/share/zoneinfo/Etc",
                "/usr/share/zoneinfo/Etc/UTC",
                "/home",
                "/home/a",
            ],
        }
    }

    fn caller(cwd: &'static str) -> Caller<'static> {
        Caller { pid: 42, tid: 43, cwd: Some(cwd), dirfd_path: None, fds: None }
    }

    fn res(raw: &str, r: &Caller<'_>) -> Resolution {
        resolve(raw, r, &fs()).expect("resolvable")
    }

    #[test]
    fn cached_answers_expire() {
        let dir = std::env::temp_dir().join(format!("aiwatch-cachedfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("a")).unwrap();
        std::fs::create_dir_all(dir.join("b")).unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(dir.join("a"), &link).unwrap();
        let fs = CachedFs::new(Duration::from_millis(50), 2);
        let l = link.to_str().unwrap();
        let a = fs.canonicalize(l).unwrap();
        assert!(a.ends_with("/a"), "{a}");
        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink(dir.join("b"), &link).unwrap();
        assert_eq!(fs.canonicalize(l).unwrap(), a, "within the ttl the answer is remembered");
        std::thread::sleep(Duration::from_millis(60));
        assert!(fs.canonicalize(l).unwrap().ends_with("/b"), "after the ttl it is asked again");
        assert!(fs.canonicalize(dir.join("missing").to_str().unwrap()).is_err());
        // Bounded: a third distinct path clears the map instead of growing it.
        let _ = fs.canonicalize(dir.to_str().unwrap());
        assert!(fs.seen.borrow().len() <= 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A process under another root (as host processes are to a daemon in a container): its
    /// symlinks resolve inside that root, absolute targets included.
    #[test]
    fn per_process_resolution_follows_the_callers_root() {
        if unsafe { libc::geteuid() } != 0 {
            return; // chroot needs root
        }
        let dir = std::env::temp_dir().join(format!("aiwatch-rootfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::create_dir_all(dir.join("zone")).unwrap();
        std::fs::write(dir.join("zone/Paris"), "").unwrap();
        std::os::unix::fs::symlink("/zone/Paris", dir.join("etc/localtime")).unwrap();
        let root = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
        // SAFETY: the child only calls async-signal-safe functions, then waits to be killed.
        let child = unsafe { libc::fork() };
        if child == 0 {
            unsafe {
                libc::chroot(root.as_ptr());
                loop {
                    libc::pause();
                }
            }
        }
        assert!(child > 0);
        let pid = child as u32;
        // Until the child has chrooted, its root is ours.
        let rooted = CachedFs::new(Duration::ZERO, 16).per_process(true);
        let mut got = None;
        for _ in 0..200 {
            got = rooted.canonicalize_as(pid, "/etc/localtime").ok();
            if got.as_deref() == Some("/zone/Paris") {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let c = Caller { pid, tid: pid, cwd: Some("/"), dirfd_path: None, fds: None };
        let r = resolve("/etc/localtime", &c, &rooted);
        let shared = CachedFs::new(Duration::ZERO, 16).canonicalize_as(pid, "/etc/localtime").ok();
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
        // Gone before its read was resolved: the root held since stands in.
        let after = rooted.canonicalize_as(pid, "/etc/localtime").ok();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(got.as_deref(), Some("/zone/Paris"));
        assert_eq!(r.unwrap().target.as_deref(), Some("/zone/Paris"));
        assert_ne!(shared.as_deref(), Some("/zone/Paris"), "the daemon's own view differs");
        assert_eq!(after.as_deref(), Some("/zone/Paris"));
        // A process sharing the daemon's root holds nothing and shares the cache.
        assert_eq!(rooted.roots.prefix(std::process::id()), None);
    }

    #[test]
    fn normalization() {
        assert_eq!(normalize("//etc///./localtime"), "/etc/localtime");
        assert_eq!(normalize("/a/b/../../../etc/hosts"), "/etc/hosts");
        assert_eq!(normalize("/"), "/");
        assert_eq!(normalize("/etc/"), "/etc");
        assert_eq!(normalize("/etc/."), "/etc");
        assert_eq!(normalize("/etc/.."), "/");
        assert_eq!(normalize("etc/hosts"), "/etc/hosts");
        assert_eq!(normalize("/.hidden/..x/x.."), "/.hidden/..x/x..");
        assert_eq!(normalize(""), "/");
        assert_eq!(normalize("/.."), "/");
    }

    /// The copy-through fast path gives what segment-by-segment normalization gives.
    #[test]
    fn normalization_fast_path_agrees_with_the_segment_walk() {
        fn walk(path: &str) -> String {
            let mut out: Vec<&str> = Vec::new();
            for seg in path.split('/') {
                match seg {
                    "" | "." => {}
                    ".." => drop(out.pop()),
                    s => out.push(s),
                }
            }
            format!("/{}", out.join("/"))
        }
        let segs = ["", ".", "..", "a", ".b", "..c", "d.", "e..", "/"];
        for a in segs {
            for b in segs {
                for c in segs {
                    for lead in ["", "/"] {
                        let p = format!("{lead}{a}/{b}/{c}");
                        assert_eq!(normalize(&p), walk(&p), "{p:?}");
                        let q = format!("{lead}{a}/{b}{c}");
                        assert_eq!(normalize(&q), walk(&q), "{q:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn relative_to_cwd_and_dirfd() {
        let r = res("localtime", &caller("/etc"));
        assert_eq!(r.absolute, "/etc/localtime");
        assert_eq!(r.resolved, "/etc/localtime");
        assert_eq!(r.target.as_deref(), Some("/usr/share/zoneinfo/Etc/UTC"));
        let r = res("../etc/./resolv.conf", &caller("/home/a"));
        assert_eq!(r.absolute, "/home/etc/resolv.conf");
        let r = res("../../etc/./resolv.conf", &caller("/home/a"));
        assert_eq!(r.resolved, "/etc/resolv.conf");
        let dirfd = Caller { dirfd_path: Some("/etc"), ..caller("/home/a") };
        assert_eq!(res("resolv.conf", &dirfd).resolved, "/etc/resolv.conf");
        assert_eq!(res("", &dirfd).resolved, "/etc");
        let unknown = Caller { pid: 1, tid: 1, cwd: None, dirfd_path: None, fds: None };
        assert!(resolve("x", &unknown, &fs()).is_none());
        assert_eq!(resolve("/etc/hosts", &unknown, &fs()).unwrap().absolute, "/etc/hosts");
    }

    #[test]
    fn repeated_slashes_and_dots() {
        let r = res("//etc///./localtime", &caller("/"));
        assert_eq!(r.absolute, "/etc/localtime");
        assert_eq!(r.resolved, "/etc/localtime");
    }

    #[test]
    fn symlinked_directories_and_files() {
        let r = res("/tmp/etclink/resolv.conf", &caller("/"));
        assert_eq!(r.absolute, "/tmp/etclink/resolv.conf");
        assert_eq!(r.resolved, "/etc/resolv.conf");
        let r = res("/tmp/tzlink", &caller("/"));
        assert_eq!(r.resolved, "/tmp/tzlink");
        assert_eq!(r.target.as_deref(), Some("/usr/share/zoneinfo/Etc/UTC"));
        // `..` after a symlinked directory walks from the target, as the kernel does.
        let r = res("/tmp/etclink/../etc/resolv.conf", &caller("/"));
        assert_eq!(r.resolved, "/etc/resolv.conf");
        // A missing file under a symlinked directory still resolves its directory.
        let r = res("/tmp/etclink/timezone", &caller("/"));
        assert_eq!(r.resolved, "/etc/timezone");
    }

    #[test]
    fn proc_prefixes() {
        let r = res("/proc/self/root/etc/localtime", &caller("/"));
        assert_eq!(r.absolute, "/etc/localtime");
        assert_eq!(r.target.as_deref(), Some("/usr/share/zoneinfo/Etc/UTC"));
        assert_eq!(res("/proc/42/root//etc/hosts", &caller("/")).absolute, "/etc/hosts");
        assert_eq!(res("/proc/self/cwd/localtime", &caller("/etc")).absolute, "/etc/localtime");
        assert_eq!(res("/proc/thread-self/root/etc/hosts", &caller("/")).absolute, "/etc/hosts");
        let r = res("/proc/self/net/route", &caller("/"));
        assert_eq!(r.absolute, "/proc/42/net/route");
        assert!(r.match_views().iter().any(|v| v == "/proc/net/route"));
        let r = res("/proc/self/task/43/net/tcp", &caller("/"));
        assert!(r.match_views().iter().any(|v| v == "/proc/net/tcp"), "{r:?}");
        assert_eq!(res("/proc/self/environ", &caller("/")).absolute, "/proc/42/environ");
        let r = res("net/route", &Caller { dirfd_path: Some("/proc"), ..caller("/") });
        assert!(r.match_views().iter().any(|v| v == "/proc/net/route"));
    }

    #[test]
    fn fd_links_go_through_the_readers_fd() {
        let fds = |pid: u32, fd: i32| match (pid, fd) {
            (42, 5) => Some("/etc".to_string()),
            (42, 7) => Some("socket:[1234]".to_string()),
            (99, 3) => Some("/usr/share/zoneinfo".to_string()),
            _ => None,
        };
        let c = Caller { fds: Some(&fds), ..caller("/") };
        assert_eq!(res("/proc/self/fd/5/localtime", &c).absolute, "/etc/localtime");
        assert_eq!(
            res("/proc/self/fd/5/localtime", &c).target.as_deref(),
            Some("/usr/share/zoneinfo/Etc/UTC")
        );
        assert_eq!(res("/dev/fd/5/resolv.conf", &c).absolute, "/etc/resolv.conf");
        assert_eq!(res("/proc/thread-self/fd/5/hosts", &c).absolute, "/etc/hosts");
        assert_eq!(res("/proc/99/fd/3/Etc/UTC", &c).absolute, "/usr/share/zoneinfo/Etc/UTC");
        // The fd itself (a reopen), a socket, and an fd nobody knows stay as they are.
        assert_eq!(res("/proc/self/fd/5", &c).absolute, "/etc");
        assert_eq!(res("/proc/self/fd/7", &c).absolute, "/proc/42/fd/7");
        assert_eq!(res("/proc/self/fd/8/x", &c).absolute, "/proc/42/fd/8/x");
    }

    /// Counts the resolutions asked of the filesystem.
    struct Counting(FakeFs, std::cell::Cell<usize>);

    impl Canonicalize for Counting {
        fn canonicalize(&self, path: &str) -> io::Result<String> {
            self.1.set(self.1.get() + 1);
            self.0.canonicalize(path)
        }
    }

    #[test]
    fn a_deep_missing_path_costs_a_few_resolutions_not_one_per_component() {
        let fs = Counting(fs(), std::cell::Cell::new(0));
        let deep = format!("/etc/{}file", "missing/".repeat(2000));
        let r = resolve(&deep, &caller("/"), &fs).expect("resolved");
        assert_eq!(r.resolved, deep);
        assert!(fs.1.get() <= 30, "{} resolutions for 2,000 components", fs.1.get());
        // The existing part still goes through its symlinks.
        let r = resolve("/tmp/etclink/missing/a/b/c", &caller("/"), &fs).expect("resolved");
        assert_eq!(r.resolved, "/etc/missing/a/b/c");
    }
}
