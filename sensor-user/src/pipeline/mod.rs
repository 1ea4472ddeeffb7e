//! From kernel records to reports: decode, keep the process table current, tell the kernel
//! which processes to follow, classify reads, and emit records and metrics.

use std::{collections::HashMap, sync::Arc};

use sensor_common::{TrackState, Tracked};

use crate::{
    detect::{
        classify::{assistant::AssistantClassifier, files::CategoryMatcher},
        correlate::{Correlator, Outcome, Signal},
        egress::{self, Egress},
        parsers::netlink,
        variables::{Variable, Watch},
    },
    kernel::events::{self, FileRecord, Header, KernelEvent},
    model::{
        paths::CachedFs,
        procs::{procfs::ProcSource, scan, ProcTable, Session, Update},
    },
    output::metrics::Metrics,
    output::report::{
        self, Body, Clock, ConnectionRecord, Destination, FindingRecord, FingerprintRead, ProcessRef, Reader,
        Record, SessionRef,
    },
    output::sinks::SinkHandle,
};

/// The kernel's map of tracked processes, as the pipeline sees it.
pub trait Tracker {
    fn track(&mut self, pid: u32, t: Tracked);
    fn untrack(&mut self, pid: u32);
    /// A session began: follow its processes' getenv calls.
    fn session_started(&mut self, _root: u32, _pids: Vec<u32>) {}
    /// A process of session `root` forked.
    fn session_forked(&mut self, _root: u32, _parent: u32, _child: u32, _fork_ns: u64) {}
    fn session_ended(&mut self, _root: u32) {}
    /// Final byte counts (sent, received) of a socket whose process exited; forgets it.
    fn take_sock(&mut self, pid: u32, fd: i32) -> (u64, u64);
}

/// The kernel side as the daemon runs it: the maps, and the getenv probes.
pub struct Kernel {
    pub maps: crate::kernel::loader::KernelMaps,
    pub env: crate::kernel::uprobes::EnvProbes,
}

impl Tracker for Kernel {
    fn track(&mut self, pid: u32, t: Tracked) {
        self.maps.track(pid, t)
    }
    fn untrack(&mut self, pid: u32) {
        self.maps.untrack(pid)
    }
    fn take_sock(&mut self, pid: u32, fd: i32) -> (u64, u64) {
        self.maps.take_sock(pid, fd)
    }
    fn session_started(&mut self, root: u32, pids: Vec<u32>) {
        self.env.attach(root, pids)
    }
    fn session_forked(&mut self, root: u32, parent: u32, child: u32, fork_ns: u64) {
        self.env.forked(root, parent, child, fork_ns)
    }
    fn session_ended(&mut self, root: u32) {
        self.env.detach(root)
    }
}

pub struct Pipeline {
    pub table: ProcTable,
    egress: Egress,
    correlator: Correlator,
    watch: Watch,
    /// Watched variables of execs whose exec event has not come yet (it follows at once).
    pending_env: HashMap<u32, Vec<Variable>>,
    /// (variable, set) already reported per process: libc re-reads LC_* and TZ many times.
    env_seen: HashMap<u32, std::collections::HashSet<(String, bool)>>,
    classifier: AssistantClassifier,
    matcher: CategoryMatcher,
    metrics: Arc<Metrics>,
    sink: SinkHandle,
    host: String,
    clock: Clock,
    src: Box<dyn ProcSource + Send>,
    fs: CachedFs,
}

impl Pipeline {
    /// Applies a reloaded config: classification, categories, watched variables, rules.
    /// Sessions and their state are kept.
    pub fn reconfigure(&mut self, cfg: &crate::config::Config) {
        init_findings(&self.metrics, cfg);
        self.classifier = AssistantClassifier::new(cfg);
        self.matcher = CategoryMatcher::new(cfg, &crate::detect::classify::files::home_dirs());
        self.watch = Watch::new(cfg);
        self.correlator.reconfigure(cfg);
    }

