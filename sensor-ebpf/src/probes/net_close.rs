//! How a tracked socket's fd ends: close(), dup2/dup3 onto it (which close it), close_range().
//! Each reports the connection's end with its byte counts (close_range: the range, for user
//! space to match against the connections it knows).

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use sensor_common::{
    tracepoints::{sys, Field},
    CloseEvent, SockKey, Tracked,
};

use super::net::{empty_args, stash_args, tracked_sock, OP_CLOSE_RANGE, OP_DUP};
use crate::{
    emit::{deferred, emit},
    helpers::{arg, current_ids, now, tracked},
    maps::{NetArgs, SOCKS},
};

/// `close_range()` flag: set close-on-exec instead of closing.
const CLOSE_RANGE_CLOEXEC: u64 = 1 << 2;

#[tracepoint]
pub fn net_enter_close(ctx: TracePointContext) -> u32 {
    let (tgid, _) = current_ids();
    // SAFETY: sys_enter_close.fd, checked against its format at load.
    let fd = unsafe { arg::<u64>(&ctx, sys::close::FD) } as i32;
    let Some(t) = tracked(tgid) else { return 0 };
    close_sock(&t, tgid, fd);
    0
}

/// A tracked socket's fd was closed: report it with its byte counts and forget it.
#[inline(always)]
pub(super) fn close_sock(t: &Tracked, tgid: u32, fd: i32) {
    let key = SockKey { tgid, fd: fd as u32 };
    // SAFETY: the value is copied at once.
    let Some(info) = (unsafe { SOCKS.get(key) }).copied() else { return };
    let _ = SOCKS.remove(key);
    emit(t, now(), deferred(), |ev: &mut CloseEvent| {
        ev.fd = fd;
        ev.sock_type = info.sock_type as u32;
        ev.bytes_sent = info.bytes_sent;
        ev.bytes_recv = info.bytes_recv;
        ev.last_fd = fd as u32;
        ev._pad = 0;
    });
}

/// `dup2`/`dup3` onto a tracked socket's fd closes that socket (once the call succeeds).
#[inline(always)]
fn enter_dup(ctx: &TracePointContext, oldfd: Field, newfd: Field) -> u32 {
    let (tgid, tid) = current_ids();
    // SAFETY: fields of sys_enter_dup2/dup3, checked against their formats at load.
    let (old, new) = unsafe { (arg::<u64>(ctx, oldfd) as i32, arg::<u64>(ctx, newfd) as i32) };
    if old != new && tracked_sock(tgid, new).is_some() {
        stash_args(tid, &empty_args(OP_DUP, new));
    }
    0
}

#[tracepoint]
pub fn net_enter_dup2(ctx: TracePointContext) -> u32 {
    enter_dup(&ctx, sys::dup2::OLDFD, sys::dup2::NEWFD)
}

#[tracepoint]
pub fn net_enter_dup3(ctx: TracePointContext) -> u32 {
    enter_dup(&ctx, sys::dup3::OLDFD, sys::dup3::NEWFD)
}

/// `close_range()`: the kernel cannot list a process's sockets cheaply, so user space is told
/// the range and closes the connections it knows in it.
#[tracepoint]
pub fn net_enter_close_range(ctx: TracePointContext) -> u32 {
    let (tgid, tid) = current_ids();
    use sys::close_range::{FD, FLAGS, MAX_FD};
    // SAFETY: fields of sys_enter_close_range, checked against its format at load.
    let (first, last, flags) =
        unsafe { (arg::<u64>(&ctx, FD), arg::<u64>(&ctx, MAX_FD), arg::<u64>(&ctx, FLAGS)) };
    if flags & CLOSE_RANGE_CLOEXEC != 0 || tracked(tgid).is_none() {
        return 0;
    }
    let mut a = empty_args(OP_CLOSE_RANGE, first as u32 as i32);
    a.len = last & 0xffff_ffff;
    stash_args(tid, &a);
    0
}

pub(super) fn exit_close_range(t: &Tracked, a: &NetArgs) {
    emit(t, now(), deferred(), |ev: &mut CloseEvent| {
        ev.hdr.flags = sensor_common::flags::FD_RANGE;
        ev.fd = a.fd;
        ev.sock_type = 0;
        ev.bytes_sent = 0;
        ev.bytes_recv = 0;
        ev.last_fd = a.len as u32;
        ev._pad = 0;
    });
}
