//! What the daemon reads of a live process from `/proc` (behind a trait, so the process table
//! can be tested without real processes).

use std::{fmt::Write as _, fs, io::Read as _};

/// A process as `/proc` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub comm: String,
    pub exe: String,
    pub argv: Vec<String>,
    pub cwd: Option<String>,
    /// Start time in clock ticks after boot (field 22 of `stat`): tells a reused pid apart.
    pub start_ticks: u64,
}

/// A running process as `stat` alone shows it: what a reconciliation pass reads of every
/// process (see [`super::reconcile`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Live {
    pub ppid: u32,
    /// As [`ProcInfo::start_ticks`].
    pub start_ticks: u64,
}

pub trait ProcSource {
    fn info(&self, pid: u32) -> Option<ProcInfo>;
    /// What classifying a process and placing it in the tree needs (comm, parent, start time,
    /// exe, and argv where `argv_wanted(exe, comm)`), for the start-up scan, which reads every
    /// process: `uid` is `u32::MAX`, `cwd` `None` and a command line not wanted empty until
    /// [`Self::complete`] fills them in for the few that belong to a session.
    fn classifiable(&self, pid: u32, argv_wanted: &dyn Fn(&str, &str) -> bool) -> Option<ProcInfo> {
        let mut i = self.info(pid)?;
        if !argv_wanted(&i.exe, &i.comm) {
            i.argv.clear();
        }
        Some(i)
    }
    /// Fills in the `uid`, `cwd` and command line that [`Self::classifiable`] left out.
    fn complete(&self, info: &mut ProcInfo) {
        if let Some(i) = self.info(info.pid) {
            info.uid = i.uid;
            info.cwd = i.cwd;
            if info.argv.is_empty() {
                info.argv = i.argv;
            }
        }
    }
    /// Parent and start time of a process that still runs: `None` once it is gone or a zombie.
    fn live(&self, pid: u32) -> Option<Live> {
        self.info(pid).map(|i| Live { ppid: i.ppid, start_ticks: i.start_ticks })
    }
    fn cwd(&self, pid: u32) -> Option<String>;
    /// The `NAME=value` entries a process was started with, while it lives.
    fn environ(&self, _pid: u32) -> Option<Vec<String>> {
        None
    }
    fn fd_path(&self, pid: u32, fd: i32) -> Option<String>;
    fn pids(&self) -> Vec<u32>;
}

/// The real `/proc`.
pub struct ProcFs;

