//! Pattern collapsing, the levels, and the bounds of a session's profile.

use super::{key::pattern, session::*, *};
use crate::{
    config::RollupInterval,
    detect::classify::Reader,
    output::report::{FingerprintRead, ProcessRef, SessionRef},
};

fn session(id: &str) -> SessionRef {
    SessionRef { id: id.into(), assistant: "test-agent".into(), root_pid: 1, uid: 0 }
}

fn process(pid: u32, comm: &str) -> ProcessRef {
    ProcessRef {
        pid,
        tid: pid,
        ppid: 1,
        uid: 0,
        gid: 0,
        comm: comm.into(),
        exe: format!("/usr/bin/{comm}"),
        argv: vec![comm.into()],
    }
}

fn read(id: &str, pid: u32, comm: &str, path: &str) -> Body {
    Body::FingerprintRead(Box::new(FingerprintRead {
        session: session(id),
        process: process(pid, comm),
        reader: Reader::Descendant,
        category: "process_environ".into(),
        categories: vec!["process_environ".into()],
        syscall: "openat",
        path: path.into(),
        dirfd: None,
        absolute_path: path.into(),
        resolved_path: path.into(),
        target_path: None,
        target_pid: None,
        flags: 0,
        resolve_flags: 0,
        result: 3,
        success: true,
        errno: None,
        truncated: false,
    }))
}

fn getenv(id: &str, pid: u32, comm: &str, name: &str) -> Body {
    Body::EnvRead {
        session: session(id),
        process: process(pid, comm),
        reader: Reader::Descendant,
        variable: name.into(),
        category: "locale".into(),
        set: false,
        function: "getenv",
    }
}

fn end(id: &str) -> Body {
    Body::SessionEnd { session: session(id), duration_ms: 5 }
}

fn rollup(detail: OutputDetail) -> Rollup {
    Rollup::new(&OutputConfig { detail, rollup_interval: RollupInterval(10), ..Default::default() })
}

/// Feeds `bodies`; the bodies sent and the final rollup.
fn run(r: &mut Rollup, bodies: Vec<Body>) -> (Vec<Body>, Option<SessionRollup>) {
    let clock = Clock::new();
    let (mut sent, mut last) = (Vec::new(), None);
    for (i, b) in bodies.into_iter().enumerate() {
        let fed = r.feed(1_000 + i as u64, &b, &clock);
        if let Some((_, Body::SessionRollup(s))) = fed.before {
            last = Some(*s);
        }
        if fed.send {
            sent.push(b);
        }
    }
    (sent, last)
}

/// `ps aux`, `n` times, in one session: one `/proc/<pid>/environ` per host process, and the
/// locale lookups of each `ps`.
fn ps_loop(n: u32, host_pids: u32) -> Vec<Body> {
    let mut v = Vec::new();
    for run in 0..n {
        let ps = 1000 + run;
        for lc in ["LC_ALL", "LC_CTYPE", "LANG"] {
            v.push(getenv("s1", ps, "ps", lc));
        }
        for pid in 1..=host_pids {
            v.push(read("s1", ps, "ps", &format!("/proc/{pid}/environ")));
            v.push(read("s1", ps, "ps", &format!("/proc/{pid}/task/{pid}/cmdline")));
        }
    }
    v.push(end("s1"));
    v
}

#[test]
fn numbers_collapse_into_one_pattern() {
    assert_eq!(pattern("/proc/123/environ"), "/proc/*/environ");
    assert_eq!(pattern("/proc/123/task/456/cmdline"), "/proc/*/task/*/cmdline");
    assert_eq!(pattern("/dev/pts/0"), "/dev/pts/*");
    // Only whole segments: names with digits stay what they are.
    assert_eq!(pattern("/etc/ssh/ssh_host_ed25519_key"), "/etc/ssh/ssh_host_ed25519_key");
    assert_eq!(pattern("/sys/class/net/eth0/address"), "/sys/class/net/eth0/address");
    assert_eq!(pattern("/proc/self/environ"), "/proc/self/environ");
    assert!(matches!(pattern("/etc/machine-id"), std::borrow::Cow::Borrowed(_)));
    assert_eq!(pattern("LC_ALL"), "LC_ALL");
    assert_eq!(pattern("/"), "/");
}

#[test]
fn summary_sends_first_reads_and_counts_the_rest() {
    let mut r = rollup(OutputDetail::Summary);
    let (sent, last) = run(&mut r, ps_loop(150, 70));
    // LANG, the LC_* pattern, two path patterns, and the end.
    assert_eq!(sent.len(), 5, "{sent:#?}");
    let last = last.expect("final rollup");
    assert!(last.is_final);
    let environ = last.artifacts.iter().find(|a| a.artifact == "/proc/*/environ").expect("pattern listed");
    assert_eq!(environ.count, 150 * 70);
    assert_eq!(environ.distinct, Some(70));
    assert_eq!(environ.readers.len(), 1);
    assert_eq!(environ.readers[0].comm, "ps");
    assert!(last.artifacts.iter().any(|a| a.artifact == "/proc/*/task/*/cmdline"));
    let lc = last.artifacts.iter().find(|a| a.artifact == "LC_*").expect("locale pattern listed");
    assert_eq!((lc.count, lc.distinct, lc.success), (300, Some(2), false));
    let lang = last.artifacts.iter().find(|a| a.artifact == "LANG").expect("variable listed");
    assert_eq!((lang.count, lang.distinct), (150, None));
    assert_eq!(last.records_sent, 5);
    assert_eq!(last.records_summarized, 150 * (3 + 140) - 4);
}

