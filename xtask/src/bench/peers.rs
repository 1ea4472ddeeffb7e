//! The peers aiwatch is measured against: bpftrace attached to the same tracepoints with a filter
//! that never matches, and auditd with read watches on the watched files. Each is shown to have
//! observed what it is charged for: auditd's records of each measured run are counted in its log,
//! and bpftrace's programs' runs during a run of each workload are counted by the kernel.

use std::{
    io::{BufReader, Seek as _, SeekFrom},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use super::daemon::{pin, Stopper};

/// Files the auditd condition watches: what aiwatch's categories cover among the workloads. A
/// watch on a symbolic link fires for `readlink` of the link, not for an `open` that follows it:
/// the file a link leads to is watched too, as auditd users watch `/etc/localtime`.
const AUDIT_WATCHES: [&str; 6] =
    ["/etc/localtime", "/etc/hostname", "/etc/resolv.conf", "/etc/hosts", "/etc/machine-id", "/etc/timezone"];

/// The key of the bench's audit rules, which its records carry.
const AUDIT_KEY: &str = "aiwatch-bench";

/// The backlog settings of Debian's default audit rules (`/etc/audit/rules.d/audit.rules`), which
/// the distribution's service loads and `auditd` alone does not.
const AUDIT_BACKLOG: [&str; 4] = ["-b", "8192", "--backlog_wait_time", "60000"];

/// What a peer was shown to observe of one run of a workload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Seen {
    /// Operations the driver ran (warm-up included).
    pub ops: u64,
    /// auditd: the run's syscall records carrying the bench's key. bpftrace: runs of its
    /// programs. None when they could not be counted.
    pub records: Option<u64>,
    /// auditd: records the kernel lost meanwhile (its `lost` counter). 0 for bpftrace.
    pub lost: u64,
}

/// Syscalls whose enter and exit tracepoints bpftrace attaches: those aiwatch hooks for the
/// workloads.
const BPFTRACE_SYSCALLS: [&str; 8] =
    ["openat", "readlink", "newfstatat", "statx", "connect", "socket", "close", "execve"];

/// `bpftrace --version`'s answer ("bpftrace v0.17.0"), if it runs.
pub fn bpftrace_version() -> Option<String> {
    let out = Command::new("bpftrace").arg("--version").output().ok()?;
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !v.is_empty()).then_some(v)
}

/// bpftrace on `cpu` with the same syscall tracepoints aiwatch hooks for these workloads, each
/// with a filter that never matches: what an equivalent always-attached tool costs untracked
/// processes. Returns once it has attached.
pub fn start_bpftrace(log: &Path, cpu: usize) -> anyhow::Result<Stopper> {
    ensure_tracefs()?;
    let hooks: Vec<String> = BPFTRACE_SYSCALLS
        .iter()
        .flat_map(|s| {
            [format!("tracepoint:syscalls:sys_enter_{s}"), format!("tracepoint:syscalls:sys_exit_{s}")]
        })
        .chain(["tracepoint:sched:sched_process_exec".into(), "tracepoint:sched:sched_process_exit".into()])
        .collect();
    let prog = format!("{} /pid == 1/ {{ @n = count(); }}", hooks.join(","));
    let child = pin(&mut Command::new("bpftrace"), cpu)
        .args(["-e", &prog])
        .stdout(std::fs::File::create(log)?)
        .stderr(Stdio::null())
        .spawn()
        .context("starting bpftrace")?;
    let s = Stopper(child);
    let end = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(log).unwrap_or_default().contains("Attaching") {
        if Instant::now() > end {
            bail!("bpftrace did not attach");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));
    Ok(s)
}

/// bpftrace finds tracepoints in tracefs, which aiwatch mounts when it starts: a run of the
/// bpftrace condition alone mounts it.
fn ensure_tracefs() -> anyhow::Result<()> {
    const AT: &str = "/sys/kernel/tracing";
    if Path::new(AT).join("events").exists() || Path::new("/sys/kernel/debug/tracing/events").exists() {
        return Ok(());
    }
    let st =
        Command::new("mount").args(["-t", "tracefs", "nodev", AT]).status().context("mounting tracefs")?;
    if !st.success() {
        bail!("mount -t tracefs nodev {AT}: {st}");
    }
    Ok(())
}

