//! Small pieces every program uses.

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_boot_ns},
    maps::HashMap,
    programs::TracePointContext,
    EbpfContext,
};
use sensor_common::{tracepoints::Field, Stat, TrackState, Tracked};

use crate::maps::{STATS, TRACKED};

/// Puts `value` in this thread's slot of a per-thread stash, reusing the slot in place: a map
/// update (LRU list, bucket lock, an element from the free list) and the delete at exit cost a
/// tracked syscall several times what a lookup does (measured: 1,030 -> 680 ns of programs per
/// tracked open+close). The slot is removed at the thread's exit. Err when the map is full.
#[inline(always)]
pub fn stash<V: Copy>(map: &HashMap<u32, V>, tid: u32, value: &V) -> Result<(), i32> {
    match map.get_ptr_mut(tid) {
        Some(slot) => {
            // SAFETY: this thread's own slot; no other program writes it.
            unsafe { *slot = *value };
            Ok(())
        }
        None => map.insert(tid, value, 0),
    }
}

/// Takes this thread's stashed value if it is `live`, marking the slot used with `clear`.
#[inline(always)]
pub fn take<V: Copy>(map: &HashMap<u32, V>, tid: u32, live: fn(&V) -> bool, clear: fn(&mut V)) -> Option<V> {
    let slot = map.get_ptr_mut(tid)?;
    // SAFETY: this thread's own slot; no other program writes it.
    let v = unsafe { *slot };
    if !live(&v) {
        return None;
    }
    unsafe { clear(&mut *slot) };
    Some(v)
}

/// Counts one `stat` in this CPU's slot of `STATS`.
#[inline(always)]
pub fn bump(stat: Stat) {
    if let Some(counter) = STATS.get_ptr_mut(stat as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *counter += 1 };
    }
}

/// (tgid, tid) of the current task.
#[inline(always)]
pub fn current_ids() -> (u32, u32) {
    let id = bpf_get_current_pid_tgid();
    ((id >> 32) as u32, id as u32)
}

/// The tracking entry of `tgid`, copied out of the map.
#[inline(always)]
pub fn tracked(tgid: u32) -> Option<Tracked> {
    // SAFETY: the value is copied at once; a concurrent delete at worst yields stale data.
    unsafe { TRACKED.get(tgid) }.copied()
}

/// Entry a new child or pending process gets from its parent's entry.
#[inline(always)]
pub fn inherit(parent: &Tracked) -> Tracked {
    let state = if parent.state == TrackState::Assistant as u32 {
        TrackState::Descendant as u32
    } else {
        parent.state
    };
    Tracked { session: parent.session, state }
}

#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: helper without arguments.
    unsafe { bpf_ktime_get_boot_ns() }
}

/// Reads a tracepoint field straight from the context (cheaper than a probe-read helper).
///
/// # Safety
/// `field` must be a field of this tracepoint's record (the loader checks it against the
/// format file) of `T`'s size.
#[inline(always)]
pub unsafe fn arg<T: Copy>(ctx: &TracePointContext, field: Field) -> T {
    unsafe { *(ctx.as_ptr().add(field.offset) as *const T) }
}
