//! Repairing what lost records leave wrong. A fork, exec or exit record lost at a full ring
//! buffer leaves the kernel's map, the daemon's table and the running processes disagreeing:
//! a child nobody follows, a process pending in the kernel forever, a session that never ends
//! (with its getenv perf events), a reused pid taken for a dead session's process. A pass
//! compares the three and plans the repair of each disagreement, as the lost record would
//! have done it; the pipeline applies the plan (`pipeline/reconcile.rs`).
//!
//! A disagreement is repaired only when two passes in a row see it: a record still waiting in
//! the ring buffer (a fork the kernel has written but the daemon not read yet) is no loss.
//!
//! Passes are cheap (one `stat` read per process on the host, one walk of the kernel's map)
//! and rare: after the kernel counted a lost record or a full map, to confirm what the last one
//! saw, and every [`PERIODIC`].

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use sensor_common::{TrackState, Tracked};

use super::procfs::Live;

/// A pass at least this often, losses or not.
pub const PERIODIC: Duration = Duration::from_secs(30);
/// A pass after a loss at most this often (a flood loses records every second).
pub const AFTER_LOSS: Duration = Duration::from_secs(2);
/// A pass to confirm what the last one saw this soon.
pub const CONFIRM: Duration = Duration::from_secs(1);
/// Start times (clock ticks) this close are one process: the kernel stamps a fork a little
/// after the child's start (microseconds, more if preempted). A pid reused this soon would take
/// its old process's exit and pid space wrapping within 100 ms.
const START_SLACK_TICKS: u64 = 10;
/// How far a process's parents are followed.
const MAX_DEPTH: usize = 64;

/// What the daemon's table holds of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    pub tracked: Tracked,
    pub start_ticks: Option<u64>,
}

/// What one pass compares.
#[derive(Debug, Default)]
pub struct View {
    /// The daemon's table.
    pub table: HashMap<u32, Known>,
    /// The kernel's map of tracked processes.
    pub kernel: HashMap<u32, Tracked>,
    /// Every running process.
    pub live: HashMap<u32, Live>,
    /// Never followed (the daemon itself).
    pub ignore: Vec<u32>,
}

/// The record whose loss a repair makes up for (the `kind` label of
/// `aiwatch_reconcile_repairs_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lost {
    Exit,
    Fork,
    Exec,
    /// The kernel's map disagreed (a stale or missing entry, a wrong session).
    KernelMap,
}

impl Lost {
    pub const ALL: [Lost; 4] = [Lost::Exit, Lost::Fork, Lost::Exec, Lost::KernelMap];

    pub fn label(self) -> &'static str {
        match self {
            Lost::Exit => "exit",
            Lost::Fork => "fork",
            Lost::Exec => "exec",
            Lost::KernelMap => "kernel_map",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// In the table, but gone (or its pid is another process's now): end it as its exit would.
    Exit { pid: u32 },
    /// Delete the kernel's entry: its process is gone (`KernelMap`), belongs to a session that
    /// ended (`KernelMap`), or is pending and no assistant (`Exec`, as its exec would have).
    Untrack { pid: u32, lost: Lost },
    /// Pending in the kernel, unknown to the daemon, an assistant by `/proc`: a session.
    Start { pid: u32, assistant: String, start_ticks: u64 },
    /// A descendant of session `root` (child of `ppid`) the daemon does not know: add it, as
    /// its fork would have.
    Adopt { pid: u32, ppid: u32, root: u32, start_ticks: u64 },
    /// The kernel's entry of a process in the table is missing or says otherwise: write it.
    Write { pid: u32, tracked: Tracked },
}

impl Repair {
    pub fn pid(&self) -> u32 {
        match self {
            Repair::Exit { pid }
            | Repair::Untrack { pid, .. }
            | Repair::Start { pid, .. }
            | Repair::Adopt { pid, .. }
            | Repair::Write { pid, .. } => *pid,
        }
    }

    pub fn lost(&self) -> Lost {
        match self {
            Repair::Exit { .. } => Lost::Exit,
            Repair::Untrack { lost, .. } => *lost,
            Repair::Start { .. } => Lost::Exec,
            Repair::Adopt { .. } => Lost::Fork,
            Repair::Write { .. } => Lost::KernelMap,
        }
    }
}

/// A disagreement as a pass saw it: which repair, of which process (by pid and start time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Seen {
    what: &'static str,
    pid: u32,
    start_ticks: u64,
}

/// When passes run, and what the last one saw.
#[derive(Debug)]
pub struct Reconciler {
    seen: HashSet<Seen>,
    last: Instant,
    /// The kernel's loss counters at the last pass.
    losses: u64,
}