/// Runs of the BPF programs `pid` holds (the kernel counts them only while statistics are on).
fn program_runs(pid: u32) -> anyhow::Result<u64> {
    Ok(program_stats(pid)?.runs)
}

/// Runs and run time of the BPF programs a process holds (BPF statistics must be on for them to
/// count).
#[derive(Clone, Copy, Default)]
pub struct ProgramStats {
    pub runs: u64,
    pub ns: u64,
}

fn program_stats(pid: u32) -> anyhow::Result<ProgramStats> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut out = ProgramStats::default();
    // A program held through several descriptors (aiwatch keeps duplicates of some) counts once.
    let mut seen = std::collections::HashSet::new();
    for e in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let text = std::fs::read_to_string(e?.path()).unwrap_or_default();
        let field =
            |k: &str| text.lines().find_map(|l| l.strip_prefix(k)).and_then(|v| v.trim().parse::<u64>().ok());
        let Some(id) = field("prog_id:") else { continue };
        if seen.insert(id) {
            out.runs += field("run_cnt:").unwrap_or(0);
            out.ns += field("run_time_ns:").unwrap_or(0);
        }
    }
    Ok(out)
}

/// What the programs of the process `pid` (aiwatch's) ran while `run` ran: their runs and run
/// time, machine-wide (on a quiet machine, the workload's).
pub fn programs_during(pid: u32, run: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<ProgramStats> {
    let stats = BpfStats::on()?;
    let before = program_stats(pid)?;
    run()?;
    let after = program_stats(pid)?;
    drop(stats);
    Ok(ProgramStats { runs: after.runs.saturating_sub(before.runs), ns: after.ns.saturating_sub(before.ns) })
}

/// The kernel's BPF run statistics, on while this is held (`BPF_ENABLE_STATS`: off again when
/// its descriptor closes, even if the bench dies). Not on while overhead is measured: they add
/// two clock reads to every program run, aiwatch's too.
#[allow(dead_code)] // held only for its Drop
struct BpfStats(std::os::fd::OwnedFd);

impl BpfStats {
    fn on() -> anyhow::Result<Self> {
        const BPF_ENABLE_STATS: libc::c_long = 32;
        // union bpf_attr's enable_stats: { __u32 type } (BPF_STATS_RUN_TIME = 0), zero-padded.
        let attr = [0u8; 16];
        // SAFETY: a valid, zeroed attribute of the size passed.
        let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_ENABLE_STATS, attr.as_ptr(), attr.len()) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("BPF_ENABLE_STATS");
        }
        // SAFETY: a descriptor the kernel just returned, owned here alone.
        Ok(Self(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) }))
    }
}

