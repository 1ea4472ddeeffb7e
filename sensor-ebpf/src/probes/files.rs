//! Path syscalls of tracked processes: the arguments are kept at `sys_enter_*`, the path is read
//! and the event sent at `sys_exit_*` with the result, timed at the return (one clock read per
//! call: in a VM a clock read is a large part of the enter program). Untracked processes cost
//! one hash lookup.
//! Which paths matter is decided in user space, which resolves relative paths, `..`, symlinks
//! and `/proc/self/root` against the process's state; the kernel filter is "tracked or not".

use aya_ebpf::{
    helpers::{bpf_probe_read_user, bpf_probe_read_user_str_bytes},
    macros::tracepoint,
    programs::TracePointContext,
};
use aya_log_ebpf::{debug, warn};
use sensor_common::{
    flags,
    tracepoints::{FileLayout, SYS_EXIT_RET},
    FileEvent, Stat, Syscall, AT_FDCWD, PATH_LEN,
};

use crate::{
    emit::{batched, emit},
    helpers::{arg, bump, current_ids, now, stash, take, tracked},
    maps::{FileArgs, FILE_ARGS},
};

#[inline(always)]
fn enter(ctx: &TracePointContext, syscall: Syscall, layout: &FileLayout) -> u32 {
    let (tgid, tid) = current_ids();
    let Some(t) = tracked(tgid) else {
        return 0;
    };
    // SAFETY (all `arg` reads): fields of this syscall's record, checked against its format.
    let mut args = FileArgs {
        path: match layout.path {
            Some(f) => unsafe { arg::<u64>(ctx, f) },
            None => 0,
        },
        syscall: syscall as u32,
        dirfd: match layout.dirfd {
            Some(f) => (unsafe { arg::<u64>(ctx, f) }) as i32,
            None => AT_FDCWD,
        },
        flags: match layout.flags {
            Some(f) => (unsafe { arg::<u64>(ctx, f) }) as u32,
            None => 0,
        },
        resolve: 0,
        tracked: t,
    };
    if let Some(f) = layout.open_how {
        let how = (unsafe { arg::<u64>(ctx, f) }) as *const [u64; 3];
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
    emit(&args.tracked, now(), batched(), |ev: &mut FileEvent| {
        ev.syscall = args.syscall;
        ev.dirfd = args.dirfd;
        ev.flags = args.flags;
        ev.resolve = args.resolve;
        // SAFETY: sys_exit_*: ret, checked against the format at load.
        ev.ret = unsafe { arg::<i64>(&ctx, SYS_EXIT_RET) };
        ev._pad = 0;
        ev.path_len = 0;
        if args.path == 0 {
            return;
        }
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
    });
    0
}

macro_rules! file_enter {
    ($($prog:ident => $syscall:ident;)*) => {$(
        #[tracepoint]
        pub fn $prog(ctx: TracePointContext) -> u32 {
            // Evaluated at compile time: the program reads fixed offsets.
            const LAYOUT: FileLayout = Syscall::$syscall.layout();
            enter(&ctx, Syscall::$syscall, &LAYOUT)
        }
    )*};
}

file_enter! {
    files_enter_open => Open;
    files_enter_openat => Openat;
    files_enter_openat2 => Openat2;
    files_enter_readlink => Readlink;
    files_enter_readlinkat => Readlinkat;
    files_enter_newfstatat => Newfstatat;
    files_enter_statx => Statx;
    files_enter_access => Access;
    files_enter_faccessat => Faccessat;
    files_enter_faccessat2 => Faccessat2;
    files_enter_newstat => Newstat;
    files_enter_newlstat => Newlstat;
    files_enter_chdir => Chdir;
    files_enter_fchdir => Fchdir;
}
