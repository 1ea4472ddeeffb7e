//! Process tracking: exec (with filename and argv), fork and exit.
//!
//! A process enters `TRACKED` in the kernel, before it runs a single instruction of its new
//! program, when it execs a candidate executable (an interpreter or an assistant's name, from the
//! `CANDIDATES` map): it is then `Pending` until user space classifies it, and its reads are sent
//! meanwhile. So no read made right after exec is missed. Children inherit their parent's entry
//! at fork; the entry goes when the last thread exits.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_get_current_task, bpf_probe_read_kernel, bpf_probe_read_kernel_str_bytes,
        bpf_probe_read_user_str_bytes,
    },
    macros::tracepoint,
    programs::TracePointContext,
    EbpfContext,
};
use aya_log_ebpf::warn;
use sensor_common::tracepoints::{sched_process_exec, sched_process_exit, sys, task_newtask, SYS_EXIT_RET};
use sensor_common::{
    flags, CandidateKey, ExitEvent, ForkEvent, Stat, TrackState, Tracked, COMM_LEN, MAX_ARGS, MAX_ENV,
    PATH_LEN,
};

use crate::{
    emit::{emit, send, urgent},
    helpers::{arg, bump, current_ids, inherit, now, tracked},
    maps::{
        ExecArgs, CANDIDATES, COMPAT_SEEN, ENV_SCRATCH, ENV_STASH, EXEC_ARGS, EXEC_PROG, EXEC_SCRATCH,
        EXEC_STASH, PARENTS, SOCK_FDS, TRACKED,
    },
    pack,
};

const CLONE_THREAD: u64 = 0x0001_0000;
const AT_EMPTY_PATH: u64 = 0x1000;

#[tracepoint]
pub fn process_enter_execve(ctx: TracePointContext) -> u32 {
    use sys::execve::{ARGV, ENVP, FILENAME};
    // SAFETY: fields of sys_enter_execve, checked against its format at load.
    let (filename, argv, envp) =
        unsafe { (arg::<u64>(&ctx, FILENAME), arg::<u64>(&ctx, ARGV), arg::<u64>(&ctx, ENVP)) };
    hand_over(&ctx, ExecArgs { filename, argv, envp, exec_fd: 0 });
    0
}

#[tracepoint]
pub fn process_enter_execveat(ctx: TracePointContext) -> u32 {
    use sys::execveat::{ARGV, ENVP, FILENAME, FLAGS};
    // SAFETY: fields of sys_enter_execveat, checked against its format at load.
    let (filename, argv, envp, at_flags) = unsafe {
        (arg::<u64>(&ctx, FILENAME), arg::<u64>(&ctx, ARGV), arg::<u64>(&ctx, ENVP), arg::<u64>(&ctx, FLAGS))
    };
    let exec_fd = (at_flags & AT_EMPTY_PATH != 0) as u64;
    hand_over(&ctx, ExecArgs { filename, argv, envp, exec_fd });
    0
}

/// A failed exec leaves its stash behind; drop it. (A successful one was consumed by
/// `sched_process_exec`, keyed by the thread id that called exec.)
#[tracepoint]
pub fn process_exit_execve(ctx: TracePointContext) -> u32 {
    // SAFETY: sys_exit_execve*: ret, checked against the format at load.
    let ret: i64 = unsafe { arg(&ctx, SYS_EXIT_RET) };
    if ret != 0 {
        let (_, tid) = current_ids();
        let _ = EXEC_STASH.remove(tid);
        let _ = ENV_STASH.remove(tid);
    }
    0
}

/// Leaves the exec's arguments for `process_enter_exec_args` and tail-calls it.
#[inline(always)]
fn hand_over(ctx: &TracePointContext, args: ExecArgs) {
    let Some(slot) = EXEC_ARGS.get_ptr_mut(0) else { return };
    // SAFETY: this CPU's slot, read by the tail call that follows, on this CPU.
    unsafe { *slot = args };
    // SAFETY: the context of this tracepoint program, as the callee's is. It returns only if
    // the slot is empty, which the loader, failing without the program, does not leave it.
    unsafe { EXEC_PROG.tail_call(ctx, 0) };
}

