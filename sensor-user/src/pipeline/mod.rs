//! Stage 2, from kernel records to outputs: each record is decoded and dispatched to the
//! handler of its family (`process`, `file`, `env`, `net`, `interfaces`). A handler resolves
//! whose event it is once ([`Who`](crate::model::procs::Who)), updates the state it needs
//! (`state.rs`), asks the kernel for what changes there ([`Tracker`]), and returns its outputs;
//! the one [`Emitter`] counts, logs and writes them.

mod compat;
mod content;
mod env;
mod file;
mod host;
mod interfaces;
mod net;
mod process;
mod prompt_rule;
mod reconcile;
mod state;

use std::sync::Arc;

use crate::{
    config::Config,
    detect::correlate::{Correlator, Signal},
    kernel::{
        events::{self, has, KernelEvent},
        tracker::Tracker,
    },
    model::procs::{procfs::ProcSource, Who},
    output::{
        emit::{Emitter, Out},
        metrics::Metrics,
        sinks::SinkHandle,
        status::Status,
    },
    sys::clock::Clock,
};
use state::State;

pub struct Pipeline {
    state: State,
    emitter: Emitter,
}

impl Pipeline {
    /// A pipeline with the classifiers, watch list and rules of `cfg`.
    pub fn new(
        cfg: &Config,
        metrics: Arc<Metrics>,
        sink: SinkHandle,
        host: String,
        id_prefix: &str,
        src: Box<dyn ProcSource + Send>,
    ) -> Self {
        Self { state: State::new(cfg, id_prefix, src), emitter: Emitter::new(cfg, metrics, sink, host) }
    }

    /// Applies a reloaded config: classification, categories, watched variables, rules.
    /// Sessions and their state are kept.
    pub fn reconfigure(&mut self, cfg: &Config) {
        self.emitter.reconfigure(cfg);
        self.state.reconfigure(cfg);
    }

    /// Adds assistants already running (and their descendants) to the table and the kernel.
    pub fn scan(&mut self, kernel: &mut dyn Tracker, ignore: &[u32]) -> usize {
        let (found, outs) = process::scan(&mut self.state, kernel, ignore);
        self.emitter.emit(outs);
        found
    }

    /// Handles one ring-buffer record. Bad bytes are counted and logged, never fatal.
    pub fn handle(&mut self, bytes: &[u8], kernel: &mut dyn Tracker) {
        let ev = match events::decode(bytes) {
            Ok(ev) => ev,
            Err(e) => return self.emitter.undecodable(&e, bytes.len()),
        };
        self.emitter.received(ev.kind());
        let outs = dispatch(&mut self.state, ev, kernel);
        self.emitter.emit(outs);
    }

    /// Periodic work: connections open a while without sending are reported; what the baseline
    /// learned is written.
    pub fn tick(&mut self) {
        self.state.correlator.baseline.save_if_learned();
        let now = Clock::now_boot_ns();
        let out = self.state.egress.tick(now);
        let outs = net::report(&mut self.state, out, now);
        self.emitter.emit(outs);
        self.emitter.tick(now);
    }

    /// The daemon stops: the rollups of the sessions still running are sent, the baseline written.
    pub fn flush(&mut self) {
        self.state.correlator.baseline.save_if_learned();
        self.emitter.flush();
    }

    /// Compares the table with the kernel's map and `/proc` when a pass is due (see
    /// [`crate::model::procs::reconcile`]), and repairs what lost records left wrong. `losses`:
    /// the kernel's count so far of lost records and processes left untracked at a full map.
    pub fn reconcile(&mut self, kernel: &mut dyn Tracker, losses: u64, ignore: &[u32]) {
        if let Some((outs, repairs)) =
            reconcile::run(&mut self.state, kernel, std::time::Instant::now(), losses, ignore)
        {
            self.emitter.emit(outs);
            self.emitter.reconciled(&repairs);
        }
    }

    /// The live view of active sessions.
    pub fn status(&self) -> Status {
        self.emitter.status(self.state.table.sessions())
    }

