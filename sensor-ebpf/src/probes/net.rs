//! Outbound connections of tracked processes: socket, connect (and its asynchronous result
//! from `sock:inet_sock_set_state`), the first bytes sent (for TLS SNI, HTTP CONNECT and Host)
//! and every DNS message, bytes per socket, and close; and interface enumeration (requests on
//! `NETLINK_ROUTE` sockets, `SIOCGIF*` ioctls).
//!
//! Only sockets in `SOCKS` (inet and route-netlink sockets a tracked process created or
//! connected) cost more than one hash lookup; only their first `CAPTURE_SENDS` sends
//! (`CAPTURE_NETLINK` for netlink) and DNS traffic are copied.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_probe_read_user, generated},
    macros::tracepoint,
    programs::TracePointContext,
};
use sensor_common::{
    sock_flags, tcp_state,
    tracepoints::{inet_sock_set_state, sys, Field, SYS_EXIT_RET},
    ConnectEvent, DataEvent, Direction, InterfaceIoctl, IoctlEvent, RawSockAddr, SockInfo, SockKey, Stat,
    StateEvent, Tracked, UnixConnectEvent, AF_NETLINK, CAPTURE_NETLINK, CAPTURE_PROXY, CAPTURE_SENDS,
    CONTENT_BUDGET, DATA_LEN, DNS_RECV_LEN, UNIX_PATH_LEN,
};

use super::{net_close, net_content};
use crate::{
    emit::{batched, deferred, emit, urgent},
    helpers::{arg, bump, current_ids, now, stash, take, tracked},
    maps::{NetArgs, NET_ARGS, SK_CONN, SOCKS},
};

const AF_UNIX: u32 = 1;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const IPPROTO_TCP: u16 = 6;
const EINPROGRESS: i64 = 115;
const SOCK_TYPE_MASK: u32 = 0xf;
const SOCK_STREAM: u16 = 1;

const OP_SOCKET: u32 = 1;
const OP_CONNECT: u32 = 2;
const OP_SEND: u32 = 3;
const OP_RECV: u32 = 4;
const OP_SENDMMSG: u32 = 5;
const OP_RECVMMSG: u32 = 6;
const OP_IOCTL: u32 = 7;
pub(super) const OP_DUP: u32 = 8;
pub(super) const OP_CLOSE_RANGE: u32 = 9;
const NETLINK_ROUTE: u32 = 0;

/// `struct user_msghdr` offsets (64-bit): msg_name@0, msg_iov@16, msg_iovlen@24.
const MSG_NAME: usize = 0;
const MSG_IOV: usize = 16;
const MSG_IOVLEN: usize = 24;
/// `struct mmsghdr`: a user_msghdr (56 bytes), then msg_len.
const MMSG_LEN: usize = 56;
const MMSG_SIZE: usize = 64;

pub(super) fn empty_args(op: u32, fd: i32) -> NetArgs {
    NetArgs {
        op,
        fd,
        buf: 0,
        len: 0,
        addr: 0,
        mmsg: 0,
        family: 0,
        sock_type: 0,
        cmd: 0,
        iovcnt: 0,
        iov: 0,
        sa: RawSockAddr::default(),
    }
}

pub(super) fn stash_args(tid: u32, args: &NetArgs) {
    if stash(&NET_ARGS, tid, args).is_err() {
        bump(Stat::StashFull);
    }
}

/// The tracked inet socket `fd` of the current process, if it is one.
#[inline(always)]
pub(super) fn tracked_sock(tgid: u32, fd: i32) -> Option<SockKey> {
    tracked(tgid)?;
    let key = SockKey { tgid, fd: fd as u32 };
    // SAFETY: presence check only.
    unsafe { SOCKS.get(key) }.map(|_| key)
}

#[inline(always)]
pub(super) fn read_u64(addr: u64) -> u64 {
    // SAFETY: user pointer; the helper checks it.
    unsafe { bpf_probe_read_user(addr as *const u64) }.unwrap_or(0)
}

#[inline(always)]
pub(super) fn read_u32(addr: u64) -> u32 {
    // SAFETY: user pointer; the helper checks it.
    unsafe { bpf_probe_read_user(addr as *const u32) }.unwrap_or(0)
}