/// Tail-called by `process_enter_execve` and `process_enter_execveat` (never attached): when
/// the process is tracked, or execs a candidate (or a file descriptor), stashes the exec's
/// filename and argv, and its new environment packed like argv, for `sched_process_exec` to
/// send with the exec.
#[tracepoint]
pub fn process_enter_exec_args(_ctx: TracePointContext) -> u32 {
    let Some(a) = EXEC_ARGS.get_ptr(0) else { return 0 };
    // SAFETY: this CPU's slot, written by the caller just before the tail call.
    let a = unsafe { *a };
    let exec_fd = a.exec_fd != 0;
    let (tgid, tid) = current_ids();
    let is_tracked = tracked(tgid).is_some();
    let Some(ev) = EXEC_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: per-CPU scratch, used by one program at a time on this CPU.
    let ev = unsafe { &mut *ev };
    // SAFETY: user pointer from the syscall arguments; the helper checks it.
    let len = match unsafe { bpf_probe_read_user_str_bytes(a.filename as *const u8, &mut ev.filename) } {
        Ok(s) => s.len(),
        Err(_) => 0,
    };
    if !is_tracked && !exec_fd && !is_candidate(&ev.filename, len) {
        return 0;
    }
    ev.hdr.flags = if exec_fd { flags::EXEC_FD } else { 0 };
    let args = pack::strings::<MAX_ARGS, _>(&mut ev.argv, a.argv as *const *const u8, &mut ev.hdr.flags);
    ev.argc = args.count;
    ev.argv_len = args.len;
    // By reference: the event is far larger than the 512-byte stack.
    if EXEC_STASH.insert(tid, ev, 0).is_err() {
        bump(Stat::StashFull);
        return 0;
    }
    stash_env(tid, a.envp as *const *const u8);
    0
}

/// Packs the new environment like argv, for `sched_process_exec` to send with the exec.
#[inline(always)]
fn stash_env(tid: u32, envp: *const *const u8) {
    let Some(ev) = ENV_SCRATCH.get_ptr_mut(0) else { return };
    // SAFETY: per-CPU scratch, used by one program at a time on this CPU.
    let ev = unsafe { &mut *ev };
    ev.hdr.flags = 0;
    let env = pack::strings::<MAX_ENV, _>(&mut ev.data, envp, &mut ev.hdr.flags);
    ev.count = env.count;
    ev.len = env.len;
    if ENV_STASH.insert(tid, ev, 0).is_err() {
        bump(Stat::StashFull);
    }
}

/// Whether the basename of `path[..len]` is in `CANDIDATES`.
#[inline(always)]
fn is_candidate(path: &[u8; PATH_LEN], len: usize) -> bool {
    // Backwards to the last '/', then stop: one exit per position keeps the verifier's work
    // linear (a forward scan remembering the last '/' forks a state per position).
    // Every index is masked into the buffer: older verifiers (5.10, 6.1) do not carry a loop
    // bound over to a register the compiler derived from it (`i - 1` could be -1 to them).
    const MASK: usize = PATH_LEN - 1;
    let len = if len > PATH_LEN { PATH_LEN } else { len };
    let mut start = 0usize;
    let mut back = 0usize;
    while back < PATH_LEN && back < len {
        let i = (len - 1 - back) & MASK;
        if path[i] == b'/' {
            start = i + 1;
            break;
        }
        back += 1;
    }
    let mut key: CandidateKey = [0; COMM_LEN];
    let mut j = 0usize;
    // Cut like the kernel cuts comm: 15 bytes and a NUL.
    while j < COMM_LEN - 1 {
        let k = start + j;
        if k >= len {
            break;
        }
        key[j] = path[k & MASK];
        j += 1;
    }
    // SAFETY: read-only lookup.
    unsafe { CANDIDATES.get(key) }.is_some()
}

/// The exec is past the point of no return and the new image is in place: track the process
/// (pending if it was not tracked) and send the exec event.
#[tracepoint]
pub fn process_enter_sched_exec(ctx: TracePointContext) -> u32 {
    use sched_process_exec::{FILENAME, OLD_PID, PID};
    // SAFETY: fields of sched_process_exec, checked against its format at load.
    let (loc, pid, old_pid) =
        unsafe { (arg::<u32>(&ctx, FILENAME), arg::<u32>(&ctx, PID), arg::<u32>(&ctx, OLD_PID)) };
    let Some(ev) = EXEC_STASH.get_ptr_mut(old_pid) else {
        return 0;
    };
    // SAFETY: stash entry of this thread; nothing else writes it.
    let ev = unsafe { &mut *ev };
    let t = match tracked(pid) {
        Some(t) => t,
        None => {
            let t = Tracked { session: 0, state: TrackState::Pending as u32 };
            if TRACKED.insert(pid, t, BPF_NOEXIST as u64).is_err() {
                bump(Stat::TrackedFull);
                warn!(&ctx, "TRACKED map full: pid {} not tracked", pid);
            }
            t
        }
    };
    // SAFETY: read-only lookup; absent when the fork predates the sensor or was evicted.
    ev.ppid = unsafe { PARENTS.get(pid) }.copied().unwrap_or(0);
    // The kernel's filename: for fexecve it names the fd, not the user's empty string.
    let src = ctx.as_ptr().wrapping_add((loc & 0xffff) as usize) as *const u8;
    // SAFETY: __data_loc points inside this tracepoint's record.
    if let Ok(s) = unsafe { bpf_probe_read_kernel_str_bytes(src, &mut ev.filename) } {
        ev.filename_len = s.len() as u32;
        if s.len() >= PATH_LEN - 1 {
            ev.hdr.flags |= flags::PATH_TRUNCATED;
            bump(Stat::PathTruncated);
        }
    }
    let ts_ns = now();
    // The environment first: user space holds it until the exec it belongs to.
    if let Some(env) = ENV_STASH.get_ptr_mut(old_pid) {
        // SAFETY: stash entry of this thread; nothing else writes it.
        send(unsafe { &mut *env }, &t, ts_ns, urgent());
        let _ = ENV_STASH.remove(old_pid);
    }
    send(ev, &t, ts_ns, urgent());
    let _ = EXEC_STASH.remove(old_pid);
    if old_pid != pid {
        // A thread other than the leader exec'd and took the leader's id: its own id is gone
        // without an exit.
        super::thread_exit::forget_thread(old_pid);
    }
    0
}

