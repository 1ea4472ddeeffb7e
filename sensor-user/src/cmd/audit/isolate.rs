//! Isolation of one run. A helper thread `unshare`s a network namespace that has only `lo`,
//! brings it up, binds the mock's listeners there (sockets stay in the namespace they were
//! created in) and keeps a handle on the namespace. The run's child then joins it (`setns`) in
//! `pre_exec`, takes private mount and UTS namespaces, lays the run's generated `/etc` files
//! over the host's (overlayfs), mounts a fresh `/home` and `/tmp` with the run's own home in it,
//! sets the host name, drops to the audit user and execs. When the run ends every process still
//! in its network namespace is killed by PID.

use std::{
    ffi::CString,
    io,
    net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context as _};

/// Who the assistant runs as.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Every group of the runs: the primary one and the user's supplementary groups (what a login
    /// would have; the reach check and the runs use the same).
    #[serde(skip)]
    pub groups: Vec<u32>,
    /// How it was chosen: `--user`, `SUDO_UID`, or the default for root.
    pub source: &'static str,
}

/// The user used when aiwatch runs as root without sudo and without `--user`.
pub const DEFAULT_USER: &str = "nobody";

/// The audit user: `--user NAME`, else the invoking user behind sudo, else `nobody`. Never root.
pub fn resolve_user(flag: Option<&str>) -> anyhow::Result<RunUser> {
    let from_name = |n: &str, source| -> anyhow::Result<RunUser> {
        let u = nix::unistd::User::from_name(n)
            .with_context(|| format!("looking up user {n:?}"))?
            .with_context(|| format!("no user named {n:?}"))?;
        Ok(RunUser { name: u.name, uid: u.uid.as_raw(), gid: u.gid.as_raw(), groups: Vec::new(), source })
    };
    let user = if let Some(n) = flag {
        match n.parse::<u32>() {
            Ok(uid) => {
                let u = nix::unistd::User::from_uid(uid.into())?
                    .with_context(|| format!("no user with uid {uid}"))?;
                RunUser { name: u.name, uid, gid: u.gid.as_raw(), groups: Vec::new(), source: "--user" }
            }
            Err(_) => from_name(n, "--user")?,
        }
    } else if let (Some(uid), Some(gid)) = (
        std::env::var("SUDO_UID").ok().and_then(|s| s.parse::<u32>().ok()),
        std::env::var("SUDO_GID").ok().and_then(|s| s.parse::<u32>().ok()),
    ) {
        let name = nix::unistd::User::from_uid(uid.into())
            .ok()
            .flatten()
            .map(|u| u.name)
            .or_else(|| std::env::var("SUDO_USER").ok())
            .unwrap_or_else(|| format!("uid{uid}"));
        RunUser { name, uid, gid, groups: Vec::new(), source: "SUDO_UID" }
    } else {
        from_name(DEFAULT_USER, "default (root without sudo)")?
    };
    let mut user = user;
    user.groups = groups_of(&user.name, user.gid);
    if user.uid == 0 {
        bail!("the audited assistant never runs as root: pass --user NAME (or run aiwatch through sudo as yourself)");
    }
    if user.name.contains('/') || user.name.is_empty() {
        bail!("user name {:?} cannot name a home directory", user.name);
    }
    Ok(user)
}

/// `gid` and the supplementary groups of `name` (just `gid` for a name the group database does
/// not know).
fn groups_of(name: &str, gid: u32) -> Vec<u32> {
    let mut groups = std::ffi::CString::new(name)
        .ok()
        .and_then(|n| nix::unistd::getgrouplist(&n, gid.into()).ok())
        .map(|g| g.into_iter().map(|g| g.as_raw()).collect::<Vec<u32>>())
        .unwrap_or_default();
    if !groups.contains(&gid) {
        groups.insert(0, gid);
    }
    groups
}

/// A run's network namespace (only `lo`, up) and the listeners bound in it.
#[derive(Debug)]
pub struct NetNs {
    fd: OwnedFd,
    pub inode: u64,
    /// (port, listener) for every port asked for, IPv4 and, where the kernel has it, IPv6.
    pub listeners: Vec<(u16, TcpListener)>,
}

impl NetNs {
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn cvt(r: libc::c_int, what: &str) -> io::Result<()> {
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
    }
    Ok(())
}

fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket and two ioctls on a zeroed, NUL-terminated ifreq.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        cvt(s, "socket")?;
        let s = OwnedFd::from_raw_fd(s);
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            ifr.ifr_name[i] = *b as libc::c_char;
        }
        cvt(libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr), "SIOCGIFFLAGS lo")?;
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        cvt(libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr), "SIOCSIFFLAGS lo")?;
    }
    Ok(())
}