/// Reads a user sockaddr of `len` bytes (at most 28).
#[inline(always)]
fn read_sockaddr(addr: u64, len: u64) -> RawSockAddr {
    let mut sa = RawSockAddr::default();
    if addr == 0 {
        return sa;
    }
    // SAFETY: user pointer; the helper checks it.
    if let Ok(data) = unsafe { bpf_probe_read_user(addr as *const [u8; 28]) } {
        sa.data = data;
        sa.len = if len > 28 { 28 } else { len as u32 };
    } else if let Ok(data) = unsafe { bpf_probe_read_user(addr as *const [u8; 16]) } {
        // A sockaddr_in at the end of a mapping: 16 bytes are all there is.
        sa.data[..16].copy_from_slice(&data);
        sa.len = 16;
    }
    sa
}

#[tracepoint]
pub fn net_enter_socket(ctx: TracePointContext) -> u32 {
    let (tgid, tid) = current_ids();
    use sys::socket::{FAMILY, PROTOCOL, TYPE};
    // SAFETY (arg reads): fields of sys_enter_socket, checked against its format at load.
    let (family, sock_type, protocol) = unsafe {
        (arg::<u64>(&ctx, FAMILY) as u32, arg::<u64>(&ctx, TYPE) as u32, arg::<u64>(&ctx, PROTOCOL) as u32)
    };
    let route = family == AF_NETLINK as u32 && protocol == NETLINK_ROUTE;
    if (family != AF_INET && family != AF_INET6 && !route) || tracked(tgid).is_none() {
        return 0;
    }
    let mut a = empty_args(OP_SOCKET, -1);
    a.family = family;
    a.sock_type = sock_type & SOCK_TYPE_MASK;
    stash_args(tid, &a);
    0
}

#[tracepoint]
pub fn net_enter_connect(ctx: TracePointContext) -> u32 {
    let (tgid, tid) = current_ids();
    if tracked(tgid).is_none() {
        return 0;
    }
    use sys::connect::{ADDRLEN, FD, USERVADDR};
    // SAFETY: fields of sys_enter_connect, checked against its format at load.
    let (fd, addr, len) =
        unsafe { (arg::<u64>(&ctx, FD), arg::<u64>(&ctx, USERVADDR), arg::<u64>(&ctx, ADDRLEN)) };
    let mut a = empty_args(OP_CONNECT, fd as i32);
    a.sa = read_sockaddr(addr, len);
    // Unread (a page not faulted in yet): the exit reads it again, once the kernel has.
    a.addr = addr;
    a.len = len;
    if a.sa.len != 0 && !is_inet(&a.sa) && family(&a.sa) != AF_UNIX {
        return 0;
    }
    stash_args(tid, &a);
    0
}

#[inline(always)]
fn family(sa: &RawSockAddr) -> u32 {
    u16::from_ne_bytes([sa.data[0], sa.data[1]]) as u32
}

#[inline(always)]
fn is_inet(sa: &RawSockAddr) -> bool {
    let family = family(sa);
    family == AF_INET || family == AF_INET6
}

