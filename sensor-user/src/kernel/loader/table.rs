//! The one table of programs: each program of the eBPF object, its hooks, whether `run` needs
//! it, and the tracepoint fields it reads. `run` attaches from it, `check` tests it.

use sensor_common::{
    tracepoints::{
        inet_sock_set_state, raw_sys_enter, sched_process_exec, sched_process_exit, sys, task_newtask, Field,
        SYS_EXIT_RET,
    },
    Syscall,
};

/// Where a program attaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    Tracepoint {
        category: &'static str,
        name: String,
    },
    /// A raw tracepoint (`BPF_RAW_TRACEPOINT_OPEN`): the tracepoint's arguments, no record.
    RawTracepoint(&'static str),
    FEntry(&'static str),
    Lsm(&'static str),
    /// A function of a library (`libc`, `openssl`), attached per session by
    /// `uprobes::EnvProbes`.
    Uprobe {
        lib: &'static str,
        func: &'static str,
    },
    /// Not attached: loaded as a tracepoint program and put in a program-array map, for the
    /// program that tail-calls it.
    TailCall {
        map: &'static str,
        index: u32,
    },
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tracepoint { category, name } => write!(f, "tracepoint/{category}/{name}"),
            Self::RawTracepoint(name) => write!(f, "raw_tracepoint/{name}"),
            Self::FEntry(func) => write!(f, "fentry/{func}"),
            Self::Lsm(hook) => write!(f, "lsm/{hook}"),
            Self::Uprobe { lib, func } => write!(f, "uprobe/{lib}:{func}"),
            Self::TailCall { map, index } => write!(f, "tail_call/{map}[{index}]"),
        }
    }
}

impl Hook {
    /// The kernel feature the hook needs, as `aiwatch check` names it.
    pub fn feature(&self) -> &'static str {
        match self {
            Self::Tracepoint { .. } | Self::RawTracepoint(_) | Self::TailCall { .. } => "tracepoints",
            Self::FEntry(_) => "fentry",
            Self::Lsm(_) => "bpf_lsm",
            Self::Uprobe { .. } => "uprobes",
        }
    }
}

/// How `aiwatch run` uses a program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// Attached; the sensor cannot work without it.
    Required,
    /// Attached where the hook exists (some syscalls are missing on some architectures).
    Optional,
    /// Only attached (and at once detached) by `aiwatch check`, to tell whether the host offers
    /// the hook's feature.
    CheckOnly,
}

/// A job some kernels let one program do and others another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job {
    /// What the programs of the job do, e.g. "thread-group exit".
    pub name: &'static str,
    /// How this program does it, for `aiwatch check`.
    pub how: &'static str,
}

#[derive(Debug, Clone)]
pub struct ProgramSpec {
    pub name: &'static str,
    pub hooks: Vec<Hook>,
    pub usage: Usage,
    pub purpose: &'static str,
    /// Record fields the program reads: checked in the format file of each of its tracepoints
    /// before it is attached.
    pub fields: Vec<Field>,
    /// Programs sharing a job are tried in table order; the first whose needs this kernel meets
    /// does it and the others are not loaded.
    pub job: Option<Job>,
    /// Reads kernel structs at offsets found in the kernel's BTF ([`btf::GroupOffsets`]).
    pub needs_btf_offsets: bool,
    /// Reads `current->thread_info.status` at the offset found in the kernel's BTF.
    pub needs_status_offset: bool,
}

fn tp(category: &'static str, name: impl Into<String>) -> Hook {
    Hook::Tracepoint { category, name: name.into() }
}

fn spec(name: &'static str, hooks: Vec<Hook>, usage: Usage, purpose: &'static str) -> ProgramSpec {
    ProgramSpec {
        name,
        hooks,
        usage,
        purpose,
        fields: Vec::new(),
        job: None,
        needs_btf_offsets: false,
        needs_status_offset: false,
    }
}

impl ProgramSpec {
    fn reads(mut self, fields: &[Field]) -> Self {
        self.fields.extend_from_slice(fields);
        self
    }

    fn job(mut self, name: &'static str, how: &'static str) -> Self {
        self.job = Some(Job { name, how });
        self
    }
}

