//! One run: lay out its files, make its namespace with the mock and proxy listening in it, start
//! the assistant there as the audit user, wait (at most the timeout), kill whatever of it is
//! left by PID, and hand back what it sent and how it ended.

use std::{
    io::{Read as _, Seek as _},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use serde::Serialize;

use super::{
    isolate::{self, ChildSetup, Keep, NetNs, RunUser},
    mock::{self, Meta, Recorded, Recorder},
    proxy, reach,
    spec::{Common, EtcEntry, Role, RunSpec},
};

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    Exited {
        code: i32,
    },
    Signaled {
        signal: i32,
    },
    TimedOut {
        after_s: u64,
    },
    /// The command could not be started in the run (exec or namespace setup failed).
    NotStarted {
        error: String,
    },
}

impl Status {
    pub fn ok(&self) -> bool {
        matches!(self, Status::Exited { code: 0 })
    }

    pub fn describe(&self) -> String {
        match self {
            Status::Exited { code } => format!("exit status {code}"),
            Status::Signaled { signal } => format!("killed by signal {signal}"),
            Status::TimedOut { after_s } => format!("timed out after {after_s} s (killed)"),
            Status::NotStarted { error } => format!("not started: {error}"),
        }
    }
}

/// How a run went and what it sent.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Index in the audit's run list.
    pub index: usize,
    pub label: String,
    #[serde(skip)]
    pub spec: Option<Arc<RunSpec>>,
    /// The assistant's PID (the session root aiwatch's sensor reports).
    pub root_pid: Option<u32>,
    #[serde(flatten)]
    pub status: Status,
    pub duration_ms: u64,
    #[serde(skip)]
    pub started: SystemTime,
    #[serde(skip)]
    pub ended: SystemTime,
    /// PIDs killed when the run ended (its tree, by PID; after a timeout, or left behind).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub killed: Vec<u32>,
    pub stdout_tail: String,
    pub stderr_tail: String,
    #[serde(skip)]
    pub requests: Vec<Recorded>,
}

impl Outcome {
    pub fn llm_calls(&self) -> usize {
        self.requests.iter().filter(|r| r.llm_call).count()
    }
}

/// What every run shares.
pub struct Runner {
    pub user: RunUser,
    /// argv, argv[0] an absolute path.
    pub command: Vec<String>,
    pub common: Common,
    pub tls: tokio_rustls::TlsAcceptor,
    pub dir: PathBuf,
    pub keeps: Vec<Keep>,
    pub timeout: Duration,
    pub keep_dirs: bool,
}

fn tail(path: &Path, max: usize) -> String {
    let Ok(mut f) = std::fs::File::open(path) else { return String::new() };
    let len = f.metadata().map_or(0, |m| m.len());
    let _ = f.seek(std::io::SeekFrom::Start(len.saturating_sub(max as u64)));
    let mut b = Vec::new();
    let _ = f.read_to_end(&mut b);
    let s = String::from_utf8_lossy(&b).into_owned();
    // Terminal colour codes make no sense in a report.
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
            continue;
        }
        out.push(c);
    }
    out.trim().to_string()
}

