//! Syscalls through a 32-bit entry (`int $0x80`): named by their i386 number, their path
//! resolved and classified like a 64-bit read's, reported, and noted in the session's
//! correlation as an evasion technique (a finding of the session says so).

use sensor_common::{compat::i386, CompatAbi, Syscall};

use super::{signal, state::State};
use crate::{
    detect::{correlate::COMPAT_SYSCALL as TECHNIQUE, i386 as names, parsers::sockaddr},
    kernel::events::{CompatRecord, FileRecord},
    model::{paths::Resolution, procs::Who},
    output::{
        emit::Out,
        report::{Body, CompatSyscall, ProcessRef, SessionRef},
    },
};

pub(super) fn compat(st: &mut State, rec: &CompatRecord) -> Vec<Out> {
    let resolution = rec.path.as_deref().and_then(|p| resolve(st, rec, p));
    let Some(who) = st.table.who(rec.hdr.pid) else { return Vec::new() };
    st.correlator.note_evasion(who.root(), TECHNIQUE);
    let mut categories = Vec::new();
    let mut out = Vec::new();
    if let Some(res) = &resolution {
        let views = res.match_views();
        let view_refs: Vec<&str> = views.iter().map(|v| v.as_ref()).collect();
        categories = st.matcher.categories(&view_refs).into_iter().map(str::to_string).collect();
        for c in &categories {
            out.push(signal(&mut st.correlator, &who, TECHNIQUE, c, &res.resolved, rec.hdr.ts_ns));
        }
    }
    out.insert(
        0,
        Out::record(rec.hdr.ts_ns, Body::CompatSyscall(Box::new(record(&who, rec, resolution, categories)))),
    );
    out
}

fn record(
    who: &Who<'_>,
    rec: &CompatRecord,
    res: Option<Resolution>,
    categories: Vec<String>,
) -> CompatSyscall {
    let i386 = rec.abi == CompatAbi::I386;
    let syscall = if i386 { names::name(rec.nr) } else { None };
    let socketcall = (i386 && rec.nr == i386::SOCKETCALL).then(|| socketcall_name(rec.args[0]));
    let flags = rec.hdr.flags;
    CompatSyscall {
        session: SessionRef::of(who.session),
        process: ProcessRef::of(who.proc, rec.hdr.tid, &rec.hdr.comm),
        reader: who.reader,
        abi: rec.abi.name(),
        number: rec.nr,
        syscall: syscall.map_or_else(|| format!("{}#{}", rec.abi.name(), rec.nr), str::to_string),
        socketcall,
        args: rec.args,
        // A path that could not be read is left out (`read_failed` says so), not reported empty.
        path: rec.path.clone().filter(|p| !p.is_empty()),
        absolute_path: res.as_ref().map(|r| r.absolute.clone()),
        resolved_path: res.map(|r| r.resolved),
        categories,
        address: rec.sockaddr.as_deref().map(address),
        truncated: flags & sensor_common::flags::PATH_TRUNCATED != 0,
        read_failed: flags & sensor_common::flags::READ_FAILED != 0,
    }
}

/// The path resolved against the process as the 64-bit syscall it matches would be. The result
/// is not seen (the kernel reports the entry only), so the fd table and cwd are left alone.
fn resolve(st: &mut State, rec: &CompatRecord, path: &str) -> Option<Resolution> {
    let (syscall, at) = match rec.nr {
        i386::OPEN | i386::CREAT => (Syscall::Open, false),
        i386::OPENAT => (Syscall::Openat, true),
        i386::OPENAT2 => (Syscall::Openat2, true),
        i386::READLINK => (Syscall::Readlink, false),
        i386::READLINKAT => (Syscall::Readlinkat, true),
        i386::FSTATAT64 => (Syscall::Newfstatat, true),
        i386::STATX => (Syscall::Statx, true),
        i386::FACCESSAT | i386::EXECVEAT => (Syscall::Faccessat, true),
        i386::FACCESSAT2 => (Syscall::Faccessat2, true),
        i386::LSTAT | i386::LSTAT64 | i386::OLDLSTAT => (Syscall::Newlstat, false),
        i386::CHDIR => (Syscall::Chdir, false),
        // stat, stat64, oldstat, access, execve: a path relative to the cwd.
        _ => (Syscall::Access, false),
    };
    let file = FileRecord {
        hdr: rec.hdr.clone(),
        syscall,
        // i386 fds are 32-bit: AT_FDCWD arrives as 0xffffff9c.
        dirfd: if at { rec.args[0] as u32 as i32 } else { sensor_common::AT_FDCWD },
        flags: 0,
        resolve: 0,
        // "Failed": nothing is learnt from a result that was not seen.
        ret: -1,
        path: path.to_string(),
    };
    st.table.on_file(&file, &st.fs, st.src.as_ref())?.resolution
}

