//! Harness for root integration tests: run the real `aiwatch` daemon, drive test programs,
//! and look at what it reported. Everything started here is stopped by PID on drop, also when
//! a test fails.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use serde_json::Value;

pub mod host;
pub mod int80;
pub mod kube;
pub mod net;
pub mod observe;
pub mod sockets;
pub mod tls;

/// Name under which `fsprobe` runs as a tracked assistant (see [`AGENT_CONFIG`]).
pub const AGENT: &str = "aiwatch-test-agent";

/// Config that makes [`AGENT`] an assistant.
pub const AGENT_CONFIG: &str = "[[assistants]]\nname = \"test-agent\"\nexe = [\"aiwatch-test-agent\"]\n";

/// The daemon under test.
pub fn aiwatch_bin() -> PathBuf {
    match std::env::var_os("AIWATCH_BIN") {
        Some(p) => PathBuf::from(p),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/aiwatch"),
    }
}

/// `d`, stretched by `AIWATCH_TEST_TIME_SCALE` (a factor, default 1): the kernel matrix runs
/// these tests under an emulated CPU several times slower than the host. Deadlines only: no
/// assertion about what happens changes.
pub fn patience(d: Duration) -> Duration {
    let scale = std::env::var("AIWATCH_TEST_TIME_SCALE").ok().and_then(|s| s.parse::<u32>().ok());
    d * scale.unwrap_or(1).max(1)
}

/// The deadline `d` from now, stretched by [`patience`].
pub fn deadline(d: Duration) -> Instant {
    Instant::now() + patience(d)
}

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "aiwatch-it-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process killed (SIGKILL, by PID) and reaped on drop.
pub struct Guard(pub Child);

impl Guard {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Waits for exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let end = deadline(timeout);
        while Instant::now() < end {
            if let Ok(Some(s)) = self.0.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// The `fsprobe` binary cargo built next to this test (`target/<profile>/fsprobe`).
pub fn fsprobe() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test>-<hash> -> target/<profile>/fsprobe
    let p = exe.parent().and_then(Path::parent).expect("target dir").join("fsprobe");
    assert!(p.exists(), "{} not built (cargo test builds it with the tests)", p.display());
    p
}

/// A copy of `fsprobe` under `name` in `dir` (the name decides whether it is tracked).
pub fn probe_as(dir: &TempDir, name: &str) -> PathBuf {
    let dst = dir.path(name);
    std::fs::copy(fsprobe(), &dst).expect("copy fsprobe");
    dst
}

/// Runs `program` with `actions` to completion; returns its pid.
pub fn run(program: &Path, actions: &[&str]) -> u32 {
    let mut g = spawn(program, actions);
    let status = g.wait(Duration::from_secs(60)).expect("test program finished");
    assert!(status.success(), "{} {actions:?} failed: {status}", program.display());
    g.pid()
}

pub fn spawn(program: &Path, actions: &[&str]) -> Guard {
    spawn_cmd(
        Command::new(program).args(actions).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()),
    )
}

/// Spawns `cmd`, retrying `ETXTBSY`: a binary copied moments ago can still be open for writing
/// in a child another test thread is forking (its fd closes at that child's exec).
pub fn spawn_cmd(cmd: &mut Command) -> Guard {
    for _ in 0..100 {
        match cmd.spawn() {
            Ok(c) => return Guard(c),
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => panic!("spawn {cmd:?}: {e}"),
        }
    }
    panic!("spawn {cmd:?}: text file busy");
}

/// A free loopback port (bound and released).
pub fn free_port() -> u16 {
    observe::free_addr().expect("free port").port()
}

/// The running daemon, its JSON records and its log.
pub struct Sensor {
    proc: Option<Guard>,
    records: Arc<Mutex<Vec<Value>>>,
    /// What the stdout reader could not parse: a line that is not JSON, or bytes that are not
    /// UTF-8. Every look at the records fails the test once this is set, so a "nothing was
    /// reported" check cannot pass because the reader stopped reading.
    bad_output: Arc<Mutex<Option<String>>>,
    log: Arc<Mutex<String>>,
    /// Set when the log reader has read the daemon's stderr to its end.
    log_done: Arc<std::sync::atomic::AtomicBool>,
    pub metrics: SocketAddr,
    _dir: TempDir,
}

