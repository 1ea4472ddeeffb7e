//! perf events on uprobe trace events: opening them, and the ioctls that give them a BPF
//! program and enable them.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[repr(C)]
#[derive(Default)]
pub(super) struct PerfEventAttr {
    kind: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved2: u16,
    aux_sample_size: u32,
    reserved3: u32,
    sig_data: u64,
    config3: u64,
}

pub(super) const PERF_TYPE_TRACEPOINT: u32 = 2;
pub(super) const FLAG_DISABLED: u64 = 1 << 0;
pub(super) const FLAG_INHERIT: u64 = 1 << 1;
pub(super) const PERF_FLAG_FD_CLOEXEC: u64 = 1 << 3;
pub(super) const PERF_EVENT_IOC_ENABLE: u64 = 0x2400;
pub(super) const PERF_EVENT_IOC_SET_BPF: u64 = 0x4004_2408;

/// Opens a perf event on trace event `id` for `pid` (-1: every process) on `cpu` (-1: any).
pub(super) fn perf_open(
    id: u64,
    pid: i32,
    cpu: i32,
    inherit: bool,
    disabled: bool,
) -> std::io::Result<OwnedFd> {
    let mut attr = PerfEventAttr {
        kind: PERF_TYPE_TRACEPOINT,
        size: std::mem::size_of::<PerfEventAttr>() as u32,
        config: id,
        sample_period: 1,
        wakeup_events: 1,
        ..Default::default()
    };
    if inherit {
        attr.flags |= FLAG_INHERIT;
    }
    if disabled {
        attr.flags |= FLAG_DISABLED;
    }
    // SAFETY: a valid attr of the declared size; the kernel returns a new fd or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            pid,
            cpu,
            -1,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

pub(super) fn ioctl(fd: &OwnedFd, req: u64, arg: libc::c_ulong) -> std::io::Result<()> {
    // SAFETY: perf event ioctls with integer arguments.
    if unsafe { libc::ioctl(fd.as_raw_fd(), req as _, arg) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

pub(super) fn num_cpus() -> i32 {
    std::thread::available_parallelism().map(|n| n.get() as i32).unwrap_or(1)
}
