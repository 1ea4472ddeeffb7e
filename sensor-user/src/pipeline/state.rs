//! What the handlers keep between events: the process table, the state machines of detection,
//! and two small bounded caches of the environment handlers.

use std::collections::{HashMap, HashSet};

use crate::{
    config::Config,
    detect::{
        classify::{
            assistant::AssistantClassifier,
            files::{home_dirs, CategoryMatcher},
        },
        correlate::Correlator,
        egress::Egress,
        variables::{Variable, Watch},
    },
    model::{
        paths::CachedFs,
        procs::{procfs::ProcSource, ProcTable},
    },
};

pub(super) struct State {
    pub table: ProcTable,
    pub egress: Egress,
    pub correlator: Correlator,
    pub watch: Watch,
    pub classifier: AssistantClassifier,
    pub matcher: CategoryMatcher,
    pub pending_env: PendingEnv,
    pub env_seen: EnvSeen,
    pub src: Box<dyn ProcSource + Send>,
    pub fs: CachedFs,
}

impl State {
    pub fn new(cfg: &Config, id_prefix: &str, src: Box<dyn ProcSource + Send>) -> Self {
        Self {
            table: ProcTable::new(id_prefix),
            egress: Egress::default(),
            correlator: Correlator::new(&cfg.rules, &cfg.correlation, &cfg.destinations),
            watch: Watch::new(&cfg.variables),
            classifier: AssistantClassifier::new(&cfg.assistants, &cfg.runtimes),
            matcher: CategoryMatcher::new(&cfg.categories, &home_dirs()),
            pending_env: PendingEnv::default(),
            env_seen: EnvSeen::default(),
            src,
            fs: CachedFs::new(std::time::Duration::from_secs(1), 4096),
        }
    }

    /// New classification, categories, watched variables and rules; sessions are kept.
    pub fn reconfigure(&mut self, cfg: &Config) {
        self.classifier = AssistantClassifier::new(&cfg.assistants, &cfg.runtimes);
        self.matcher = CategoryMatcher::new(&cfg.categories, &home_dirs());
        self.watch = Watch::new(&cfg.variables);
        self.correlator.reconfigure(&cfg.rules, &cfg.correlation, &cfg.destinations);
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

/// (variable, set) already reported per process: libc re-reads LC_* and TZ many times. An
/// entry lives as long as its process.
#[derive(Default)]
pub(super) struct EnvSeen(HashMap<u32, HashSet<(String, bool)>>);

impl EnvSeen {
    /// Whether this is `pid`'s first read of `name` with this outcome.
    pub fn first(&mut self, pid: u32, name: &str, set: bool) -> bool {
        self.0.entry(pid).or_default().insert((name.to_string(), set))
    }

    pub fn forget(&mut self, pid: u32) {
        self.0.remove(&pid);
    }
}