/// Sends and receives: where the buffer (and a peer address) are, for the exit to copy once the
/// kernel has taken or filled them.
#[inline(always)]
fn enter_io(ctx: &TracePointContext, op: u32, layout: IoLayout) -> u32 {
    let (tgid, tid) = current_ids();
    // SAFETY (arg reads): argument 0 is the fd of every send/recv syscall; the loader checks
    // each hook's fields against its format.
    let fd = unsafe { arg::<u64>(ctx, sys::write::FD) } as i32;
    if tracked_sock(tgid, fd).is_none() {
        return 0;
    }
    let mut a = empty_args(op, fd);
    match layout {
        // write/read, sendto/recvfrom: buffer, length; sendto/recvfrom: address (argument 4).
        IoLayout::Plain { addr } => {
            a.buf = unsafe { arg::<u64>(ctx, sys::sendto::BUFF) };
            a.len = unsafe { arg::<u64>(ctx, sys::sendto::LEN) };
            if addr {
                a.addr = unsafe { arg::<u64>(ctx, sys::sendto::ADDR) };
            }
        }
        // writev/readv: iovec array.
        IoLayout::Iovec => {
            let iov = unsafe { arg::<u64>(ctx, sys::writev::VEC) };
            a.buf = read_u64(iov);
            a.len = read_u64(iov + 8);
            a.iov = iov;
            a.iovcnt = unsafe { arg::<u64>(ctx, sys::writev::VLEN) } as u32;
        }
        // sendmsg/recvmsg: msghdr; sendmmsg/recvmmsg: mmsghdr array.
        IoLayout::Msg { multi } => {
            let msg = unsafe { arg::<u64>(ctx, sys::sendmsg::MSG) };
            if multi {
                a.mmsg = msg;
            }
            a.addr = read_u64(msg + MSG_NAME as u64);
            let iov = read_u64(msg + MSG_IOV as u64);
            a.buf = read_u64(iov);
            a.len = read_u64(iov + 8);
            if !multi {
                a.iov = iov;
                a.iovcnt = read_u64(msg + MSG_IOVLEN as u64) as u32;
            }
        }
    }
    stash_args(tid, &a);
    0
}

/// Where a send or receive syscall passes its buffer.
#[derive(Clone, Copy)]
enum IoLayout {
    Plain { addr: bool },
    Iovec,
    Msg { multi: bool },
}

macro_rules! net_enter {
    ($($prog:ident => $op:expr, $layout:expr;)*) => {$(
        #[tracepoint]
        pub fn $prog(ctx: TracePointContext) -> u32 {
            enter_io(&ctx, $op, $layout)
        }
    )*};
}

net_enter! {
    net_enter_write => OP_SEND, IoLayout::Plain { addr: false };
    net_enter_sendto => OP_SEND, IoLayout::Plain { addr: true };
    net_enter_writev => OP_SEND, IoLayout::Iovec;
    net_enter_sendmsg => OP_SEND, IoLayout::Msg { multi: false };
    net_enter_sendmmsg => OP_SENDMMSG, IoLayout::Msg { multi: true };
    net_enter_read => OP_RECV, IoLayout::Plain { addr: false };
    net_enter_recvfrom => OP_RECV, IoLayout::Plain { addr: true };
    net_enter_readv => OP_RECV, IoLayout::Iovec;
    net_enter_recvmsg => OP_RECV, IoLayout::Msg { multi: false };
    net_enter_recvmmsg => OP_RECVMMSG, IoLayout::Msg { multi: true };
}

#[tracepoint]
pub fn net_enter_ioctl(ctx: TracePointContext) -> u32 {
    // SAFETY (arg reads): fields of sys_enter_ioctl, checked against its format at load.
    let cmd = unsafe { arg::<u64>(&ctx, sys::ioctl::CMD) } as u32;
    if InterfaceIoctl::try_from(cmd).is_err() {
        return 0;
    }
    let (tgid, tid) = current_ids();
    if tracked(tgid).is_none() {
        return 0;
    }
    let mut a = empty_args(OP_IOCTL, unsafe { arg::<u64>(&ctx, sys::ioctl::FD) } as i32);
    a.cmd = cmd;
    a.buf = unsafe { arg::<u64>(&ctx, sys::ioctl::ARG) };
    stash_args(tid, &a);
    0
}

fn exit_ioctl(t: &Tracked, a: &NetArgs, ret: i64) {
    emit(t, now(), batched(), |ev: &mut IoctlEvent| {
        ev.fd = a.fd;
        ev.cmd = a.cmd;
        ev.ret = ret;
        // struct ifreq starts with ifr_name[16]; SIOCGIFCONF takes a struct ifconf instead.
        ev.ifname = if a.cmd == InterfaceIoctl::Conf as u32 {
            [0; 16]
        } else {
            // SAFETY: user pointer; the helper checks it.
            unsafe { bpf_probe_read_user(a.buf as *const [u8; 16]) }.unwrap_or_default()
        };
    });
}

