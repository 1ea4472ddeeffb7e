//! Leaving the kernel's tracepoint teardown to a process that outlives the daemon.
//!
//! Closing the last fd of a tracepoint's perf event waits for RCU grace periods under a kernel
//! mutex that every such close takes in turn: with about 70 hooks that is 2 to 3 s (measured on
//! 6.18, idle), far longer than the rest of a stop. So at SIGTERM the daemon starts a *keeper*
//! sharing its fd table (`CLONE_FILES`), leaves the hooks open, and exits: its exit then closes
//! nothing the keeper still shares, and the keeper, killed when the daemon's thread ends
//! (`PR_SET_PDEATHSIG`), pays for the teardown instead.

/// Starts the keeper; false if it could not be started (the caller then detaches itself).
pub fn start() -> bool {
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: a raw clone without CLONE_VM, like fork: the child runs on a copy of this
    // thread's memory, and makes only raw system calls until it is killed or exits.
    let pid = unsafe {
        libc::syscall(libc::SYS_clone, libc::CLONE_FILES | libc::SIGCHLD, 0usize, 0usize, 0usize, 0usize)
    };
    if pid == 0 {
        // SAFETY: as above; each call is a raw system call on values of this frame.
        unsafe { keep(parent) }
    }
    pid > 0
}

/// The keeper's life: signals blocked, killed when the daemon's thread ends.
unsafe fn keep(parent: libc::pid_t) -> ! {
    let all: u64 = !0;
    libc::syscall(libc::SYS_rt_sigprocmask, libc::SIG_BLOCK, &all as *const u64, 0usize, 8usize);
    libc::syscall(
        libc::SYS_prctl,
        libc::PR_SET_PDEATHSIG,
        libc::SIGKILL as libc::c_ulong,
        0usize,
        0usize,
        0usize,
    );
    // The daemon may be gone already.
    if libc::syscall(libc::SYS_getppid) as libc::pid_t == parent {
        loop {
            // Sleeps until SIGKILL: every other signal is blocked.
            libc::syscall(libc::SYS_ppoll, 0usize, 0usize, 0usize, 0usize, 0usize);
        }
    }
    libc::syscall(libc::SYS_exit_group, 0);
    unreachable!("exit_group returned")
}