impl Reconciler {
    pub fn new(now: Instant) -> Self {
        Self { seen: HashSet::new(), last: now, losses: 0 }
    }

    /// Whether a pass is due at `now`, the kernel having counted `losses` (lost records and
    /// processes not tracked at a full map) so far; why, if so.
    pub fn due(&self, now: Instant, losses: u64) -> Option<&'static str> {
        let since = now.saturating_duration_since(self.last);
        if losses > self.losses && since >= AFTER_LOSS {
            Some("loss")
        } else if !self.seen.is_empty() && since >= CONFIRM {
            Some("confirm")
        } else if since >= PERIODIC {
            Some("periodic")
        } else {
            None
        }
    }

    /// One pass over `view`: the repairs of what this pass and the last one both saw, in the
    /// order to apply them (exits first, parents before children). `classify` names the
    /// assistant a process is, by `/proc`.
    pub fn pass(
        &mut self,
        view: &View,
        now: Instant,
        losses: u64,
        classify: &mut dyn FnMut(u32) -> Option<String>,
    ) -> Vec<Repair> {
        let mut plan = Plan {
            view,
            before: &self.seen,
            seen: HashSet::new(),
            members: HashMap::new(),
            deferred: HashSet::new(),
            reused: HashSet::new(),
            out: Vec::new(),
        };
        plan.exits();
        plan.stale();
        plan.pending(classify);
        plan.adoptions();
        plan.writes();
        let (seen, out) = (plan.seen, plan.out);
        self.seen = seen;
        self.last = now;
        self.losses = losses;
        out
    }
}

/// Where a process's parents lead.
enum Owner {
    /// To a process of this session.
    Session(u32),
    /// To a process whose repair waits for the next pass.
    Deferred,
    None,
}

struct Plan<'a> {
    view: &'a View,
    before: &'a HashSet<Seen>,
    seen: HashSet<Seen>,
    /// Session (root pid) of each process the table holds once the planned repairs are applied.
    members: HashMap<u32, u32>,
    /// Processes whose state waits for the next pass (their descendants wait too).
    deferred: HashSet<u32>,
    /// Pids of the table that another process has now.
    reused: HashSet<u32>,
    out: Vec<Repair>,
}

