//! The one emitter: what the pipeline's handlers return ([`Out`]) is counted in the metrics,
//! logged, kept for the live view, and written to the sink, here and nowhere else.

use std::{collections::HashMap, sync::Arc};

use sensor_common::TrackState;

use crate::{
    config::Config,
    detect::{classify::Reader, variables::Variable},
    kernel::events::DecodeError,
    model::procs::{ProcTable, Session},
    output::{
        counters::CounterCache,
        metrics::Metrics,
        report::{self, Body, Record},
        rollup::Rollup,
        sinks::SinkHandle,
        status::{SessionStatus, Status},
    },
    sys::clock::Clock,
};

/// What handling an event produced.
// Most outputs are records: boxing them would cost an allocation each for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Out {
    /// A record to write, with the boot time of the kernel event.
    Record { boot_ns: u64, body: Body },
    /// A fingerprint signal of the session rooted at `root` (for the live view).
    Signal { root: u32, category: String },
    /// A read of a watched variable: counted every time, reported once per process.
    /// `count` reads of a watched variable.
    EnvRead { assistant: String, category: String, reader: Reader, count: u64 },
    /// A finding that matched but is not reported: `duplicate` or `rate_limited`.
    Suppressed(&'static str),
    /// A request to an LLM API seen in plaintext: `scanned`, or why not.
    PromptRequest { assistant: String, outcome: &'static str },
    /// A relative path whose directory could not be known.
    UnresolvedPath { pid: u32, path: String, dirfd: i32 },
}

impl Out {
    pub fn record(boot_ns: u64, body: Body) -> Self {
        Self::Record { boot_ns, body }
    }
}

/// What the live view keeps of a session beyond the process table.
#[derive(Default)]
struct Live {
    /// Fingerprint categories read, with counts.
    signals: std::collections::BTreeMap<String, u64>,
    /// Destinations contacted (at most 64), with connection counts.
    egress: std::collections::BTreeMap<String, u64>,
    findings: u64,
    /// Evasion techniques, with counts.
    evasion: std::collections::BTreeMap<String, u64>,
}

pub struct Emitter {
    metrics: Arc<Metrics>,
    sink: SinkHandle,
    host: String,
    clock: Clock,
    /// By session root.
    live: HashMap<u32, Live>,
    /// What `output.detail` sends, and the session rollups.
    rollup: Rollup,
    /// The per-record counters, at hand (`aiwatch_events_total`, `aiwatch_fingerprint_reads_total`,
    /// `aiwatch_records_summarized_total`).
    received: CounterCache,
    reads: CounterCache,
    summarized: CounterCache,
}

impl Emitter {
    pub fn new(cfg: &Config, metrics: Arc<Metrics>, sink: SinkHandle, host: String) -> Self {
        init_findings(&metrics, cfg);
        let rollup = Rollup::new(&cfg.output);
        let received = CounterCache::new(metrics.events_received.clone());
        let reads = CounterCache::new(metrics.fingerprint_reads.clone());
        let summarized = CounterCache::new(metrics.records_summarized.clone());
        Self {
            metrics,
            sink,
            host,
            clock: Clock::new(),
            live: HashMap::new(),
            rollup,
            received,
            reads,
            summarized,
        }
    }

    /// A reloaded config: its assistants' and rules' finding series exist from now on.
    pub fn reconfigure(&mut self, cfg: &Config) {
        init_findings(&self.metrics, cfg);
    }

    /// Periodic rollups of long sessions.
    pub fn tick(&mut self, now_ns: u64) {
        for (ns, body) in self.rollup.due(now_ns, &self.clock) {
            self.write(ns, body);
        }
    }

    /// The rollups of the sessions still running, as the daemon stops.
    pub fn flush(&mut self) {
        for (ns, body) in self.rollup.flush(Clock::now_boot_ns(), &self.clock) {
            self.write(ns, body);
        }
    }

    /// A kernel record arrived (`kind` as [`crate::kernel::events::KernelEvent::kind`]).
    pub fn received(&mut self, kind: &'static str) {
        self.received.get(&[kind]).inc();
    }

    /// A kernel record could not be decoded: counted and logged, never fatal.
    pub fn undecodable(&self, e: &DecodeError, len: usize) {
        self.metrics.decode_errors.with_label_values(&[e.reason()]).inc();
        tracing::warn!(error = %e, len, "undecodable kernel record");
    }

    pub fn emit(&mut self, outs: Vec<Out>) {
        for out in outs {
            match out {
                Out::Record { boot_ns, body } => {
                    self.observe(boot_ns, &body);
                    let fed = self.rollup.feed(boot_ns, &body, &self.clock);
                    if let Some((ns, rollup)) = fed.before {
                        self.write(ns, rollup);
                    }
                    if fed.send {
                        self.write(boot_ns, body);
                    } else {
                        self.summarized.get(&[body.kind()]).inc();
                    }
                }
                Out::Signal { root, category } => {
                    *self.live.entry(root).or_default().signals.entry(category).or_default() += 1;
                }
                Out::EnvRead { assistant, category, reader, count } => {
                    self.metrics
                        .env_reads
                        .with_label_values(&[&assistant, &category, reader.label()])
                        .inc_by(count);
                }
                Out::Suppressed(reason) => {
                    self.metrics.findings_suppressed.with_label_values(&[reason]).inc()
                }
                Out::PromptRequest { assistant, outcome } => {
                    self.metrics.prompt_requests.with_label_values(&[&assistant, outcome]).inc()
                }
                Out::UnresolvedPath { pid, path, dirfd } => {
                    self.metrics.unresolved_paths.inc();
                    tracing::debug!(pid, path = %path, dirfd, "cannot resolve relative path");
                }
            }
        }
    }

    /// Counts, logs and the live view of one record.
    fn observe(&mut self, boot_ns: u64, body: &Body) {
        let m = &self.metrics;
        match body {
            Body::SessionStart { session, process, found_by, environment } => {
                m.sessions_started.with_label_values(&[&session.assistant]).inc();
                self.count_env(&session.assistant, environment);
                tracing::info!(assistant = %session.assistant, pid = process.pid, session = %session.id, found_by,
                    "assistant session started");
            }
            Body::SessionEnd { session, .. } => {
                self.live.remove(&session.root_pid);
                tracing::info!(assistant = %session.assistant, pid = session.root_pid, session = %session.id,
                    "assistant session ended");
            }
            Body::ProcessExec { session, environment, .. } => self.count_env(&session.assistant, environment),
            Body::EnvRead { .. } | Body::SessionRollup(_) => {}
            Body::InterfaceQuery { session, method, reader, .. } => {
                m.interface_queries
                    .with_label_values(&[session.assistant.as_str(), method, reader.label()])
                    .inc();
            }
            Body::HostQuery { session, reader, category, .. } => {
                m.fingerprint_reads
                    .with_label_values(&[session.assistant.as_str(), category, reader.label()])
                    .inc();
            }
            Body::UnixConnect { .. } => {}
            Body::FingerprintRead(r) => {
                for c in &r.categories {
                    self.reads.get(&[&r.session.assistant, c, r.reader.label()]).inc();
                }
            }
            Body::ConnectionOpen(c) => {
                let (assistant, conn) = (c.session.assistant.as_str(), &c.connection);
                let host = conn.host_source.map_or("none", |h| h.label());
                m.connections.with_label_values(&[assistant, conn.protocol, host, conn.result]).inc();
                if let Some(ann) = &c.fingerprint {
                    m.egress.with_label_values(&[assistant, &ann.destination_class]).inc();
                    if let Some(ms) = ann.last_read_ms_before {
                        m.fingerprint_to_egress_seconds.observe(ms as f64 / 1000.0);
                    }
                }
                let dest = conn.host.clone().unwrap_or_else(|| conn.remote_addr.clone());
                let live = self.live.entry(c.session.root_pid).or_default();
                // Bounded: the live view keeps 64 destinations per session.
                if live.egress.len() < 64 || live.egress.contains_key(&dest) {
                    *live.egress.entry(dest).or_default() += 1;
                }
            }
            Body::ConnectionClose(c) => {
                let (assistant, conn) = (c.session.assistant.as_str(), &c.connection);
                m.egress_bytes.with_label_values(&[assistant, "sent"]).inc_by(conn.bytes_sent);
                m.egress_bytes.with_label_values(&[assistant, "received"]).inc_by(conn.bytes_received);
            }
            Body::Finding(f) => {
                let (assistant, severity) = (f.session.assistant.as_str(), f.finding.severity.label());
                m.findings.with_label_values(&[assistant, &f.finding.rule, severity]).inc();
                let latency = Clock::now_boot_ns().saturating_sub(boot_ns);
                m.detection_latency_seconds.observe(latency as f64 / 1e9);
                tracing::warn!(assistant, rule = %f.finding.rule, severity,
                    host = f.destination.host.as_deref().unwrap_or(&f.destination.addr),
                    latency_us = latency / 1000, "finding");
                self.live.entry(f.session.root_pid).or_default().findings += 1;
            }
            Body::DnsLookup { session, .. } => m.dns_lookups.with_label_values(&[&session.assistant]).inc(),
            Body::PromptMarkers(p) => {
                for marker in &p.found.markers {
                    let kind = marker.kind.as_str();
                    m.prompt_markers
                        .with_label_values(&[&p.session.assistant, kind])
                        .inc_by(u64::from(marker.count));
                }
            }
            Body::CompatSyscall(c) => {
                m.compat_syscalls.with_label_values(&[&c.session.assistant, c.abi, c.reader.label()]).inc();
                let live = self.live.entry(c.session.root_pid).or_default();
                *live.evasion.entry(crate::detect::correlate::COMPAT_SYSCALL.to_string()).or_default() += 1;
            }
        }
    }

    fn count_env(&self, assistant: &str, vars: &[Variable]) {
        for v in vars {
            self.metrics.exec_env_vars.with_label_values(&[assistant, v.category.as_str()]).inc();
        }
    }

    fn write(&self, boot_ns: u64, body: Body) {
        self.sink.emit(|| Record {
            schema: report::SCHEMA,
            time: self.clock.rfc3339(boot_ns),
            boot_ns,
            host: self.host.clone(),
            body,
        });
    }

    /// Refreshes the gauges that describe the table.
    pub fn gauges(&self, table: &ProcTable, open_connections: usize) {
        let m = &self.metrics;
        m.tracked_processes.with_label_values(&["assistant"]).set(table.count(TrackState::Assistant) as i64);
        m.tracked_processes
            .with_label_values(&["descendant"])
            .set(table.count(TrackState::Descendant) as i64);
        m.sessions_active.set(table.sessions().count() as i64);
        m.open_connections.set(open_connections as i64);
        m.set_evictions("process_fds", table.fd_evictions());
    }

    /// A reconciliation pass, and what it repaired.
    pub fn reconciled(&self, repaired: &[crate::model::procs::reconcile::Lost]) {
        self.metrics.reconcile_passes.inc();
        for lost in repaired {
            self.metrics.reconcile_repairs.with_label_values(&[lost.label()]).inc();
        }
    }

    /// The evictions of the prompt-marker rule's bounded histories: (assistant versions, keys).
    pub fn prompt_evictions(&self, (histories, keys): (u64, u64)) {
        self.metrics.set_evictions("prompt_histories", histories);
        self.metrics.set_evictions("prompt_history_keys", keys);
    }

    /// The evictions of the environment handlers' bounded state.
    pub fn env_evictions(&self, names: u64, processes: u64) {
        self.metrics.set_evictions("env_names", names);
        self.metrics.set_evictions("env_processes", processes);
    }

    /// Failures so far to load the signature file and to read or write the baseline.
    pub fn detection_errors(&self, signatures: u64, baseline: u64) {
        self.metrics.set_detection_errors("signatures", signatures);
        self.metrics.set_detection_errors("baseline", baseline);
    }

    /// The live view of `sessions`.
    pub fn status<'a>(&self, sessions: impl Iterator<Item = &'a Session>) -> Status {
        let mut sessions: Vec<SessionStatus> = sessions
            .map(|s| {
                let live = self.live.get(&s.root_pid);
                SessionStatus {
                    id: s.id.clone(),
                    assistant: s.assistant.clone(),
                    root_pid: s.root_pid,
                    uid: s.uid,
                    user: crate::sys::users::user_name(s.uid),
                    started: self.clock.rfc3339(s.start_ns),
                    processes: s.members,
                    signals: live.map(|l| l.signals.clone()).unwrap_or_default(),
                    egress: live.map(|l| l.egress.clone()).unwrap_or_default(),
                    findings: live.map_or(0, |l| l.findings),
                    evasion: live.map(|l| l.evasion.clone()).unwrap_or_default(),
                }
            })
            .collect();
        sessions.sort_by(|a, b| a.started.cmp(&b.started));
        Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            host: self.host.clone(),
            time: self.clock.rfc3339(Clock::now_boot_ns()),
            sessions,
            endpoint: Default::default(),
        }
    }
}

/// Every finding series exists from the start, at 0, so an alert on increase() sees the first
/// finding.
fn init_findings(metrics: &Metrics, cfg: &Config) {
    use crate::detect::{
        correlate::{Severity, BASELINE_RULE, SIGNATURE_RULE},
        prompt_rule::RULE as PROMPT_RULE,
    };
    let tiers = [(BASELINE_RULE, Severity::Medium), (SIGNATURE_RULE, Severity::High)];
    let p = &cfg.detection.prompt_rule;
    let prompt = [(PROMPT_RULE, p.marker_severity), (PROMPT_RULE, p.date_severity)];
    let prompt = prompt.into_iter().filter(|_| p.enabled);
    for a in &cfg.assistants {
        let of_rules = cfg
            .rules
            .iter()
            .flat_map(|r| [(r.name.as_str(), r.severity), (r.name.as_str(), r.descendant_severity)]);
        for (rule, sev) in of_rules.chain(tiers).chain(prompt.clone()) {
            metrics.findings.with_label_values(&[a.name.as_str(), rule, sev.label()]).inc_by(0);
        }
    }
}
