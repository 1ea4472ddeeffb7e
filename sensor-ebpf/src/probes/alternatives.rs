//! Hooks some hosts allow and this sensor's tracepoint path does not need. `aiwatch check`
//! loads them to tell whether the host offers fentry and BPF LSM; `aiwatch run` does not attach
//! them (the tracepoint programs cover every hook). They do nothing.

use aya_ebpf::{
    macros::{fentry, lsm},
    programs::{FEntryContext, LsmContext},
};

#[fentry(function = "do_sys_openat2")]
pub fn files_enter_fentry_openat2(_ctx: FEntryContext) -> u32 {
    0
}

#[lsm(hook = "file_open")]
pub fn files_enter_lsm_file_open(_ctx: LsmContext) -> i32 {
    0
}