fn chown_tree(p: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
    if p.is_dir() && !p.is_symlink() {
        for e in std::fs::read_dir(p)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

impl Runner {
    /// Lays out the run's directory: `etc` (overlay upper), `etc-work`, `home/project`.
    fn prepare(&self, dir: &Path, spec: &RunSpec) -> anyhow::Result<()> {
        let upper = dir.join("etc");
        std::fs::create_dir_all(&upper)?;
        std::fs::create_dir_all(dir.join("etc-work"))?;
        for (rel, e) in &spec.etc {
            let p = upper.join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            match e {
                EtcEntry::File(content) => {
                    std::fs::write(&p, content).with_context(|| format!("writing {}", p.display()))?;
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))?;
                }
                EtcEntry::Symlink(target) => std::os::unix::fs::symlink(target, &p)?,
            }
        }
        let home = dir.join("home");
        std::fs::create_dir_all(home.join("project"))?;
        for (rel, content) in &spec.home_files {
            let p = home.join(rel);
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&p, content)?;
        }
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700))?;
        chown_tree(&home, self.user.uid, self.user.gid)
            .context("handing the run's home to the audit user")?;
        Ok(())
    }

    /// Whether the run user can reach what the runs will exec (see `reach`), answered in a child
    /// set up exactly like a run of `spec` (namespaces, mounts, credentials) that execs nothing.
    /// None: everything is reachable.
    pub fn reach_check(&self, spec: &RunSpec) -> anyhow::Result<Option<reach::Blocked>> {
        let dir = self.dir.join("reach-check");
        let result = self.reach_check_in(&dir, spec);
        if !self.keep_dirs {
            let _ = std::fs::remove_dir_all(&dir);
        }
        result
    }

    /// How a child of `spec` (a run, or the reach check) is set up in `ns`, its files in `dir`.
    fn child_setup(&self, ns: &NetNs, dir: &Path, spec: &RunSpec) -> anyhow::Result<ChildSetup> {
        ChildSetup::new(
            ns,
            &dir.join("etc"),
            &dir.join("etc-work"),
            &dir.join("home"),
            &self.common.home(),
            &self.common.workdir(),
            &spec.hostname,
            &self.keeps,
            &self.user,
        )
    }

    fn reach_check_in(&self, dir: &Path, spec: &RunSpec) -> anyhow::Result<Option<reach::Blocked>> {
        self.prepare(dir, spec).context("preparing the check's files")?;
        let ns = isolate::netns_with_listeners(&[])?;
        let setup = self.child_setup(&ns, dir, spec)?;
        let targets = reach::targets(&self.command, &self.common.path);
        let walks: Vec<Vec<reach::Step>> =
            targets.iter().flat_map(|t| t.paths.iter().map(|p| reach::walk(p, t.mode))).collect();
        let mut results = isolate::check_walks(&setup, &walks)?.into_iter();
        for t in &targets {
            let mine: Vec<isolate::WalkResult> = results.by_ref().take(t.paths.len()).collect();
            if let Some(b) = reach::diagnose(t, &mine) {
                return Ok(Some(b));
            }
        }
        Ok(None)
    }

    fn serve(
        &self,
        ns: &mut NetNs,
        spec: &RunSpec,
        rec: &Arc<Recorder>,
    ) -> anyhow::Result<tokio::task::JoinSet<()>> {
        let mut set = tokio::task::JoinSet::new();
        for (port, l) in ns.listeners.drain(..) {
            let role = spec.ports.get(&port).copied().unwrap_or(Role::Http);
            let l = tokio::net::TcpListener::from_std(l)?;
            let (rec, tls) = (rec.clone(), self.tls.clone());
            let name = format!(
                "{}:{port}",
                match role {
                    Role::Http => "http",
                    Role::Https => "https",
                    Role::Proxy => "proxy",
                }
            );
            set.spawn(async move {
                while let Ok((s, _)) = l.accept().await {
                    let (rec, tls, name) = (rec.clone(), tls.clone(), name.clone());
                    tokio::spawn(async move {
                        let meta = Meta { listener: name.clone(), ..Meta::default() };
                        match role {
                            Role::Http => mock::serve_http(s, meta, rec).await,
                            Role::Https => mock::serve_tls(s, meta, rec, tls).await,
                            Role::Proxy => proxy::serve(s, name, rec, tls).await,
                        }
                    });
                }
            });
        }
        Ok(set)
    }

    /// Runs `spec` (run number `index`) to its end.
    pub async fn run(self: Arc<Self>, spec: Arc<RunSpec>, index: usize) -> Outcome {
        let dir = self.dir.join(format!("run-{index:03}"));
        let started = SystemTime::now();
        let t0 = Instant::now();
        let mut out = Outcome {
            index,
            label: spec.label.clone(),
            spec: Some(spec.clone()),
            root_pid: None,
            status: Status::NotStarted { error: String::new() },
            duration_ms: 0,
            started,
            ended: started,
            killed: Vec::new(),
            stdout_tail: String::new(),
            stderr_tail: String::new(),
            requests: Vec::new(),
        };
        match self.clone().run_inner(&spec, &dir, &mut out).await {
            Ok(()) => {}
            Err(e) => out.status = Status::NotStarted { error: format!("{e:#}") },
        }
        out.duration_ms = t0.elapsed().as_millis() as u64;
        out.ended = SystemTime::now();
        out.stdout_tail = tail(&dir.join("stdout"), 1500);
        out.stderr_tail = tail(&dir.join("stderr"), 1500);
        if !self.keep_dirs {
            let _ = std::fs::remove_dir_all(&dir);
        }
        out
    }

    async fn run_inner(self: Arc<Self>, spec: &RunSpec, dir: &Path, out: &mut Outcome) -> anyhow::Result<()> {
        self.prepare(dir, spec).context("preparing the run's files")?;
        let ports: Vec<u16> = spec.ports.keys().copied().collect();
        let mut ns = tokio::task::spawn_blocking(move || isolate::netns_with_listeners(&ports)).await??;
        let rec = Recorder::new();
        let servers = self.serve(&mut ns, spec, &rec)?;
        let setup = self.child_setup(&ns, dir, spec)?;
        let stdout = std::fs::File::create(dir.join("stdout"))?;
        let stderr = std::fs::File::create(dir.join("stderr"))?;
        let mut cmd = tokio::process::Command::new(&self.command[0]);
        cmd.args(&self.command[1..])
            .env_clear()
            .envs(&spec.env)
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        // SAFETY: `apply` makes only system calls on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || setup.apply());
        }
        let mut child = None;
        for _ in 0..50 {
            match cmd.spawn() {
                Ok(c) => {
                    child = Some(c);
                    break;
                }
                // A binary copied moments ago may still be open for writing in another fork.
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => {
                    drop(servers);
                    return Err(anyhow::anyhow!("{e}")).with_context(|| {
                        format!("starting {} in the run's namespaces as {}", self.command[0], self.user.name)
                    });
                }
            }
        }
        let mut child = child.context("starting the command: text file busy")?;
        out.root_pid = child.id();
        let inode = ns.inode;
        match tokio::time::timeout(self.timeout, child.wait()).await {
            Ok(Ok(st)) => {
                use std::os::unix::process::ExitStatusExt as _;
                out.status = match (st.code(), st.signal()) {
                    (Some(c), _) => Status::Exited { code: c },
                    (None, Some(s)) => Status::Signaled { signal: s },
                    _ => Status::Exited { code: -1 },
                };
                // What it left running goes too.
                out.killed =
                    tokio::task::spawn_blocking(move || isolate::kill_run(inode)).await.unwrap_or_default();
            }
            Ok(Err(e)) => return Err(e).context("waiting for the command"),
            Err(_) => {
                out.killed =
                    tokio::task::spawn_blocking(move || isolate::kill_run(inode)).await.unwrap_or_default();
                let _ = child.wait().await;
                out.status = Status::TimedOut { after_s: self.timeout.as_secs() };
            }
        }
        // Connections of the killed processes close; their requests were recorded on arrival.
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(servers);
        out.requests = rec.take();
        drop(ns);
        Ok(())
    }
}
