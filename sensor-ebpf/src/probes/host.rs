//! Host identity a tracked process asks the kernel for without opening a file: `uname(2)`
//! (node name, release, machine; what Node's `os.hostname()` calls).

use aya_ebpf::{macros::tracepoint, programs::TracePointContext};
use sensor_common::UnameEvent;

use crate::{
    emit::{batched, emit},
    helpers::{current_ids, now, tracked},
};

/// Reported at enter: the call cannot fail but for a bad buffer, and its answer is the host's
/// either way.
#[tracepoint]
pub fn host_enter_newuname(_ctx: TracePointContext) -> u32 {
    let (tgid, _) = current_ids();
    let Some(t) = tracked(tgid) else { return 0 };
    // The header is all of a uname event.
    emit(&t, now(), batched(), |_: &mut UnameEvent| {});
    0
}