/// One program for the exits of every socket syscall above (they share the record layout).
#[tracepoint]
pub fn net_exit_syscall(ctx: TracePointContext) -> u32 {
    let (tgid, tid) = current_ids();
    // `op == 0` marks a used slot.
    let Some(a) = take(&NET_ARGS, tid, |a| a.op != 0, |a| a.op = 0) else { return 0 };
    let Some(t) = tracked(tgid) else { return 0 };
    // SAFETY: sys_exit_*: ret, checked against the format at load.
    let ret: i64 = unsafe { arg(&ctx, SYS_EXIT_RET) };
    match a.op {
        OP_SOCKET if ret >= 0 => {
            let info =
                SockInfo { family: a.family as u16, sock_type: a.sock_type as u16, ..SockInfo::default() };
            net_close::follow_sock(SockKey { tgid, fd: ret as u32 }, &info);
        }
        OP_CONNECT => exit_connect(&t, tgid, &a, ret),
        OP_DUP if ret >= 0 => net_close::close_sock(&t, tgid, a.fd),
        OP_CLOSE_RANGE if ret == 0 => net_close::exit_close_range(&t, &a),
        OP_SEND | OP_SENDMMSG | OP_RECV | OP_RECVMMSG => {
            if let Some(c) = exit_data(&t, tgid, &a, ret) {
                net_content::hand_over(&ctx, &t, &a, c);
            }
        }
        OP_IOCTL => exit_ioctl(&t, &a, ret),
        _ => {}
    }
    0
}

fn exit_connect(t: &Tracked, tgid: u32, a: &NetArgs, ret: i64) {
    let mut sa = a.sa;
    if sa.len == 0 {
        // Not readable at enter; the kernel has faulted the page in since.
        sa = read_sockaddr(a.addr, a.len);
        if sa.len == 0 {
            bump(Stat::ReadFailed);
            return;
        }
    }
    if family(&sa) == AF_UNIX {
        return exit_unix_connect(t, a, ret);
    }
    if !is_inet(&sa) {
        return;
    }
    let key = SockKey { tgid, fd: a.fd as u32 };
    let port = u16::from_be_bytes([sa.data[2], sa.data[3]]);
    let ok = ret == 0 || ret == -EINPROGRESS;
    let sock_type = match SOCKS.get_ptr_mut(key) {
        Some(info) => {
            // SAFETY: map value of this process's own socket.
            let info = unsafe { &mut *info };
            if ok {
                info.flags |= sock_flags::CONNECTED;
                // A socket connected again (UDP) is DNS only if its new peer's port is.
                if port == 53 {
                    info.flags |= sock_flags::DNS;
                } else {
                    info.flags &= !sock_flags::DNS;
                }
            }
            info.sock_type as u32
        }
        None => {
            // A socket from before tracking began: follow it from now on, type unknown.
            let family = u16::from_ne_bytes([sa.data[0], sa.data[1]]);
            let mut flags = if ok { sock_flags::CONNECTED } else { 0 };
            if port == 53 {
                flags |= sock_flags::DNS;
            }
            net_close::follow_sock(key, &SockInfo { family, flags, ..SockInfo::default() });
            0
        }
    };
    emit(t, now(), deferred(), |ev: &mut ConnectEvent| {
        ev.fd = a.fd;
        ev.sock_type = sock_type;
        ev.ret = ret;
        ev.addr = sa;
    });
}

/// An `AF_UNIX` connect: the path, read now that the kernel has copied the address (so its
/// page is resident), as long as the address length says (an abstract name has no NUL).
fn exit_unix_connect(t: &Tracked, a: &NetArgs, ret: i64) {
    emit(t, now(), urgent(), |ev: &mut UnixConnectEvent| {
        ev.fd = a.fd;
        ev.ret = ret;
        ev._pad = 0;
        ev.path = [0; UNIX_PATH_LEN];
        // sun_path follows the 2-byte family.
        let n = if a.len <= 2 { 0 } else { (a.len - 2).min(UNIX_PATH_LEN as u64) as usize };
        // Masked, then capped: old verifiers keep the bound through this, not through a cast.
        let n = n & 127;
        let n = if n > UNIX_PATH_LEN { UNIX_PATH_LEN } else { n };
        let dst = ev.path.as_mut_ptr() as *mut c_void;
        // SAFETY: `path` has UNIX_PATH_LEN bytes and n <= UNIX_PATH_LEN; the source is checked
        // by the helper.
        let r = unsafe { generated::bpf_probe_read_user(dst, n as u32, (a.addr + 2) as *const c_void) };
        if r < 0 {
            ev.path_len = 0;
            ev.hdr.flags |= sensor_common::flags::READ_FAILED;
            bump(Stat::ReadFailed);
        } else {
            ev.path_len = n as u32;
        }
    });
}