    /// A pipeline with the classifiers, watch list and rules of `cfg`.
    pub fn new(
        cfg: &crate::config::Config,
        metrics: Arc<Metrics>,
        sink: SinkHandle,
        host: String,
        id_prefix: &str,
        src: Box<dyn ProcSource + Send>,
    ) -> Self {
        init_findings(&metrics, cfg);
        Self {
            table: ProcTable::new(id_prefix),
            egress: Egress::default(),
            correlator: Correlator::new(cfg),
            watch: Watch::new(cfg),
            pending_env: HashMap::new(),
            env_seen: HashMap::new(),
            classifier: AssistantClassifier::new(cfg),
            matcher: CategoryMatcher::new(cfg, &crate::detect::classify::files::home_dirs()),
            metrics,
            sink,
            host,
            clock: Clock::new(),
            src,
            fs: CachedFs::new(std::time::Duration::from_secs(1), 4096),
        }
    }

    fn emit(&self, boot_ns: u64, body: Body) {
        self.sink.emit(|| Record {
            schema: report::SCHEMA,
            time: self.clock.rfc3339(boot_ns),
            boot_ns,
            host: self.host.clone(),
            body,
        });
    }

    /// Adds assistants already running (and their descendants) to the table and the kernel.
    pub fn scan(&mut self, kernel: &mut dyn Tracker, ignore: &[u32]) -> usize {
        let found = scan::scan(self.src.as_ref(), &self.classifier, ignore);
        let n = found.len();
        let mut members: HashMap<u32, Vec<u32>> = HashMap::new();
        for s in found {
            if self.table.get(s.proc.pid).is_some() {
                continue;
            }
            kernel.track(s.proc.pid, Tracked { session: s.proc.session, state: s.proc.role as u32 });
            let pid = s.proc.pid;
            let is_root = s.assistant.is_some();
            members.entry(s.proc.session).or_default().push(pid);
            self.table.insert_scanned(s.proc, s.assistant.as_deref(), s.start_ns);
            if is_root {
                self.session_started(pid, Clock::now_boot_ns(), "scan", Vec::new());
            }
        }
        for (root, pids) in members {
            kernel.session_started(root, pids);
        }
        n
    }

    fn session_started(&self, root: u32, boot_ns: u64, found_by: &'static str, environment: Vec<Variable>) {
        let (Some(s), Some(p)) = (self.table.session(root), self.table.get(root)) else { return };
        self.metrics.sessions_started.with_label_values(&[&s.assistant]).inc();
        self.count_env(&s.assistant, &environment);
        tracing::info!(assistant = %s.assistant, pid = root, session = %s.id, found_by, "assistant session started");
        let process = ProcessRef::of(p, root, &p.comm);
        self.emit(boot_ns, Body::SessionStart { session: SessionRef::of(s), process, found_by, environment });
    }

    fn count_env(&self, assistant: &str, vars: &[Variable]) {
        for v in vars {
            self.metrics.exec_env_vars.with_label_values(&[assistant, v.category.as_str()]).inc();
        }
    }

    /// API base URLs a session's processes were given name its `base_url` destinations.
    fn learn_base_urls(&mut self, root: u32, vars: &[Variable]) {
        for v in vars.iter().filter(|v| v.category == "base_url") {
            if let Some(url) = &v.value {
                self.correlator.learn_base_url(root, url);
            }
        }
    }

    fn signal(&mut self, pid: u32, kind: &'static str, category: &str, artifact: &str, ts_ns: u64) {
        let Some(p) = self.table.get(pid) else { return };
        let by_assistant = Reader::of(p) == Reader::Assistant;
        let s = Signal {
            kind,
            category: category.to_string(),
            artifact: artifact.to_string(),
            by_assistant,
            reader: if by_assistant { "assistant" } else { "descendant" },
            pid,
            ts_ns,
        };
        let root = p.session;
        if let Some(sess) = self.table.session_mut(root) {
            *sess.signals.entry(category.to_string()).or_default() += 1;
        }
        self.correlator.add_signal(root, s);
    }

    fn apply(&mut self, update: Update, kernel: &mut dyn Tracker) {
        match update {
            Update::None => {}
            Update::SessionStarted { root, entries } => {
                let pids = entries.iter().map(|(pid, _)| *pid).collect();
                for (pid, t) in entries {
                    kernel.track(pid, t);
                }
                kernel.session_started(root, pids);
            }
            Update::Untrack(pids) => {
                for pid in pids {
                    kernel.untrack(pid);
                }
            }
        }
    }

