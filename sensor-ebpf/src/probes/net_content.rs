//! The content copy: a plain-HTTP request's bytes, whole up to a budget, in chunks of
//! [`DATA_LEN`], for the daemon's prompt-marker scan (the copy for naming the destination, in
//! `net`, keeps only a send's first bytes). `net_exit_syscall` decides and tail-calls
//! `net_exit_content`, which copies [`CHUNKS_PER_CALL`] chunks and tail-calls itself for the
//! next ones: the copy's loop is verified as a program of its own, and a short one (the verifier
//! walks every iteration; 32 per call took it 260-390 ms at start-up, most of the daemon's).

use core::ffi::c_void;

use aya_ebpf::{helpers::generated, macros::tracepoint, programs::TracePointContext};
use sensor_common::{
    flags, DataEvent, Direction, RawSockAddr, Stat, Tracked, CONTENT_CHUNKS, CONTENT_IOVECS, DATA_LEN,
};

use super::net::read_u64;

use crate::{
    emit::{batched, emit},
    helpers::{bump, now},
    maps::{ContentArgs, NetArgs, CONTENT_ARGS, CONTENT_PROG},
};

/// Chunks one call copies. A segment's [`CONTENT_CHUNKS`] over [`CONTENT_IOVECS`] segments take
/// 32 calls at most, within the kernel's 33 tail calls (`MAX_TAIL_CALL_CNT`, 5.10 on).
const CHUNKS_PER_CALL: u32 = 4;
const _: () = assert!(CONTENT_CHUNKS.div_ceil(CHUNKS_PER_CALL) * CONTENT_IOVECS <= 33);

/// A send to copy: its byte count, the request's budget left, the socket's type and family.
pub(super) struct Pending {
    pub bytes: u64,
    pub budget: u32,
    pub sock_type: u16,
    pub family: u16,
}

/// Leaves the send's arguments for `net_exit_content` (per CPU: a tail call stays on it) and
/// tail-calls it. Without the program (not loaded), nothing is copied.
#[inline(always)]
pub(super) fn hand_over(ctx: &TracePointContext, t: &Tracked, a: &NetArgs, p: Pending) {
    let Some(slot) = CONTENT_ARGS.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's slot, used only by this tail-call chain. Field by field: a whole
    // `ContentArgs` built first would not fit the exit program's stack.
    let slot: &mut ContentArgs = unsafe { &mut *slot };
    slot.fd = a.fd;
    slot.iovcnt = a.iovcnt;
    slot.buf = a.buf;
    slot.len = a.len;
    slot.iov = a.iov;
    slot.tracked = *t;
    slot.bytes = p.bytes;
    slot.left = if p.bytes < p.budget as u64 { p.bytes } else { p.budget as u64 };
    slot.iov_i = 0;
    slot.seg_chunks = 0;
    slot.seg_base = 0;
    slot.seg_left = 0;
    slot.start = flags::CONTENT_START;
    slot.sock_type = p.sock_type;
    slot.family = p.family;
    // SAFETY: the context of this tracepoint program, as the callee's is.
    unsafe { CONTENT_PROG.tail_call(ctx, 0) };
}

/// Tail-called by `net_exit_syscall` (never attached), then by itself: copies the next
/// [`CHUNKS_PER_CALL`] chunks of the send it left (the buffer, or its iovecs one by one), and
/// tail-calls itself while some are left.
#[tracepoint]
pub fn net_exit_content(ctx: TracePointContext) -> u32 {
    let Some(slot) = CONTENT_ARGS.get_ptr_mut(0) else { return 0 };
    // SAFETY: this CPU's slot, written by the caller just before the tail call.
    let c: &mut ContentArgs = unsafe { &mut *slot };
    if c.seg_left == 0 {
        // The next segment: the buffer, or iovec `iov_i`.
        let (base, seg) = if c.iov == 0 {
            (c.buf, c.len)
        } else {
            let v = c.iov + c.iov_i as u64 * 16;
            (read_u64(v), read_u64(v + 8))
        };
        let take = if c.left < seg { c.left } else { seg };
        c.left -= take;
        c.iov_i += 1;
        c.seg_base = base;
        c.seg_left = take;
        c.seg_chunks = 0;
    }
    let ts = now();
    for _ in 0..CHUNKS_PER_CALL {
        if c.seg_left == 0 {
            break;
        }
        let n = if c.seg_left > DATA_LEN as u64 { DATA_LEN as u64 } else { c.seg_left };
        chunk(c, c.seg_base, n, ts);
        c.start = 0;
        c.seg_base += n;
        c.seg_left -= n;
        c.seg_chunks += 1;
        if c.seg_chunks >= CONTENT_CHUNKS {
            // What the segment carries beyond is a gap the daemon sees.
            c.seg_left = 0;
        }
    }
    let next_segment = c.left > 0 && c.iov != 0 && c.iov_i < c.iovcnt && c.iov_i < CONTENT_IOVECS;
    if c.seg_left > 0 || next_segment {
        // SAFETY: this program's own context.
        unsafe { CONTENT_PROG.tail_call(&ctx, 0) };
    }
    0
}

/// One chunk of `n` bytes (at most [`DATA_LEN`]) from `src`: a batched record, shed (counted)
/// under pressure before process and connection records; the daemon sees the gap.
#[inline(always)]
fn chunk(c: &ContentArgs, src: u64, n: u64, ts: u64) {
    emit(&c.tracked, ts, batched(), |ev: &mut DataEvent| {
        ev.hdr.flags = flags::CONTENT | c.start;
        ev.fd = c.fd;
        ev.direction = Direction::Send as u32;
        ev.ret = c.bytes as i64;
        ev.sock_type = c.sock_type;
        ev.family = c.family;
        ev.peer = RawSockAddr::default();
        ev.len = read_chunk(&mut ev.data, src, n);
    });
}

/// Copies `n` bytes (1 to [`DATA_LEN`]: the callers' chunks) of user memory at `src` into
/// `data`; the bytes copied, 0 when the read failed (counted).
#[inline(always)]
pub(super) fn read_chunk(data: &mut [u8; DATA_LEN], src: u64, n: u64) -> u32 {
    if n == 0 {
        return 0;
    }
    // 1 to DATA_LEN for the verifier by a mask alone: a clamp (`min`) compiles to a form whose
    // bounds the 5.10 and 6.1 verifiers lose ("R2 min value is negative"), and next to a clamp
    // LLVM drops the mask.
    let n = (((n - 1) as usize) & (DATA_LEN - 1)) + 1;
    let dst = data.as_mut_ptr() as *mut c_void;
    // SAFETY: `data` has DATA_LEN bytes and n <= DATA_LEN; the source is checked by the helper.
    let r = unsafe { generated::bpf_probe_read_user(dst, n as u32, src as *const c_void) };
    if r < 0 {
        bump(Stat::ReadFailed);
        return 0;
    }
    n as u32
}
