//! Maps shared by the programs. Sizes are defaults; the loader may override them from config.

use aya_ebpf::{
    macros::map,
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use sensor_common::{CandidateKey, ExecEvent, Stat, Tracked};

/// All events, in the order each thread produced them.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

/// Tracked processes by tgid. Bounded: a full map is counted, never fatal.
#[map]
pub static TRACKED: HashMap<u32, Tracked> = HashMap::with_max_entries(16384, 0);

/// Executable basenames whose exec makes a process pending classification.
#[map]
pub static CANDIDATES: HashMap<CandidateKey, u32> = HashMap::with_max_entries(512, 0);

/// Exec arguments read at `sys_enter_execve*`, by tid, until `sched_process_exec` sends them.
#[map]
pub static EXEC_STASH: LruHashMap<u32, ExecEvent> = LruHashMap::with_max_entries(1024, 0);

/// Arguments of a path syscall in flight, by tid, until its exit.
#[map]
pub static FILE_ARGS: LruHashMap<u32, FileArgs> = LruHashMap::with_max_entries(8192, 0);

/// Per-CPU room to build an exec event (too large for the 512-byte stack).
#[map]
pub static EXEC_SCRATCH: PerCpuArray<ExecEvent> = PerCpuArray::with_max_entries(1, 0);

/// Counters indexed by [`Stat`].
#[map]
pub static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Stat::COUNT, 0);

/// What `sys_enter_*` keeps for `sys_exit_*`: the path is read at exit, when the kernel has
/// just faulted its page in.
#[derive(Clone, Copy)]
#[repr(C)]
pub struct FileArgs {
    pub ts_ns: u64,
    pub path: u64,
    pub syscall: u32,
    pub dirfd: i32,
    pub flags: u32,
    pub resolve: u32,
}