impl Plan<'_> {
    /// Whether the last pass saw this too; remembered for the next.
    fn confirmed(&mut self, what: &'static str, pid: u32) -> bool {
        let start_ticks = self.view.live.get(&pid).map_or(0, |l| l.start_ticks);
        let s = Seen { what, pid, start_ticks };
        self.seen.insert(s);
        self.before.contains(&s)
    }

    fn ignored(&self, pid: u32) -> bool {
        self.view.ignore.contains(&pid)
    }

    /// Processes of the table gone, or whose pid another process has now.
    fn exits(&mut self) {
        let mut table: Vec<(&u32, &Known)> = self.view.table.iter().collect();
        table.sort_unstable_by_key(|(pid, _)| **pid);
        for (&pid, k) in table {
            let gone = match (self.view.live.get(&pid), k.start_ticks) {
                (None, _) => true,
                (Some(l), Some(t)) => l.start_ticks.abs_diff(t) > START_SLACK_TICKS,
                (Some(_), None) => false,
            };
            if !gone {
                self.members.insert(pid, k.tracked.session);
                continue;
            }
            if self.view.live.contains_key(&pid) {
                self.reused.insert(pid);
            }
            if self.confirmed("exit", pid) {
                self.out.push(Repair::Exit { pid });
            } else {
                self.deferred.insert(pid);
            }
        }
    }

    /// Kernel entries of processes that are gone.
    fn stale(&mut self) {
        let mut gone: Vec<u32> =
            self.view.kernel.keys().copied().filter(|p| !self.view.live.contains_key(p)).collect();
        gone.sort_unstable();
        for pid in gone {
            if self.confirmed("untrack", pid) {
                self.out.push(Repair::Untrack { pid, lost: Lost::KernelMap });
            }
        }
    }

    /// Processes pending in the kernel that the daemon does not know (their exec was lost),
    /// ancestors first: one under a session joins it (see [`Self::adoptions`]); any other is
    /// classified from /proc.
    fn pending(&mut self, classify: &mut dyn FnMut(u32) -> Option<String>) {
        let mut pending: Vec<(usize, u32)> = self
            .view
            .kernel
            .iter()
            .filter(|(pid, t)| t.state == TrackState::Pending as u32 && self.unknown(**pid))
            .map(|(pid, _)| (self.depth(*pid), *pid))
            .collect();
        pending.sort_unstable();
        for (_, pid) in pending {
            match self.owner(pid) {
                Owner::Session(_) => {}
                Owner::Deferred => {
                    // Seen: once its ancestor is settled, the next pass may settle it too.
                    self.confirmed("exec", pid);
                    self.deferred.insert(pid);
                }
                Owner::None if self.confirmed("exec", pid) => {
                    let start_ticks = self.view.live[&pid].start_ticks;
                    match classify(pid) {
                        Some(assistant) => {
                            self.members.insert(pid, pid);
                            self.out.push(Repair::Start { pid, assistant, start_ticks });
                        }
                        None => self.out.push(Repair::Untrack { pid, lost: Lost::Exec }),
                    }
                }
                Owner::None => {
                    self.deferred.insert(pid);
                }
            }
        }
    }

    /// Running processes the daemon does not know under a session's process (their fork, or an
    /// ancestor's, was lost), or in the kernel's map for a session that still runs (re-parented
    /// away). A kernel entry for a session that ended is deleted.
    fn adoptions(&mut self) {
        let mut found: Vec<(usize, u32, u32)> = Vec::new();
        let mut orphans: Vec<u32> = Vec::new();
        for &pid in self.view.live.keys() {
            if !self.unknown(pid) {
                continue;
            }
            let kernel = self.view.kernel.get(&pid).filter(|t| t.state != TrackState::Pending as u32);
            match (self.owner(pid), kernel) {
                (Owner::Session(root), _) => found.push((self.depth(pid), pid, root)),
                (Owner::None, Some(t)) if self.is_session(t.session) => {
                    found.push((self.depth(pid), pid, t.session))
                }
                (Owner::None, Some(_)) => orphans.push(pid),
                (Owner::Deferred, _) => {
                    self.confirmed("adopt", pid);
                }
                (Owner::None, None) => {}
            }
        }
        found.sort_unstable();
        for (_, pid, root) in found {
            if self.confirmed("adopt", pid) {
                let l = self.view.live[&pid];
                self.members.insert(pid, root);
                self.out.push(Repair::Adopt { pid, ppid: l.ppid, root, start_ticks: l.start_ticks });
            }
        }
        orphans.sort_unstable();
        for pid in orphans {
            if self.confirmed("orphan", pid) {
                self.out.push(Repair::Untrack { pid, lost: Lost::KernelMap });
            }
        }
    }

    /// Kernel entries of the table's running processes that are missing or say otherwise.
    fn writes(&mut self) {
        let mut table: Vec<(&u32, &Known)> = self.view.table.iter().collect();
        table.sort_unstable_by_key(|(pid, _)| **pid);
        for (&pid, k) in table {
            if !self.members.contains_key(&pid) || self.view.kernel.get(&pid) == Some(&k.tracked) {
                continue;
            }
            if self.confirmed("write", pid) {
                self.out.push(Repair::Write { pid, tracked: k.tracked });
            }
        }
    }

    /// Running, not in the table (or there as an older process with its pid), not added by
    /// this plan, not ignored.
    fn unknown(&self, pid: u32) -> bool {
        self.view.live.contains_key(&pid)
            && (!self.view.table.contains_key(&pid) || self.reused.contains(&pid))
            && !self.members.contains_key(&pid)
            && !self.ignored(pid)
    }

    /// A session of the table, or started by this plan, that keeps a member.
    fn is_session(&self, root: u32) -> bool {
        root != 0 && self.members.values().any(|r| *r == root)
    }

    /// The session of the nearest ancestor that is a member.
    fn owner(&self, pid: u32) -> Owner {
        let mut cur = pid;
        for _ in 0..MAX_DEPTH {
            let Some(l) = self.view.live.get(&cur) else { return Owner::None };
            let parent = l.ppid;
            if parent == 0 || parent == cur || self.ignored(parent) {
                return Owner::None;
            }
            if let Some(root) = self.members.get(&parent) {
                return Owner::Session(*root);
            }
            if self.deferred.contains(&parent) {
                return Owner::Deferred;
            }
            cur = parent;
        }
        Owner::None
    }

    /// Ancestors in /proc, for parents-first order.
    fn depth(&self, pid: u32) -> usize {
        let mut cur = pid;
        for depth in 0..MAX_DEPTH {
            match self.view.live.get(&cur) {
                Some(l) if l.ppid != 0 && l.ppid != cur => cur = l.ppid,
                _ => return depth,
            }
        }
        MAX_DEPTH
    }
}

#[cfg(test)]
mod tests;