/// Reader threads for a daemon's stdout (JSON records; the first line that is not one is kept,
/// and fails the test at its next look) and stderr (the log).
#[allow(clippy::type_complexity)]
fn read_output(
    child: &mut Child,
) -> (
    Arc<Mutex<Vec<Value>>>,
    Arc<Mutex<Option<String>>>,
    Arc<Mutex<String>>,
    Arc<std::sync::atomic::AtomicBool>,
) {
    let records = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::new(Mutex::new(String::new()));
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let bad_output = Arc::new(Mutex::new(None));
    let (r, bad) = (records.clone(), bad_output.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let parsed = line
                .map_err(|e| format!("unreadable stdout: {e}"))
                .and_then(|l| serde_json::from_str::<Value>(&l).map_err(|e| format!("not JSON ({e}): {l}")));
            match parsed {
                Ok(v) => r.lock().expect("records").push(v),
                // Keep reading (the daemon must not block on a full pipe), keep the first.
                Err(e) => {
                    bad.lock().expect("bad output").get_or_insert(e);
                }
            }
        }
    });
    let l = log.clone();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let mut log = l.lock().expect("log");
            log.push_str(&line);
            log.push('\n');
        }
        d.store(true, std::sync::atomic::Ordering::SeqCst);
    });
    (records, bad_output, log, done)
}

impl Sensor {
    /// Starts `aiwatch run` with `config` and waits until it watches.
    pub fn start(config: &str) -> Self {
        Self::start_with(config, &[])
    }

    /// As [`Sensor::start`], with extra `aiwatch run` arguments.
    pub fn start_with(config: &str, extra: &[&str]) -> Self {
        Self::start_as(config, &[], &aiwatch_bin(), extra)
    }

    /// As [`Sensor::start_with`], run as `wrapper... bin run ...` (e.g. through `setpriv`).
    pub fn start_as(config: &str, wrapper: &[&str], bin: &Path, extra: &[&str]) -> Self {
        Self::start_env(config, wrapper, bin, extra, &[])
    }

    /// As [`Sensor::start_as`], with extra environment variables.
    pub fn start_env(
        config: &str,
        wrapper: &[&str],
        bin: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let dir = TempDir::new("sensor");
        let cfg = dir.path("config.toml");
        // The learned baseline in the daemon's own directory, never the host's, and (unless the
        // test is about it) learning for ever: the daemons of one test binary follow every
        // test's agents, whose sessions would otherwise teach it a baseline mid-test.
        let config = if config.contains("[detection]") {
            config.to_string()
        } else {
            format!(
                "{config}\n[detection]\nstate_dir = \"{}\"\nbaseline_learning_sessions = 1000000\n",
                dir.path("state").display()
            )
        };
        std::fs::write(&cfg, &config).expect("write config");
        // A free port, unless the test chooses the address (`--metrics-listen ADDR` in `extra`).
        let chosen = extra.iter().position(|a| *a == "--metrics-listen").and_then(|i| extra.get(i + 1));
        let metrics: SocketAddr = match chosen {
            Some(a) => a.parse().expect("--metrics-listen address"),
            None => format!("127.0.0.1:{}", free_port()).parse().expect("addr"),
        };
        let listen = match chosen {
            Some(_) => vec![],
            None => vec!["--metrics-listen".to_string(), metrics.to_string()],
        };
        let mut cmd = match wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("run")
            // JSON on stdout unless the test chooses a format.
            .args(if extra.contains(&"--format") { &[][..] } else { &["--format", "json"][..] })
            // Every record unless the test chooses a level: tests look for particular records
            // (`output.detail` = summary, the default, sends an artifact's first read only).
            .args(if extra.contains(&"--detail") || config.contains("detail") {
                &[][..]
            } else {
                &["--detail", "all"][..]
            })
            .arg("--config")
            .arg(&cfg)
            .args(&listen)
            .args(extra)
            .envs(env.iter().copied());
        Self::launch(cmd, metrics, dir)
    }