/// How many times bpftrace's programs (the process `pid`) ran while `run` ran, `ops` operations.
pub fn bpftrace_seen(pid: u32, ops: u64, run: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Seen> {
    let stats = BpfStats::on()?;
    let before = program_runs(pid)?;
    run()?;
    let after = program_runs(pid)?;
    drop(stats);
    Ok(Seen { ops, records: Some(after.saturating_sub(before)), lost: 0 })
}

fn auditctl(args: &[&str]) -> anyhow::Result<()> {
    auditctl_out(args).map(drop)
}

fn auditctl_out(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("auditctl").args(args).output().context("running auditctl")?;
    if !out.status.success() {
        bail!("auditctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A field of `auditctl -s` (`lost 0`, `backlog_limit 64`).
fn audit_status(field: &str) -> anyhow::Result<String> {
    let out = auditctl_out(&["-s"])?;
    out.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(' ').map(str::trim))
        .map(str::to_string)
        .with_context(|| format!("no {field} in auditctl -s"))
}

fn audit_counter(field: &str) -> anyhow::Result<u64> {
    audit_status(field)?.parse().with_context(|| format!("auditctl -s {field}"))
}

/// `log_file` of an auditd config (auditd's default if it names none).
fn log_file_of(conf: &str) -> PathBuf {
    conf.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == "log_file")
        .map_or_else(|| PathBuf::from("/var/log/audit/audit.log"), |(_, v)| PathBuf::from(v.trim()))
}

/// The system's auditd config with the log in `log` and never rotated: every record of a run
/// stays where it is counted (the bench empties the log between runs).
fn bench_audit_conf(system: &str, log: &Path) -> String {
    let mut out = String::new();
    for l in system.lines() {
        let key = l.split_once('=').map(|(k, _)| k.trim());
        if !matches!(key, Some("log_file" | "max_log_file_action")) {
            out += l;
            out += "\n";
        }
    }
    out + &format!("log_file = {}\nmax_log_file_action = IGNORE\n", log.display())
}

/// Syscall records carrying the bench's key in `r`.
fn keyed_records(r: impl std::io::BufRead) -> anyhow::Result<u64> {
    let key = format!("key=\"{AUDIT_KEY}\"");
    let mut n = 0;
    for line in r.split(b'\n') {
        let line = String::from_utf8_lossy(&line?).into_owned();
        if line.starts_with("type=SYSCALL ") && line.contains(&key) {
            n += 1;
        }
    }
    Ok(n)
}

/// Where the audit log ended before a run, and the kernel's lost count then.
pub struct Mark {
    ino: u64,
    len: u64,
    lost: u64,
}

fn auditd_pid() -> Option<i32> {
    let pid: i32 = std::fs::read_to_string("/run/auditd.pid").ok()?.trim().parse().ok()?;
    Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
}

/// The files the auditd condition watches: [`AUDIT_WATCHES`] that exist, and what those that are
/// symbolic links lead to.
fn audit_watches() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for f in AUDIT_WATCHES.iter().map(Path::new).filter(|f| f.exists()) {
        out.push(f.to_path_buf());
        if let Ok(real) = std::fs::canonicalize(f) {
            if real != f && !out.contains(&real) {
                out.push(real);
            }
        }
    }
    out
}

/// auditd with read watches on the watched files; the rules are removed on drop, the audit
/// settings this changed put back, and auditd stopped (by the PID in its pid file) if this
/// started it.
pub struct Audit {
    started: bool,
    /// Where auditd writes, and whether the bench owns the log (and may empty it).
    log: PathBuf,
    own_log: bool,
    /// `auditctl` arguments that put back what [`AUDIT_BACKLOG`] and `-e 1` changed.
    restore: Vec<String>,
    /// The files watched.
    pub watches: Vec<PathBuf>,
}

impl Audit {
    /// Starts auditd on `cpu` unless it runs (with its log under `work`), and adds the watches.
    pub fn start(cpu: usize, work: &Path) -> anyhow::Result<Self> {
        // Read before auditd starts: it turns auditing on as it starts, and leaves it on.
        let mut restore = Vec::new();
        for (arg, field) in
            [("-e", "enabled"), ("-b", "backlog_limit"), ("--backlog_wait_time", "backlog_wait_time")]
        {
            restore.extend([arg.to_string(), audit_status(field)?]);
        }
        let system = std::fs::read_to_string("/etc/audit/auditd.conf").unwrap_or_default();
        let (mut log, mut own_log, mut started) = (log_file_of(&system), false, false);
        if auditd_pid().is_none() {
            let dir = work.join("audit");
            std::fs::create_dir_all(&dir)?;
            log = dir.join("audit.log");
            let _ = std::fs::remove_file(&log);
            std::fs::write(dir.join("auditd.conf"), bench_audit_conf(&system, &log))?;
            let st = pin(&mut Command::new("auditd"), cpu)
                .arg("-c")
                .arg(&dir)
                .status()
                .context("starting auditd")?;
            if !st.success() {
                bail!("auditd did not start ({st})");
            }
            (own_log, started) = (true, true);
            std::thread::sleep(Duration::from_millis(500));
        }
        // Made before the rules so that an error from here on still stops what was started.
        let me = Self { started, log, own_log, restore, watches: audit_watches() };
        auditctl(&AUDIT_BACKLOG)?;
        auditctl(&["-e", "1"])?;
        for f in &me.watches {
            auditctl(&["-w", &f.to_string_lossy(), "-p", "r", "-k", AUDIT_KEY])?;
        }
        Ok(me)
    }

    /// Where the log ends now: what a run adds is counted from here.
    pub fn mark(&self) -> anyhow::Result<Mark> {
        let m = std::fs::metadata(&self.log).with_context(|| format!("{}", self.log.display()))?;
        Ok(Mark { ino: m.ino(), len: m.len(), lost: audit_counter("lost")? })
    }

    /// What auditd recorded of a run of `ops` operations since `mark`, once it has written
    /// everything the kernel queued. Records are None if the log was rotated meanwhile (a
    /// system auditd's log). The bench's own log is emptied after.
    pub fn seen_since(&self, mark: &Mark, ops: u64) -> anyhow::Result<Seen> {
        let end = Instant::now() + Duration::from_secs(30);
        let mut last = None;
        // Written when the kernel's queue is empty and the log has stopped growing.
        loop {
            let len = std::fs::metadata(&self.log)?.len();
            if (audit_counter("backlog")? == 0 && last == Some(len)) || Instant::now() > end {
                break;
            }
            last = Some(len);
            std::thread::sleep(Duration::from_millis(300));
        }
        let lost = audit_counter("lost")?.saturating_sub(mark.lost);
        let mut f = std::fs::File::open(&self.log)?;
        let m = f.metadata()?;
        let records = if m.ino() == mark.ino && m.len() >= mark.len {
            f.seek(SeekFrom::Start(mark.len))?;
            Some(keyed_records(BufReader::with_capacity(1 << 20, f))?)
        } else {
            None
        };
        if self.own_log {
            std::fs::OpenOptions::new().write(true).open(&self.log)?.set_len(0)?;
        }
        Ok(Seen { ops, records, lost })
    }
}

impl Drop for Audit {
    fn drop(&mut self) {
        let _ = auditctl(&["-D", "-k", AUDIT_KEY]);
        let restore: Vec<&str> = self.restore.iter().map(String::as_str).collect();
        let _ = auditctl(&restore);
        if self.started {
            if let Some(pid) = auditd_pid() {
                // SAFETY: signalling the auditd this started, by the PID it recorded.
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_syscall_records_of_the_bench_key_are_counted() {
        let log = format!(
            "type=SYSCALL msg=audit(1.0:1): syscall=257 key=\"{AUDIT_KEY}\"\x1dARCH=x86_64\n\
             type=PATH msg=audit(1.0:1): name=\"/etc/machine-id\"\n\
             type=SYSCALL msg=audit(1.0:2): syscall=257 key=\"other\"\n\
             type=CONFIG_CHANGE msg=audit(1.0:4): op=add_rule key=\"{AUDIT_KEY}\" list=4 res=1\n\
             type=SYSCALL msg=audit(1.0:3): syscall=89 key=\"{AUDIT_KEY}\"\n"
        );
        assert_eq!(keyed_records(log.as_bytes()).unwrap(), 2);
    }

    #[test]
    fn the_bench_log_is_never_rotated() {
        let system = "log_file = /var/log/audit/audit.log\nmax_log_file = 8\nmax_log_file_action = ROTATE\n";
        assert_eq!(log_file_of(system), Path::new("/var/log/audit/audit.log"));
        assert_eq!(log_file_of("flush = NONE\n"), Path::new("/var/log/audit/audit.log"));
        let conf = bench_audit_conf(system, Path::new("/b/audit.log"));
        assert_eq!(conf, "max_log_file = 8\nlog_file = /b/audit.log\nmax_log_file_action = IGNORE\n");
        assert_eq!(log_file_of(&conf), Path::new("/b/audit.log"));
    }
}