    /// Handles one ring-buffer record. Bad bytes are counted and logged, never fatal.
    pub fn handle(&mut self, bytes: &[u8], kernel: &mut dyn Tracker) {
        let ev = match events::decode(bytes) {
            Ok(ev) => ev,
            Err(e) => {
                self.metrics.decode_errors.with_label_values(&[e.reason()]).inc();
                tracing::warn!(error = %e, len = bytes.len(), "undecodable kernel record");
                return;
            }
        };
        let kind = match &ev {
            KernelEvent::Exec { .. } => "exec",
            KernelEvent::Fork { .. } => "fork",
            KernelEvent::Exit { .. } => "exit",
            KernelEvent::File(_) => "file",
            KernelEvent::Connect { .. } => "connect",
            KernelEvent::Data { .. } => "data",
            KernelEvent::Close { .. } => "close",
            KernelEvent::State { .. } => "tcp_state",
            KernelEvent::EnvRead { .. } => "env_read",
            KernelEvent::Ioctl { .. } => "ioctl",
            KernelEvent::ExecEnv { .. } => "exec_env",
        };
        self.metrics.events_received.with_label_values(&[kind]).inc();
        match ev {
            KernelEvent::Exec { hdr, ppid, filename, argv } => {
                self.on_exec(&hdr, ppid, &filename, argv, kernel)
            }
            KernelEvent::Fork { hdr, child } => {
                let u = self.table.on_fork(&hdr, child);
                self.apply(u, kernel);
                if let Some(root) = self.session_of(child) {
                    kernel.session_forked(root, hdr.pid, child, hdr.ts_ns);
                }
            }
            KernelEvent::Exit { hdr } => {
                let out = self.egress.on_exit(hdr.pid, hdr.ts_ns, |fd| kernel.take_sock(hdr.pid, fd));
                self.report_egress(out, hdr.ts_ns);
                self.pending_env.remove(&hdr.pid);
                self.env_seen.remove(&hdr.pid);
                if let Some(s) = self.table.on_exit(hdr.pid) {
                    self.egress.end_session(s.root_pid);
                    self.correlator.end_session(s.root_pid);
                    kernel.session_ended(s.root_pid);
                    self.session_ended(&s, hdr.ts_ns);
                }
            }
            KernelEvent::File(rec) => self.on_file(&rec),
            KernelEvent::Connect { hdr, fd, sock_type, ret, addr } => {
                let Some(session) = self.session_of(hdr.pid) else { return };
                let out = self.egress.on_connect(self.origin(&hdr, session, fd), fd, sock_type, ret, &addr);
                self.report_egress(out, hdr.ts_ns);
            }
            KernelEvent::Data { hdr, family, data, .. } if family == sensor_common::AF_NETLINK => {
                for req in netlink::requests(&data) {
                    // A link dump returns every interface's MAC address.
                    let identity = req.kind == "RTM_GETLINK";
                    self.interface_query(&hdr, "netlink", req.kind, None, req.dump, None, identity);
                }
            }
            KernelEvent::Data { hdr, fd, direction, sock_type, peer, data, .. } => {
                let Some(session) = self.session_of(hdr.pid) else { return };
                let origin = self.origin(&hdr, session, fd);
                let out = self.egress.on_data(origin, fd, direction, sock_type, &peer, &data);
                self.report_egress(out, hdr.ts_ns);
            }
            KernelEvent::Close { hdr, fd, bytes_sent, bytes_recv, .. } => {
                let out = self.egress.on_close(hdr.pid, fd, bytes_sent, bytes_recv, hdr.ts_ns);
                self.report_egress(out, hdr.ts_ns);
            }
            KernelEvent::ExecEnv { hdr, entries } => {
                // Bounded: an entry normally lives for microseconds, until its exec event.
                if self.pending_env.len() >= 4096 {
                    self.pending_env.clear();
                }
                self.pending_env.insert(hdr.pid, self.watch.scan(&entries));
            }
            KernelEvent::EnvRead { hdr, secure, set, name } => self.on_env_read(&hdr, secure, set, name),
            KernelEvent::Ioctl { hdr, cmd, ret, ifname, .. } => {
                let Some(request) = netlink::ioctl_name(cmd) else { return };
                let iface = (!ifname.is_empty()).then_some(ifname);
                self.interface_query(&hdr, "ioctl", request, iface, false, Some(ret), cmd == 0x8927);
            }
            KernelEvent::State { hdr, fd, newstate, local, remote, .. } => {
                let Some(session) = self.session_of(hdr.pid) else { return };
                let out = self.egress.on_state(self.origin(&hdr, session, fd), fd, newstate, &local, &remote);
                self.report_egress(out, hdr.ts_ns);
            }
        }
    }