/// Counts and copies a send or receive; a plain-HTTP send whose bytes the content scan wants is
/// returned, for the caller to hand over.
fn exit_data(t: &Tracked, tgid: u32, a: &NetArgs, ret: i64) -> Option<net_content::Pending> {
    if ret <= 0 {
        return None;
    }
    let key = SockKey { tgid, fd: a.fd as u32 };
    let info = SOCKS.get_ptr_mut(key)?;
    // SAFETY: map value of this process's own socket.
    let info = unsafe { &mut *info };
    let multi = a.op == OP_SENDMMSG || a.op == OP_RECVMMSG;
    // For the *mmsg calls ret counts messages; the first two lengths are what glibc's resolver
    // sends (A and AAAA).
    let (bytes, first) = if multi {
        let l0 = read_u32(a.mmsg + MMSG_LEN as u64) as u64;
        let l1 = if ret >= 2 { read_u32(a.mmsg + (MMSG_SIZE + MMSG_LEN) as u64) as u64 } else { 0 };
        (l0 + l1, l0)
    } else {
        (ret as u64, ret as u64)
    };
    let send = a.op == OP_SEND || a.op == OP_SENDMMSG;
    let dns = info.flags & sock_flags::DNS != 0;
    if send {
        info.bytes_sent += bytes;
    } else {
        info.bytes_recv += bytes;
    }
    // The peer matters for a datagram send (its destination) and for a copied DNS receive
    // (the resolver); a stream socket ignores it, and other receives (QUIC) do not need it.
    let wanted = if send { info.sock_type != SOCK_STREAM } else { dns };
    let peer = if a.addr != 0 && wanted { read_sockaddr(a.addr, 28) } else { RawSockAddr::default() };
    let capture = send && capture_send(info, a, first, &peer);
    let content =
        if send && !multi && info.sock_type == SOCK_STREAM { content_send(info, a, bytes) } else { None };
    let (sock_type, family) = (info.sock_type, info.family);
    if if send { capture } else { dns } {
        copy_first(t, a, send, bytes, first, peer, sock_type, family);
    }
    // After the copy that names the destination, so that the daemon knows the connection's
    // class when the content arrives.
    content.map(|budget| net_content::Pending { bytes, budget, sock_type, family })
}

/// The first bytes of a send (TLS ClientHello, HTTP head, DNS query) or a DNS answer.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn copy_first(
    t: &Tracked,
    a: &NetArgs,
    send: bool,
    bytes: u64,
    first: u64,
    peer: RawSockAddr,
    sock_type: u16,
    family: u16,
) {
    let limit = if send { DATA_LEN as u64 } else { DNS_RECV_LEN as u64 };
    let mut n = if first < a.len { first } else { a.len };
    if n > limit {
        n = limit;
    }
    emit(t, now(), urgent(), |ev: &mut DataEvent| {
        ev.fd = a.fd;
        ev.direction = if send { Direction::Send as u32 } else { Direction::Recv as u32 };
        ev.ret = bytes as i64;
        ev.sock_type = sock_type;
        ev.family = family;
        ev.peer = peer;
        let n = (n as usize) & (DATA_LEN * 2 - 1);
        let n = if n > DATA_LEN { DATA_LEN } else { n };
        let dst = ev.data.as_mut_ptr() as *mut c_void;
        // SAFETY: `data` has DATA_LEN bytes and n <= DATA_LEN; the source is checked by the helper.
        let r = unsafe { generated::bpf_probe_read_user(dst, n as u32, a.buf as *const c_void) };
        if r < 0 {
            ev.len = 0;
            bump(Stat::ReadFailed);
        } else {
            ev.len = n as u32;
        }
    });
}