/// `socketcall`'s call (`SYS_*` in linux/net.h).
fn socketcall_name(call: u64) -> String {
    const CALLS: [&str; 21] = [
        "",
        "socket",
        "bind",
        "connect",
        "listen",
        "accept",
        "getsockname",
        "getpeername",
        "socketpair",
        "send",
        "recv",
        "sendto",
        "recvfrom",
        "shutdown",
        "setsockopt",
        "getsockopt",
        "sendmsg",
        "recvmsg",
        "accept4",
        "recvmmsg",
        "sendmmsg",
    ];
    CALLS.get(call as usize).filter(|c| !c.is_empty()).map_or_else(|| format!("#{call}"), |c| c.to_string())
}

/// A connect address as an analyst reads it: `ip:port`, `unix:/path` (`unix:@name` abstract).
fn address(raw: &[u8]) -> String {
    const AF_UNIX: u16 = 1;
    let family = raw.get(..2).map_or(0, |f| u16::from_ne_bytes([f[0], f[1]]));
    if family == AF_UNIX {
        let path = raw.get(2..).unwrap_or_default();
        return match path.split_first() {
            Some((0, name)) => format!(
                "unix:@{}",
                String::from_utf8_lossy(name.split(|b| *b == 0).next().unwrap_or_default())
            ),
            _ => format!(
                "unix:{}",
                String::from_utf8_lossy(path.split(|b| *b == 0).next().unwrap_or_default())
            ),
        };
    }
    let mut fixed = sensor_common::RawSockAddr { len: raw.len().min(28) as u32, data: [0; 28] };
    fixed.data[..fixed.len as usize].copy_from_slice(&raw[..fixed.len as usize]);
    match sockaddr::parse(&fixed) {
        Some(p) => p.addr.to_string(),
        None => format!("family {family}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{
        detect::parsers::{sockaddr::tests::v4, tls::build_client_hello},
        kernel::{events::raw, tracker::Tracker},
        output::metrics::Metrics,
        pipeline::Pipeline,
    };

    struct NoKernel;
    impl Tracker for NoKernel {
        fn track(&mut self, _: u32, _: sensor_common::Tracked) {}
        fn untrack(&mut self, _: u32) {}
        fn entries(&self) -> Vec<(u32, sensor_common::Tracked)> {
            Vec::new()
        }
        fn take_sock(&mut self, _: u32, _: i32) -> (u64, u64) {
            (0, 0)
        }
    }

    /// An int $0x80 open of /etc/localtime is a timezone read to the rules, and the finding it
    /// completes says the session used compat syscalls.
    #[tokio::test]
    async fn an_int80_read_counts_toward_findings_which_name_the_evasion() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let path = std::env::temp_dir().join(format!("aiwatch-compat-{}.jsonl", std::process::id()));
        let out = crate::config::OutputConfig { path: Some(path.clone()), ..Default::default() };
        let (sink, writer) = crate::output::sinks::spawn(&out, metrics.clone()).unwrap();
        let gone = Box::new(crate::model::procs::procfs::Gone);
        let cfg = crate::pipeline::tests::with_ordinary_rule();
        let mut p = Pipeline::new(&cfg, metrics.clone(), sink, "h".into(), "t", gone);
        let mut k = NoKernel;
        p.handle(&raw::exec(100, "/usr/local/bin/claude", &["claude"]), &mut k);
        let args = [0x1000, 0, 0, 0, 0, 0];
        p.handle(
            &raw::compat(100, i386::OPEN, args, sensor_common::CompatData::Path, b"/etc/localtime"),
            &mut k,
        );
        p.handle(&raw::compat(100, 20, [0; 6], sensor_common::CompatData::None, b""), &mut k);
        p.handle(&raw::file(100, Syscall::Openat, "/etc/machine-id", 4), &mut k);
        p.handle(&raw::connect(100, 9, v4([10, 0, 0, 1], 443)), &mut k);
        p.handle(&raw::send(100, 9, &build_client_hello("api.anthropic.com", 32, 16384)), &mut k);
        let live = p.status();
        assert_eq!(live.sessions[0].evasion.get(TECHNIQUE), Some(&2));
        drop(p);
        writer.await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let records: Vec<serde_json::Value> =
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let compat: Vec<_> = records.iter().filter(|r| r["type"] == "compat_syscall").collect();
        assert_eq!(compat.len(), 2);
        assert_eq!(
            (&compat[0]["syscall"], &compat[0]["categories"][0]),
            (&"open".into(), &"timezone".into())
        );
        assert_eq!(compat[1]["syscall"], "getpid");
        let finding = records.iter().find(|r| r["type"] == "finding").expect("a finding");
        assert_eq!(finding["finding"]["evasion"], serde_json::json!([TECHNIQUE]), "{finding}");
        assert_eq!(finding["finding"]["categories"], serde_json::json!(["host_identity", "timezone"]));
    }

    #[test]
    fn addresses_and_socketcalls_are_named() {
        assert_eq!(address(&[2, 0, 1, 187, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]), "10.0.0.1:443");
        assert_eq!(address(b"\x01\x00/run/proxy.sock\0\0"), "unix:/run/proxy.sock");
        assert_eq!(address(b"\x01\x00\0abstract\0"), "unix:@abstract");
        assert_eq!(address(&[9, 0]), "family 9");
        assert_eq!(address(&[]), "family 0");
        assert_eq!(socketcall_name(3), "connect");
        assert_eq!(socketcall_name(99), "#99");
    }
}