    fn on_env_read(&mut self, hdr: &Header, secure: bool, set: bool, name: String) {
        let Some(category) = self.watch.category(&name) else { return };
        let Some(p) = self.table.get(hdr.pid) else { return };
        let Some(s) = self.table.session(p.session) else { return };
        let reader = Reader::of(p);
        let r = if reader == Reader::Assistant { "assistant" } else { "descendant" };
        self.metrics.env_reads.with_label_values(&[s.assistant.as_str(), category, r]).inc();
        if !self.env_seen.entry(hdr.pid).or_default().insert((name.clone(), set)) {
            return;
        }
        let category = category.to_string();
        self.signal(hdr.pid, "variable", &category, &name, hdr.ts_ns);
        let Some(p) = self.table.get(hdr.pid) else { return };
        let Some(s) = self.table.session(p.session) else { return };
        self.emit(
            hdr.ts_ns,
            Body::EnvRead {
                session: SessionRef::of(s),
                process: ProcessRef::of(p, hdr.tid, &hdr.comm),
                reader,
                variable: name,
                category,
                set,
                function: if secure { "secure_getenv" } else { "getenv" },
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn interface_query(
        &mut self,
        hdr: &Header,
        method: &'static str,
        request: &'static str,
        interface: Option<String>,
        dump: bool,
        result: Option<i64>,
        identity: bool,
    ) {
        let Some(p) = self.table.get(hdr.pid) else { return };
        let Some(s) = self.table.session(p.session) else { return };
        let reader = Reader::of(p);
        let r = if reader == Reader::Assistant { "assistant" } else { "descendant" };
        self.metrics.interface_queries.with_label_values(&[s.assistant.as_str(), method, r]).inc();
        let mut categories = vec!["network_config"];
        if identity {
            categories.push("host_identity");
        }
        for c in &categories {
            self.signal(hdr.pid, "interfaces", c, request, hdr.ts_ns);
        }
        let Some(p) = self.table.get(hdr.pid) else { return };
        let Some(s) = self.table.session(p.session) else { return };
        self.emit(
            hdr.ts_ns,
            Body::InterfaceQuery {
                session: SessionRef::of(s),
                process: ProcessRef::of(p, hdr.tid, &hdr.comm),
                reader,
                method,
                request,
                interface,
                dump,
                result,
                categories,
            },
        );
    }

    /// The session root of a tracked (not pending) process.
    fn session_of(&self, pid: u32) -> Option<u32> {
        let p = self.table.get(pid)?;
        self.table.session(p.session).map(|s| s.root_pid)
    }

    fn origin(&self, hdr: &Header, session: u32, fd: i32) -> egress::Origin {
        let sid = self.table.session(session).map_or("", |s| s.id.as_str());
        egress::Origin {
            pid: hdr.pid,
            session,
            now_ns: hdr.ts_ns,
            id: format!("{sid}-{}-{fd}-{:x}", hdr.pid, hdr.ts_ns),
        }
    }

    fn report_egress(&mut self, out: Vec<egress::Out>, boot_ns: u64) {
        for o in out {
            let pid = match &o {
                egress::Out::Open { pid, .. }
                | egress::Out::Close { pid, .. }
                | egress::Out::Dns { pid, .. } => *pid,
            };
            let Some(root) = self.session_of(pid) else { continue };
            // Correlate first: the annotation goes into the open record.
            let correlated = match &o {
                egress::Out::Open { conn, .. } => {
                    Some(self.correlator.on_egress(root, conn.host.as_deref(), boot_ns))
                }
                _ => None,
            };
            if let (egress::Out::Open { conn, .. }, Some((_, outcomes))) = (&o, &correlated) {
                let dest = conn.host.clone().unwrap_or_else(|| conn.remote_addr.clone());
                let emitted = outcomes.iter().filter(|(_, o)| matches!(o, Outcome::Emit(_))).count() as u64;
                if let Some(sess) = self.table.session_mut(root) {
                    // Bounded: the live view keeps 64 destinations per session.
                    if sess.egress.len() < 64 || sess.egress.contains_key(&dest) {
                        *sess.egress.entry(dest).or_default() += 1;
                    }
                    sess.findings += emitted;
                }
            }
            let Some(p) = self.table.get(pid) else { continue };
            let Some(s) = self.table.session(p.session) else { continue };
            let assistant = s.assistant.as_str();
            let (session, process, reader) =
                (SessionRef::of(s), ProcessRef::of(p, pid, &p.comm), Reader::of(p));
            let body = match o {
                egress::Out::Open { conn, .. } => {
                    let host = conn.host_source.map_or("none", |h| h.label());
                    let m = &self.metrics;
                    m.connections.with_label_values(&[assistant, conn.protocol, host, conn.result]).inc();
                    let (ann, outcomes) = correlated.unwrap_or_default();
                    m.egress.with_label_values(&[assistant, ann.destination_class.as_str()]).inc();
                    if let Some(ms) = ann.last_read_ms_before {
                        m.fingerprint_to_egress_seconds.observe(ms as f64 / 1000.0);
                    }
                    for (rule, outcome) in outcomes {
                        match outcome {
                            Outcome::Emit(finding) => {
                                m.findings
                                    .with_label_values(&[assistant, rule.as_str(), finding.severity.label()])
                                    .inc();
                                let latency = Clock::now_boot_ns().saturating_sub(boot_ns);
                                m.detection_latency_seconds.observe(latency as f64 / 1e9);
                                tracing::warn!(assistant, rule = %rule, severity = finding.severity.label(),
                                    host = conn.host.as_deref().unwrap_or(&conn.remote_addr),
                                    latency_us = latency / 1000, "finding");
                                let record = FindingRecord {
                                    id: format!("{}-{rule}", conn.id),
                                    session: session.clone(),
                                    process: process.clone(),
                                    reader,
                                    finding,
                                    destination: Destination {
                                        host: conn.host.clone(),
                                        addr: conn.remote_addr.clone(),
                                        port: conn.remote_port,
                                        proxy: conn.proxy,
                                    },
                                    connection_id: conn.id.clone(),
                                };
                                self.emit(boot_ns, Body::Finding(Box::new(record)));
                            }
                            Outcome::Duplicate => {
                                m.findings_suppressed.with_label_values(&["duplicate"]).inc()
                            }
                            Outcome::RateLimited => {
                                m.findings_suppressed.with_label_values(&["rate_limited"]).inc()
                            }
                        }
                    }
                    let fingerprint = Some(ann);
                    Body::ConnectionOpen(Box::new(ConnectionRecord {
                        session,
                        process,
                        reader,
                        connection: conn,
                        fingerprint,
                    }))
                }
                egress::Out::Close { conn, .. } => {
                    let m = &self.metrics.egress_bytes;
                    m.with_label_values(&[assistant, "sent"]).inc_by(conn.bytes_sent);
                    m.with_label_values(&[assistant, "received"]).inc_by(conn.bytes_received);
                    Body::ConnectionClose(Box::new(ConnectionRecord {
                        session,
                        process,
                        reader,
                        connection: conn,
                        fingerprint: None,
                    }))
                }
                egress::Out::Dns { lookup, .. } => {
                    self.metrics.dns_lookups.with_label_values(&[assistant]).inc();
                    Body::DnsLookup { session, process, reader, dns: lookup }
                }
            };
            self.emit(boot_ns, body);
        }
    }

    /// Periodic work: connections open a while without sending are reported.
    pub fn tick(&mut self) {
        let now = Clock::now_boot_ns();
        let out = self.egress.tick(now);
        self.report_egress(out, now);
    }

    fn on_exec(
        &mut self,
        hdr: &Header,
        ppid: u32,
        filename: &str,
        argv: Vec<String>,
        kernel: &mut dyn Tracker,
    ) {
        let environment = self.pending_env.remove(&hdr.pid).unwrap_or_default();
        let u = self.table.on_exec(hdr, ppid, filename, argv, &self.classifier, self.src.as_ref());
        let started = match &u {
            Update::SessionStarted { root, .. } => Some(*root),
            _ => None,
        };
        let in_session = matches!(u, Update::None);
        self.apply(u, kernel);
        if let Some(root) = self.session_of(hdr.pid) {
            self.learn_base_urls(root, &environment);
        }
        if let Some(root) = started {
            self.session_started(root, hdr.ts_ns, "exec", environment);
        } else if in_session {
            let Some(p) = self.table.get(hdr.pid) else { return };
            let Some(s) = self.table.session(p.session) else { return };
            self.count_env(&s.assistant, &environment);
            self.emit(
                hdr.ts_ns,
                Body::ProcessExec {
                    session: SessionRef::of(s),
                    process: ProcessRef::of(p, hdr.tid, &hdr.comm),
                    reader: Reader::of(p),
                    environment,
                },
            );
        }
    }

    fn on_file(&mut self, rec: &FileRecord) {
        let Some(ctx) = self.table.on_file(rec, &self.fs, self.src.as_ref()) else { return };
        // An empty path (fstat, fchdir) names an fd whose open was already reported.
        if rec.path.is_empty() {
            return;
        }
        let Some(session) = ctx.session else { return };
        let Some(res) = ctx.resolution else {
            self.metrics.unresolved_paths.inc();
            tracing::debug!(pid = rec.hdr.pid, path = %rec.path, dirfd = rec.dirfd, "cannot resolve relative path");
            return;
        };
        let views = res.match_views();
        let view_refs: Vec<&str> = views.iter().map(String::as_str).collect();
        let categories = self.matcher.categories(&view_refs);
        let Some(first) = categories.first() else { return };
        let reader = Reader::of(ctx.proc);
        let signals: Vec<(String, String)> =
            categories.iter().map(|c| (c.to_string(), res.resolved.clone())).collect();
        for c in &categories {
            let r = match reader {
                Reader::Assistant => "assistant",
                Reader::Descendant => "descendant",
            };
            self.metrics.fingerprint_reads.with_label_values(&[session.assistant.as_str(), c, r]).inc();
        }
        let read = FingerprintRead {
            session: SessionRef::of(session),
            process: ProcessRef::of(ctx.proc, rec.hdr.tid, &rec.hdr.comm),
            reader,
            category: first.to_string(),
            categories: categories.iter().map(|c| c.to_string()).collect(),
            syscall: rec.syscall.name(),
            path: rec.path.clone(),
            dirfd: (rec.dirfd != sensor_common::AT_FDCWD).then_some(rec.dirfd),
            target_pid: proc_pid(&res.absolute),
            absolute_path: res.absolute,
            resolved_path: res.resolved,
            target_path: res.target,
            flags: rec.flags,
            resolve_flags: rec.resolve,
            result: rec.ret,
            success: rec.ret >= 0,
            errno: crate::sys::errno::errno_name(rec.ret),
            truncated: rec.hdr.flags & sensor_common::flags::PATH_TRUNCATED != 0,
        };
        self.emit(rec.hdr.ts_ns, Body::FingerprintRead(Box::new(read)));
        for (category, artifact) in signals {
            self.signal(rec.hdr.pid, "file", &category, &artifact, rec.hdr.ts_ns);
        }
    }

    fn session_ended(&self, s: &Session, boot_ns: u64) {
        tracing::info!(assistant = %s.assistant, pid = s.root_pid, session = %s.id, "assistant session ended");
        let duration_ms = boot_ns.saturating_sub(s.start_ns) / 1_000_000;
        self.emit(boot_ns, Body::SessionEnd { session: SessionRef::of(s), duration_ms });
    }

    /// The live view of active sessions.
    pub fn status(&self) -> crate::output::status::Status {
        let mut sessions: Vec<crate::output::status::SessionStatus> = self
            .table
            .sessions()
            .map(|s| crate::output::status::SessionStatus {
                id: s.id.clone(),
                assistant: s.assistant.clone(),
                root_pid: s.root_pid,
                uid: s.uid,
                user: crate::output::status::user_name(s.uid),
                started: self.clock.rfc3339(s.start_ns),
                processes: s.members,
                signals: s.signals.clone(),
                egress: s.egress.clone(),
                findings: s.findings,
            })
            .collect();
        sessions.sort_by(|a, b| a.started.cmp(&b.started));
        crate::output::status::Status {
            version: env!("CARGO_PKG_VERSION").to_string(),
            host: self.host.clone(),
            time: self.clock.rfc3339(Clock::now_boot_ns()),
            sessions,
        }
    }

    /// Refreshes the gauges that describe the table.
    pub fn update_gauges(&self) {
        let m = &self.metrics;
        m.tracked_processes
            .with_label_values(&["assistant"])
            .set(self.table.count(TrackState::Assistant) as i64);
        m.tracked_processes
            .with_label_values(&["descendant"])
            .set(self.table.count(TrackState::Descendant) as i64);
        m.sessions_active.set(self.table.sessions().count() as i64);
        m.open_connections.set(self.egress.len() as i64);
    }
}

/// Every finding series exists from the start, at 0, so an alert on increase() sees the first
/// finding.
fn init_findings(metrics: &Metrics, cfg: &crate::config::Config) {
    for a in &cfg.assistants {
        for r in &cfg.rules {
            for sev in [r.severity, r.descendant_severity] {
                metrics
                    .findings
                    .with_label_values(&[a.name.as_str(), r.name.as_str(), sev.label()])
                    .inc_by(0);
            }
        }
    }
}

/// The pid in a `/proc/<pid>/...` path.
fn proc_pid(path: &str) -> Option<u32> {
    path.strip_prefix("/proc/")?.split('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::Config,
        detect::parsers::{sockaddr::tests::v4, tls::build_client_hello},
        kernel::events::raw,
    };

    struct NoKernel;
    impl Tracker for NoKernel {
        fn track(&mut self, _: u32, _: Tracked) {}
        fn untrack(&mut self, _: u32) {}
        fn take_sock(&mut self, _: u32, _: i32) -> (u64, u64) {
            (0, 0)
        }
    }

    fn series(m: &Metrics, name: &str) -> usize {
        m.registry.gather().iter().filter(|f| f.name() == name).map(|f| f.get_metric().len()).sum()
    }

    #[tokio::test]
    async fn ten_thousand_destinations_keep_label_cardinality_bounded() {
        let metrics = Arc::new(Metrics::new().unwrap());
        let out = crate::config::OutputConfig {
            path: Some(std::env::temp_dir().join(format!("aiwatch-card-{}.jsonl", std::process::id()))),
            ..Default::default()
        };
        let (sink, writer) = crate::output::sinks::spawn(&out, metrics.clone()).unwrap();
        let mut p = Pipeline::new(
            &Config::default(),
            metrics.clone(),
            sink,
            "h".into(),
            "t",
            Box::new(crate::model::procs::procfs::Gone),
        );
        let mut k = NoKernel;
        p.handle(&raw::exec(100, "/usr/local/bin/claude", &["claude"]), &mut k);
        assert!(p.table.session(100).is_some());
        // Fingerprint first, so every connection to an LLM API host would be correlated too.
        p.handle(&raw::file(100, sensor_common::Syscall::Openat, "/etc/localtime", 3), &mut k);
        p.handle(&raw::file(100, sensor_common::Syscall::Openat, "/etc/machine-id", 4), &mut k);
        for i in 0..10_000u32 {
            let fd = 10 + (i % 1000) as i32;
            let ip = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
            p.handle(&raw::connect(100, fd, v4(ip, 443)), &mut k);
            let host =
                if i % 2500 == 0 { "api.anthropic.com".to_string() } else { format!("h{i}.example-{i}.net") };
            p.handle(&raw::send(100, fd, &build_client_hello(&host, 32, 16384)), &mut k);
            p.handle(&raw::close(100, fd), &mut k);
        }
        assert_eq!(metrics.egress.with_label_values(&["claude-code", "other"]).get(), 9_996);
        assert_eq!(metrics.egress.with_label_values(&["claude-code", "llm_api"]).get(), 4);
        // 10,000 destinations, a handful of series.
        assert_eq!(series(&metrics, "aiwatch_egress_total"), 2);
        assert_eq!(series(&metrics, "aiwatch_connections_total"), 1);
        assert!(series(&metrics, "aiwatch_connection_bytes_total") <= 2);
        let total: usize = metrics.registry.gather().iter().map(|f| f.get_metric().len()).sum();
        assert!(total < 200, "{total} series in all");
        // One finding for the session, the rest de-duplicated.
        assert_eq!(
            metrics.findings.with_label_values(&["claude-code", "fingerprint_then_llm_egress", "high"]).get(),
            1
        );
        assert_eq!(metrics.findings_suppressed.with_label_values(&["duplicate"]).get(), 3);
        drop(p);
        writer.await.unwrap();
        let _ = std::fs::remove_file(out.path.unwrap());
    }
}
