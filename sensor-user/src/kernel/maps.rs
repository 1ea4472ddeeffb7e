//! The maps user space reads and writes while the daemon runs: tracked processes, sockets'
//! byte counts, candidate executable names, and the kernel-side counters.

use anyhow::Context as _;
use aya::{
    maps::{HashMap as BpfHashMap, MapData, MapError, PerCpuArray, RingBuf},
    Ebpf,
};

/// `BPF_EXIST`: update an existing element only.
const BPF_EXIST: u64 = 2;
use sensor_common::{CandidateKey, SockInfo, SockKey, Stat, TlsKey, Tracked, COMM_LEN, SOCK_FD_SLOTS};

/// The maps the daemon reads and writes while running.
pub struct KernelMaps {
    pub tracked: BpfHashMap<MapData, u32, Tracked>,
    pub socks: BpfHashMap<MapData, SockKey, SockInfo>,
    pub candidates: BpfHashMap<MapData, CandidateKey, u32>,
    /// OpenSSL connections whose request is being copied, with the budget left.
    tls_streams: BpfHashMap<MapData, TlsKey, u32>,
    /// Which fds of a process may be followed sockets (values unread: entries are removed).
    sock_fds: BpfHashMap<MapData, u32, [u8; SOCK_FD_SLOTS]>,
    pub stats: PerCpuArray<MapData, u64>,
    /// Per-thread slots of path syscalls in flight (values unread: only counted).
    file_args: BpfHashMap<MapData, u32, [u8; FILE_ARGS_SIZE]>,
    /// Sockets whose owner is no longer tracked, and since when: removed once they stay so
    /// for [`ORPHAN_GRACE`].
    orphans: std::collections::HashMap<SockKey, std::time::Instant>,
}

/// Bytes of the eBPF crate's `FileArgs` (asserted there).
const FILE_ARGS_SIZE: usize = 32;

/// How long a socket whose owner is not tracked stays in `SOCKS`: its exit record, which takes
/// the socket's byte counts, comes well within it.
const ORPHAN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

impl KernelMaps {
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<(Self, RingBuf<MapData>)> {
        let tracked = BpfHashMap::try_from(ebpf.take_map("TRACKED").context("map TRACKED missing")?)?;
        let stats = PerCpuArray::try_from(ebpf.take_map("STATS").context("map STATS missing")?)?;
        let socks = BpfHashMap::try_from(ebpf.take_map("SOCKS").context("map SOCKS missing")?)?;
        let candidates =
            BpfHashMap::try_from(ebpf.take_map("CANDIDATES").context("map CANDIDATES missing")?)?;
        let file_args = BpfHashMap::try_from(ebpf.take_map("FILE_ARGS").context("map FILE_ARGS missing")?)?;
        let tls_streams =
            BpfHashMap::try_from(ebpf.take_map("TLS_STREAMS").context("map TLS_STREAMS missing")?)?;
        let sock_fds = BpfHashMap::try_from(ebpf.take_map("SOCK_FDS").context("map SOCK_FDS missing")?)?;
        let events = RingBuf::try_from(ebpf.take_map("EVENTS").context("map EVENTS missing")?)?;
        let orphans = Default::default();
        Ok((Self { tracked, socks, candidates, stats, file_args, tls_streams, sock_fds, orphans }, events))
    }

    /// Sums of the per-CPU counters.
    pub fn stats(&self) -> [u64; Stat::COUNT as usize] {
        let mut out = [0u64; Stat::COUNT as usize];
        for stat in Stat::ALL {
            if let Ok(values) = self.stats.get(&(stat as u32), 0) {
                out[stat as usize] = values.iter().sum();
            }
        }
        out
    }

    /// Updates the entry the kernel made at the process's exec or fork. Only an update: a
    /// process classified after it exited has no entry left, and must not get one back (it
    /// would stay forever).
    pub fn track(&mut self, pid: u32, t: Tracked) {
        match self.tracked.insert(pid, t, BPF_EXIST) {
            Ok(()) => {}
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => {
                tracing::debug!(pid, "process gone before its classification reached the kernel");
            }
            Err(e) => tracing::warn!(pid, error = %e, "cannot write the tracked-process map"),
        }
    }

