//! How a tracked socket's fd ends: close(), dup2/dup3 onto it (which close it), close_range().
//! Each reports the connection's end with its byte counts (close_range: the range, for user
//! space to match against the connections it knows).

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use sensor_common::{
    tracepoints::{sys, Field},
    CloseEvent, SockKey, Stat, Tracked, SOCK_FD_SLOTS,
};

use super::net::{empty_args, stash_args, tracked_sock, OP_CLOSE_RANGE, OP_DUP};
use crate::{
    emit::{deferred, emit},
    helpers::{arg, bump, current_ids, now, tracked},
    maps::{NetArgs, SOCKS, SOCK_FDS},
};

/// `close_range()` flag: set close-on-exec instead of closing.
const CLOSE_RANGE_CLOEXEC: u64 = 1 << 2;

/// Every process's `close()`: one lookup in `SOCK_FDS`, which only processes with a followed
/// socket have; `TRACKED` and `SOCKS` only for an fd that may be one of them.
#[tracepoint]
pub fn net_enter_close(ctx: TracePointContext) -> u32 {
    let (tgid, _) = current_ids();
    // SAFETY: sys_enter_close.fd, checked against its format at load.
    let fd = unsafe { arg::<u64>(&ctx, sys::close::FD) } as i32;
    if !maybe_sock(tgid, fd) {
        return 0;
    }
    let Some(t) = tracked(tgid) else { return 0 };
    close_sock(&t, tgid, fd);
    0
}

/// `SOCK_FDS`'s byte for `fd`.
#[inline(always)]
fn fd_slot(fd: i32) -> usize {
    let last = SOCK_FD_SLOTS as u32 - 1;
    // The mask keeps the index provably in bounds for the verifier.
    ((fd as u32).min(last) & last) as usize
}

/// A process's `SOCK_FDS` value before its first socket.
static NO_SOCK_FDS: [u8; SOCK_FD_SLOTS] = [0; SOCK_FD_SLOTS];

/// Whether `fd` of `tgid` may be in `SOCKS` (false: it is certainly not).
#[inline(always)]
pub(super) fn maybe_sock(tgid: u32, fd: i32) -> bool {
    // SAFETY: one byte is read at once.
    match unsafe { SOCK_FDS.get(tgid) } {
        Some(fds) => fd >= 0 && fds.get(fd_slot(fd)).is_some_and(|b| *b != 0),
        None => false,
    }
}

/// Marks `fd` of `tgid` as a possible socket, before it enters `SOCKS`; false when the map is
/// full (the caller then leaves the socket out of `SOCKS`, and counts it).
#[inline(always)]
pub(super) fn mark_sock(tgid: u32, fd: i32) -> bool {
    if SOCK_FDS.get_ptr_mut(tgid).is_none() {
        // Zeroed, and marked in the map: older verifiers refuse a store at a variable offset
        // of the stack. The zeroes come from a global, not the stack: 5.10's verifier counts
        // 512 bytes of stack for the whole call chain, and `net_exit_syscall` is near it.
        // BPF_NOEXIST: another thread's first socket may have made the entry. (By reference:
        // by value, the array is copied to the stack first.)
        #[allow(clippy::needless_borrows_for_generic_args)]
        let _ = SOCK_FDS.insert(tgid, &NO_SOCK_FDS, BPF_NOEXIST);
    }
    let Some(fds) = SOCK_FDS.get_ptr_mut(tgid) else { return false };
    // SAFETY: this process's value; a byte store leaves the other threads' bytes alone.
    if let Some(b) = unsafe { (*fds).get_mut(fd_slot(fd)) } {
        *b = 1;
    }
    true
}

/// Follows a new socket of a tracked process: `SOCK_FDS` first, so that its close is never
/// skipped; counted as `socket_map_full` when either map is full.
#[inline(always)]
pub(super) fn follow_sock(key: SockKey, info: &sensor_common::SockInfo) {
    if !mark_sock(key.tgid, key.fd as i32) || SOCKS.insert(key, info, 0).is_err() {
        bump(Stat::SocketMapFull);
    }
}

/// `BPF_NOEXIST`: create an element only.
const BPF_NOEXIST: u64 = 1;

/// A tracked socket's fd was closed: report it with its byte counts and forget it.
#[inline(always)]
pub(super) fn close_sock(t: &Tracked, tgid: u32, fd: i32) {
    let key = SockKey { tgid, fd: fd as u32 };
    // SAFETY: the value is copied at once.
    let Some(info) = (unsafe { SOCKS.get(key) }).copied() else { return };
    let _ = SOCKS.remove(key);
    // Cleared before the fd is released: a socket that gets the number next marks it again
    // at its creation's exit, after this store. The last byte stands for many fds: kept.
    let i = fd_slot(fd);
    if i < SOCK_FD_SLOTS - 1 {
        if let Some(fds) = SOCK_FDS.get_ptr_mut(tgid) {
            // SAFETY: this process's value; one byte is written.
            if let Some(b) = unsafe { (*fds).get_mut(i) } {
                *b = 0;
            }
        }
    }
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