/// The socket syscalls the net programs enter, with what each is for.
const NET_ENTER: [(&str, &str, &str); 17] = [
    ("net_enter_socket", "socket", "inet sockets of tracked processes"),
    ("net_enter_connect", "connect", "destination of connect() (inet; AF_UNIX: the socket path)"),
    ("net_enter_write", "write", "first bytes sent (SNI, HTTP, DNS)"),
    ("net_enter_writev", "writev", "first bytes sent"),
    ("net_enter_sendto", "sendto", "first bytes sent, unconnected peer"),
    ("net_enter_sendmsg", "sendmsg", "first bytes sent"),
    ("net_enter_sendmmsg", "sendmmsg", "DNS queries as glibc sends them"),
    ("net_enter_read", "read", "bytes received, DNS answers"),
    ("net_enter_readv", "readv", "bytes received"),
    ("net_enter_recvfrom", "recvfrom", "bytes received, DNS answers"),
    ("net_enter_recvmsg", "recvmsg", "bytes received, DNS answers"),
    ("net_enter_recvmmsg", "recvmmsg", "bytes received, DNS answers"),
    ("net_enter_close", "close", "end of a connection, with its byte counts"),
    ("net_enter_dup2", "dup2", "a connection's fd closed by dup2 onto it"),
    ("net_enter_dup3", "dup3", "a connection's fd closed by dup3 onto it"),
    ("net_enter_close_range", "close_range", "connections' fds closed by close_range (Linux 5.9+)"),
    ("net_enter_ioctl", "ioctl", "interface enumeration (SIOCGIFCONF, SIOCGIFHWADDR, SIOCETHTOOL, …)"),
];

const EXIT: &str = "thread-group exit";

