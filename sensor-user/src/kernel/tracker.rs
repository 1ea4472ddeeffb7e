//! What the pipeline asks of the kernel side: follow a process or stop, follow a session's
//! getenv calls, hand over a socket's last byte counts.

use sensor_common::Tracked;

use crate::kernel::{maps::KernelMaps, uprobes::EnvProbes};

/// The kernel's map of tracked processes, and the getenv probes, as the pipeline sees them.
pub trait Tracker {
    /// Updates a process the kernel tracks already (classified, or its session started).
    fn track(&mut self, pid: u32, t: Tracked);
    /// Adds a process the kernel never saw start (the start-up scan).
    fn track_scanned(&mut self, pid: u32, t: Tracked) {
        self.track(pid, t)
    }
    fn untrack(&mut self, pid: u32);
    /// Every entry of the kernel's map (for reconciliation, see `model::procs::reconcile`).
    fn entries(&self) -> Vec<(u32, Tracked)>;
    /// A session began: follow its processes' getenv calls.
    fn session_started(&mut self, _root: u32, _pids: Vec<u32>) {}
    /// A process of session `root` forked.
    fn session_forked(&mut self, _root: u32, _parent: u32, _child: u32, _fork_ns: u64) {}
    /// A process of session `root` exec'd another program.
    fn session_exec(&mut self, _root: u32, _pid: u32) {}
    /// A process of session `root` opened `path` (resolved as it sees it).
    fn session_opened(&mut self, _root: u32, _pid: u32, _path: &str) {}
    fn session_ended(&mut self, _root: u32) {}
    /// Final byte counts (sent, received) of a socket whose process exited; forgets it.
    fn take_sock(&mut self, pid: u32, fd: i32) -> (u64, u64);
}

/// The kernel side as the daemon runs it: the maps, and the getenv probes.
pub struct Kernel {
    pub maps: KernelMaps,
    pub env: EnvProbes,
}

impl Tracker for Kernel {
    fn track(&mut self, pid: u32, t: Tracked) {
        self.maps.track(pid, t)
    }
    fn track_scanned(&mut self, pid: u32, t: Tracked) {
        self.maps.track_scanned(pid, t)
    }
    fn untrack(&mut self, pid: u32) {
        self.maps.untrack(pid)
    }
    fn entries(&self) -> Vec<(u32, Tracked)> {
        self.maps.entries()
    }
    fn take_sock(&mut self, pid: u32, fd: i32) -> (u64, u64) {
        self.maps.take_sock(pid, fd)
    }
    fn session_started(&mut self, root: u32, pids: Vec<u32>) {
        self.env.attach(root, pids)
    }
    fn session_forked(&mut self, root: u32, parent: u32, child: u32, fork_ns: u64) {
        self.env.forked(root, parent, child, fork_ns)
    }
    fn session_exec(&mut self, root: u32, pid: u32) {
        self.env.exec(root, pid)
    }
    fn session_opened(&mut self, root: u32, pid: u32, path: &str) {
        self.env.tls_opened(root, pid, path)
    }
    fn session_ended(&mut self, root: u32) {
        self.env.detach(root)
    }
}
