//! What the daemon reads of a live process from `/proc` (behind a trait, so the process table
//! can be tested without real processes).

use std::fs;

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
    /// Parent and start time of a process that still runs: `None` once it is gone or a zombie.
    fn live(&self, pid: u32) -> Option<Live> {
        self.info(pid).map(|i| Live { ppid: i.ppid, start_ticks: i.start_ticks })
    }
    fn cwd(&self, pid: u32) -> Option<String>;
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

    fn live(&self, pid: u32) -> Option<Live> {
        parse_live(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
    }

    fn cwd(&self, pid: u32) -> Option<String> {
        link(&format!("/proc/{pid}/cwd"))
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
    let target = fs::read_link(path).ok()?;
    let s = target.to_string_lossy();
    // A deleted executable or directory shows as "<path> (deleted)".
    Some(s.strip_suffix(" (deleted)").unwrap_or(&s).to_string())
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
