//! Finding assistants that were running before the daemon started, with their descendants.

use std::collections::HashMap;

use sensor_common::TrackState;

use super::{
    procfs::{ticks_to_ns, ProcInfo, ProcSource},
    Proc,
};
use crate::detect::classify::assistant::{AssistantClassifier, ProcFacts};

#[derive(Debug)]
pub struct Scanned {
    pub proc: Proc,
    /// Set on a session's root.
    pub assistant: Option<String>,
    /// Process start, boot-time nanoseconds.
    pub start_ns: u64,
}

/// Every running process that belongs to a session, roots first. A process under an assistant
/// belongs to the outermost assistant above it, as it would had it been followed live.
///
/// Every process is read only as far as classifying it and placing it in the tree needs
/// ([`ProcSource::classifiable`]; its command line only where it can matter,
/// [`AssistantClassifier::argv_gate`]); the rest is read for the processes found.
pub fn scan(src: &dyn ProcSource, classifier: &AssistantClassifier, ignore: &[u32]) -> Vec<Scanned> {
    let gate = classifier.argv_gate();
    let infos: HashMap<u32, _> = src
        .pids()
        .into_iter()
        .filter(|p| !ignore.contains(p))
        .filter_map(|pid| Some((pid, src.classifiable(pid, &gate)?)))
        .collect();
    let direct: HashMap<u32, String> = infos
        .values()
        .filter_map(|i| {
            let facts = ProcFacts { exe: &i.exe, filename: &i.exe, comm: &i.comm, argv: &i.argv };
            Some((i.pid, classifier.classify(&facts)?.to_string()))
        })
        .collect();
    let root_of = |mut pid: u32| {
        let mut root = None;
        for _ in 0..256 {
            if direct.contains_key(&pid) {
                root = Some(pid);
            }
            match infos.get(&pid) {
                Some(i) if i.ppid != 0 && i.ppid != pid => pid = i.ppid,
                _ => break,
            }
        }
        root
    };
    let mut out: Vec<Scanned> = infos
        .values()
        .filter_map(|i| {
            let root = root_of(i.pid)?;
            let is_root = root == i.pid;
            let role = if is_root { TrackState::Assistant } else { TrackState::Descendant };
            let mut i = i.clone();
            src.complete(&mut i);
            Some(Scanned {
                proc: proc_of(&i, role, root),
                assistant: is_root.then(|| direct[&i.pid].clone()),
                start_ns: ticks_to_ns(i.start_ticks),
            })
        })
        .collect();
    out.sort_by_key(|s| (s.assistant.is_none(), s.proc.pid));
    out
}

/// A process as `/proc` shows it, in session `session` (its root's pid) with `role`.
pub fn proc_of(i: &ProcInfo, role: TrackState, session: u32) -> Proc {
    Proc {
        pid: i.pid,
        ppid: i.ppid,
        uid: i.uid,
        gid: 0,
        comm: i.comm.clone(),
        exe: i.exe.clone(),
        argv: crate::detect::redact::argv(&i.argv),
        cwd: i.cwd.clone(),
        fds: Default::default(),
        role,
        session,
        start_ticks: Some(i.start_ticks),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    struct Fake(Vec<ProcInfo>);
    impl ProcSource for Fake {
        fn info(&self, pid: u32) -> Option<ProcInfo> {
            self.0.iter().find(|i| i.pid == pid).cloned()
        }
        /// As ProcFs: no uid and cwd, and no command line not wanted, until completed.
        fn classifiable(&self, pid: u32, argv_wanted: &dyn Fn(&str, &str) -> bool) -> Option<ProcInfo> {
            self.info(pid).map(|i| {
                let argv = if argv_wanted(&i.exe, &i.comm) { i.argv.clone() } else { Vec::new() };
                ProcInfo { uid: u32::MAX, cwd: None, argv, ..i }
            })
        }
        fn cwd(&self, _: u32) -> Option<String> {
            None
        }
        fn fd_path(&self, _: u32, _: i32) -> Option<String> {
            None
        }
        fn pids(&self) -> Vec<u32> {
            self.0.iter().map(|i| i.pid).collect()
        }
    }

    fn p(pid: u32, ppid: u32, exe: &str, argv: &[&str]) -> ProcInfo {
        ProcInfo {
            pid,
            ppid,
            uid: 1000,
            comm: exe.rsplit('/').next().unwrap().to_string(),
            exe: exe.to_string(),
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd: Some("/".into()),
            start_ticks: 5,
        }
    }

    #[test]
    fn finds_assistants_and_their_descendants() {
        let src = Fake(vec![
            p(1, 0, "/sbin/init", &["init"]),
            p(100, 1, "/bin/bash", &["bash"]),
            p(200, 100, "/usr/bin/node", &["node", "/usr/lib/node_modules/@google/gemini-cli/dist/index.js"]),
            p(201, 200, "/bin/bash", &["bash", "-c", "rg foo"]),
            p(202, 201, "/usr/bin/rg", &["rg", "foo"]),
            // A nested assistant belongs to the outer session.
            p(203, 200, "/usr/local/bin/claude", &["claude"]),
            p(300, 1, "/usr/bin/node", &["node", "server.js"]),
            p(400, 1, "/usr/bin/goose", &["goose"]),
            // An assistant's package named in the command line of a program the live path would
            // not classify (not a runtime, not an assistant's name): not an assistant here either.
            p(500, 1, "/usr/bin/vim", &["vim", "/usr/lib/node_modules/@openai/codex/README.md"]),
        ]);
        let found = scan(
            &src,
            &AssistantClassifier::new(&Config::default().assistants, &Config::default().runtimes),
            &[],
        );
        let by_pid: HashMap<u32, &Scanned> = found.iter().map(|s| (s.proc.pid, s)).collect();
        assert_eq!(found.len(), 5);
        assert_eq!(by_pid[&200].assistant.as_deref(), Some("gemini-cli"));
        assert_eq!(by_pid[&400].assistant.as_deref(), Some("goose"));
        for pid in [201, 202, 203] {
            assert_eq!(by_pid[&pid].proc.role, TrackState::Descendant);
            assert_eq!(by_pid[&pid].proc.session, 200);
        }
        assert!(!by_pid.contains_key(&300) && !by_pid.contains_key(&100) && !by_pid.contains_key(&500));
        // What was left out for classifying is read for the processes found: uid, cwd, and the
        // command line of a process whose classification did not need it.
        for s in &found {
            assert_eq!((s.proc.uid, s.proc.cwd.as_deref()), (1000, Some("/")), "{s:?}");
        }
        assert_eq!(by_pid[&201].proc.argv, ["bash", "-c", "rg foo"]);
        // Roots come first so their sessions exist before their members are added.
        assert!(found[0].assistant.is_some() && found[1].assistant.is_some());
        assert_eq!(by_pid[&200].start_ns, 50_000_000);
    }
}
