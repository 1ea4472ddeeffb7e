//! Environment-variable reads: uprobes on libc's `getenv` and `secure_getenv`, and their
//! returns. The daemon attaches them per session (perf events that follow the session's
//! processes, inherited by every child), so processes outside sessions never hit them.
//!
//! glibc's `secure_getenv` tail-calls `getenv`: one call fires both entry probes and both
//! return probes. The first entry's record wins and the first return reports it.

use aya_ebpf::{
    helpers::bpf_probe_read_user_str_bytes,
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use sensor_common::{EnvFunc, EnvReadEvent, Stat};

use crate::{
    emit::{batched, emit},
    helpers::{bump, current_ids, now, take, tracked},
    maps::{EnvCall, ENV_CALLS},
};

fn enter(ctx: &ProbeContext, func: EnvFunc) -> u32 {
    let (tgid, tid) = current_ids();
    if tracked(tgid).is_none() {
        return 0;
    }
    let Some(name) = ctx.arg::<u64>(0) else { return 0 };
    let call = EnvCall { name, func: func as u32, _pad: 0, ts_ns: now() };
    // One lookup: check and refill this thread's slot in place (as `stash` does).
    match ENV_CALLS.get_ptr_mut(tid) {
        // SAFETY: this thread's own slot; no other program writes it.
        Some(slot) => unsafe {
            // The getenv that secure_getenv tail-calls: the outer call is already recorded (a
            // used slot has name 0).
            if (*slot).name != name {
                *slot = call;
            }
        },
        None => {
            if ENV_CALLS.insert(tid, call, 0).is_err() {
                bump(Stat::StashFull);
            }
        }
    }
    0
}

#[uprobe]
pub fn env_enter_getenv(ctx: ProbeContext) -> u32 {
    enter(&ctx, EnvFunc::Getenv)
}

#[uprobe]
pub fn env_enter_secure_getenv(ctx: ProbeContext) -> u32 {
    enter(&ctx, EnvFunc::SecureGetenv)
}

/// Return of either function: the variable was set if the result is not NULL.
#[uretprobe]
pub fn env_exit_getenv(ctx: RetProbeContext) -> u32 {
    let (tgid, tid) = current_ids();
    let Some(call) = take(&ENV_CALLS, tid, |c| c.name != 0, |c| c.name = 0) else { return 0 };
    let Some(t) = tracked(tgid) else { return 0 };
    let ret: u64 = ctx.ret();
    emit(&t, call.ts_ns, batched(), |ev: &mut EnvReadEvent| {
        ev.func = call.func;
        ev.set = u32::from(ret != 0);
        ev._pad = 0;
        // SAFETY: the caller's name string, still valid at return; the helper checks it.
        ev.name_len = match unsafe { bpf_probe_read_user_str_bytes(call.name as *const u8, &mut ev.name) } {
            Ok(s) => s.len() as u32,
            Err(_) => {
                bump(Stat::ReadFailed);
                0
            }
        };
    });
    0
}
