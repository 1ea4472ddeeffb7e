//! The daemon's table of tracked processes and sessions.
//!
//! The kernel decides *which* processes are followed; this table knows *what* they are: their
//! session, executable, argv, working directory and directory fds, kept up to date from the
//! event stream itself (so a short-lived process's relative reads resolve after it is gone),
//! with `/proc` as the fallback for what the stream has not shown.

pub mod procfs;
pub mod reconcile;
pub mod scan;

use std::collections::HashMap;

use sensor_common::{Syscall, TrackState, Tracked};

use crate::{
    detect::classify::{
        assistant::{AssistantClassifier, ProcFacts},
        Reader,
    },
    kernel::events::{FileRecord, Header},
    model::{
        bounded::FdPaths,
        paths::{self, Caller, Canonicalize, Resolution},
    },
};
use procfs::ProcSource;

#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    pub exe: String,
    /// Secrets already scrubbed (`detect::redact::argv`): what records show, redacted once per
    /// exec instead of once per record.
    pub argv: Vec<String>,
    pub cwd: Option<String>,
    /// Paths of fds this process opened (or inherited), for `*at` calls: the most recent
    /// ones, shared with a forked child until either opens something.
    pub fds: FdPaths,
    pub role: TrackState,
    /// Root pid of the session; 0 while pending.
    pub session: u32,
    /// Start time in clock ticks after boot, as `/proc/<pid>/stat` shows it (None: not known):
    /// tells this process from a later one with its pid.
    pub start_ticks: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub root_pid: u32,
    pub assistant: String,
    pub uid: u32,
    pub exe: String,
    pub argv: Vec<String>,
    pub start_ns: u64,
    /// Live processes in the session.
    pub members: usize,
}

impl Proc {
    /// Its part in its session.
    pub fn reader(&self) -> Reader {
        if self.pid == self.session {
            Reader::Assistant
        } else {
            Reader::Descendant
        }
    }
}

/// Whose event it is: the process, its session, and its part in it, resolved once per event.
#[derive(Clone, Copy)]
pub struct Who<'a> {
    pub proc: &'a Proc,
    pub session: &'a Session,
    pub reader: Reader,
}

impl<'a> Who<'a> {
    /// The session's root pid, which keys every per-session state.
    pub fn root(&self) -> u32 {
        self.session.root_pid
    }

    pub fn assistant(&self) -> &'a str {
        &self.session.assistant
    }
}

/// What the kernel map must be told after an exec or fork.
#[derive(Debug, PartialEq, Eq)]
pub enum Update {
    /// Nothing to change.
    None,
    /// A new session: write these entries.
    SessionStarted { root: u32, entries: Vec<(u32, Tracked)> },
    /// Not (or no longer) wanted: delete these pids.
    Untrack(Vec<u32>),
}

pub struct ProcTable {
    procs: HashMap<u32, Proc>,
    sessions: HashMap<u32, Session>,
    /// Prefix that makes session ids unique across hosts and boots.
    id_prefix: String,
    /// Remembered fds forgotten to keep each process's table bounded.
    fd_evictions: u64,
}

/// Result of a file event, resolved against its process.
pub struct FileContext<'a> {
    pub proc: &'a Proc,
    pub session: Option<&'a Session>,
    pub resolution: Option<Resolution>,
}

impl ProcTable {
    pub fn new(id_prefix: &str) -> Self {
        Self {
            procs: HashMap::new(),
            sessions: HashMap::new(),
            id_prefix: id_prefix.to_string(),
            fd_evictions: 0,
        }
    }

    /// Remembered fds forgotten so far to keep each process's table bounded.
    pub fn fd_evictions(&self) -> u64 {
        self.fd_evictions
    }

    pub fn get(&self, pid: u32) -> Option<&Proc> {
        self.procs.get(&pid)
    }

    pub fn session(&self, root: u32) -> Option<&Session> {
        self.sessions.get(&root)
    }