/// Bytes of each plain-HTTP request copied for the content scan (the daemon's
/// `content.request_budget`, at most [`CONTENT_BUDGET`]; 0: none), written by the loader.
#[unsafe(no_mangle)]
static AIWATCH_CONTENT_BUDGET: u32 = 0;

/// The request budget the loader set, at most [`CONTENT_BUDGET`].
#[inline(always)]
pub(super) fn content_budget() -> u32 {
    // SAFETY: a read-only global the loader writes before loading.
    let budget = unsafe { core::ptr::read_volatile(&AIWATCH_CONTENT_BUDGET) };
    if budget > CONTENT_BUDGET {
        CONTENT_BUDGET
    } else {
        budget
    }
}

/// How many bytes of a stream send are copied for the content scan, if any: a plain-HTTP
/// request with a body (a send that starts with `POST ` or `PUT `) opens a budget of
/// [`CONTENT_BUDGET`] bytes, which it and the sends after it use up. A first send that is a
/// TLS record marks the socket, whose later sends are not looked at.
#[inline(always)]
fn content_send(info: &mut SockInfo, a: &NetArgs, bytes: u64) -> Option<u32> {
    if info.flags & sock_flags::TLS != 0 || a.len < 4 {
        return None;
    }
    let head = read_u32(a.buf);
    if info.flags & sock_flags::CONTENT == 0 && head & 0xff == 0x16 {
        info.flags |= sock_flags::TLS;
        return None;
    }
    if head == u32::from_le_bytes(*b"POST") || head == u32::from_le_bytes(*b"PUT ") {
        info.flags |= sock_flags::CONTENT;
        info.content_left = content_budget();
    }
    if info.flags & sock_flags::CONTENT == 0 || info.content_left == 0 {
        return None;
    }
    let budget = info.content_left;
    info.content_left = if bytes >= budget as u64 { 0 } else { budget - bytes as u32 };
    Some(budget)
}

/// Whether a send's bytes are copied: DNS always; otherwise the first [`CAPTURE_SENDS`], all
/// sends after a proxy handshake until a TLS record (at most [`CAPTURE_PROXY`]), and a datagram
/// to a peer other than the last one on an unconnected socket. Counts the copies.
#[inline(always)]
fn capture_send(info: &mut SockInfo, a: &NetArgs, len: u64, peer: &RawSockAddr) -> bool {
    // The first four bytes, only where they can matter (the first send, or while following).
    let looking = info.captures == 0 || info.flags & sock_flags::PROXY != 0;
    let head = if looking && len >= 2 { read_u32(a.buf) } else { 0 };
    if info.captures == 0 && is_proxy_handshake(head, len) {
        info.flags |= sock_flags::PROXY;
    }
    let proxy = info.flags & sock_flags::PROXY != 0;
    if proxy && head & 0xff == 0x16 {
        // The tunnelled ClientHello: copy it, then stop following.
        info.flags &= !sock_flags::PROXY;
    }
    let limit = if info.family == AF_NETLINK { CAPTURE_NETLINK } else { CAPTURE_SENDS };
    let mut capture = info.flags & sock_flags::DNS != 0
        || info.captures < limit
        || (proxy && info.captures < CAPTURE_PROXY);
    if peer.len != 0 && info.flags & sock_flags::CONNECTED == 0 {
        let digest = peer_digest(peer);
        if digest != info.last_peer {
            info.last_peer = digest;
            capture = true;
        }
    }
    if capture {
        info.captures = info.captures.saturating_add(1);
    }
    capture
}

/// A first send that opens a proxy handshake: `CONN`(ECT …), or a SOCKS5 greeting
/// (version 5, then as many methods as the length says).
#[inline(always)]
fn is_proxy_handshake(head: u32, len: u64) -> bool {
    let b = head.to_le_bytes();
    &b == b"CONN" || (b[0] == 5 && b[1] >= 1 && len == 2 + b[1] as u64)
}

