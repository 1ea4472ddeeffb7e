//! TLS plaintext: uprobes on OpenSSL's `SSL_write` and `SSL_write_ex` (the system's libssl, and
//! binaries with OpenSSL inside that export them, such as official Node.js builds), attached
//! per session like the getenv probes. An HTTP request with a body is copied whole, up to the
//! request budget, for the daemon's prompt-marker scan; nothing else is.

use aya_ebpf::{
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use sensor_common::{flags, Stat, TlsDataEvent, TlsFunc, TlsKey, Tracked, CONTENT_CHUNKS, DATA_LEN};

use super::{
    net::{content_budget, read_u32, read_u64},
    net_content::read_chunk,
};
use crate::{
    emit::{batched, emit},
    helpers::{bump, current_ids, now, take, tracked},
    maps::{TlsCall, TlsContent, TLS_CALLS, TLS_CONTENT, TLS_PROG, TLS_STREAMS},
};

/// Chunks one call of `tls_exit_content` copies before it tail-calls itself: a short loop for
/// the verifier, as `net_exit_content`'s (32 per call took it 90-125 ms at start-up).
const CHUNKS_PER_CALL: u32 = 4;
const _: () = assert!(CONTENT_CHUNKS.div_ceil(CHUNKS_PER_CALL) <= 33);

#[uprobe]
pub fn tls_enter_ssl_write(ctx: ProbeContext) -> u32 {
    enter(&ctx, TlsFunc::SslWrite)
}

#[uprobe]
pub fn tls_enter_ssl_write_ex(ctx: ProbeContext) -> u32 {
    enter(&ctx, TlsFunc::SslWriteEx)
}

/// `SSL_write(ssl, buf, int num)` and `SSL_write_ex(ssl, buf, size_t num, size_t *written)`:
/// the arguments wait for the return, which says how many bytes OpenSSL took. A call that
/// takes nothing is repeated by the caller with the same bytes (a handshake in progress, a full
/// socket): copied at entry, they were copied twice.
#[inline(always)]
fn enter(ctx: &ProbeContext, func: TlsFunc) -> u32 {
    let (tgid, tid) = current_ids();
    if tracked(tgid).is_none() {
        return 0;
    }
    let (Some(ssl), Some(buf)) = (ctx.arg::<u64>(0), ctx.arg::<u64>(1)) else { return 0 };
    let written = if func == TlsFunc::SslWriteEx { ctx.arg::<u64>(3).unwrap_or(0) } else { 0 };
    let call = TlsCall { ssl, buf, written, func: func as u32, _pad: 0 };
    if TLS_CALLS.insert(tid, call, 0).is_err() {
        bump(Stat::StashFull);
    }
    0
}

/// Return of either function: the bytes OpenSSL took (`SSL_write`'s result, or
/// `*written` when `SSL_write_ex` returns 1). Those starting with `POST ` or `PUT ` open a budget
/// on their `SSL *`, which they and the calls after them use up (the body may come in later
/// calls); other calls copy nothing.
#[uretprobe]
pub fn tls_exit_ssl_write(ctx: RetProbeContext) -> u32 {
    let (tgid, tid) = current_ids();
    let Some(call) = take(&TLS_CALLS, tid, |c| c.buf != 0, |c| c.buf = 0) else { return 0 };
    let Some(t) = tracked(tgid) else { return 0 };
    let ret: i64 = ctx.ret::<u64>() as i64;
    let num = if call.func == TlsFunc::SslWrite as u32 {
        // An int: the upper half of the register is not the callee's.
        ret as i32 as i64
    } else if ret as i32 == 1 {
        read_u64(call.written) as i64
    } else {
        0
    };
    if num <= 0 {
        return 0;
    }
    let key = TlsKey { tgid, _pad: 0, ssl: call.ssl };
    let head = if num >= 4 { read_u32(call.buf) } else { 0 };
    let left = if head == u32::from_le_bytes(*b"POST") || head == u32::from_le_bytes(*b"PUT ") {
        content_budget()
    } else {
        // SAFETY: the value is copied at once.
        match unsafe { TLS_STREAMS.get(key) } {
            Some(left) => *left,
            None => return 0,
        }
    };
    if left == 0 {
        return 0;
    }
    let num = num as u64;
    let take_n = if num < left as u64 { num } else { left as u64 };
    let rest = left - take_n as u32;
    if rest == 0 {
        let _ = TLS_STREAMS.remove(key);
    } else if TLS_STREAMS.insert(key, rest, 0).is_err() {
        bump(Stat::StashFull);
    }
    let Some(slot) = TLS_CONTENT.get_ptr_mut(0) else { return 0 };
    // SAFETY: this CPU's slot, used only by this tail-call chain.
    let c: &mut TlsContent = unsafe { &mut *slot };
    c.tracked = t;
    c.ssl = call.ssl;
    c.bytes = num;
    c.src = call.buf;
    c.left = take_n;
    c.func = call.func;
    c.start = flags::CONTENT_START;
    c.chunks = 0;
    // SAFETY: the context of this uretprobe program, as the callee's is. Without the program
    // (not loaded), nothing is copied.
    unsafe { TLS_PROG.tail_call(&ctx, 0) };
    0
}

/// Tail-called by `tls_exit_ssl_write` (never attached), then by itself: copies the next
/// [`CHUNKS_PER_CALL`] chunks of the write it left, and tail-calls itself while some are left.
#[uretprobe]
pub fn tls_exit_content(ctx: RetProbeContext) -> u32 {
    let Some(slot) = TLS_CONTENT.get_ptr_mut(0) else { return 0 };
    // SAFETY: this CPU's slot, written by the caller just before the tail call.
    let c: &mut TlsContent = unsafe { &mut *slot };
    let ts = now();
    for _ in 0..CHUNKS_PER_CALL {
        if c.left == 0 || c.chunks >= CONTENT_CHUNKS {
            return 0;
        }
        let n = if c.left > DATA_LEN as u64 { DATA_LEN as u64 } else { c.left };
        chunk(&c.tracked, c.ssl, c.bytes, c.func, c.start, c.src, n, ts);
        c.start = 0;
        c.src += n;
        c.left -= n;
        c.chunks += 1;
    }
    if c.left > 0 && c.chunks < CONTENT_CHUNKS {
        // SAFETY: this program's own context.
        unsafe { TLS_PROG.tail_call(&ctx, 0) };
    }
    0
}

/// One chunk of `n` bytes (at most [`DATA_LEN`]) from `src`: a batched record, shed (counted)
/// under pressure; the daemon sees the gap from the call's byte count.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn chunk(t: &Tracked, ssl: u64, bytes: u64, func: u32, start: u32, src: u64, n: u64, ts: u64) {
    emit(t, ts, batched(), |ev: &mut TlsDataEvent| {
        ev.hdr.flags = flags::CONTENT | start;
        ev.ssl = ssl;
        ev.bytes = bytes;
        ev.func = func;
        ev.len = read_chunk(&mut ev.data, src, n);
    });
}