    /// Whose event `pid`'s is: `None` unless the process is in a session (not pending).
    pub fn who(&self, pid: u32) -> Option<Who<'_>> {
        let proc = self.procs.get(&pid)?;
        let session = self.sessions.get(&proc.session)?;
        Some(Who { proc, session, reader: proc.reader() })
    }

    /// Processes per session root.
    pub fn members(&self, root: u32) -> usize {
        self.sessions.get(&root).map_or(0, |s| s.members)
    }

    pub fn sessions(&self) -> impl Iterator<Item = &Session> {
        self.sessions.values()
    }

    pub fn procs(&self) -> impl Iterator<Item = &Proc> {
        self.procs.values()
    }

    /// A start time first seen in `/proc` for a process the stream did not give one.
    pub fn learn_start(&mut self, pid: u32, start_ticks: u64) {
        if let Some(p) = self.procs.get_mut(&pid) {
            p.start_ticks.get_or_insert(start_ticks);
        }
    }

    /// Tracked processes by role.
    pub fn count(&self, role: TrackState) -> usize {
        self.procs.values().filter(|p| p.role == role).count()
    }

    pub fn len(&self) -> usize {
        self.procs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// A process found running at start-up (see [`scan`]).
    pub fn insert_scanned(&mut self, p: Proc, assistant: Option<&str>, start_ns: u64) {
        if let Some(name) = assistant {
            self.start_session(&p, name, start_ns);
        }
        if let Some(s) = self.sessions.get_mut(&p.session) {
            if p.role != TrackState::Assistant {
                s.members += 1;
            }
        }
        self.procs.insert(p.pid, p);
    }

    fn start_session(&mut self, p: &Proc, assistant: &str, start_ns: u64) {
        let id = format!("{}-{}-{:x}", self.id_prefix, p.pid, start_ns);
        self.sessions.insert(
            p.pid,
            Session {
                id,
                root_pid: p.pid,
                assistant: assistant.to_string(),
                uid: p.uid,
                exe: p.exe.clone(),
                argv: p.argv.clone(),
                start_ns,
                members: 1,
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    pub fn on_exec(
        &mut self,
        hdr: &Header,
        ppid: u32,
        filename: &str,
        argv: Vec<String>,
        classifier: &AssistantClassifier,
        src: &dyn ProcSource,
    ) -> Update {
        let live = src.info(hdr.pid);
        let exe = live
            .as_ref()
            .map(|i| i.exe.clone())
            .filter(|e| !e.is_empty())
            .unwrap_or_else(|| filename.to_string());
        if let Some(p) = self.procs.get_mut(&hdr.pid) {
            if p.role != TrackState::Pending {
                p.exe = exe;
                p.argv = crate::detect::redact::argv(&argv);
                p.comm = hdr.comm.clone();
                // Close-on-exec fds are gone; the rest stay, so keep the table.
                return Update::None;
            }
        }
        let facts = ProcFacts { exe: &exe, filename, comm: &hdr.comm, argv: &argv };
        let Some(name) = classifier.classify(&facts).map(str::to_string) else {
            let mut gone = self.pending_descendants(hdr.pid);
            gone.push(hdr.pid);
            for pid in &gone {
                self.procs.remove(pid);
            }
            return Update::Untrack(gone);
        };
        let inherited = self.procs.remove(&hdr.pid);
        let start_ticks =
            live.as_ref().map(|i| i.start_ticks).or(inherited.as_ref().and_then(|p| p.start_ticks));
        let p = Proc {
            pid: hdr.pid,
            // The kernel saw the fork; /proc may already be gone for a short-lived process.
            ppid: Some(ppid)
                .filter(|p| *p != 0)
                .or(live.as_ref().map(|i| i.ppid))
                .or(inherited.as_ref().map(|p| p.ppid))
                .unwrap_or(0),
            uid: hdr.uid,
            gid: hdr.gid,
            comm: hdr.comm.clone(),
            exe,
            argv: crate::detect::redact::argv(&argv),
            cwd: inherited
                .as_ref()
                .and_then(|p| p.cwd.clone())
                .or_else(|| live.as_ref().and_then(|i| i.cwd.clone())),
            fds: inherited.map(|p| p.fds).unwrap_or_default(),
            role: TrackState::Assistant,
            session: hdr.pid,
            start_ticks,
        };
        self.start_session(&p, &name, hdr.ts_ns);
        let mut entries = vec![(hdr.pid, Tracked { session: hdr.pid, state: TrackState::Assistant as u32 })];
        self.procs.insert(p.pid, p);
        // Children forked while the parent was pending join the session now.
        for pid in self.pending_descendants(hdr.pid) {
            if let Some(c) = self.procs.get_mut(&pid) {
                c.role = TrackState::Descendant;
                c.session = hdr.pid;
                entries.push((pid, Tracked { session: hdr.pid, state: TrackState::Descendant as u32 }));
            }
            if let Some(s) = self.sessions.get_mut(&hdr.pid) {
                s.members += 1;
            }
        }
        Update::SessionStarted { root: hdr.pid, entries }
    }

    fn pending_descendants(&self, root: u32) -> Vec<u32> {
        self.procs
            .values()
            .filter(|p| p.role == TrackState::Pending && p.pid != root && self.descends_from(p.pid, root))
            .map(|p| p.pid)
            .collect()
    }

    fn descends_from(&self, mut pid: u32, root: u32) -> bool {
        for _ in 0..64 {
            match self.procs.get(&pid) {
                Some(p) if p.ppid == root => return true,
                Some(p) if p.ppid != pid => pid = p.ppid,
                _ => return false,
            }
        }
        false
    }

    pub fn on_fork(&mut self, hdr: &Header, child: u32) -> Update {
        let Some(parent) = self.procs.get(&hdr.pid) else {
            // The parent was untracked after the kernel copied its entry to the child.
            return Update::Untrack(vec![child]);
        };
        let role = match parent.role {
            TrackState::Pending => TrackState::Pending,
            _ => TrackState::Descendant,
        };
        // The kernel stamps the fork just after the child's start time.
        let start_ticks = Some(procfs::ns_to_ticks(hdr.ts_ns));
        let c = Proc { pid: child, ppid: parent.pid, role, start_ticks, ..parent.clone() };
        if let Some(s) = self.sessions.get_mut(&c.session) {
            s.members += 1;
        }
        self.procs.insert(child, c);
        Update::None
    }

    /// Removes the process; returns its session if that was the last member.
    pub fn on_exit(&mut self, pid: u32) -> Option<Session> {
        let p = self.procs.remove(&pid)?;
        let s = self.sessions.get_mut(&p.session)?;
        s.members = s.members.saturating_sub(1);
        if s.members == 0 {
            return self.sessions.remove(&p.session);
        }
        None
    }

    /// Forgets a process without ending anything (it was untracked).
    pub fn forget(&mut self, pid: u32) {
        self.procs.remove(&pid);
    }

    /// Resolves a file event's path against its process and applies what it changes (cwd,
    /// fds). `None` when the process is not (or no longer) tracked.
    pub fn on_file(
        &mut self,
        rec: &FileRecord,
        fs: &dyn Canonicalize,
        src: &dyn ProcSource,
    ) -> Option<FileContext<'_>> {
        let p = self.procs.get(&rec.hdr.pid)?;
        if p.role == TrackState::Pending {
            return None;
        }
        let needs_dirfd = rec.dirfd != sensor_common::AT_FDCWD && !rec.path.starts_with('/');
        let dirfd_path = if needs_dirfd {
            p.fds.get(rec.dirfd).map(str::to_string).or_else(|| src.fd_path(rec.hdr.pid, rec.dirfd))
        } else {
            None
        };
        // Borrowed, not copied: most paths are absolute and never look at it.
        let fetched = if p.cwd.is_none() { src.cwd(rec.hdr.pid) } else { None };
        let cwd = p.cwd.as_deref().or(fetched.as_deref());
        let empty_ok = matches!(
            rec.syscall,
            Syscall::Newfstatat | Syscall::Statx | Syscall::Faccessat2 | Syscall::Fchdir
        );
        let resolution = if (rec.path.is_empty() && !empty_ok) || (needs_dirfd && dirfd_path.is_none()) {
            None
        } else {
            let own = &p.fds;
            let fds = |pid: u32, fd: i32| {
                let remembered = if pid == rec.hdr.pid { own.get(fd).map(str::to_string) } else { None };
                remembered.or_else(|| src.fd_path(pid, fd))
            };
            let caller = Caller {
                pid: rec.hdr.pid,
                tid: rec.hdr.tid,
                cwd,
                dirfd_path: dirfd_path.as_deref(),
                fds: Some(&fds),
            };
            paths::resolve(&rec.path, &caller, fs)
        };
        let p = self.procs.get_mut(&rec.hdr.pid)?;
        if p.cwd.is_none() {
            p.cwd = fetched;
        }
        if let Some(r) = &resolution {
            if rec.syscall.returns_fd() && rec.ret >= 0 {
                let path = r.target.as_deref().unwrap_or(&r.resolved);
                self.fd_evictions += p.fds.insert(rec.ret as i32, path);
            }
            if rec.syscall.changes_cwd() && rec.ret == 0 {
                p.cwd = Some(r.target.clone().unwrap_or_else(|| r.resolved.clone()));
            }
        }
        let p = &self.procs[&rec.hdr.pid];
        Some(FileContext { proc: p, session: self.sessions.get(&p.session), resolution })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::Config,
        kernel::events::{raw, KernelEvent},
        model::paths::HostFs,
    };
    use procfs::Gone;

    fn exec(t: &mut ProcTable, pid: u32, argv: &[&str]) -> Update {
        let KernelEvent::Exec { hdr, ppid, filename, argv } =
            crate::kernel::events::decode(&raw::exec(pid, "/usr/bin/node", argv)).unwrap()
        else {
            unreachable!()
        };
        t.on_exec(
            &hdr,
            ppid,
            &filename,
            argv,
            &AssistantClassifier::new(&Config::default().assistants, &Config::default().runtimes),
            &Gone,
        )
    }

    fn hdr(pid: u32) -> Header {
        let KernelEvent::File(f) =
            crate::kernel::events::decode(&raw::file(pid, Syscall::Open, "/", 0)).unwrap()
        else {
            unreachable!()
        };
        f.hdr
    }

    fn file(pid: u32, syscall: Syscall, path: &str, ret: i64, dirfd: i32) -> FileRecord {
        let KernelEvent::File(mut f) =
            crate::kernel::events::decode(&raw::file(pid, syscall, path, ret)).unwrap()
        else {
            unreachable!()
        };
        f.dirfd = dirfd;
        f
    }

    #[test]
    fn assistant_children_and_pending_children() {
        let mut t = ProcTable::new("h");
        // A pending node forks before user space classifies it.
        t.procs.insert(
            10,
            Proc {
                pid: 10,
                ppid: 1,
                uid: 0,
                gid: 0,
                comm: "node".into(),
                exe: String::new(),
                argv: vec![],
                cwd: Some("/".into()),
                fds: FdPaths::default(),
                role: TrackState::Pending,
                session: 0,
                start_ticks: None,
            },
        );
        assert_eq!(t.on_fork(&hdr(10), 11), Update::None);
        assert_eq!(t.get(11).unwrap().role, TrackState::Pending);
        let u = exec(&mut t, 10, &["node", "/usr/lib/node_modules/@anthropic-ai/claude-code/cli.js"]);
        let Update::SessionStarted { root, entries } = u else { panic!("{u:?}") };
        assert_eq!(root, 10);
        assert!(entries.contains(&(11, Tracked { session: 10, state: TrackState::Descendant as u32 })));
        assert_eq!(t.session(10).unwrap().assistant, "claude-code");
        assert_eq!(t.session(10).unwrap().members, 2);
        t.on_fork(&hdr(11), 12);
        assert_eq!(t.get(12).unwrap().role, TrackState::Descendant);
        assert_eq!(t.get(12).unwrap().session, 10);
        assert!(t.on_exit(12).is_none());
        assert!(t.on_exit(10).is_none());
        let ended = t.on_exit(11).expect("last member ends the session");
        assert_eq!(ended.root_pid, 10);
        assert!(t.is_empty());
    }

    #[test]
    fn non_assistant_is_untracked_with_its_pending_children() {
        let mut t = ProcTable::new("h");
        t.procs.insert(
            20,
            Proc {
                pid: 20,
                ppid: 1,
                uid: 0,
                gid: 0,
                comm: "node".into(),
                exe: String::new(),
                argv: vec![],
                cwd: None,
                fds: FdPaths::default(),
                role: TrackState::Pending,
                session: 0,
                start_ticks: None,
            },
        );
        t.on_fork(&hdr(20), 21);
        let mut u = match exec(&mut t, 20, &["node", "server.js"]) {
            Update::Untrack(v) => v,
            other => panic!("{other:?}"),
        };
        u.sort();
        assert_eq!(u, vec![20, 21]);
        assert!(t.is_empty());
        assert_eq!(t.on_fork(&hdr(20), 22), Update::Untrack(vec![22]));
    }

    #[test]
    fn relative_reads_use_cwd_and_fds_from_the_stream() {
        let mut t = ProcTable::new("h");
        exec(&mut t, 30, &["node", "/x/@google/gemini-cli/dist/index.js"]);
        t.procs.get_mut(&30).unwrap().cwd = Some("/".into());
        t.on_fork(&hdr(30), 31);
        let fs = HostFs;
        // The child changes into /etc and opens a relative path, then is gone from /proc.
        t.on_file(&file(31, Syscall::Chdir, "etc", 0, sensor_common::AT_FDCWD), &fs, &Gone).unwrap();
        assert_eq!(t.get(31).unwrap().cwd.as_deref(), Some("/etc"));
        let ctx = t
            .on_file(&file(31, Syscall::Openat, "hostname", 3, sensor_common::AT_FDCWD), &fs, &Gone)
            .unwrap();
        assert_eq!(ctx.resolution.unwrap().resolved, "/etc/hostname");
        // An fd opened on a directory is a dirfd for later *at calls.
        t.on_file(&file(31, Syscall::Openat, "/usr/share", 5, sensor_common::AT_FDCWD), &fs, &Gone).unwrap();
        let ctx = t.on_file(&file(31, Syscall::Openat, "zoneinfo/UTC", 6, 5), &fs, &Gone).unwrap();
        assert_eq!(ctx.resolution.unwrap().absolute, "/usr/share/zoneinfo/UTC");
        // The parent's cwd is unchanged.
        assert_eq!(t.get(30).unwrap().cwd.as_deref(), Some("/"));
        // Unknown dirfd and nothing in /proc: unresolved, not guessed.
        let ctx = t.on_file(&file(31, Syscall::Openat, "x", -2, 99), &fs, &Gone).unwrap();
        assert!(ctx.resolution.is_none());
        // Untracked pids yield nothing.
        assert!(t
            .on_file(&file(999, Syscall::Open, "/etc/hosts", 3, sensor_common::AT_FDCWD), &fs, &Gone)
            .is_none());
    }

    #[test]
    fn remembered_fds_are_bounded_and_forks_share_them() {
        let mut t = ProcTable::new("h");
        exec(&mut t, 40, &["node", "/x/@google/gemini-cli/dist/index.js"]);
        let long = format!("/tmp/{}", "d".repeat(200));
        for fd in 3..1003 {
            t.on_file(
                &file(40, Syscall::Openat, &format!("{long}/f{fd}"), fd, sensor_common::AT_FDCWD),
                &HostFs,
                &Gone,
            );
        }
        let fds = &t.get(40).unwrap().fds;
        assert_eq!(fds.len(), crate::model::bounded::FDS_PER_PROCESS);
        assert!(fds.get(1002).is_some_and(|p| p.ends_with("/f1002")), "the most recent fd is kept");
        assert!(fds.get(3).is_none());
        assert_eq!(t.fd_evictions(), 1000 - crate::model::bounded::FDS_PER_PROCESS as u64);
        for child in 1000..2000 {
            t.on_fork(&hdr(40), child);
        }
        assert_eq!(t.get(1999).unwrap().fds.len(), crate::model::bounded::FDS_PER_PROCESS);
        assert_eq!(t.session(40).unwrap().members, 1001);
    }
}