    /// Adds a process found by the start-up scan (the kernel never saw it start). Written
    /// first, then checked: a process that exited in between has its entry removed again.
    pub fn track_scanned(&mut self, pid: u32, t: Tracked) {
        if let Err(e) = self.tracked.insert(pid, t, 0) {
            tracing::warn!(pid, error = %e, "cannot write the tracked-process map");
            return;
        }
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = self.tracked.remove(&pid);
        }
    }

    pub fn untrack(&mut self, pid: u32) {
        // Already gone (the process exited) is fine.
        let _ = self.tracked.remove(&pid);
    }

    /// The tracked-process map's entries.
    pub fn entries(&self) -> Vec<(u32, Tracked)> {
        self.tracked.iter().filter_map(Result::ok).collect()
    }

    /// Entries in the tracked-process and socket maps, after removing sockets left behind by
    /// processes no longer tracked. `SOCKS` is a plain hash map (a full one refuses, and counts,
    /// rather than evicting), so nothing may stay in it for good: a socket a process never
    /// closed whose exit record was lost, or one of a process that turned out not to be in a
    /// session (the kernel stops following its close()).
    pub fn occupancy(&mut self) -> (usize, usize) {
        let tracked: std::collections::HashSet<u32> = self.tracked.keys().filter_map(Result::ok).collect();
        let socks: Vec<SockKey> = self.socks.keys().filter_map(Result::ok).collect();
        let now = std::time::Instant::now();
        let mut orphans = std::collections::HashMap::new();
        let mut removed = 0;
        for key in socks.iter().filter(|k| !tracked.contains(&k.tgid)) {
            let since = self.orphans.get(key).copied().unwrap_or(now);
            if now.duration_since(since) >= ORPHAN_GRACE {
                if self.socks.remove(key).is_ok() {
                    removed += 1;
                }
            } else {
                orphans.insert(*key, since);
            }
        }
        if removed > 0 {
            tracing::debug!(removed, "sockets of processes no longer tracked removed from the kernel map");
        }
        self.orphans = orphans;
        // An OpenSSL connection's entry goes when its budget is used up; one whose process is
        // gone (or no longer tracked) before that goes here.
        let streams: Vec<TlsKey> = self.tls_streams.keys().filter_map(Result::ok).collect();
        for key in streams.iter().filter(|k| !tracked.contains(&k.tgid)) {
            let _ = self.tls_streams.remove(key);
        }
        // A process's socket fds go with its exit; those of one no longer tracked (its close()
        // is not followed any more) go here.
        let sock_fds: Vec<u32> = self.sock_fds.keys().filter_map(Result::ok).collect();
        for tgid in sock_fds.iter().filter(|t| !tracked.contains(t)) {
            let _ = self.sock_fds.remove(tgid);
        }
        (tracked.len(), socks.len() - removed)
    }

    /// Entries in `FILE_ARGS`: one per live thread of a tracked process that made a path
    /// syscall (a thread's slot goes at its exit).
    pub fn thread_slots(&self) -> usize {
        self.file_args.keys().filter(Result::is_ok).count()
    }

    /// Byte counts of a socket its process never closed; removes it from the map.
    pub fn take_sock(&mut self, pid: u32, fd: i32) -> (u64, u64) {
        let key = SockKey { tgid: pid, fd: fd as u32 };
        let info = self.socks.get(&key, 0).unwrap_or_default();
        let _ = self.socks.remove(&key);
        (info.bytes_sent, info.bytes_recv)
    }
}

fn candidate_key(name: &str) -> CandidateKey {
    let mut key = [0u8; COMM_LEN];
    let n = name.len().min(COMM_LEN - 1);
    key[..n].copy_from_slice(&name.as_bytes()[..n]);
    key
}

/// Writes the candidate executable names (see `AssistantClassifier::candidate_names`).
pub fn set_candidates(ebpf: &mut Ebpf, names: &[String]) -> anyhow::Result<()> {
    let mut map: BpfHashMap<&mut MapData, CandidateKey, u32> =
        BpfHashMap::try_from(ebpf.map_mut("CANDIDATES").context("map CANDIDATES missing")?)?;
    for name in names {
        map.insert(candidate_key(name), 1, 0)
            .with_context(|| format!("adding candidate {name:?} (at most 512)"))?;
    }
    Ok(())
}

impl KernelMaps {
    /// Replaces the candidate names (config reload): new ones first, then stale ones removed.
    pub fn replace_candidates(&mut self, names: &[String]) -> anyhow::Result<()> {
        let wanted: std::collections::HashSet<CandidateKey> =
            names.iter().map(|n| candidate_key(n)).collect();
        for key in &wanted {
            self.candidates.insert(*key, 1, 0).context("adding a candidate (at most 512)")?;
        }
        let stale: Vec<CandidateKey> =
            self.candidates.keys().filter_map(Result::ok).filter(|k| !wanted.contains(k)).collect();
        for key in stale {
            let _ = self.candidates.remove(&key);
        }
        Ok(())
    }
}
