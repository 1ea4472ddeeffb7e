use super::*;

const PENDING: u32 = TrackState::Pending as u32;
const ASSISTANT: u32 = TrackState::Assistant as u32;
const DESCENDANT: u32 = TrackState::Descendant as u32;

fn t(session: u32, state: u32) -> Tracked {
    Tracked { session, state }
}

/// A host where session 10 (root 10, child 11) runs under init, everything in agreement.
fn healthy() -> View {
    let mut v = View::default();
    for (pid, ppid, state) in [(10, 1, ASSISTANT), (11, 10, DESCENDANT)] {
        v.table.insert(pid, Known { tracked: t(10, state), start_ticks: Some(u64::from(pid) * 100) });
        v.kernel.insert(pid, t(10, state));
        live(&mut v, pid, ppid);
    }
    live(&mut v, 1, 0);
    live(&mut v, 5, 1);
    v
}

fn live(v: &mut View, pid: u32, ppid: u32) {
    v.live.insert(pid, Live { ppid, start_ticks: u64::from(pid) * 100 });
}

fn no_assistant(_: u32) -> Option<String> {
    None
}

/// Two passes a second apart (a disagreement is repaired only when both see it).
fn twice(r: &mut Reconciler, v: &View, classify: &mut dyn FnMut(u32) -> Option<String>) -> Vec<Repair> {
    let now = Instant::now();
    let first = r.pass(v, now, 0, classify);
    assert!(first.is_empty(), "the first sighting repairs nothing: {first:?}");
    r.pass(v, now + CONFIRM, 0, classify)
}

#[test]
fn agreement_repairs_nothing_and_remembers_nothing() {
    let mut r = Reconciler::new(Instant::now());
    let v = healthy();
    assert_eq!(twice(&mut r, &v, &mut no_assistant), vec![]);
    assert!(r.seen.is_empty());
}

#[test]
fn a_lost_exit_ends_the_process_and_a_reused_pid_is_a_new_process() {
    let mut r = Reconciler::new(Instant::now());
    let mut v = healthy();
    // 11 exited unseen; 10's pid now belongs to a new process, pending in the kernel.
    v.live.remove(&11);
    v.kernel.remove(&11);
    live(&mut v, 10, 5);
    v.live.get_mut(&10).unwrap().start_ticks = 7777;
    v.kernel.insert(10, t(0, PENDING));
    let repairs = twice(&mut r, &v, &mut no_assistant);
    assert_eq!(
        repairs,
        vec![
            Repair::Exit { pid: 10 },
            Repair::Exit { pid: 11 },
            Repair::Untrack { pid: 10, lost: Lost::Exec }
        ]
    );
    // A start time a few ticks off is the same process (the fork's stamp and /proc's start).
    let mut v = healthy();
    v.live.get_mut(&11).unwrap().start_ticks += START_SLACK_TICKS;
    assert_eq!(twice(&mut Reconciler::new(Instant::now()), &v, &mut no_assistant), vec![]);
}

#[test]
fn a_lost_fork_is_adopted_with_what_it_started_since() {
    let mut r = Reconciler::new(Instant::now());
    let mut v = healthy();
    // 12's fork was lost; its child 13, whose fork record came with 12 unknown, was untracked.
    v.kernel.insert(12, t(10, DESCENDANT));
    live(&mut v, 12, 11);
    live(&mut v, 13, 12);
    // Not under the session: left alone.
    live(&mut v, 6, 5);
    let repairs = twice(&mut r, &v, &mut no_assistant);
    assert_eq!(
        repairs,
        vec![
            Repair::Adopt { pid: 12, ppid: 11, root: 10, start_ticks: 1200 },
            Repair::Adopt { pid: 13, ppid: 12, root: 10, start_ticks: 1300 },
        ]
    );
    // The daemon itself is never adopted, nor what it starts.
    let mut v = healthy();
    live(&mut v, 14, 11);
    live(&mut v, 15, 14);
    v.ignore = vec![14];
    assert_eq!(twice(&mut Reconciler::new(Instant::now()), &v, &mut no_assistant), vec![]);
}