    /// Starts the daemon with `cmd` (complete: `run`, its config and its metrics address
    /// `metrics`, e.g. in a container), keeping `dir` while it runs; waits until it watches.
    pub fn launch(mut cmd: Command, metrics: SocketAddr, dir: TempDir) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
        let (records, bad_output, log, log_done) = read_output(&mut child);
        let s = Self { proc: Some(Guard(child)), records, bad_output, log, log_done, metrics, _dir: dir };
        let end = deadline(Duration::from_secs(30));
        while !s.log().contains("watching") {
            if Instant::now() > end {
                panic!("aiwatch did not start:\n{}", s.log());
            }
            if let Some(p) = s.proc.as_ref() {
                if p.0.id() != 0 && std::fs::metadata(format!("/proc/{}", p.pid())).is_err() {
                    panic!("aiwatch exited:\n{}", s.log());
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    pub fn log(&self) -> String {
        self.log.lock().expect("log").clone()
    }

    pub fn records(&self) -> Vec<Value> {
        self.check_output();
        self.records.lock().expect("records").clone()
    }

    /// Fails the test if the daemon wrote anything on stdout that is not a JSON record.
    pub fn check_output(&self) {
        if let Some(e) = self.bad_output.lock().expect("bad output").as_ref() {
            panic!("the daemon's stdout is not JSON lines: {e}\nlog:\n{}", self.log());
        }
    }

    /// Records for which `pred` holds, once at least `n` exist (panics after 15 s).
    pub fn wait_n(&self, n: usize, what: &str, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let end = deadline(Duration::from_secs(15));
        loop {
            self.check_output();
            let hits: Vec<Value> =
                self.records.lock().expect("records").iter().filter(|r| pred(r)).cloned().collect();
            if hits.len() >= n {
                return hits;
            }
            if Instant::now() > end {
                panic!(
                    "timed out waiting for {n} × {what}; have {}.\nrecords:\n{}\nlog:\n{}",
                    hits.len(),
                    self.records().iter().map(|r| r.to_string()).collect::<Vec<_>>().join("\n"),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_for(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_n(1, what, pred).remove(0)
    }

    /// The value of one series in /metrics (exact series text before the value).
    pub fn metric(&self, series: &str) -> Option<f64> {
        observe::parse_metrics(&self.scrape()).get(series).copied()
    }

    /// The body of GET /metrics.
    pub fn scrape(&self) -> String {
        observe::metrics_body(self.metrics, patience(Duration::from_secs(30))).expect("GET /metrics")
    }

    pub fn pid(&self) -> u32 {
        self.proc.as_ref().map_or(0, Guard::pid)
    }

    /// SIGTERM, then wait for a clean exit; returns the log.
    pub fn stop(mut self) -> String {
        let mut g = self.proc.take().expect("running");
        // SAFETY: signalling our own child by PID.
        unsafe { libc::kill(g.pid() as i32, libc::SIGTERM) };
        let status = g.wait(Duration::from_secs(10));
        // The log's last lines may still be in the pipe: read until the daemon's last line, or
        // the pipe's end (later: the keeper, which shares the daemon's fds, holds it open while
        // it tears the hooks down).
        let end = deadline(Duration::from_secs(10));
        while !self.log_done.load(std::sync::atomic::Ordering::SeqCst)
            && !self.log().contains("aiwatch::cmd::run: stopped")
            && Instant::now() < end
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.check_output();
        assert!(
            status.is_some_and(|s| s.success()),
            "aiwatch did not stop cleanly: {status:?}\n{}",
            self.log()
        );
        self.log()
    }
}

impl Drop for Sensor {
    fn drop(&mut self) {
        if let Some(g) = self.proc.take() {
            // SAFETY: signalling our own child by PID; the Guard reaps (or kills) it.
            unsafe { libc::kill(g.pid() as i32, libc::SIGTERM) };
            let mut g = g;
            g.wait(Duration::from_secs(5));
        }
    }
}

/// Field access by a dotted path: `get(r, "session.root_pid")`.
pub fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

/// Matcher: a fingerprint read by `pid` whose resolved path is `path`.
pub fn read_of(pid: u32, path: &str) -> impl Fn(&Value) -> bool + '_ {
    move |r| r["type"] == "fingerprint_read" && r["process"]["pid"] == pid && r["resolved_path"] == path
}