/// A tracked process created a new process (threads share the parent's entry): the child
/// inherits tracking before it runs.
#[tracepoint]
pub fn process_enter_task_newtask(ctx: TracePointContext) -> u32 {
    use task_newtask::{CLONE_FLAGS, PID};
    // SAFETY: fields of task_newtask, checked against its format at load.
    let (child, clone_flags) = unsafe { (arg::<u32>(&ctx, PID), arg::<u64>(&ctx, CLONE_FLAGS)) };
    if clone_flags & CLONE_THREAD != 0 {
        return 0;
    }
    let (tgid, _) = current_ids();
    if PARENTS.insert(child, tgid, 0).is_err() {
        bump(Stat::ParentMapFull);
    }
    let Some(parent) = tracked(tgid) else {
        return 0;
    };
    if TRACKED.insert(child, inherit(&parent), 0).is_err() {
        bump(Stat::TrackedFull);
        warn!(&ctx, "TRACKED map full: child {} of {} not tracked", child, tgid);
    }
    emit(&parent, now(), urgent(), |ev: &mut ForkEvent| {
        ev.child_pid = child;
        ev._pad = 0;
    });
    0
}

/// The last thread of a process exited (Linux ≥ 6.16, whose record says so): drop its entry and
/// tell user space.
#[tracepoint]
pub fn process_enter_sched_exit(ctx: TracePointContext) -> u32 {
    // SAFETY: sched_process_exit.group_dead, checked against the format at load.
    let group_dead: u8 = unsafe { arg(&ctx, sched_process_exit::GROUP_DEAD) };
    if group_dead != 0 {
        let (tgid, _) = current_ids();
        group_exited(tgid);
    }
    0
}

/// Offsets of `task_struct.signal` and `signal_struct.live`, from the kernel's BTF: the loader
/// writes them before loading (see `sensor_common::tracepoints::kernel_offsets`).
#[unsafe(no_mangle)]
static AIWATCH_TASK_SIGNAL_OFFSET: u32 = 0;
#[unsafe(no_mangle)]
static AIWATCH_SIGNAL_LIVE_OFFSET: u32 = 0;

/// The same for kernels whose `sched_process_exit` has no `group_dead` (before 6.16): the
/// kernel decrements `current->signal->live` before this tracepoint, so the exiting thread that
/// sees 0 is the last one. A leader that exits first (a zombie leader) sees its other threads
/// still counted and ends nothing. (Two last threads racing may both see 0: the second finds
/// the entry gone and sends nothing.)
#[tracepoint]
pub fn process_enter_sched_exit_live(ctx: TracePointContext) -> u32 {
    let (tgid, _) = current_ids();
    if tracked(tgid).is_none() {
        return 0;
    }
    // SAFETY: read-only data written by the loader before load.
    let (signal_off, live_off) = unsafe {
        (
            core::ptr::read_volatile(&AIWATCH_TASK_SIGNAL_OFFSET) as u64,
            core::ptr::read_volatile(&AIWATCH_SIGNAL_LIVE_OFFSET) as u64,
        )
    };
    // SAFETY: the current task is alive while it runs this tracepoint; the helper checks the
    // addresses anyway.
    let task = unsafe { bpf_get_current_task() };
    let live = unsafe { bpf_probe_read_kernel((task + signal_off) as *const u64) }
        .and_then(|signal| unsafe { bpf_probe_read_kernel((signal + live_off) as *const i32) });
    match live {
        Ok(0) => group_exited(tgid),
        Ok(_) => {}
        Err(e) => {
            bump(Stat::ReadFailed);
            warn!(&ctx, "cannot read the live-thread count of pid {}: error {}", tgid, e);
        }
    }
    0
}

/// The last thread of `tgid` is exiting: drop its entry and tell user space.
#[inline(always)]
fn group_exited(tgid: u32) {
    let Some(t) = tracked(tgid) else {
        return;
    };
    let _ = TRACKED.remove(tgid);
    let _ = COMPAT_SEEN.remove(tgid);
    let _ = SOCK_FDS.remove(tgid);
    // The header is all of an exit event.
    emit(&t, now(), urgent(), |_: &mut ExitEvent| {});
}