/// A fresh network namespace with `lo` up and listeners on `ports` (127.0.0.1 and ::1).
pub fn netns_with_listeners(ports: &[u16]) -> anyhow::Result<NetNs> {
    let ports = ports.to_vec();
    std::thread::Builder::new()
        .name("audit-netns".into())
        .spawn(move || -> anyhow::Result<NetNs> {
            // SAFETY: unshare affects only this thread, which ends here.
            cvt(unsafe { libc::unshare(libc::CLONE_NEWNET) }, "unshare(CLONE_NEWNET)")
                .context("a network namespace for the run (needs root)")?;
            loopback_up().context("bringing up lo in the run's namespace")?;
            let mut listeners = Vec::new();
            for p in ports {
                let v4 = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
                    .with_context(|| format!("binding 127.0.0.1:{p} in the run's namespace"))?;
                v4.set_nonblocking(true)?;
                listeners.push((p, v4));
                if let Ok(v6) = TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, p))) {
                    v6.set_nonblocking(true)?;
                    listeners.push((p, v6));
                }
            }
            let f = std::fs::File::open("/proc/thread-self/ns/net").context("opening the namespace")?;
            let inode = std::os::unix::fs::MetadataExt::ino(&f.metadata()?);
            Ok(NetNs { fd: f.into(), inode, listeners })
        })
        .context("spawning the namespace thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("the namespace thread panicked"))?
}

/// A directory or file of the host kept visible in the run (read-only) although under a path
/// the run gets fresh (`/home`, `/tmp`): the assistant's own installation.
#[derive(Debug, Clone)]
pub struct Keep {
    pub path: PathBuf,
    pub is_dir: bool,
}

/// Paths under `/home` or `/tmp` that the command needs: the command itself (as given and
/// resolved) and the PATH directories, each kept from its first component below the root.
pub fn keeps_for(paths: &[PathBuf]) -> Vec<Keep> {
    let mut out: Vec<Keep> = Vec::new();
    for p in paths {
        for root in ["/home", "/tmp"] {
            let Ok(rest) = p.strip_prefix(root) else { continue };
            let mut comps = rest.components();
            let Some(first) = comps.next() else { continue };
            // Under /home keep the user's top directory's child (~/.nvm, ~/.local); under /tmp
            // the top directory (or file).
            let keep = if root == "/home" {
                match comps.next() {
                    Some(second) => Path::new(root).join(first).join(second),
                    None => continue,
                }
            } else {
                Path::new(root).join(first)
            };
            let Ok(md) = std::fs::metadata(&keep) else { continue };
            if !out.iter().any(|k| keep.starts_with(&k.path)) {
                out.retain(|k| !k.path.starts_with(&keep));
                out.push(Keep { path: keep, is_dir: md.is_dir() });
            }
        }
    }
    out
}

/// Everything the child does between fork and exec, prepared beforehand (no allocation there).
#[derive(Debug)]
pub struct ChildSetup {
    netns_fd: RawFd,
    overlay_opts: CString,
    home_src: CString,
    home_dst: CString,
    workdir: CString,
    hostname: Vec<u8>,
    keeps: Vec<(CString, bool, Vec<CString>)>,
    uid: libc::uid_t,
    gid: libc::gid_t,
    groups: Vec<libc::gid_t>,
}

fn cstr(p: impl AsRef<std::ffi::OsStr>) -> anyhow::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_ref().as_bytes()).context("a path with a NUL byte")
}

