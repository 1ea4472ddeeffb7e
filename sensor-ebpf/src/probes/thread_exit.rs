//! What a thread leaves in the maps goes with it: the per-thread slots of in-flight syscalls and
//! variable reads (reused in place, never deleted per call), and, for a process's leader, its
//! `PARENTS` entry. The maps are plain hash maps (a full one is counted, never evicted from), so
//! nothing may stay behind its owner.

use aya_ebpf::{macros::tracepoint, maps::HashMap, programs::TracePointContext};

use crate::{
    helpers::current_ids,
    maps::{ENV_PENDING, ENV_STASH, EXEC_STASH, FILE_ARGS, NET_ARGS, PARENTS, TLS_CALLS},
};

/// Every thread's exit, tracked or not (a process untracked after classification keeps its
/// slots): a lookup per map, a delete only where there is something.
#[tracepoint]
pub fn process_enter_sched_exit_thread(_ctx: TracePointContext) -> u32 {
    let (tgid, tid) = current_ids();
    forget_thread(tid);
    if tid == tgid {
        // The leader: the process ends with it, or (exec from another thread) is replaced by
        // that thread, which exec reports with a ppid of 0 then.
        remove(&PARENTS, tgid);
    }
    0
}

/// Drops the per-thread slots of `tid`.
#[inline(always)]
pub fn forget_thread(tid: u32) {
    remove(&FILE_ARGS, tid);
    remove(&NET_ARGS, tid);
    remove(&TLS_CALLS, tid);
    remove(&EXEC_STASH, tid);
    remove(&ENV_STASH, tid);
    remove(&ENV_PENDING, tid);
}

/// A lookup first: it takes no lock, a delete takes the bucket's.
#[inline(always)]
fn remove<V>(map: &HashMap<u32, V>, key: u32) {
    // SAFETY: presence check only.
    if unsafe { map.get(key) }.is_some() {
        let _ = map.remove(key);
    }
}
