use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use super::*;
use crate::{
    config::Config,
    kernel::events::raw,
    model::procs::procfs::{Live, ProcInfo, ProcSource},
    output::report::Body,
};

/// The kernel's map, and what the getenv probes were told.
#[derive(Default)]
struct FakeKernel {
    map: HashMap<u32, Tracked>,
    forked: Vec<(u32, u32, u32)>,
    ended: Vec<u32>,
}

impl Tracker for FakeKernel {
    fn track(&mut self, pid: u32, t: Tracked) {
        if let Some(e) = self.map.get_mut(&pid) {
            *e = t;
        }
    }
    fn track_scanned(&mut self, pid: u32, t: Tracked) {
        self.map.insert(pid, t);
    }
    fn untrack(&mut self, pid: u32) {
        self.map.remove(&pid);
    }
    fn entries(&self) -> Vec<(u32, Tracked)> {
        self.map.iter().map(|(p, t)| (*p, *t)).collect()
    }
    fn session_forked(&mut self, root: u32, parent: u32, child: u32, _: u64) {
        self.forked.push((root, parent, child));
    }
    fn session_ended(&mut self, root: u32) {
        self.ended.push(root);
    }
    fn take_sock(&mut self, _: u32, _: i32) -> (u64, u64) {
        (0, 0)
    }
}

/// Running processes: pid -> (ppid, exe).
#[derive(Clone, Default)]
struct FakeProc(Arc<Mutex<HashMap<u32, (u32, String)>>>);

impl FakeProc {
    fn run(&self, pid: u32, ppid: u32, exe: &str) {
        self.0.lock().unwrap().insert(pid, (ppid, exe.to_string()));
    }
    fn end(&self, pid: u32) {
        self.0.lock().unwrap().remove(&pid);
    }
}

impl ProcSource for FakeProc {
    fn info(&self, pid: u32) -> Option<ProcInfo> {
        let (ppid, exe) = self.0.lock().unwrap().get(&pid)?.clone();
        let comm = exe.rsplit('/').next().unwrap_or_default().to_string();
        Some(ProcInfo { pid, ppid, uid: 0, argv: vec![comm.clone()], comm, exe, cwd: None, start_ticks: 0 })
    }
    fn live(&self, pid: u32) -> Option<Live> {
        self.info(pid).map(|i| Live { ppid: i.ppid, start_ticks: 0 })
    }
    fn cwd(&self, _: u32) -> Option<String> {
        None
    }
    fn fd_path(&self, _: u32, _: i32) -> Option<String> {
        None
    }
    fn pids(&self) -> Vec<u32> {
        self.0.lock().unwrap().keys().copied().collect()
    }
}

fn handle(st: &mut State, k: &mut FakeKernel, bytes: &[u8]) {
    super::super::dispatch(st, crate::kernel::events::decode(bytes).unwrap(), k);
}

/// Up to two passes, each after a new loss; what the first that repaired anything repaired.
fn settle(st: &mut State, k: &mut FakeKernel, now: &mut Instant) -> (Vec<Out>, Vec<Lost>) {
    for _ in 0..2 {
        *now += Duration::from_secs(3);
        static LOSSES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let losses = LOSSES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (out, lost) = run(st, k, *now, losses, &[]).expect("a pass is due after a loss");
        if !lost.is_empty() {
            return (out, lost);
        }
    }
    (Vec::new(), Vec::new())
}

#[test]
fn lost_forks_and_exits_are_made_up_for() {
    let procs = FakeProc::default();
    let mut st = State::new(&Config::default(), "t", Box::new(procs.clone()));
    let mut k = FakeKernel::default();
    let mut now = Instant::now();
    st.reconciler = crate::model::procs::reconcile::Reconciler::new(now);
    // A session; its root forks before the daemon classified it, so the kernel's entry of the
    // child says pending until the fork record is handled.
    procs.run(100, 1, "/usr/local/bin/claude");
    k.map.insert(100, Tracked { session: 0, state: TrackState::Pending as u32 });
    handle(&mut st, &mut k, &raw::exec(100, "/usr/local/bin/claude", &["claude"]));
    procs.run(101, 100, "/usr/local/bin/claude");
    k.map.insert(101, Tracked { session: 0, state: TrackState::Pending as u32 });
    handle(&mut st, &mut k, &raw::fork(100, 101));
    let descendant = Tracked { session: 100, state: TrackState::Descendant as u32 };
    assert_eq!(k.map[&101], descendant);
    // Nothing to repair.
    now += Duration::from_secs(3);
    assert_eq!(run(&mut st, &mut k, now, 0, &[]).map(|(_, l)| l), None, "no loss, no pass");
    assert_eq!(settle(&mut st, &mut k, &mut now).1, vec![]);

    // 101's exit and 102's fork were lost.
    procs.end(101);
    k.map.remove(&101);
    procs.run(102, 100, "/bin/sh");
    k.map.insert(102, descendant);
    let (_, lost) = settle(&mut st, &mut k, &mut now);
    assert_eq!(lost, vec![Lost::Exit, Lost::Fork]);
    assert!(st.table.get(101).is_none());
    assert_eq!(st.table.get(102).map(|p| (p.session, p.exe.as_str())), Some((100, "/bin/sh")));
    assert_eq!(st.table.members(100), 2);
    assert_eq!(k.forked.last(), Some(&(100, 100, 102)));

    // Both exits lost: the session ends, and its getenv probes with it.
    procs.end(100);
    procs.end(102);
    k.map.clear();
    let (out, lost) = settle(&mut st, &mut k, &mut now);
    assert_eq!(lost, vec![Lost::Exit, Lost::Exit]);
    assert!(out.iter().any(|o| matches!(o, Out::Record { body: Body::SessionEnd { .. }, .. })));
    assert_eq!(k.ended, vec![100]);
    assert!(st.table.is_empty());
}
