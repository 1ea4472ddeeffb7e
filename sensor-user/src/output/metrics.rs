//! Prometheus metrics (served at `/metrics` by `server.rs`).
//!
//! Names follow Prometheus conventions: `aiwatch_` prefix, `_total` counters, base units.
//! Labels are bounded: assistants and categories come from config, the rest are fixed sets.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use sensor_common::Stat;

pub struct Metrics {
    pub registry: Registry,
    pub fingerprint_reads: IntCounterVec,
    pub sessions_started: IntCounterVec,
    pub sessions_active: IntGauge,
    pub tracked_processes: IntGaugeVec,
    pub events_received: IntCounterVec,
    pub decode_errors: IntCounterVec,
    pub unresolved_paths: IntCounter,
    pub kernel: IntCounterVec,
    pub probe_attached: IntGaugeVec,
    pub connections: IntCounterVec,
    pub egress_bytes: IntCounterVec,
    pub dns_lookups: IntCounterVec,
    pub open_connections: IntGauge,
    pub findings: IntCounterVec,
    pub findings_suppressed: IntCounterVec,
    pub egress: IntCounterVec,
    pub prompt_requests: IntCounterVec,
    pub prompt_markers: IntCounterVec,
    pub fingerprint_to_egress_seconds: Histogram,
    pub detection_latency_seconds: Histogram,
    pub env_reads: IntCounterVec,
    pub exec_env_vars: IntCounterVec,
    pub interface_queries: IntCounterVec,
    pub compat_syscalls: IntCounterVec,
    pub getenv_attach_seconds: Histogram,
    pub getenv_attach_errors: IntCounter,
    pub kernel_map_entries: IntGaugeVec,
    pub records_produced: IntCounter,
    pub records_written: IntCounter,
    pub records_summarized: IntCounterVec,
    pub sink_dropped: IntCounter,
    pub sink_errors: IntCounter,
    pub endpoint: EndpointMetrics,
    pub state_evictions: IntCounterVec,
    pub detection_state_errors: IntCounterVec,
    pub reconcile_passes: IntCounter,
    pub reconcile_repairs: IntCounterVec,
    kernel_seen: std::sync::Mutex<[u64; Stat::COUNT as usize]>,
}

/// The health of the `/metrics` and `/status` endpoint itself.
pub struct EndpointMetrics {
    /// 1 while the endpoint listens, 0 while its address cannot be bound (retried).
    pub listener_up: IntGauge,
    pub bind_failures: IntCounter,
    /// Connections closed unserved because `metrics.max_connections` were being served.
    pub connections_rejected: IntCounter,
}