/// Every program in the eBPF object, with its hooks.
pub fn programs() -> Vec<ProgramSpec> {
    use Usage::*;
    let mut v = vec![
        // First: attached before anything writes the entries it removes.
        spec(
            "process_enter_sched_exit_thread",
            vec![tp("sched", "sched_process_exit")],
            Required,
            "free a thread's in-flight slots (and its process's parent entry) when it exits",
        ),
        // Before its callers, so their first exec finds it in place.
        spec(
            "process_enter_exec_args",
            vec![Hook::TailCall { map: "EXEC_PROG", index: 0 }],
            Required,
            "exec filename, argv and environment (tail-called by process_enter_execve and …_execveat)",
        ),
        spec(
            "process_enter_execve",
            vec![tp("syscalls", "sys_enter_execve")],
            Required,
            "exec arguments, for process_enter_exec_args",
        )
        .reads(sys::execve::READ),
        spec(
            "process_enter_execveat",
            vec![tp("syscalls", "sys_enter_execveat")],
            Required,
            "exec arguments (execveat, fexecve), for process_enter_exec_args",
        )
        .reads(sys::execveat::READ),
        spec(
            "process_exit_execve",
            vec![tp("syscalls", "sys_exit_execve"), tp("syscalls", "sys_exit_execveat")],
            Required,
            "forget the argv of a failed exec",
        )
        .reads(&[SYS_EXIT_RET]),
        spec(
            "process_enter_sched_exec",
            vec![tp("sched", "sched_process_exec")],
            Required,
            "track and report an exec before the new program runs",
        )
        .reads(sched_process_exec::READ),
        spec(
            "process_enter_task_newtask",
            vec![tp("task", "task_newtask")],
            Required,
            "children inherit tracking at fork",
        )
        .reads(task_newtask::READ),
        spec(
            "process_enter_sched_exit",
            vec![tp("sched", "sched_process_exit")],
            Required,
            "untrack a process when its last thread exits",
        )
        .reads(&[sched_process_exit::GROUP_DEAD])
        .job(EXIT, "the record's group_dead field (Linux 6.16 and later)"),
        ProgramSpec {
            needs_btf_offsets: true,
            ..spec(
                "process_enter_sched_exit_live",
                vec![tp("sched", "sched_process_exit")],
                Required,
                "untrack a process when its last thread exits",
            )
            .job(EXIT, "the group's live-thread count (task_struct.signal->live, offsets from BTF)")
        },
        spec(
            "host_enter_newuname",
            vec![tp("syscalls", "sys_enter_newuname")],
            Optional,
            "uname(2): host name and kernel asked for (host identity)",
        )
        .reads(sys::newuname::READ),
    ];
    // One program per syscall, named after it.
    for sc in Syscall::ALL {
        let usage = if sc == Syscall::Openat { Required } else { Optional };
        v.push(
            spec(
                files_enter_name(sc),
                vec![tp("syscalls", format!("sys_enter_{}", sc.name()))],
                usage,
                "path syscall arguments of tracked processes",
            )
            .reads(&sc.layout().fields().collect::<Vec<_>>()),
        );
    }
    v.push(
        spec(
            "files_exit_syscall",
            Syscall::ALL.iter().map(|sc| tp("syscalls", format!("sys_exit_{}", sc.name()))).collect(),
            Required,
            "path and result of tracked path syscalls",
        )
        .reads(&[SYS_EXIT_RET]),
    );
    for (name, sc, purpose) in NET_ENTER {
        let usage = if matches!(sc, "connect" | "close" | "socket") { Required } else { Optional };
        let fields = sys::read(sc).unwrap_or_default();
        v.push(spec(name, vec![tp("syscalls", format!("sys_enter_{sc}"))], usage, purpose).reads(fields));
    }
    v.push(spec(
        "net_exit_content",
        vec![Hook::TailCall { map: "CONTENT_PROG", index: 0 }],
        Optional,
        "copies the plain-HTTP requests of sessions for the prompt-marker scan (tail-called by net_exit_syscall)",
    ));
    v.push(
        spec(
            "net_exit_syscall",
            NET_ENTER
                .iter()
                .filter(|(_, sc, _)| *sc != "close")
                .map(|(_, sc, _)| tp("syscalls", format!("sys_exit_{sc}")))
                .collect(),
            Required,
            "results and data of tracked socket syscalls",
        )
        .reads(&[SYS_EXIT_RET]),
    );
    v.push(
        spec(
            "net_enter_sock_set_state",
            vec![tp("sock", "inet_sock_set_state")],
            Required,
            "result and local port of non-blocking TCP connects",
        )
        .reads(inet_sock_set_state::READ),
    );
    const COMPAT: &str = "32-bit syscalls";
    const COMPAT_PURPOSE: &str =
        "syscalls of tracked processes through a 32-bit entry (int $0x80), which skip syscalls:*";
    v.push(ProgramSpec {
        needs_status_offset: true,
        ..spec("compat_enter_raw_syscall", vec![Hook::RawTracepoint("sys_enter")], Optional, COMPAT_PURPOSE)
            .job(
                COMPAT,
                "raw tracepoint sys_enter (no record built per syscall; thread_info.status from BTF)",
            )
    });
    v.push(ProgramSpec {
        needs_status_offset: true,
        ..spec("compat_enter_syscall", vec![tp("raw_syscalls", "sys_enter")], Optional, COMPAT_PURPOSE)
            .reads(raw_sys_enter::READ)
            .job(COMPAT, "tracepoint raw_syscalls/sys_enter (thread_info.status from BTF)")
    });
    let libc = |func| Hook::Uprobe { lib: "libc", func };
    v.push(spec("env_enter_getenv", vec![libc("getenv")], Optional, "environment-variable reads"));
    const TLS_PURPOSE: &str =
        "copies the HTTPS requests of sessions (OpenSSL plaintext) for the prompt-marker scan";
    for (name, func) in [("tls_enter_ssl_write", "SSL_write"), ("tls_enter_ssl_write_ex", "SSL_write_ex")] {
        v.push(spec(name, vec![Hook::Uprobe { lib: "openssl", func }], Optional, TLS_PURPOSE));
    }
    v.push(spec(
        "tls_exit_ssl_write",
        vec![
            Hook::Uprobe { lib: "openssl", func: "SSL_write (return)" },
            Hook::Uprobe { lib: "openssl", func: "SSL_write_ex (return)" },
        ],
        Optional,
        TLS_PURPOSE,
    ));
    v.push(spec(
        "tls_exit_content",
        vec![Hook::TailCall { map: "TLS_PROG", index: 0 }],
        Optional,
        "copies the HTTPS requests of sessions for the prompt-marker scan (tail-called by tls_exit_ssl_write)",
    ));
    v.push(spec(
        "files_enter_fentry_openat2",
        vec![Hook::FEntry("do_sys_openat2")],
        CheckOnly,
        "tests fentry support",
    ));
    v.push(spec(
        "files_enter_lsm_file_open",
        vec![Hook::Lsm("file_open")],
        CheckOnly,
        "tests BPF LSM support",
    ));
    v
}