    /// Refreshes the gauges that describe the table.
    pub fn update_gauges(&self) {
        self.emitter.gauges(&self.state.table, self.state.egress.len());
        let (names, processes) = self.state.env_seen.evictions();
        self.emitter.env_evictions(names, processes);
        let c = &self.state.correlator;
        self.emitter.prompt_evictions(c.prompt.evictions());
        self.emitter.detection_errors(c.signature_errors, c.baseline.errors);
    }

    /// Loads the signature file `cfg` names (none: no signatures); how many it holds. On an
    /// error (named, counted) the signatures in force stay.
    pub fn load_signatures(&mut self, cfg: &Config) -> Result<usize, String> {
        let c = &mut self.state.correlator;
        let loaded = match &cfg.detection.signatures {
            Some(path) => crate::detect::signatures::load(path),
            None => Ok(Vec::new()),
        };
        match loaded {
            Ok(list) => {
                c.signatures = list;
                Ok(c.signatures.len())
            }
            Err(e) => {
                c.signature_errors += 1;
                Err(e)
            }
        }
    }
}

/// The handler of each kind of record.
fn dispatch(st: &mut State, ev: KernelEvent, kernel: &mut dyn Tracker) -> Vec<Out> {
    match ev {
        KernelEvent::Exec { hdr, ppid, filename, argv } => {
            process::exec(st, &hdr, ppid, &filename, argv, kernel)
        }
        KernelEvent::Fork { hdr, child } => process::fork(st, &hdr, child, kernel),
        KernelEvent::Exit { hdr } => process::exit(st, hdr.pid, hdr.ts_ns, kernel),
        KernelEvent::File(rec) => file::file(st, &rec, kernel),
        KernelEvent::Compat(rec) => compat::compat(st, &rec),
        KernelEvent::ExecEnv { hdr, entries } => env::exec_env(st, &hdr, &entries),
        KernelEvent::EnvRead { hdr, secure, repeats, name } => env::read(st, &hdr, secure, repeats, name),
        KernelEvent::Data { hdr, family, data, .. } if family == sensor_common::AF_NETLINK => {
            interfaces::netlink(st, &hdr, &data)
        }
        KernelEvent::Ioctl { hdr, cmd, ret, ifname, .. } => interfaces::ioctl(st, &hdr, cmd, ret, ifname),
        KernelEvent::Uname { hdr } => host::uname(st, &hdr),
        KernelEvent::UnixConnect { hdr, fd, ret, path } => host::unix_connect(st, &hdr, fd, ret, &path),
        KernelEvent::Connect { hdr, fd, sock_type, ret, addr } => {
            net::connect(st, &hdr, fd, sock_type, ret, &addr)
        }
        KernelEvent::Data { hdr, fd, bytes, data, .. } if has(&hdr, sensor_common::flags::CONTENT) => {
            content::chunk(st, &hdr, fd, bytes, &data)
        }
        KernelEvent::TlsData { hdr, ssl, bytes, data } => content::tls_chunk(st, &hdr, ssl, bytes, &data),
        KernelEvent::Data { hdr, fd, direction, sock_type, peer, data, .. } => {
            net::data(st, &hdr, fd, direction, sock_type, &peer, &data)
        }
        KernelEvent::Close { hdr, fd, bytes_sent, bytes_recv, .. } => {
            net::close(st, &hdr, fd, bytes_sent, bytes_recv)
        }
        KernelEvent::CloseRange { hdr, first, last } => net::close_range(st, &hdr, first, last, kernel),
        KernelEvent::State { hdr, fd, newstate, local, remote, .. } => {
            net::state(st, &hdr, fd, newstate, &local, &remote)
        }
    }
}

