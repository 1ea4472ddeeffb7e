//! Path syscalls of tracked processes: the arguments are kept at `sys_enter_*`, the path is read
//! and the event sent at `sys_exit_*` with the result. Untracked processes cost one hash lookup.
//! Which paths matter is decided in user space, which resolves relative paths, `..`, symlinks
//! and `/proc/self/root` against the process's state; the kernel filter is "tracked or not".

use aya_ebpf::{
    helpers::{bpf_probe_read_user, bpf_probe_read_user_str_bytes},
    macros::tracepoint,
    programs::TracePointContext,
};
use aya_log_ebpf::{debug, warn};
use sensor_common::{flags, EventKind, FileEvent, Stat, Syscall, AT_FDCWD, PATH_LEN};

use crate::{
    helpers::{arg, batched, bump, current_ids, fill_header, now, stash, take, tracked},
    maps::{FileArgs, EVENTS, FILE_ARGS},
};

/// Where a syscall keeps its arguments (byte offsets in the tracepoint record).
struct Layout {
    dirfd: Option<usize>,
    path: Option<usize>,
    flags: Option<usize>,
    /// `openat2`: flags and resolve flags come from a user `struct open_how` at this offset.
    open_how: Option<usize>,
}

const PATH0: Layout = Layout { dirfd: None, path: Some(16), flags: Some(24), open_how: None };
const AT: Layout = Layout { dirfd: Some(16), path: Some(24), flags: Some(32), open_how: None };
const AT_FLAG40: Layout = Layout { dirfd: Some(16), path: Some(24), flags: Some(40), open_how: None };

#[inline(always)]
fn enter(ctx: &TracePointContext, syscall: Syscall, layout: &Layout) -> u32 {
    let (tgid, tid) = current_ids();
    let Some(t) = tracked(tgid) else {
        return 0;
    };
    // SAFETY (all `arg` reads): offsets come from the syscall's tracepoint format.
    let mut args = FileArgs {
        ts_ns: now(),
        path: match layout.path {
            Some(off) => unsafe { arg::<u64>(ctx, off) },
            None => 0,
        },
        syscall: syscall as u32,
        dirfd: match layout.dirfd {
            Some(off) => (unsafe { arg::<u64>(ctx, off) }) as i32,
            None => AT_FDCWD,
        },
        flags: match layout.flags {
            Some(off) => (unsafe { arg::<u64>(ctx, off) }) as u32,
            None => 0,
        },
        resolve: 0,
        tracked: t,
    };
    if let Some(off) = layout.open_how {
        let how = (unsafe { arg::<u64>(ctx, off) }) as *const [u64; 3];
        // SAFETY: user pointer; the helper checks it. open_how is {flags, mode, resolve}.
        match unsafe { bpf_probe_read_user(how) } {
            Ok(how) => {
                args.flags = how[0] as u32;
                args.resolve = how[2] as u32;
            }
            Err(_) => bump(Stat::ReadFailed),
        }
    }
    if stash(&FILE_ARGS, tid, &args).is_err() {
        bump(Stat::StashFull);
        warn!(ctx, "FILE_ARGS full: syscall of tid {} not followed", tid);
    }
    0
}

/// One program for every `sys_exit_*` of the syscalls above: they share the record layout.
#[tracepoint]
pub fn files_exit_syscall(ctx: TracePointContext) -> u32 {
    let (tgid, tid) = current_ids();
    // `syscall == 0` marks a used slot.
    let Some(args) = take(&FILE_ARGS, tid, |a| a.syscall != 0, |a| a.syscall = 0) else {
        return 0;
    };
    // Reported with the tracking entry seen at enter. Should user space have untracked the process
    // meanwhile, it drops the event (its own table decides).
    let t = args.tracked;
    let Some(mut entry) = EVENTS.reserve::<FileEvent>(0) else {
        bump(Stat::RingbufFull);
        return 0;
    };
    // SAFETY: reserved memory of the right size; every field is written below.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.hdr, EventKind::File, &t, args.ts_ns);
    ev.syscall = args.syscall;
    ev.dirfd = args.dirfd;
    ev.flags = args.flags;
    ev.resolve = args.resolve;
    // SAFETY: sys_exit_*: ret@16.
    ev.ret = unsafe { arg::<i64>(&ctx, 16) };
    ev._pad = 0;
    ev.path_len = 0;
    if args.path != 0 {
        // Read at exit: the kernel has just copied this string, so its page is present.
        // SAFETY: user pointer; the helper checks it.
        match unsafe { bpf_probe_read_user_str_bytes(args.path as *const u8, &mut ev.path) } {
            Ok(s) => {
                ev.path_len = s.len() as u32;
                if s.len() >= PATH_LEN - 1 {
                    ev.hdr.flags |= flags::PATH_TRUNCATED;
                    bump(Stat::PathTruncated);
                    debug!(&ctx, "path truncated at {} bytes (pid {})", PATH_LEN, tgid);
                }
            }
            Err(e) => {
                ev.hdr.flags |= flags::READ_FAILED;
                bump(Stat::ReadFailed);
                debug!(&ctx, "cannot read path of pid {}: error {}", tgid, e);
            }
        }
    }
    entry.submit(batched());
    bump(Stat::Emitted);
    0
}

macro_rules! file_enter {
    ($($prog:ident => $syscall:ident, $layout:expr;)*) => {$(
        #[tracepoint]
        pub fn $prog(ctx: TracePointContext) -> u32 {
            enter(&ctx, Syscall::$syscall, &$layout)
        }
    )*};
}

file_enter! {
    files_enter_open => Open, PATH0;
    files_enter_openat => Openat, AT;
    files_enter_openat2 => Openat2, Layout { dirfd: Some(16), path: Some(24), flags: None, open_how: Some(32) };
    files_enter_readlink => Readlink, Layout { flags: None, ..PATH0 };
    files_enter_readlinkat => Readlinkat, Layout { flags: None, ..AT };
    files_enter_newfstatat => Newfstatat, AT_FLAG40;
    files_enter_statx => Statx, AT;
    files_enter_access => Access, PATH0;
    files_enter_faccessat => Faccessat, AT;
    files_enter_faccessat2 => Faccessat2, AT_FLAG40;
    files_enter_newstat => Newstat, Layout { flags: None, ..PATH0 };
    files_enter_newlstat => Newlstat, Layout { flags: None, ..PATH0 };
    files_enter_chdir => Chdir, Layout { flags: None, ..PATH0 };
    files_enter_fchdir => Fchdir, Layout { dirfd: Some(16), path: None, flags: None, open_how: None };
}