impl ChildSetup {
    /// `etc_upper`/`etc_work`: the run's overlay directories over /etc; `home_src`: the run's home
    /// on the host, mounted at `home_dst` (`/home/<user>`); `workdir` inside it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ns: &NetNs,
        etc_upper: &Path,
        etc_work: &Path,
        home_src: &Path,
        home_dst: &Path,
        workdir: &Path,
        hostname: &str,
        keeps: &[Keep],
        user: &RunUser,
    ) -> anyhow::Result<Self> {
        let opts = format!("lowerdir=/etc,upperdir={},workdir={}", etc_upper.display(), etc_work.display());
        let keeps = keeps
            .iter()
            .map(|k| {
                // Directories to create (in order) before the mount point itself.
                let mut dirs = Vec::new();
                let mut acc = PathBuf::from("/");
                let parent = k.path.parent().unwrap_or(Path::new("/"));
                for c in parent.components().skip(1) {
                    acc.push(c);
                    if acc != Path::new("/home") && acc != Path::new("/tmp") {
                        dirs.push(cstr(&acc)?);
                    }
                }
                Ok((cstr(&k.path)?, k.is_dir, dirs))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Self {
            netns_fd: ns.fd(),
            overlay_opts: cstr(opts)?,
            home_src: cstr(home_src)?,
            home_dst: cstr(home_dst)?,
            workdir: cstr(workdir)?,
            hostname: hostname.as_bytes().to_vec(),
            keeps,
            uid: user.uid,
            gid: user.gid,
            groups: if user.groups.is_empty() { vec![user.gid] } else { user.groups.clone() },
        })
    }

    /// Runs in the forked child before exec: only system calls, on data prepared in `new`.
    ///
    /// # Safety
    /// Call only between fork and exec (it changes the calling process's namespaces, mounts and
    /// credentials).
    pub unsafe fn apply(&self) -> io::Result<()> {
        use libc::{c_char, mount, MS_BIND, MS_NODEV, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC, MS_REMOUNT};
        let null = std::ptr::null::<c_char>();
        ok(libc::setns(self.netns_fd, libc::CLONE_NEWNET))?;
        ok(libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS))?;
        ok(mount(null, c"/".as_ptr(), null, MS_REC | MS_PRIVATE, null.cast()))?;
        // The run's home and the kept paths, opened before /home and /tmp are covered.
        let home_fd = libc::open(self.home_src.as_ptr(), libc::O_PATH | libc::O_CLOEXEC | libc::O_DIRECTORY);
        ok(home_fd)?;
        let mut kept_fds = [-1 as RawFd; 16];
        for (i, (path, _, _)) in self.keeps.iter().take(16).enumerate() {
            kept_fds[i] = libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC);
        }
        ok(mount(
            c"overlay".as_ptr(),
            c"/etc".as_ptr(),
            c"overlay".as_ptr(),
            0,
            self.overlay_opts.as_ptr().cast(),
        ))?;
        ok(mount(
            c"tmpfs".as_ptr(),
            c"/home".as_ptr(),
            c"tmpfs".as_ptr(),
            MS_NOSUID | MS_NODEV,
            c"mode=0755,size=64m".as_ptr().cast(),
        ))?;
        ok(mount(
            c"tmpfs".as_ptr(),
            c"/tmp".as_ptr(),
            c"tmpfs".as_ptr(),
            MS_NOSUID | MS_NODEV,
            c"mode=1777,size=1g".as_ptr().cast(),
        ))?;
        ok(libc::mkdir(self.home_dst.as_ptr(), 0o755))?;
        let mut src = [0u8; 32];
        fd_path(home_fd, &mut src);
        ok(mount(src.as_ptr().cast(), self.home_dst.as_ptr(), null, MS_BIND, null.cast()))?;
        libc::close(home_fd);
        for (i, (path, is_dir, dirs)) in self.keeps.iter().take(16).enumerate() {
            if kept_fds[i] < 0 {
                continue;
            }
            for d in dirs {
                libc::mkdir(d.as_ptr(), 0o755);
            }
            if *is_dir {
                libc::mkdir(path.as_ptr(), 0o755);
            } else {
                let f = libc::open(path.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC, 0o644);
                if f >= 0 {
                    libc::close(f);
                }
            }
            let mut src = [0u8; 32];
            fd_path(kept_fds[i], &mut src);
            if mount(src.as_ptr().cast(), path.as_ptr(), null, MS_BIND | MS_REC, null.cast()) == 0 {
                mount(null, path.as_ptr(), null, MS_REMOUNT | MS_BIND | MS_RDONLY, null.cast());
            }
            libc::close(kept_fds[i]);
        }
        ok(libc::sethostname(self.hostname.as_ptr().cast(), self.hostname.len()))?;
        ok(libc::setgroups(self.groups.len(), self.groups.as_ptr()))?;
        ok(libc::setresgid(self.gid, self.gid, self.gid))?;
        ok(libc::setresuid(self.uid, self.uid, self.uid))?;
        ok(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
        ok(libc::chdir(self.workdir.as_ptr()))?;
        ok(libc::setpgid(0, 0))?;
        Ok(())
    }
}

/// A walk's answer from [`check_walks`]: None if every step passed, else (step, errno).
pub type WalkResult = Option<(usize, i32)>;

