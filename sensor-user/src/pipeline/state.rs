//! What the handlers keep between events: the process table, the state machines of detection,
//! and two small bounded caches of the environment handlers.

use std::{collections::HashMap, sync::Arc};

use crate::{
    config::Config,
    detect::{
        classify::{
            assistant::AssistantClassifier,
            files::{home_dirs, CategoryMatcher},
        },
        content::Content,
        correlate::Correlator,
        egress::Egress,
        variables::{Variable, Watch},
    },
    model::{
        bounded::Recent,
        paths::CachedFs,
        procs::{procfs::ProcSource, reconcile::Reconciler, ProcTable},
    },
};

pub(super) struct State {
    pub table: ProcTable,
    pub egress: Egress,
    pub content: Content,
    pub correlator: Correlator,
    pub watch: Watch,
    pub classifier: AssistantClassifier,
    pub matcher: CategoryMatcher,
    pub pending_env: PendingEnv,
    pub env_names: EnvNames,
    pub env_seen: EnvSeen,
    pub src: Box<dyn ProcSource + Send>,
    pub fs: CachedFs,
    pub reconciler: Reconciler,
}

impl State {
    pub fn new(cfg: &Config, id_prefix: &str, src: Box<dyn ProcSource + Send>) -> Self {
        Self {
            table: ProcTable::new(id_prefix),
            egress: Egress::default(),
            content: Content::new(&cfg.content),
            correlator: Correlator::new(cfg),
            watch: Watch::new(&cfg.variables),
            classifier: AssistantClassifier::new(&cfg.assistants, &cfg.runtimes),
            matcher: CategoryMatcher::new(&cfg.categories, &home_dirs()),
            pending_env: PendingEnv::default(),
            env_names: EnvNames::default(),
            env_seen: EnvSeen::default(),
            src,
            // Paths are resolved as each process sees them (in a container with the host's PID
            // namespace, the host's processes: not through the image).
            fs: CachedFs::new(std::time::Duration::from_secs(1), 4096).per_process(cfg.sensor.process_roots),
            reconciler: Reconciler::new(std::time::Instant::now()),
        }
    }

    /// New classification, categories, watched variables and rules; sessions are kept.
    pub fn reconfigure(&mut self, cfg: &Config) {
        self.classifier = AssistantClassifier::new(&cfg.assistants, &cfg.runtimes);
        self.matcher = CategoryMatcher::new(&cfg.categories, &home_dirs());
        self.watch = Watch::new(&cfg.variables);
        self.correlator.reconfigure(cfg);
        self.content.reconfigure(&cfg.content);
    }
}

/// Watched variables of execs whose exec event has not come yet (it follows at once).
#[derive(Default)]
pub(super) struct PendingEnv(HashMap<u32, Vec<Variable>>);

impl PendingEnv {
    pub fn insert(&mut self, pid: u32, vars: Vec<Variable>) {
        // Bounded: an entry normally lives for microseconds, until its exec event.
        if self.0.len() >= 4096 {
            self.0.clear();
        }
        self.0.insert(pid, vars);
    }

    pub fn take(&mut self, pid: u32) -> Vec<Variable> {
        self.0.remove(&pid).unwrap_or_default()
    }

    pub fn forget(&mut self, pid: u32) {
        self.0.remove(&pid);
    }
}

/// The watched names in a process's environment at its exec.
#[derive(Debug)]
pub(super) struct ExecNames {
    names: Vec<String>,
    /// Every entry was read: a name not in `names` was not set.
    pub complete: bool,
}

impl ExecNames {
    pub fn new(vars: &[Variable], complete: bool) -> Arc<Self> {
        Arc::new(Self { names: vars.iter().map(|v| v.name.clone()).collect(), complete })
    }

    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }
}

/// [`ExecNames`] of the processes that may read variables (a child that forks without exec
/// shares its parent's), within [`ENV_PROCESSES`] (the least recently used is forgotten, and
/// read again from `/proc` if needed).
pub(super) struct EnvNames(Recent<u32, Arc<ExecNames>>);

impl Default for EnvNames {
    fn default() -> Self {
        Self(Recent::new(ENV_PROCESSES))
    }
}

impl EnvNames {
    pub fn insert(&mut self, pid: u32, names: Arc<ExecNames>) {
        self.0.insert(pid, names);
    }

    pub fn get(&mut self, pid: u32) -> Option<Arc<ExecNames>> {
        self.0.touch(&pid).cloned()
    }

    /// A child forked without exec has its parent's environment.
    pub fn forked(&mut self, parent: u32, child: u32) {
        if let Some(names) = self.get(parent) {
            self.insert(child, names);
        }
    }

    pub fn forget(&mut self, pid: u32) {
        self.0.remove(&pid);
    }
}

/// Variable names remembered per process (with the outcome of their read).
pub const ENV_NAMES_PER_PROCESS: usize = 128;
/// Processes whose reads are remembered.
pub const ENV_PROCESSES: usize = 16384;

/// (variable, set) already reported per process: libc re-reads LC_* and TZ many times. An
/// entry lives as long as its process, within [`ENV_NAMES_PER_PROCESS`] names (the least
/// recently read is forgotten, and reported again if read again) and [`ENV_PROCESSES`].
pub(super) struct EnvSeen {
    procs: Recent<u32, Recent<(String, bool), ()>>,
    /// Names forgotten from processes still remembered.
    names_evicted: u64,
}

impl Default for EnvSeen {
    fn default() -> Self {
        Self { procs: Recent::new(ENV_PROCESSES), names_evicted: 0 }
    }
}

impl EnvSeen {
    /// Whether this is `pid`'s first read of `name` with this outcome.
    pub fn first(&mut self, pid: u32, name: &str, set: bool) -> bool {
        let key = (name.to_string(), set);
        if self.procs.touch(&pid).is_none() {
            self.procs.insert(pid, Recent::new(ENV_NAMES_PER_PROCESS));
        }
        let Some(names) = self.procs.touch(&pid) else { return true };
        if names.touch(&key).is_some() {
            return false;
        }
        let before = names.evicted();
        names.insert(key, ());
        self.names_evicted += names.evicted() - before;
        true
    }

    pub fn forget(&mut self, pid: u32) {
        self.procs.remove(&pid);
    }

    /// (names evicted, processes evicted) so far.
    pub fn evictions(&self) -> (u64, u64) {
        (self.names_evicted, self.procs.evicted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_seen_is_bounded_and_keeps_the_recent_names() {
        let mut seen = EnvSeen::default();
        assert!(seen.first(1, "LC_ALL", true));
        assert!(!seen.first(1, "LC_ALL", true));
        assert!(seen.first(1, "LC_ALL", false));
        for n in 0..100_000u32 {
            assert!(seen.first(1, &format!("LC_{n}"), false));
            // A name read all along stays remembered.
            if n % 64 == 0 {
                assert!(!seen.first(1, "TZ", true) || n == 0);
            }
        }
        let names = seen.procs.get(&1).map_or(0, Recent::len);
        assert_eq!(names, ENV_NAMES_PER_PROCESS);
        assert!(!seen.first(1, "LC_99999", false));
        assert_eq!(seen.evictions().0, 100_000 + 3 - ENV_NAMES_PER_PROCESS as u64);
        for pid in 0..(ENV_PROCESSES as u32 + 10) {
            seen.first(100 + pid, "TZ", true);
        }
        assert_eq!(seen.procs.len(), ENV_PROCESSES);
        assert_eq!(seen.evictions().1, 11);
    }
}
