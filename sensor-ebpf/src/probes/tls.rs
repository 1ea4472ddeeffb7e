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
    maps::{TlsCall, TLS_CALLS, TLS_STREAMS},
};

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
    let mut take_n = if num < left as u64 { num } else { left as u64 };
    let rest = left - take_n as u32;
    if rest == 0 {
        let _ = TLS_STREAMS.remove(key);
    } else if TLS_STREAMS.insert(key, rest, 0).is_err() {
        bump(Stat::StashFull);
    }
    let ts = now();
    let mut src = call.buf;
    let mut start = flags::CONTENT_START;
    for _ in 0..CONTENT_CHUNKS {
        if take_n == 0 {
            break;
        }
        let n = if take_n > DATA_LEN as u64 { DATA_LEN as u64 } else { take_n };
        chunk(&t, call.ssl, num, call.func, start, src, n, ts);
        start = 0;
        src += n;
        take_n -= n;
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
