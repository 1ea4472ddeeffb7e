//! Syscalls made through a 32-bit entry (`int $0x80` from a 64-bit process, a 32-bit binary,
//! the x32 ABI): the kernel runs them without firing the `syscalls:sys_*` tracepoints the other
//! programs use, so a tracked process could read a fingerprint file or connect unseen. These
//! programs sit on `sys_enter` (the raw tracepoint, or the classic `raw_syscalls:sys_enter`
//! where a raw one cannot attach), which fires for every syscall of the host, so they decide
//! first, from the thread's status word (one kernel read), whether the syscall came
//! through a 32-bit entry, and only then whether the process is tracked.

use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_probe_read_kernel, bpf_probe_read_user, generated},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
    EbpfContext,
};
use sensor_common::{
    compat::i386, flags, tracepoints::raw_sys_enter, CompatAbi, CompatData, CompatEvent, Stat, Tracked,
    COMPAT_DATA_LEN, X32_SYSCALL_BIT,
};

use crate::{
    emit::{batched, emit},
    helpers::{arg, bump, current_ids, now, tracked},
    maps::COMPAT_SEEN,
};

/// Offset of `thread_info.status` in `task_struct` (`thread_info` is its first member on x86),
/// from the kernel's BTF: the loader writes it before loading.
#[unsafe(no_mangle)]
static AIWATCH_TASK_STATUS_OFFSET: u32 = 0;

/// `TS_COMPAT` (arch/x86/include/asm/thread_info.h, the same from 5.10 to 6.x): set while a
/// syscall that entered through `int $0x80`/`sysenter` runs; what `in_ia32_syscall()` tests,
/// and so exactly the syscalls the `syscalls:sys_*` tracepoints skip.
const TS_COMPAT: u32 = 0x0002;
/// Bytes of a sockaddr copied at most (a `sockaddr_un` is 110).
const SOCKADDR_MAX: u32 = 128;

/// On the raw tracepoint (preferred): the kernel calls it with `(struct pt_regs *regs, long id)`
/// and builds no record, which the classic tracepoint does for every syscall of the host before
/// any program runs.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn compat_enter_raw_syscall(ctx: RawTracePointContext) -> i32 {
    let raw = ctx.as_ptr() as *const u64;
    // SAFETY: sys_enter's two arguments, as u64 slots of the context.
    let id = unsafe { *raw.add(1) } as i64;
    let Some((abi, nr)) = compat_entry(id) else {
        return 0;
    };
    let (tgid, _) = current_ids();
    let Some(t) = tracked(tgid) else {
        return 0;
    };
    // SAFETY: the first argument is the syscall's saved registers; the helper checks the read.
    let regs = match unsafe { bpf_probe_read_kernel((*raw) as *const [u64; PT_REGS_WORDS]) } {
        Ok(r) => r,
        Err(_) => {
            bump(Stat::ReadFailed);
            return 0;
        }
    };
    // The argument registers of each ABI (arch/x86/include/asm/syscall.h).
    let args = if abi == CompatAbi::I386 {
        [regs[BX], regs[CX], regs[DX], regs[SI], regs[DI], regs[BP]]
    } else {
        [regs[DI], regs[SI], regs[DX], regs[R10], regs[R8], regs[R9]]
    };
    report(&t, tgid, abi, nr, args);
    0
}

/// On the classic tracepoint `raw_syscalls:sys_enter`, where raw tracepoints cannot attach.
#[tracepoint]
pub fn compat_enter_syscall(ctx: TracePointContext) -> u32 {
    // SAFETY: raw_syscalls:sys_enter.id, checked against the format at load.
    let id: i64 = unsafe { arg(&ctx, raw_sys_enter::ID) };
    let Some((abi, nr)) = compat_entry(id) else {
        return 0;
    };
    let (tgid, _) = current_ids();
    let Some(t) = tracked(tgid) else {
        return 0;
    };
    // SAFETY: raw_syscalls:sys_enter.args[i], checked against the format at load; constant
    // offsets once inlined, as the verifier wants for the context.
    let a = |i: usize| unsafe { *(ctx.as_ptr().add(raw_sys_enter::ARGS.offset + 8 * i) as *const u64) };
    report(&t, tgid, abi, nr, [a(0), a(1), a(2), a(3), a(4), a(5)]);
    0
}

// `struct pt_regs` on x86_64, in 8-byte words: the same layout from 5.10 to 6.x (the user ABI
// of ptrace's GETREGS), up to `di`.
const PT_REGS_WORDS: usize = 15;
const BP: usize = 4;
const BX: usize = 5;
const R10: usize = 7;
const R9: usize = 8;
const R8: usize = 9;
const CX: usize = 11;
const DX: usize = 12;
const SI: usize = 13;
const DI: usize = 14;