/// The program that enters `sc` (the eBPF crate names them `files_enter_<syscall>`).
fn files_enter_name(sc: Syscall) -> &'static str {
    match sc {
        Syscall::Open => "files_enter_open",
        Syscall::Openat => "files_enter_openat",
        Syscall::Openat2 => "files_enter_openat2",
        Syscall::Readlink => "files_enter_readlink",
        Syscall::Readlinkat => "files_enter_readlinkat",
        Syscall::Newfstatat => "files_enter_newfstatat",
        Syscall::Statx => "files_enter_statx",
        Syscall::Access => "files_enter_access",
        Syscall::Faccessat => "files_enter_faccessat",
        Syscall::Faccessat2 => "files_enter_faccessat2",
        Syscall::Newstat => "files_enter_newstat",
        Syscall::Newlstat => "files_enter_newlstat",
        Syscall::Chdir => "files_enter_chdir",
        Syscall::Fchdir => "files_enter_fchdir",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_follow_the_convention_and_are_unique() {
        let progs = programs();
        let mut names: Vec<_> = progs.iter().map(|p| p.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), progs.len());
        for p in &progs {
            let mut parts = p.name.splitn(3, '_');
            let (area, phase) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(
                ["process", "files", "net", "env", "tls", "host", "compat"].contains(&area),
                "{}",
                p.name
            );
            assert!(["enter", "exit"].contains(&phase), "{}", p.name);
            assert!(!p.hooks.is_empty());
        }
        // Every syscall has an enter program and an exit hook.
        for sc in Syscall::ALL {
            assert!(progs.iter().any(|p| p.name == format!("files_enter_{}", sc.name())));
        }
        let exit = progs.iter().find(|p| p.name == "files_exit_syscall").unwrap();
        assert_eq!(exit.hooks.len(), Syscall::ALL.len());
    }

    #[test]
    fn every_tracepoint_program_declares_the_fields_it_reads() {
        for p in programs() {
            let tracepoint = matches!(p.hooks[0], Hook::Tracepoint { .. });
            // A raw tracepoint has no record: it reads the tracepoint's arguments.
            // The live-count exit program reads no record field, only kernel memory; the thread
            // exit program and uname only need to know the hook fired.
            let reads_none = ["process_enter_sched_exit_live", "process_enter_sched_exit_thread"];
            if tracepoint && !reads_none.contains(&p.name) {
                assert!(!p.fields.is_empty(), "{} reads no declared field", p.name);
            }
        }
        for sc in Syscall::ALL {
            assert_eq!(files_enter_name(sc), format!("files_enter_{}", sc.name()));
        }
        // Jobs: each has a program that needs nothing special, tried last.
        let exits: Vec<_> =
            programs().into_iter().filter(|p| p.job.is_some_and(|j| j.name == EXIT)).collect();
        assert_eq!(
            exits.iter().map(|p| p.name).collect::<Vec<_>>(),
            ["process_enter_sched_exit", "process_enter_sched_exit_live"]
        );
        let compat: Vec<_> = programs().into_iter().filter(|p| p.name.starts_with("compat_")).collect();
        assert!(compat
            .iter()
            .all(|p| p.job.is_some_and(|j| j.name == "32-bit syscalls") && p.needs_status_offset));
        assert_eq!(compat[0].hooks, [Hook::RawTracepoint("sys_enter")], "the raw tracepoint is tried first");
        assert!(exits[1].needs_btf_offsets && !exits[0].needs_btf_offsets);
    }
}