impl ProcSource for ProcFs {
    fn info(&self, pid: u32) -> Option<ProcInfo> {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (comm, ppid, start_ticks) = parse_stat(&stat)?;
        let uid = fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| parse_uid(&s))
            .unwrap_or(u32::MAX);
        let argv = fs::read(format!("/proc/{pid}/cmdline")).map(|b| split_nul(&b)).unwrap_or_default();
        Some(ProcInfo {
            pid,
            ppid,
            uid,
            comm,
            exe: link(&format!("/proc/{pid}/exe")).unwrap_or_default(),
            argv,
            cwd: self.cwd(pid),
            start_ticks,
        })
    }

    /// At most three reads instead of [`Self::info`]'s five, each one open, read and close into
    /// one buffer (`fs::read` would also `statx` the file for a size hint `/proc` does not give);
    /// the command line only where `argv_wanted` (about 40 % of a process's cost).
    fn classifiable(&self, pid: u32, argv_wanted: &dyn Fn(&str, &str) -> bool) -> Option<ProcInfo> {
        let mut buf = Vec::with_capacity(1024);
        let mut path = String::with_capacity(24);
        let _ = write!(path, "/proc/{pid}/stat");
        read_into(&path, &mut buf).ok()?;
        let (comm, ppid, start_ticks) = parse_stat(&String::from_utf8_lossy(&buf))?;
        path.truncate(path.len() - "stat".len());
        path.push_str("exe");
        let exe = fs::read_link(&path);
        // No executable (a kernel thread, or a zombie): no memory either, so no command line.
        let no_mm = exe.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
        let exe = exe.ok().map(|t| deleted(&t.to_string_lossy())).unwrap_or_default();
        let argv = if no_mm || !argv_wanted(&exe, &comm) {
            Vec::new()
        } else {
            path.truncate(path.len() - "exe".len());
            path.push_str("cmdline");
            read_into(&path, &mut buf).map(|()| split_nul(&buf)).unwrap_or_default()
        };
        Some(ProcInfo { pid, ppid, uid: u32::MAX, comm, exe, argv, cwd: None, start_ticks })
    }

    fn complete(&self, info: &mut ProcInfo) {
        let pid = info.pid;
        let mut buf = Vec::with_capacity(2048);
        info.uid = read_into(&format!("/proc/{pid}/status"), &mut buf)
            .ok()
            .and_then(|()| parse_uid(&String::from_utf8_lossy(&buf)))
            .unwrap_or(u32::MAX);
        info.cwd = self.cwd(pid);
        if info.argv.is_empty() && !info.exe.is_empty() {
            info.argv = read_into(&format!("/proc/{pid}/cmdline"), &mut buf)
                .map(|()| split_nul(&buf))
                .unwrap_or_default();
        }
    }

    fn live(&self, pid: u32) -> Option<Live> {
        parse_live(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    fn cwd(&self, pid: u32) -> Option<String> {
        link(&format!("/proc/{pid}/cwd"))
    }

    /// None unless the process still had its memory after the read: one exiting as it is read
    /// gives part of its environment, or none (its `cmdline` is empty from then on too).
    fn environ(&self, pid: u32) -> Option<Vec<String>> {
        let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
        let alive = fs::File::open(format!("/proc/{pid}/cmdline"))
            .and_then(|mut f| std::io::Read::read(&mut f, &mut [0u8; 1]))
            .is_ok_and(|n| n > 0);
        alive.then(|| split_nul(&env))
    }

    fn fd_path(&self, pid: u32, fd: i32) -> Option<String> {
        link(&format!("/proc/{pid}/fd/{fd}")).filter(|p| p.starts_with('/'))
    }

    fn pids(&self) -> Vec<u32> {
        let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
        dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
    }
}

/// No live processes (tests): everything must come from the event stream.
#[cfg(test)]
pub struct Gone;

#[cfg(test)]
impl ProcSource for Gone {
    fn info(&self, _: u32) -> Option<ProcInfo> {
        None
    }
    fn cwd(&self, _: u32) -> Option<String> {
        None
    }
    fn fd_path(&self, _: u32, _: i32) -> Option<String> {
        None
    }
    fn pids(&self) -> Vec<u32> {
        Vec::new()
    }
}

fn link(path: &str) -> Option<String> {
    Some(deleted(&fs::read_link(path).ok()?.to_string_lossy()))
}

/// A link's target without the mark of a deleted executable or directory ("<path> (deleted)").
fn deleted(target: &str) -> String {
    target.strip_suffix(" (deleted)").unwrap_or(target).to_string()
}

/// The whole of a `/proc` file at `path` into `buf` (cleared first), in as few syscalls as it
/// can be: not `read_to_end`, which on a `File` asks for the size (`statx`, `lseek`) `/proc` does
/// not know, then reads until a read returns nothing. The files read here (`stat` and `status`,
/// one record each, and `cmdline`) give everything they have left to a read with room for it, so
/// a short read is their end (not so for a file of many records such as `maps`).
fn read_into(path: &str, buf: &mut Vec<u8>) -> std::io::Result<()> {
    buf.clear();
    let mut f = fs::File::open(path)?;
    let mut chunk = [0u8; 4096];
    loop {
        match f.read(&mut chunk) {
            Ok(n) if n < chunk.len() => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(());
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// comm, ppid and start time from `/proc/<pid>/stat` (comm may contain spaces and parentheses).
pub fn parse_stat(stat: &str) -> Option<(String, u32, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.to_string();
    let rest: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is the state (field 3); ppid is field 4, starttime field 22.
    let ppid = rest.get(1)?.parse().ok()?;
    let start = rest.get(19)?.parse().ok()?;
    Some((comm, ppid, start))
}

/// [`Live`] from `/proc/<pid>/stat`; `None` for a zombie (exited, not yet reaped: its exit has
/// happened) unless other threads still run (a leader that exited alone).
pub fn parse_live(stat: &str) -> Option<Live> {
    let rest: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state): ppid is field 4, num_threads field 20, starttime field 22.
    let threads: u64 = rest.get(17)?.parse().ok()?;
    if matches!(*rest.first()?, "Z" | "X" | "x") && threads <= 1 {
        return None;
    }
    Some(Live { ppid: rest.get(1)?.parse().ok()?, start_ticks: rest.get(19)?.parse().ok()? })
}

/// Clock ticks per second is 100 on every Linux ABI that matters here (USER_HZ).
const NS_PER_TICK: u64 = 10_000_000;

/// A start time in clock ticks after boot, in boot-time nanoseconds.
pub fn ticks_to_ns(ticks: u64) -> u64 {
    ticks.saturating_mul(NS_PER_TICK)
}

/// Boot-time nanoseconds in clock ticks, as `stat` shows a start time.
pub fn ns_to_ticks(ns: u64) -> u64 {
    ns / NS_PER_TICK
}

fn parse_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn split_nul(b: &[u8]) -> Vec<String> {
    let b = b.strip_suffix(&[0]).unwrap_or(b);
    if b.is_empty() {
        return Vec::new();
    }
    b.split(|&c| c == 0).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm() {
        let s = "4242 (my (odd) proc) S 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 2";
        assert_eq!(parse_stat(s), Some(("my (odd) proc".to_string(), 17, 987654)));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S"), None);
        assert_eq!(parse_live(s), Some(Live { ppid: 17, start_ticks: 987654 }));
        // A zombie is gone; a leader that exited alone while another thread runs is not.
        let zombie = s.replace(") S 17", ") Z 17");
        assert_eq!(parse_live(&zombie), None);
        let leader = zombie.replace(" 20 0 1 0 ", " 20 0 2 0 ");
        assert_eq!(parse_live(&leader), Some(Live { ppid: 17, start_ticks: 987654 }));
    }

    #[test]
    fn the_scans_reads_complete_are_what_info_reads() {
        let me = std::process::id();
        let mut brief = ProcFs.classifiable(me, &|_, _| true).expect("own /proc entry");
        assert_eq!((brief.uid, brief.cwd.as_deref()), (u32::MAX, None));
        assert!(!brief.argv.is_empty());
        ProcFs.complete(&mut brief);
        assert_eq!(Some(brief), ProcFs.info(me));
        // A command line not wanted for classifying is read when the process is completed.
        let asked = std::cell::RefCell::new(None);
        let mut brief = ProcFs
            .classifiable(me, &|exe, comm| {
                assert!(asked.replace(Some((exe.to_string(), comm.to_string()))).is_none());
                false
            })
            .expect("own /proc entry");
        assert!(brief.argv.is_empty());
        assert_eq!(asked.into_inner(), Some((brief.exe.clone(), brief.comm.clone())));
        ProcFs.complete(&mut brief);
        assert_eq!(Some(brief), ProcFs.info(me));
        // Kernel threads (kthreadd is 2 where /proc shows the host's processes): no executable,
        // so no command line read.
        if let (Some(mut k), Some(info)) = (ProcFs.classifiable(2, &|_, _| true), ProcFs.info(2)) {
            assert!(k.exe.is_empty() && k.argv.is_empty(), "{k:?}");
            ProcFs.complete(&mut k);
            assert_eq!(k, info);
        }
    }

    #[test]
    fn a_proc_file_is_read_whole() {
        let mut buf = Vec::new();
        // A command line longer than one read's room: read on past a full one.
        let long = "x".repeat(10_000);
        let mut child = std::process::Command::new("sh").args(["-c", "sleep 5", &long]).spawn().unwrap();
        // Until the exec has happened.
        for _ in 0..200 {
            read_into(&format!("/proc/{}/cmdline", child.id()), &mut buf).unwrap();
            if buf.starts_with(b"sh\0") {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(split_nul(&buf), ["sh", "-c", "sleep 5", long.as_str()]);
        read_into("/proc/self/stat", &mut buf).unwrap();
        assert!(parse_stat(&String::from_utf8_lossy(&buf)).is_some());
        assert!(read_into("/proc/0/stat", &mut buf).is_err());
    }

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id();
        let info = ProcFs.info(me).expect("own /proc entry");
        assert_eq!(info.pid, me);
        assert!(info.exe.starts_with('/'));
        assert!(!info.argv.is_empty());
        assert!(ProcFs.pids().contains(&me));
        assert_eq!(ProcFs.live(me).map(|l| l.start_ticks), Some(info.start_ticks));
        assert_eq!(ProcFs.cwd(me), std::env::current_dir().ok().map(|p| p.to_string_lossy().into_owned()));
    }
}
