//! Sending events: every record goes through [`emit`] or [`send`], which write its header,
//! submit it with the caller's wake-up policy ([`Wake`]) and count it (`Emitted`, or
//! `RingbufFull` when it is lost). Batched records leave the ring's last quarter to the others
//! (`RingbufShed`).

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP, BPF_RB_RING_SIZE},
    helpers::{bpf_get_current_uid_gid, generated},
};
use sensor_common::{Event, EventHeader, EventKind, Stat, Tracked};

use crate::{
    helpers::{bump, current_ids},
    maps::{EVENTS, WAKES},
};

/// When the daemon hears of a record.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// At its next drain (every [`sensor_common::BATCH_MS`] ms) or the next wake-up; left out
    /// when the ring is three quarters full.
    Batched,
    /// As batched, but never left out: records whose state the daemon must see (a connection's
    /// result, TCP state and close), which a later urgent record or the drain brings in order.
    Deferred,
    /// Now.
    Urgent,
}

impl Wake {
    #[inline(always)]
    fn flags(self) -> u64 {
        match self {
            Wake::Urgent => urgent_flags(),
            Wake::Batched | Wake::Deferred => BPF_RB_NO_WAKEUP as u64,
        }
    }
}

/// An urgent record forces a wake-up unless its CPU forced one less than
/// [`sensor_common::WAKE_COALESCE_US`] ago: the daemon drains again that long after each
/// wake-up, so the record waits at most about that long. A forced wake-up costs the submitting
/// task 7-15 µs on a VM (below); a tracked process forking in a loop paid it twice per fork.
#[inline(always)]
fn urgent_flags() -> u64 {
    let now = crate::helpers::now();
    let Some(last) = WAKES.get_ptr_mut(0) else { return BPF_RB_FORCE_WAKEUP as u64 };
    // SAFETY: this CPU's slot; the program runs with migration disabled.
    unsafe {
        if now.wrapping_sub(*last) < sensor_common::WAKE_COALESCE_US * 1000 {
            return BPF_RB_NO_WAKEUP as u64;
        }
        *last = now;
    }
    BPF_RB_FORCE_WAKEUP as u64
}

/// A high-volume event (file syscalls, variable reads, interface ioctls): no wake-up; shed
/// under pressure.
#[inline(always)]
pub fn batched() -> Wake {
    Wake::Batched
}

/// A connection's result, TCP state change or close: no wake-up, never shed. A forced wake-up
/// costs the process that submits it 7-15 µs on a VM (the ring's irq_work raises a self-IPI, an
/// APIC MSR write: a VM exit); three of them made a tracked refused loopback connect 30-50 µs
/// slower (docs/perf-connect.md). What names the destination, the first bytes sent, is urgent
/// and brings these in with it, in order; else the next drain does, within BATCH_MS.
#[inline(always)]
pub fn deferred() -> Wake {
    Wake::Deferred
}

/// A process event, an `AF_UNIX` connect, or bytes copied from a connection: wake the daemon
/// now, or within [`sensor_common::WAKE_COALESCE_US`] (see [`urgent_flags`]). (The default,
/// adaptive wake-up, skips it whenever batched events are still unread, which is most of the
/// time.)
#[inline(always)]
pub fn urgent() -> Wake {
    Wake::Urgent
}

/// Reserves a `T` in the ring buffer, writes its header (the current task, `t`'s session and
/// state, `ts_ns`, no flags), lets `body` write the rest and set flags, and submits it with
/// `wake` ([`batched`], [`deferred`] or [`urgent`]). The reserved memory is not zeroed: `body`
/// must write every field of `T` past the header (a byte array only as far as its length says).
#[inline(always)]
pub fn emit<T: Event + 'static>(t: &Tracked, ts_ns: u64, wake: Wake, body: impl FnOnce(&mut T)) {
    if shed::<T>(wake) {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<T>(0) else {
        bump(Stat::RingbufFull);
        return;
    };
    // SAFETY: reserved memory of `T`'s size; the header is written here, the rest by `body`.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(ev.header_mut(), T::KIND, t, ts_ns, 0);
    body(ev);
    entry.submit(wake.flags());
    bump(Stat::Emitted);
}

/// Sends a record built before, in a map (an exec and its environment, built at
/// `sys_enter_execve*`, are far larger than the stack): its header is written now, keeping the
/// flags set while it was built, and the kernel copies it into the ring buffer.
#[inline(always)]
pub fn send<T: Event>(ev: &mut T, t: &Tracked, ts_ns: u64, wake: Wake) {
    if shed::<T>(wake) {
        return;
    }
    let flags = ev.header_mut().flags;
    fill_header(ev.header_mut(), T::KIND, t, ts_ns, flags);
    match EVENTS.output::<T>(&*ev, wake.flags()) {
        Ok(()) => bump(Stat::Emitted),
        Err(_) => bump(Stat::RingbufFull),
    }
}

/// Bytes of the `EVENTS` ring, written by the loader (0: not written, asked of the ring).
#[no_mangle]
static AIWATCH_RING_BYTES: u64 = 0;

/// Whether a batched `T` is left out, and counted, because it would leave less than a quarter
/// of the ring free: a process spinning on `openat` fills the ring with reads, and the exec,
/// fork and exit records (urgent) and connection records (deferred), never shed, must still find
/// room, or sessions and connections are lost.
#[inline(always)]
fn shed<T>(wake: Wake) -> bool {
    if wake != Wake::Batched {
        return false;
    }
    let used = EVENTS.query(BPF_RB_AVAIL_DATA as u64);
    // The size from the loader spares every batched record a second helper call.
    // SAFETY: a global the loader writes before load; read as it is.
    let size = match unsafe { core::ptr::read_volatile(&AIWATCH_RING_BYTES) } {
        0 => EVENTS.query(BPF_RB_RING_SIZE as u64),
        n => n,
    };
    if used + core::mem::size_of::<T>() as u64 <= size - size / 4 {
        return false;
    }
    bump(Stat::RingbufShed);
    true
}

#[inline(always)]
fn fill_header(hdr: &mut EventHeader, kind: EventKind, t: &Tracked, ts_ns: u64, flags: u32) {
    let (tgid, tid) = current_ids();
    let ugid = bpf_get_current_uid_gid();
    hdr.kind = kind as u32;
    hdr.flags = flags;
    hdr.ts_ns = ts_ns;
    hdr.pid = tgid;
    hdr.tid = tid;
    hdr.uid = ugid as u32;
    hdr.gid = (ugid >> 32) as u32;
    hdr.session = t.session;
    hdr.state = t.state;
    // Written in place: the safe wrapper's stack copy costs a zeroing and a copy per record. On
    // failure the helper zeroes the buffer.
    // SAFETY: `comm` is writable and as long as the size given.
    unsafe { generated::bpf_get_current_comm(hdr.comm.as_mut_ptr().cast(), hdr.comm.len() as u32) };
}