/// Reports a tracked process's compat syscall.
#[inline(always)]
fn report(t: &Tracked, tgid: u32, abi: CompatAbi, nr: u32, args: [u64; 6]) {
    // i386 arguments are the low 32 bits of the registers (the kernel casts them); a 64-bit
    // process's int $0x80 may leave anything in the upper halves.
    let mask = if abi == CompatAbi::I386 { 0xffff_ffff } else { u64::MAX };
    let args =
        [args[0] & mask, args[1] & mask, args[2] & mask, args[3] & mask, args[4] & mask, args[5] & mask];
    let data = if abi == CompatAbi::I386 { data_of(nr, &args) } else { Data::NONE };
    if data.what == Data::NONE.what && !first_of_number(tgid, nr) {
        bump(Stat::CompatRepeated);
        return;
    }
    emit(t, now(), batched(), |ev: &mut CompatEvent| {
        ev.nr = nr;
        ev.abi = abi as u32;
        ev.args = args;
        ev.data_kind = CompatData::None as u32;
        ev.data_len = 0;
        let ok = match data.what {
            WHAT_PATH => {
                ev.data_kind = CompatData::Path as u32;
                read_path(ev, data.addr)
            }
            WHAT_SOCKADDR => {
                ev.data_kind = CompatData::SockAddr as u32;
                read_sockaddr(ev, data.addr, data.len)
            }
            WHAT_SOCKETCALL => {
                ev.data_kind = CompatData::SockAddr as u32;
                // SAFETY: user pointer (the call's argument block); the helper checks it.
                match unsafe { bpf_probe_read_user(data.addr as *const [u32; 3]) } {
                    Ok(block) => read_sockaddr(ev, u64::from(block[1]), u64::from(block[2])),
                    Err(_) => false,
                }
            }
            _ => true,
        };
        if !ok {
            ev.hdr.flags |= flags::READ_FAILED;
            bump(Stat::ReadFailed);
        }
    });
}

/// The ABI and number of a syscall that came through a 32-bit entry, or None for a native one.
#[inline(always)]
fn compat_entry(id: i64) -> Option<(CompatAbi, u32)> {
    if id < 0 {
        return None;
    }
    let nr = id as u32;
    if nr & X32_SYSCALL_BIT != 0 {
        return Some((CompatAbi::X32, nr & !X32_SYSCALL_BIT));
    }
    // SAFETY: read-only data written by the loader before load.
    let off = unsafe { core::ptr::read_volatile(&AIWATCH_TASK_STATUS_OFFSET) } as u64;
    // SAFETY: the current task is alive while it runs this tracepoint; the helper checks the
    // address anyway.
    let task = unsafe { bpf_get_current_task() };
    match unsafe { bpf_probe_read_kernel((task + off) as *const u32) } {
        Ok(status) if status & TS_COMPAT != 0 => Some((CompatAbi::I386, nr)),
        _ => None,
    }
}

// What of a compat syscall's memory is copied ([`Data::what`]).
const WHAT_PATH: u32 = 1;
const WHAT_SOCKADDR: u32 = 2;
/// `socketcall(SYS_CONNECT, args)`: the sockaddr is behind the argument block at `addr`.
const WHAT_SOCKETCALL: u32 = 3;

/// What to copy, with every field always written: a Rust enum leaves its unused payload
/// uninitialized on the stack, and 5.10's verifier refuses a read of that ("invalid read from
/// stack") when the compiler copies the whole enum.
#[derive(Clone, Copy)]
struct Data {
    what: u32,
    addr: u64,
    len: u64,
}

impl Data {
    const NONE: Self = Self { what: 0, addr: 0, len: 0 };
}

#[inline(always)]
fn data_of(nr: u32, args: &[u64; 6]) -> Data {
    let path = |addr| Data { what: WHAT_PATH, addr, len: 0 };
    match i386::path_arg(nr) {
        Some(0) => return path(args[0]),
        Some(_) => return path(args[1]),
        None => {}
    }
    match nr {
        i386::CONNECT => Data { what: WHAT_SOCKADDR, addr: args[1], len: args[2] },
        i386::SOCKETCALL if args[0] == u64::from(i386::SYS_CONNECT) => {
            Data { what: WHAT_SOCKETCALL, addr: args[1], len: 0 }
        }
        _ => Data::NONE,
    }
}

#[inline(always)]
fn read_path(ev: &mut CompatEvent, p: u64) -> bool {
    // SAFETY: user pointer; the helper checks it. Read at entry: a page not yet faulted in
    // fails the read (flagged), where the other programs wait for the syscall's exit.
    match unsafe { aya_ebpf::helpers::bpf_probe_read_user_str_bytes(p as *const u8, &mut ev.data) } {
        Ok(s) => {
            ev.data_len = s.len() as u32;
            if s.len() >= COMPAT_DATA_LEN - 1 {
                ev.hdr.flags |= flags::PATH_TRUNCATED;
                bump(Stat::PathTruncated);
            }
            true
        }
        Err(_) => false,
    }
}

#[inline(always)]
fn read_sockaddr(ev: &mut CompatEvent, p: u64, len: u64) -> bool {
    // Masked, not only compared: older verifiers want the size's bound on this register.
    let len =
        (if len > SOCKADDR_MAX as u64 { SOCKADDR_MAX as u64 } else { len }) as u32 & (SOCKADDR_MAX * 2 - 1);
    if len == 0 {
        return true;
    }
    // SAFETY: user pointer and a size within `data`; the helper checks the pointer.
    let r = unsafe { generated::bpf_probe_read_user(ev.data.as_mut_ptr().cast(), len, p as *const _) };
    if r != 0 {
        return false;
    }
    ev.data_len = len;
    true
}

/// Whether this is the process's first compat syscall numbered `nr` (and remembers it).
#[inline(always)]
fn first_of_number(tgid: u32, nr: u32) -> bool {
    let word = ((nr >> 6) & 7) as usize;
    let bit = 1u64 << (nr & 63);
    match COMPAT_SEEN.get_ptr_mut(tgid) {
        Some(seen) => {
            // SAFETY: a map value; threads racing here at worst both report the number.
            let w = unsafe { &mut (*seen)[word] };
            if *w & bit != 0 {
                return false;
            }
            *w |= bit;
            true
        }
        None => {
            let mut seen = [0u64; 8];
            seen[word] = bit;
            let _ = COMPAT_SEEN.insert(tgid, seen, 0);
            true
        }
    }
}
