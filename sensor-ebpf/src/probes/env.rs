//! Environment-variable reads: a uprobe on libc's `getenv` entry. The daemon attaches it per
//! session (a perf event that follows the session's processes, inherited by every child), so
//! processes outside sessions never hit it.
//!
//! One trap per call: there is no return probe. Whether the variable was set is the daemon's
//! to say, from the environment the process was started with. Repeated reads of one name by one
//! process within [`ENV_REPEAT_WINDOW_NS`] send nothing: they are counted, and the next record
//! for that name carries the count.
//!
//! glibc's and musl's `secure_getenv` call `getenv` (unless the process runs set-user-ID, where
//! it returns nothing), so its reads arrive through this probe: `secure_getenv` has none of its
//! own, as each inherited perf event costs every fork of a session about 15 µs.

use aya_ebpf::{
    helpers::bpf_probe_read_user_str_bytes, macros::uprobe, maps::LruHashMap, programs::ProbeContext,
};
use sensor_common::{EnvFunc, EnvReadEvent, Stat, ENV_NAME_LEN};

use crate::{
    emit::{batched, emit},
    helpers::{bump, current_ids, now, tracked},
    maps::{EnvKey, EnvPending, EnvSeen, EnvShortKey, ENV_PENDING, ENV_SEEN, ENV_SEEN_SHORT, ENV_SHORT_LEN},
};

/// Reads of one name by one process within this long of the one sent are counted, not sent.
const ENV_REPEAT_WINDOW_NS: u64 = 1_000_000_000;

#[uprobe]
pub fn env_enter_getenv(ctx: ProbeContext) -> u32 {
    let (tgid, tid) = current_ids();
    let Some(t) = tracked(tgid) else { return 0 };
    let Some(ptr) = ctx.arg::<u64>(0) else { return 0 };
    // A read this thread could not name before (see below): its string has been paged in since,
    // as the call read it.
    // SAFETY: the value is copied at once.
    if let Some(p) = unsafe { ENV_PENDING.get(tid) }.copied() {
        let _ = ENV_PENDING.remove(tid);
        let _ = record(&t, tgid, p.ptr, p.ts_ns);
    }
    let ts = now();
    if record(&t, tgid, ptr, ts).is_err() {
        // The name is in a page not faulted in yet (a string constant read right after exec):
        // named at this thread's next read, after getenv itself has touched it.
        let p = EnvPending { ptr, ts_ns: ts };
        if ENV_PENDING.insert(tid, p, 0).is_err() {
            bump(Stat::StashFull);
        }
    }
    0
}

/// Sends (or counts, as a repeat) the read of the name at `ptr`; `Err` if the name could not be
/// read.
#[inline(always)]
fn record(t: &sensor_common::Tracked, tgid: u32, ptr: u64, ts: u64) -> Result<(), ()> {
    // Read into the short key first: most names fit, and then neither the long key's 128 bytes
    // are zeroed nor its 136 hashed.
    let mut short = EnvShortKey { tgid, len: 0, name: [0; ENV_SHORT_LEN] };
    // SAFETY: the caller's name string; the helper checks the address.
    let n = match unsafe { bpf_probe_read_user_str_bytes(ptr as *const u8, &mut short.name) } {
        Ok(s) => s.len(),
        Err(_) => return Err(()),
    };
    // A name of ENV_SHORT_LEN - 1 bytes fills the buffer as a longer one cut short does.
    if n < ENV_SHORT_LEN - 1 {
        short.len = n as u32;
        let Some(repeats) = seen(&ENV_SEEN_SHORT, &short, ts) else { return Ok(()) };
        emit(t, ts, batched(), |ev: &mut EnvReadEvent| {
            ev.func = EnvFunc::Getenv as u32;
            ev.repeats = repeats;
            ev.name_len = short.len;
            ev._pad = 0;
            // Only `name_len` bytes of `name` are read.
            ev.name[..ENV_SHORT_LEN].copy_from_slice(&short.name);
        });
        return Ok(());
    }
    let mut key = EnvKey { tgid, len: 0, name: [0; ENV_NAME_LEN] };
    // SAFETY: as above.
    key.len = match unsafe { bpf_probe_read_user_str_bytes(ptr as *const u8, &mut key.name) } {
        Ok(s) => s.len() as u32,
        Err(_) => return Err(()),
    };
    let Some(repeats) = seen(&ENV_SEEN, &key, ts) else { return Ok(()) };
    emit(t, ts, batched(), |ev: &mut EnvReadEvent| {
        ev.func = EnvFunc::Getenv as u32;
        ev.repeats = repeats;
        ev.name_len = key.len;
        ev._pad = 0;
        ev.name = key.name;
    });
    Ok(())
}

/// Notes a read of `key` at `ts` in `map`: the repeats to report with it, or None when it is a
/// repeat within the window (counted, not sent).
#[inline(always)]
fn seen<K>(map: &LruHashMap<K, EnvSeen>, key: &K, ts: u64) -> Option<u32> {
    match map.get_ptr_mut(key) {
        // SAFETY: the entry of this process's name; a race between its threads may lose a count.
        Some(seen) => unsafe {
            if ts.wrapping_sub((*seen).sent_ns) < ENV_REPEAT_WINDOW_NS {
                (*seen).repeats += 1;
                bump(Stat::EnvRepeated);
                return None;
            }
            let repeats = (*seen).repeats;
            (*seen).sent_ns = ts;
            (*seen).repeats = 0;
            Some(repeats)
        },
        None => {
            if map.insert(key, EnvSeen { sent_ns: ts, repeats: 0, _pad: 0 }, 0).is_err() {
                bump(Stat::StashFull);
            }
            Some(0)
        }
    }
}