/// A fingerprint signal of `who`'s session: to the correlator, and to the live view.
fn signal(
    correlator: &mut Correlator,
    who: &Who<'_>,
    kind: &'static str,
    category: &str,
    artifact: &str,
    ts_ns: u64,
) -> Out {
    correlator.add_signal(
        who.root(),
        Signal {
            kind,
            category: category.to_string(),
            artifact: artifact.to_string(),
            reader: who.reader,
            pid: who.proc.pid,
            ts_ns,
        },
    );
    Out::Signal { root: who.root(), category: category.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        detect::parsers::{sockaddr::tests::v4, tls::build_client_hello},
        kernel::events::raw,
    };
    use sensor_common::Tracked;

    struct NoKernel;
    impl Tracker for NoKernel {
        fn track(&mut self, _: u32, _: Tracked) {}
        fn untrack(&mut self, _: u32) {}
        fn entries(&self) -> Vec<(u32, Tracked)> {
            Vec::new()
        }
        fn take_sock(&mut self, _: u32, _: i32) -> (u64, u64) {
            (0, 0)
        }
    }

    /// The ordinary pattern as a user's own rule (no longer built in), for tests of the
    /// correlation plumbing.
    pub(crate) fn with_ordinary_rule() -> Config {
        let rule = "[[rules]]\nname = \"fingerprint_then_llm_egress\"\nseverity = \"high\"\n\
                    descendant_severity = \"medium\"\ngroups = [[\"timezone\"], [\"host_identity\"]]\n\
                    min_groups = 2\ndestinations = [\"llm_api\"]\nwindow_seconds = 300\n";
        Config::parse(rule, "test").expect("test rule")
    }

    fn series(m: &Metrics, name: &str) -> usize {
        m.registry.gather().iter().filter(|f| f.name() == name).map(|f| f.get_metric().len()).sum()
    }

    /// CPU time of the whole process (every thread), µs.
    fn process_cpu_us() -> u64 {
        let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_PROCESS_CPUTIME_ID).unwrap();
        std::time::Duration::from(t).as_micros() as u64
    }

    /// The daemon's own cost per watched read, without the kernel and the event loop: a tracked
    /// process opening `/etc/localtime` again and again, through the real filesystem, counted
    /// only and as JSON lines to a file (writer thread included). Not an assertion: a figure for
    /// docs/perf-daemon.md (`cargo test --release -p sensor-user --lib -- --ignored cost_per_file_event --nocapture`).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn cost_per_file_event() {
        const N: u32 = 200_000;
        let path = std::env::temp_dir().join(format!("aiwatch-cost-{}.jsonl", std::process::id()));
        for (name, format) in
            [("counted", crate::config::OutputFormat::None), ("json_file", crate::config::OutputFormat::Json)]
        {
            let mut cfg = Config::default();
            cfg.output.format = format;
            cfg.output.detail = crate::config::OutputDetail::All;
            cfg.output.path = Some(path.clone());
            let metrics = Arc::new(Metrics::new().unwrap());
            let (sink, writer) = crate::output::sinks::spawn(&cfg.output, metrics.clone()).unwrap();
            let mut p = Pipeline::new(
                &cfg,
                metrics.clone(),
                sink,
                "h".into(),
                "t",
                Box::new(crate::model::procs::procfs::Gone),
            );
            let mut k = NoKernel;
            p.handle(&raw::exec(100, "/usr/local/bin/claude", &["claude"]), &mut k);
            let ev = raw::file(100, sensor_common::Syscall::Openat, "/etc/localtime", 3);
            let started = process_cpu_us();
            for _ in 0..N {
                p.handle(&ev, &mut k);
            }
            drop(p);
            writer.await.unwrap();
            let cpu = process_cpu_us() - started;
            let dropped = metrics.sink_dropped.get();
            println!(
                "cost_per_file_event {name}: {:.3} µs CPU per event ({dropped} dropped)",
                cpu as f64 / N as f64
            );
            let _ = std::fs::remove_file(&path);
        }
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
            &with_ordinary_rule(),
            metrics.clone(),
            sink,
            "h".into(),
            "t",
            Box::new(crate::model::procs::procfs::Gone),
        );
        let mut k = NoKernel;
        p.handle(&raw::exec(100, "/usr/local/bin/claude", &["claude"]), &mut k);
        assert!(p.state.table.session(100).is_some());
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
