//! Reconciliation as the pipeline applies it: a due pass compares the table with the kernel's
//! map and `/proc` ([`crate::model::procs::reconcile`] plans it), then each repair is made
//! as the lost record would have made it: an exit ends its process (and maybe its session,
//! whose getenv perf events are closed), a fork or exec adds what it would have added.

use std::{collections::HashMap, time::Instant};

use sensor_common::{TrackState, Tracked};

use super::{process, state::State};
use crate::{
    detect::classify::assistant::ProcFacts,
    kernel::tracker::Tracker,
    model::procs::{
        procfs::ticks_to_ns,
        reconcile::{Known, Lost, Repair, View},
        scan::proc_of,
    },
    output::emit::Out,
    sys::clock::Clock,
};

/// A pass, if one is due: the records its repairs produced, and what each repaired.
pub(super) fn run(
    st: &mut State,
    kernel: &mut dyn Tracker,
    now: Instant,
    losses: u64,
    ignore: &[u32],
) -> Option<(Vec<Out>, Vec<Lost>)> {
    let why = st.reconciler.due(now, losses)?;
    let view = view(st, kernel, ignore);
    for (pid, l) in &view.live {
        if view.table.get(pid).is_some_and(|k| k.start_ticks.is_none()) {
            st.table.learn_start(*pid, l.start_ticks);
        }
    }
    let (src, classifier) = (st.src.as_ref(), &st.classifier);
    let repairs = st.reconciler.pass(&view, now, losses, &mut |pid| {
        let i = src.info(pid)?;
        let facts = ProcFacts { exe: &i.exe, filename: &i.exe, comm: &i.comm, argv: &i.argv };
        classifier.classify(&facts).map(str::to_string)
    });
    let ts = Clock::now_boot_ns();
    let (mut out, mut repaired) = (Vec::new(), Vec::new());
    let mut started: HashMap<u32, Vec<u32>> = HashMap::new();
    for r in repairs {
        let lost = r.lost();
        if apply(st, kernel, r, ts, &mut out, &mut started) {
            repaired.push(lost);
        }
    }
    for (root, pids) in started {
        kernel.session_started(root, pids);
    }
    let us = Instant::now().saturating_duration_since(now).as_micros() as u64;
    tracing::debug!(why, processes = view.live.len(), us, repairs = repaired.len(), "reconciliation pass");
    Some((out, repaired))
}

/// The table, the kernel's map and every running process, as they are now.
fn view(st: &State, kernel: &dyn Tracker, ignore: &[u32]) -> View {
    let table = st
        .table
        .procs()
        .map(|p| {
            let tracked = Tracked { session: p.session, state: p.role as u32 };
            (p.pid, Known { tracked, start_ticks: p.start_ticks })
        })
        .collect();
    let live = st.src.pids().into_iter().filter_map(|pid| Some((pid, st.src.live(pid)?))).collect();
    View { table, kernel: kernel.entries().into_iter().collect(), live, ignore: ignore.to_vec() }
}

/// Makes one repair; false if it could not be made (the process went meanwhile).
fn apply(
    st: &mut State,
    kernel: &mut dyn Tracker,
    repair: Repair,
    ts: u64,
    out: &mut Vec<Out>,
    started: &mut HashMap<u32, Vec<u32>>,
) -> bool {
    let pid = repair.pid();
    let kind = repair.lost().label();
    match repair {
        Repair::Exit { pid } => {
            tracing::info!(pid, kind, "reconciled: process gone, its exit was lost");
            out.extend(process::exit(st, pid, ts, kernel));
        }
        Repair::Untrack { pid, .. } => {
            tracing::info!(pid, kind, "reconciled: kernel entry deleted");
            kernel.untrack(pid);
        }
        Repair::Write { pid, tracked } => {
            tracing::info!(pid, kind, "reconciled: kernel entry rewritten");
            kernel.track_scanned(pid, tracked);
        }
        Repair::Start { assistant, start_ticks, .. } => {
            let Some(i) = st.src.info(pid) else { return false };
            tracing::info!(pid, kind, assistant = %assistant, "reconciled: assistant whose exec was lost");
            kernel.track_scanned(pid, Tracked { session: pid, state: TrackState::Assistant as u32 });
            st.table.insert_scanned(
                proc_of(&i, TrackState::Assistant, pid),
                Some(&assistant),
                ticks_to_ns(start_ticks),
            );
            if let Some(who) = st.table.who(pid) {
                out.push(process::session_started(&mut st.correlator, &who, ts, "reconcile", Vec::new()));
            }
            started.entry(pid).or_default().push(pid);
        }
        Repair::Adopt { ppid, root, start_ticks, .. } => {
            let Some(i) = st.src.info(pid).filter(|_| st.table.session(root).is_some()) else { return false };
            tracing::info!(pid, kind, root, "reconciled: session process whose fork was lost");
            kernel.track_scanned(pid, Tracked { session: root, state: TrackState::Descendant as u32 });
            st.table.insert_scanned(proc_of(&i, TrackState::Descendant, root), None, 0);
            match started.get_mut(&root) {
                Some(pids) => pids.push(pid),
                None => kernel.session_forked(root, ppid, pid, ticks_to_ns(start_ticks)),
            }
        }
    }
    true
}

#[cfg(test)]
mod tests;