/// Checks each walk (see `reach`) in a forked child that first takes on a run's namespaces,
/// mounts and credentials (`setup.apply()`) and execs nothing: what the run user can reach in
/// a run, as the kernel answers it. The answers come back in order, 8 bytes each.
pub fn check_walks(setup: &ChildSetup, walks: &[Vec<super::reach::Step>]) -> anyhow::Result<Vec<WalkResult>> {
    use std::io::Read as _;
    const PASSED: u32 = u32::MAX;
    const SETUP_FAILED: u32 = u32::MAX - 1;
    let mut fds = [0 as RawFd; 2];
    // SAFETY: a plain pipe2 into a two-element array.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, "pipe2")?;
    // SAFETY: both descriptors were just created and are owned here only.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the child makes only system calls on data prepared before the fork, then _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error()).context("fork for the reach check");
    }
    if pid == 0 {
        let put = |step: u32, errno: i32| {
            let mut rec = [0u8; 8];
            rec[..4].copy_from_slice(&step.to_ne_bytes());
            rec[4..].copy_from_slice(&errno.to_ne_bytes());
            // SAFETY: writing a stack buffer to our pipe.
            unsafe { libc::write(w.as_raw_fd(), rec.as_ptr().cast(), rec.len()) };
        };
        // SAFETY: in the forked child, before any exec (there is none).
        let code = match unsafe { setup.apply() } {
            Err(e) => {
                put(SETUP_FAILED, e.raw_os_error().unwrap_or(0));
                1
            }
            Ok(()) => {
                for steps in walks {
                    match super::reach::first_block(steps, super::reach::faccess) {
                        None => put(PASSED, 0),
                        Some((i, errno)) => put(i as u32, errno),
                    }
                }
                0
            }
        };
        // SAFETY: ends the child without running the parent's destructors or atexit handlers.
        unsafe { libc::_exit(code) };
    }
    drop(w);
    let mut bytes = Vec::new();
    let read = std::fs::File::from(r).read_to_end(&mut bytes);
    let mut status = 0;
    // SAFETY: reaping our own child.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
    read.context("reading the reach check's answers")?;
    let records: Vec<(u32, i32)> = bytes
        .chunks_exact(8)
        .map(|c| {
            let step = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
            (step, i32::from_ne_bytes([c[4], c[5], c[6], c[7]]))
        })
        .collect();
    if let Some((SETUP_FAILED, errno)) = records.first() {
        return Err(io::Error::from_raw_os_error(*errno))
            .context("setting up a run's namespaces for the reach check");
    }
    if records.len() != walks.len() {
        bail!("the reach check's child ended early (wait status {status:#x})");
    }
    Ok(records.into_iter().map(|(step, errno)| (step != PASSED).then_some((step as usize, errno))).collect())
}

/// The errno of a failed call, without allocating (the child between fork and exec).
fn ok(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `/proc/self/fd/<fd>` into `buf`, NUL-terminated, without allocating.
fn fd_path(fd: RawFd, buf: &mut [u8; 32]) {
    let prefix = b"/proc/self/fd/";
    buf[..prefix.len()].copy_from_slice(prefix);
    let mut digits = [0u8; 12];
    let (mut n, mut len) = (fd.max(0) as u32, 0);
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        buf[prefix.len() + i] = digits[len - 1 - i];
    }
    buf[prefix.len() + len] = 0;
}

/// PIDs of every process in the network namespace with `inode`.
pub fn pids_in_netns(inode: u64) -> Vec<u32> {
    let want = format!("net:[{inode}]");
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/ns/net")).is_ok_and(|l| l.to_string_lossy() == want)
        })
        .collect()
}

/// SIGKILLs every process of the run (by PID, found through its network namespace) until none
/// is left; returns the PIDs killed.
pub fn kill_run(inode: u64) -> Vec<u32> {
    let mut killed = Vec::new();
    for _ in 0..100 {
        let pids = pids_in_netns(inode);
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            // SAFETY: signalling a PID found in the run's own namespace.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            if !killed.contains(&pid) {
                killed.push(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    killed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fd_paths() {
        let mut b = [0u8; 32];
        fd_path(7, &mut b);
        assert_eq!(&b[..17], b"/proc/self/fd/7\0\0");
        fd_path(1234, &mut b);
        assert_eq!(std::ffi::CStr::from_bytes_until_nul(&b).unwrap().to_str().unwrap(), "/proc/self/fd/1234");
    }

    #[test]
    fn keeps_cover_the_install_not_the_home() {
        let dir = std::env::temp_dir().join(format!("aiw-keep-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        let k = keeps_for(&[dir.join("bin/tool"), dir.join("bin"), PathBuf::from("/usr/bin")]);
        assert_eq!(k.len(), 1);
        assert_eq!(k[0].path, dir);
        assert!(k[0].is_dir);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn root_is_refused() {
        let e = resolve_user(Some("root")).unwrap_err().to_string();
        assert!(e.contains("never runs as root"), "{e}");
        assert!(resolve_user(Some("no-such-user-aiw")).is_err());
    }
}