#[test]
fn a_lost_exec_is_classified_from_proc() {
    let mut v = healthy();
    // 20 exec'd an assistant unseen; it forked 21 (pending too) and 22 (untracked since).
    v.kernel.insert(20, t(0, PENDING));
    v.kernel.insert(21, t(0, PENDING));
    live(&mut v, 20, 5);
    live(&mut v, 21, 20);
    live(&mut v, 22, 20);
    let mut asked = Vec::new();
    let mut classify = |pid: u32| {
        asked.push(pid);
        (pid == 20).then(|| "claude-code".to_string())
    };
    let repairs = twice(&mut Reconciler::new(Instant::now()), &v, &mut classify);
    assert_eq!(
        repairs,
        vec![
            Repair::Start { pid: 20, assistant: "claude-code".into(), start_ticks: 2000 },
            Repair::Adopt { pid: 21, ppid: 20, root: 20, start_ticks: 2100 },
            Repair::Adopt { pid: 22, ppid: 20, root: 20, start_ticks: 2200 },
        ]
    );
    // Only the confirmed root was read from /proc; its children joined it.
    assert_eq!(asked, vec![20]);
    // No assistant: the root and its pending child are untracked, each on its own.
    let repairs = twice(&mut Reconciler::new(Instant::now()), &v, &mut no_assistant);
    assert_eq!(
        repairs,
        vec![Repair::Untrack { pid: 20, lost: Lost::Exec }, Repair::Untrack { pid: 21, lost: Lost::Exec }]
    );
}

#[test]
fn the_kernel_map_is_brought_back_in_line() {
    let mut v = healthy();
    // A stale entry of a process gone; a table process missing from the map; a wrong entry.
    v.kernel.insert(30, t(10, DESCENDANT));
    v.kernel.remove(&10);
    v.kernel.insert(11, t(0, PENDING));
    // Re-parented away: 31 of a session gone is untracked, 32 of session 10 joins it.
    v.kernel.insert(31, t(99, DESCENDANT));
    v.kernel.insert(32, t(10, DESCENDANT));
    live(&mut v, 31, 1);
    live(&mut v, 32, 1);
    let repairs = twice(&mut Reconciler::new(Instant::now()), &v, &mut no_assistant);
    assert_eq!(
        repairs,
        vec![
            Repair::Untrack { pid: 30, lost: Lost::KernelMap },
            Repair::Adopt { pid: 32, ppid: 1, root: 10, start_ticks: 3200 },
            Repair::Untrack { pid: 31, lost: Lost::KernelMap },
            Repair::Write { pid: 10, tracked: t(10, ASSISTANT) },
            Repair::Write { pid: 11, tracked: t(10, DESCENDANT) },
        ]
    );
}

#[test]
fn a_record_still_in_the_ring_is_no_loss() {
    let mut r = Reconciler::new(Instant::now());
    let now = Instant::now();
    // A fork the kernel wrote, not read yet: seen once...
    let mut v = healthy();
    v.kernel.insert(12, t(10, DESCENDANT));
    live(&mut v, 12, 11);
    assert_eq!(r.pass(&v, now, 0, &mut no_assistant), vec![]);
    assert_eq!(r.due(now + CONFIRM, 0), Some("confirm"));
    // ...then the daemon read it: nothing to repair, nothing left to confirm.
    v.table.insert(12, Known { tracked: t(10, DESCENDANT), start_ticks: Some(1200) });
    assert_eq!(r.pass(&v, now + CONFIRM, 0, &mut no_assistant), vec![]);
    assert!(r.seen.is_empty());
    // A pid reused between the passes is another process: seen once again, not repaired.
    let mut v = healthy();
    v.live.remove(&11);
    assert_eq!(r.pass(&v, now, 0, &mut no_assistant), vec![]);
    live(&mut v, 11, 10);
    v.live.get_mut(&11).unwrap().start_ticks = 5;
    assert_eq!(r.pass(&v, now, 0, &mut no_assistant), vec![]);
}

#[test]
fn passes_follow_losses_confirmations_and_the_clock() {
    let start = Instant::now();
    let r = Reconciler::new(start);
    assert_eq!(r.due(start + Duration::from_millis(500), 0), None);
    // A loss: a pass, but not more often than AFTER_LOSS.
    assert_eq!(r.due(start + Duration::from_millis(500), 3), None);
    assert_eq!(r.due(start + AFTER_LOSS, 3), Some("loss"));
    assert_eq!(r.due(start + AFTER_LOSS, 0), None);
    assert_eq!(r.due(start + PERIODIC, 0), Some("periodic"));
    let mut r = Reconciler::new(start);
    r.pass(&healthy(), start + AFTER_LOSS, 3, &mut no_assistant);
    // The losses counted at that pass are not counted again.
    assert_eq!(r.due(start + AFTER_LOSS * 3, 3), None);
    assert_eq!(r.due(start + AFTER_LOSS * 3, 4), Some("loss"));
}