impl EndpointMetrics {
    fn register(r: &Registry) -> anyhow::Result<Self> {
        let listener_up = IntGauge::new(
            "aiwatch_metrics_listener_up",
            "1 if the metrics/status endpoint listens, 0 while its address cannot be bound (retried every 2 s).",
        )?;
        r.register(Box::new(listener_up.clone()))?;
        Ok(Self {
            listener_up,
            bind_failures: counter(
                r,
                "aiwatch_metrics_bind_failures_total",
                "Failed attempts to bind the metrics/status endpoint's address (at start and on retry).",
            )?,
            connections_rejected: counter(
                r,
                "aiwatch_metrics_connections_rejected_total",
                "Connections to the metrics/status endpoint closed unserved: metrics.max_connections were open.",
            )?,
        })
    }
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> anyhow::Result<IntCounterVec> {
    let m = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

fn counter(r: &Registry, name: &str, help: &str) -> anyhow::Result<IntCounter> {
    let m = IntCounter::new(name, help)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

fn histogram(r: &Registry, name: &str, help: &str, buckets: Vec<f64>) -> anyhow::Result<Histogram> {
    let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))?;
    r.register(Box::new(h.clone()))?;
    Ok(h)
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> anyhow::Result<IntGaugeVec> {
    let m = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(m.clone()))?;
    Ok(m)
}

impl Metrics {
    pub fn new() -> anyhow::Result<Self> {
        let r = Registry::new();
        let build = gauge_vec(&r, "aiwatch_build_info", "aiwatch version; always 1.", &["version"])?;
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let sessions_active = IntGauge::new("aiwatch_sessions_active", "Assistant sessions now running.")?;
        r.register(Box::new(sessions_active.clone()))?;
        let open_connections =
            IntGauge::new("aiwatch_connections_open", "Outbound connections of sessions now open.")?;
        r.register(Box::new(open_connections.clone()))?;
        Ok(Self {
            fingerprint_reads: counter_vec(
                &r,
                "aiwatch_fingerprint_reads_total",
                "Fingerprint file reads by tracked processes, by assistant, category and reader (assistant or descendant).",
                &["assistant", "category", "reader"],
            )?,
            sessions_started: counter_vec(&r, "aiwatch_sessions_started_total", "Assistant sessions seen, by assistant.", &["assistant"])?,
            sessions_active,
            tracked_processes: gauge_vec(
                &r,
                "aiwatch_tracked_processes",
                "Processes the daemon follows, by state (assistant, descendant).",
                &["state"],
            )?,
            events_received: counter_vec(&r, "aiwatch_events_total", "Kernel events received, by kind.", &["kind"])?,
            decode_errors: counter_vec(
                &r,
                "aiwatch_event_decode_errors_total",
                "Ring-buffer records that could not be decoded, by reason.",
                &["reason"],
            )?,
            unresolved_paths: counter(
                &r,
                "aiwatch_unresolved_paths_total",
                "Relative paths whose directory could not be known (process and fd gone).",
            )?,
            kernel: counter_vec(
                &r,
                "aiwatch_kernel_events_total",
                "Kernel-side counters: emitted events, and events lost or cut (ringbuf_full, ringbuf_shed, tracked_map_full, stash_full, path_truncated, argv_truncated, read_failed), and reads not sent as repeats (compat_repeated, env_repeated).",
                &["outcome"],
            )?,
            probe_attached: gauge_vec(
                &r,
                "aiwatch_probe_attached",
                "1 if the program is attached to the hook, 0 if it failed.",
                &["program", "hook"],
            )?,
            connections: counter_vec(
                &r,
                "aiwatch_connections_total",
                "Outbound connections of sessions, by assistant, protocol, host name source and result.",
                &["assistant", "protocol", "host_source", "result"],
            )?,
            egress_bytes: counter_vec(
                &r,
                "aiwatch_connection_bytes_total",
                "Bytes through closed connections of sessions, by assistant and direction (sent, received).",
                &["assistant", "direction"],
            )?,
            dns_lookups: counter_vec(&r, "aiwatch_dns_lookups_total", "DNS answers received by sessions.", &["assistant"])?,
            open_connections,
            findings: counter_vec(
                &r,
                "aiwatch_findings_total",
                "Findings emitted, by assistant, rule and severity.",
                &["assistant", "rule", "severity"],
            )?,
            findings_suppressed: counter_vec(
                &r,
                "aiwatch_findings_suppressed_total",
                "Findings not emitted, by reason (duplicate within a session, rate_limited).",
                &["reason"],
            )?,
            prompt_requests: counter_vec(
                &r,
                "aiwatch_prompt_requests_total",
                "Requests of sessions to LLM APIs seen in plaintext, by assistant and outcome (scanned, not_json, incomplete, not_llm, session_budget, memory_cap).",
                &["assistant", "outcome"],
            )?,
            prompt_markers: counter_vec(
                &r,
                "aiwatch_prompt_markers_total",
                "Covert-marker code points in sessions' requests to LLM APIs, by assistant and marker kind.",
                &["assistant", "marker"],
            )?,
            egress: counter_vec(
                &r,
                "aiwatch_egress_total",
                "Outbound connections of sessions by assistant and destination class (configured classes, base_url, other).",
                &["assistant", "destination"],
            )?,
            fingerprint_to_egress_seconds: histogram(
                &r,
                "aiwatch_fingerprint_to_egress_seconds",
                "Time from a session's last fingerprint read to its outbound connection.",
                vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0],
            )?,
            detection_latency_seconds: histogram(
                &r,
                "aiwatch_detection_latency_seconds",
                "Time from the kernel event that completed a finding to the finding being emitted.",
                vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0],
            )?,
            env_reads: counter_vec(
                &r,
                "aiwatch_env_reads_total",
                "Watched environment variables read through getenv/secure_getenv, by assistant, category and reader.",
                &["assistant", "category", "reader"],
            )?,
            exec_env_vars: counter_vec(
                &r,
                "aiwatch_exec_env_variables_total",
                "Watched variables present in the environment of session execs, by assistant and category.",
                &["assistant", "category"],
            )?,
            interface_queries: counter_vec(
                &r,
                "aiwatch_interface_queries_total",
                "Network interface enumeration by sessions (netlink dumps, ioctls), by assistant, method and reader.",
                &["assistant", "method", "reader"],
            )?,
            compat_syscalls: counter_vec(
                &r,
                "aiwatch_compat_syscalls_total",
                "Syscalls of sessions through a 32-bit entry (int $0x80) reported, by assistant, ABI and reader.",
                &["assistant", "abi", "reader"],
            )?,
            getenv_attach_seconds: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "aiwatch_getenv_attach_seconds",
                        "Time to attach a session's getenv probes (perf events on every probed libc function).",
                    )
                    .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
                )?;
                r.register(Box::new(h.clone()))?;
                h
            },
            getenv_attach_errors: counter(
                &r,
                "aiwatch_getenv_attach_errors_total",
                "Session processes whose getenv probes could not be attached.",
            )?,
            kernel_map_entries: gauge_vec(
                &r,
                "aiwatch_kernel_map_entries",
                "Entries in the kernel's bounded maps: tracked (processes), sockets, file_args (threads with a path syscall slot).",
                &["map"],
            )?,
            records_produced: counter(
                &r,
                "aiwatch_records_total",
                "Records produced (written, dropped at a full queue, or discarded with output format none).",
            )?,
            records_written: counter(&r, "aiwatch_records_written_total", "Records written by the output sink.")?,
            records_summarized: counter_vec(
                &r,
                "aiwatch_records_summarized_total",
                "Records not sent at output.detail, counted in their session's rollup instead.",
                &["kind"],
            )?,
            sink_dropped: counter(&r, "aiwatch_sink_dropped_total", "Records dropped because the sink queue was full.")?,
            sink_errors: counter(&r, "aiwatch_sink_write_errors_total", "Failed writes to the output sink.")?,
            endpoint: EndpointMetrics::register(&r)?,
            detection_state_errors: counter_vec(
                &r,
                "aiwatch_detection_state_errors_total",
                "Failures to load the signature file (at start-up or SIGHUP; the signatures in force stay) or to read or write the baseline state file, by file (signatures, baseline).",
                &["file"],
            )?,
            state_evictions: counter_vec(
                &r,
                "aiwatch_state_evictions_total",
                "Entries dropped from the daemon's bounded per-process and per-session state, by structure (process_fds, env_names, env_processes, getenv_queue, getenv_coverage, getenv_perf_fds, prompt_histories, prompt_history_keys).",
                &["structure"],
            )?,
            reconcile_passes: counter(
                &r,
                "aiwatch_reconcile_passes_total",
                "Passes comparing the daemon's processes with the kernel's map and /proc (after lost records, and every 30 s).",
            )?,
            reconcile_repairs: {
                let m = counter_vec(
                    &r,
                    "aiwatch_reconcile_repairs_total",
                    "Disagreements a reconciliation pass repaired, by the record whose loss caused them (exit, fork, exec) or kernel_map (an entry stale, missing or wrong).",
                    &["kind"],
                )?;
                for lost in crate::model::procs::reconcile::Lost::ALL {
                    m.with_label_values(&[lost.label()]).inc_by(0);
                }
                m
            },
            kernel_seen: std::sync::Mutex::new([0; Stat::COUNT as usize]),
            registry: r,
        })
    }

    /// Brings the kernel counters up to `totals` (cumulative values summed over CPUs).
    pub fn set_kernel(&self, totals: &[u64; Stat::COUNT as usize]) {
        let Ok(mut seen) = self.kernel_seen.lock() else { return };
        for stat in Stat::ALL {
            let i = stat as usize;
            if totals[i] > seen[i] {
                self.kernel.with_label_values(&[stat.name()]).inc_by(totals[i] - seen[i]);
                seen[i] = totals[i];
            } else {
                // Make the series exist from the start.
                self.kernel.with_label_values(&[stat.name()]).inc_by(0);
            }
        }
    }

    /// Brings `aiwatch_state_evictions_total{structure}` up to `total` (a structure that keeps
    /// its own cumulative count).
    pub fn set_evictions(&self, structure: &str, total: u64) {
        let c = self.state_evictions.with_label_values(&[structure]);
        c.inc_by(total.saturating_sub(c.get()));
    }

    /// Brings `aiwatch_detection_state_errors_total{file}` up to `total`.
    pub fn set_detection_errors(&self, file: &str, total: u64) {
        let c = self.detection_state_errors.with_label_values(&[file]);
        c.inc_by(total.saturating_sub(c.get()));
    }

    /// The handles the getenv probes count with.
    pub fn getenv_attach(&self) -> crate::kernel::uprobes::AttachMetrics {
        crate::kernel::uprobes::AttachMetrics {
            seconds: self.getenv_attach_seconds.clone(),
            errors: self.getenv_attach_errors.clone(),
            evictions: self.state_evictions.clone(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        buf
    }
}