#[test]
fn reads_sends_each_programs_first_read() {
    let mut r = rollup(OutputDetail::Reads);
    let mut v = ps_loop(3, 5);
    // A different program reading what ps read is sent again; ps again is not.
    v.insert(v.len() - 1, read("s1", 42, "top", "/proc/7/environ"));
    v.insert(v.len() - 1, read("s1", 43, "ps", "/proc/8/environ"));
    let (sent, _) = run(&mut r, v);
    assert_eq!(sent.len(), 2 + 2 + 1 + 1, "{sent:#?}");
}

#[test]
fn all_sends_everything_and_still_rolls_up() {
    let mut r = rollup(OutputDetail::All);
    let bodies = ps_loop(4, 3);
    let n = bodies.len();
    let (sent, last) = run(&mut r, bodies);
    assert_eq!(sent.len(), n);
    let last = last.expect("final rollup");
    assert_eq!(last.records_sent as usize, n);
    assert_eq!(last.records_summarized, 0);
}

#[test]
fn the_profile_is_bounded_and_counts_what_overflowed() {
    let mut r = rollup(OutputDetail::Summary);
    let mut v = Vec::new();
    // Distinct artifacts far beyond the listing, each read twice, by many programs.
    let n = MAX_ARTIFACTS + 1000;
    for i in 0..n {
        let comm = format!("p{}", i % 20);
        v.push(read("s1", 10 + i as u32, &comm, &format!("/etc/f{i}")));
        v.push(read("s1", 10 + i as u32, &comm, &format!("/etc/f{i}")));
        v.push(read("s1", 10, &comm, "/etc/hot"));
    }
    v.push(end("s1"));
    let (sent, last) = run(&mut r, v);
    let last = last.expect("final rollup");
    assert_eq!(last.artifacts.len(), MAX_ARTIFACTS);
    // Bounded in bytes too: a full listing, readers and all, is well under 256 KiB.
    let json = serde_json::to_string(&last).expect("json");
    assert!(json.len() < 256 << 10, "{} bytes", json.len());
    // Every distinct artifact's first read is sent, listed or not; repeats are not.
    assert_eq!(sent.len(), n + 1 + 1);
    assert_eq!(last.overflow.artifacts, (n + 1 - MAX_ARTIFACTS) as u64);
    assert_eq!(last.overflow.reads, 2 * (n + 1 - MAX_ARTIFACTS) as u64);
    let hot = last.artifacts.iter().find(|a| a.artifact == "/etc/hot").expect("hot listed");
    assert_eq!(hot.count, n as u64);
    assert_eq!(hot.readers.len(), MAX_READERS);
    let listed: u64 = hot.readers.iter().map(|r| r.count).sum();
    assert_eq!(listed + hot.readers_overflow, n as u64);
    // Distinct values are counted to a bound.
    let mut r = rollup(OutputDetail::Summary);
    let v: Vec<Body> = (0..MAX_DISTINCT as u32 + 100)
        .map(|pid| read("s2", 5, "ps", &format!("/proc/{pid}/environ")))
        .chain([end("s2")])
        .collect();
    let (_, last) = run(&mut r, v);
    assert_eq!(last.expect("final").artifacts[0].distinct, Some(MAX_DISTINCT as u64));
}

#[test]
fn long_sessions_roll_up_periodically_and_ended_ones_are_forgotten() {
    let mut r = rollup(OutputDetail::Summary);
    let clock = Clock::new();
    let sec = 1_000_000_000;
    assert!(r.feed(sec, &getenv("s1", 2, "sh", "TZ"), &clock).send);
    assert!(r.due(5 * sec, &clock).is_empty(), "before the interval");
    let due = r.due(12 * sec, &clock);
    assert_eq!(due.len(), 1);
    assert!(matches!(&due[0].1, Body::SessionRollup(s) if !s.is_final));
    assert!(r.due(30 * sec, &clock).is_empty(), "nothing counted since");
    assert!(!r.feed(31 * sec, &getenv("s1", 3, "sh", "TZ"), &clock).send);
    assert_eq!(r.due(43 * sec, &clock).len(), 1);
    let fed = r.feed(44 * sec, &end("s1"), &clock);
    assert!(fed.send && fed.before.is_some());
    // A late record of an ended session is sent, and starts nothing.
    assert!(r.feed(45 * sec, &getenv("s1", 3, "sh", "TZ"), &clock).send);
    assert!(r.flush(50 * sec, &clock).is_empty());
}

#[test]
fn the_rollup_is_an_ocsf_aggregate_of_process_activity() {
    let mut r = rollup(OutputDetail::Summary);
    let (_, last) = run(&mut r, ps_loop(2, 3));
    let record = crate::output::report::Record {
        schema: crate::output::report::SCHEMA,
        time: "2026-11-30T16:40:12.191227417Z".into(),
        boot_ns: 2_000,
        host: "h".into(),
        body: Body::SessionRollup(Box::new(last.expect("final rollup"))),
    };
    let native = serde_json::to_value(&record).expect("json");
    assert_eq!(native["type"], "session_rollup");
    assert_eq!(native["final"], true);
    let o = crate::output::ocsf::to_ocsf(&record);
    assert_eq!((o["class_uid"].as_u64(), o["activity_id"].as_u64()), (Some(1007), Some(99)));
    assert_eq!(o["type_uid"], 100799);
    assert_eq!(o["activity_name"], "Session Rollup");
    assert_eq!(o["count"], 2 * (3 + 6) + 1);
    assert_eq!(o["actor"]["session"]["uid"], "s1");
    assert!(o["observables"]
        .as_array()
        .expect("observables")
        .iter()
        .any(|v| v["value"] == "/proc/*/environ"));
    assert_eq!(o["unmapped"]["aiwatch"]["type"], "session_rollup");
    assert!(record.human().contains("rollup (end)"), "{}", record.human());
}