/// A digest of a sockaddr's port and address (never 0).
#[inline(always)]
fn peer_digest(sa: &RawSockAddr) -> u32 {
    let d = &sa.data;
    let mut h: u32 = 0x9e37_79b9;
    let mut i = 0;
    while i < 24 {
        h = (h ^ u32::from_ne_bytes([d[i], d[i + 1], d[i + 2], d[i + 3]])).wrapping_mul(0x0100_0193);
        i += 4;
    }
    h | 1
}

/// TCP state changes of connections tracked processes started. `SYN_SENT` happens inside
/// connect(), in the connecting thread: that links the kernel socket to its (tgid, fd). Later
/// changes, often in softirq context, are reported for linked sockets only.
#[tracepoint]
pub fn net_enter_sock_set_state(ctx: TracePointContext) -> u32 {
    use inet_sock_set_state as f;
    // SAFETY (arg reads): sock:inet_sock_set_state fields, checked against its format at load.
    let protocol: u16 = unsafe { arg(&ctx, f::PROTOCOL) };
    if protocol != IPPROTO_TCP {
        return 0;
    }
    let sk: u64 = unsafe { arg(&ctx, f::SKADDR) };
    let oldstate = unsafe { arg::<i32>(&ctx, f::OLDSTATE) } as u32;
    let newstate = unsafe { arg::<i32>(&ctx, f::NEWSTATE) } as u32;
    if newstate == tcp_state::SYN_SENT {
        let (tgid, tid) = current_ids();
        // SAFETY: this thread's own entry.
        if let Some(a) = unsafe { NET_ARGS.get(tid) } {
            if a.op == OP_CONNECT && SK_CONN.insert(sk, SockKey { tgid, fd: a.fd as u32 }, 0).is_err() {
                bump(Stat::SocketMapFull);
            }
        }
        return 0;
    }
    // SAFETY: the value is copied at once.
    let Some(key) = (unsafe { SK_CONN.get(sk) }).copied() else { return 0 };
    if newstate == tcp_state::CLOSE {
        let _ = SK_CONN.remove(sk);
    }
    if oldstate != tcp_state::SYN_SENT {
        return 0;
    }
    let Some(t) = tracked(key.tgid) else { return 0 };
    emit(&t, now(), deferred(), |ev: &mut StateEvent| {
        // Softirq context: the task is whoever was running; the owner comes from the map.
        ev.hdr.pid = key.tgid;
        ev.hdr.tid = 0;
        ev.hdr.uid = 0;
        ev.hdr.gid = 0;
        ev.hdr.comm = [0; 16];
        ev.fd = key.fd as i32;
        ev.oldstate = oldstate;
        ev.newstate = newstate;
        ev._pad = 0;
        let family: u16 = unsafe { arg(&ctx, f::FAMILY) };
        let sport: u16 = unsafe { arg(&ctx, f::SPORT) };
        let dport: u16 = unsafe { arg(&ctx, f::DPORT) };
        ev.local = state_addr(&ctx, family, sport, f::SADDR, f::SADDR_V6);
        ev.remote = state_addr(&ctx, family, dport, f::DADDR, f::DADDR_V6);
    });
    0
}

/// A sockaddr_in/in6 built from the tracepoint's fields (ports there are in host order).
#[inline(always)]
fn state_addr(ctx: &TracePointContext, family: u16, port: u16, v4: Field, v6: Field) -> RawSockAddr {
    let mut sa = RawSockAddr::default();
    sa.data[..2].copy_from_slice(&family.to_ne_bytes());
    sa.data[2..4].copy_from_slice(&port.to_be_bytes());
    if family as u32 == AF_INET {
        // Arrays are copied with a helper: the verifier refuses byte loads from a moved ctx.
        // SAFETY: saddr/daddr fields of the tracepoint.
        let a: [u8; 4] = unsafe { ctx.read_at(v4.offset) }.unwrap_or_default();
        sa.data[4..8].copy_from_slice(&a);
        sa.len = 16;
    } else {
        // SAFETY: saddr_v6/daddr_v6 fields of the tracepoint.
        let a: [u8; 16] = unsafe { ctx.read_at(v6.offset) }.unwrap_or_default();
        sa.data[8..24].copy_from_slice(&a);
        sa.len = 28;
    }
    sa
}
