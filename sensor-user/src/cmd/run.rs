//! `aiwatch run`: load, attach, scan, then read the kernel's events until SIGTERM or SIGINT.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::maps::{MapData, RingBuf};
use aya_log::EbpfLogger;
use sensor_common::Stat;
use tokio::{
    io::{unix::AsyncFd, Interest},
    signal::unix::{signal, SignalKind},
};

use crate::{
    config::{content::ContentMode, Config, GetenvProbes},
    detect::classify::assistant::AssistantClassifier,
    kernel::{
        loader::{self, Mode, ProbeStatus, Usage},
        maps::{self, KernelMaps},
        tracker::Kernel,
        uprobes::EnvProbes,
    },
    model::procs::procfs::ProcFs,
    output::{metrics::Metrics, server, sinks},
    pipeline::Pipeline,
};

/// What start-up leaves for the event loop.
pub struct Started {
    cfg: Config,
    config_path: Option<std::path::PathBuf>,
    started: Instant,
    metrics: Arc<Metrics>,
    /// The start-up bind of the metrics endpoint (None: disabled; Err: failed, retried later).
    listener: Option<Result<std::net::TcpListener, String>>,
    obj: loader::Object,
    logger: Option<EbpfLogger<&'static dyn log::Log>>,
    links: loader::Links,
    kernel: Kernel,
    ringbuf: RingBuf<MapData>,
}

/// Everything that needs privileges, on the process's only thread: bind, load, attach, define
/// the getenv probes; then drop the capabilities not needed at run time. Capabilities are per
/// thread, so no other thread may exist yet (the async runtime is built after this returns).
pub fn start(cfg: Config, config_path: Option<std::path::PathBuf>) -> anyhow::Result<Started> {
    let started = Instant::now();
    let missing = crate::sys::privileges::missing_for_startup();
    if !missing.is_empty() {
        tracing::warn!(missing = ?missing, "running without some start-up capabilities; see docs/deployment.md");
    }
    let metrics = Arc::new(Metrics::new()?);
    // Bind while privileged (a port below 1024 needs it); a failure costs the endpoint, not the
    // sensor: it is logged and counted, and the runtime retries.
    let listener = cfg.metrics.enabled.then(|| server::bind_at_start(cfg.metrics.listen, &metrics));

    let classifier = AssistantClassifier::new(&cfg.assistants, &cfg.runtimes);
    let mut obj = loader::open(&cfg)?;
    let logger = match EbpfLogger::init(&mut obj.ebpf) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::warn!(error = %e, "kernel-side diagnostics unavailable");
            None
        }
    };
    maps::set_candidates(&mut obj.ebpf, &classifier.candidate_names())?;
    let loaded = loader::load_programs(&mut obj, Mode::Run);
    for job in &loaded.jobs {
        tracing::info!(job = job.job, program = %job.program.unwrap_or("none"), how = %job.how, "kernel-dependent path");
    }
    let (mut statuses, links) = (loaded.statuses, loaded.links);
    let (env, env_statuses) = attach_getenv(&mut obj, &cfg, &metrics)?;
    statuses.extend(env_statuses);
    report_statuses(&statuses, &metrics)?;
    let attached = statuses.iter().filter(|s| s.ok).count();
    tracing::info!(attached, elapsed_ms = started.elapsed().as_millis() as u64, "probes attached");
    let (maps, ringbuf) = KernelMaps::take(&mut obj.ebpf)?;
    drop_privileges(cfg.variables.getenv_probes);
    // Loading parsed the kernel's BTF and the object (tens of MiB, freed now): give the freed
    // heap back, or it stays in the daemon's RSS for its whole life.
    // SAFETY: malloc_trim has no preconditions.
    unsafe { libc::malloc_trim(0) };
    Ok(Started {
        cfg,
        config_path,
        started,
        metrics,
        listener,
        obj,
        logger,
        links,
        kernel: Kernel { maps, env },
        ringbuf,
    })
}

/// Defines the getenv probes; when they cannot be had, variable reads are lost and nothing
/// else: the failure is reported and the sensor goes on without them.
fn attach_getenv(
    obj: &mut loader::Object,
    cfg: &Config,
    metrics: &Metrics,
) -> anyhow::Result<(EnvProbes, Vec<ProbeStatus>)> {
    let v = &cfg.variables;
    let tls = cfg.content.markers == ContentMode::On;
    match EnvProbes::setup(&mut obj.ebpf, v.getenv_probes, &v.libc, tls, obj.tracefs, metrics.getenv_attach())
    {
        Ok(found) => Ok(found),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "getenv probes unavailable");
            let failed = ProbeStatus::failed("env_enter_getenv", "uprobe/libc:getenv".into(), &e);
            let (env, _) = EnvProbes::setup(
                &mut obj.ebpf,
                GetenvProbes::Off,
                &[],
                false,
                obj.tracefs,
                metrics.getenv_attach(),
            )?;
            Ok((env, vec![failed]))
        }
    }
}

/// Publishes each probe's state and refuses to run when a required one failed.
fn report_statuses(statuses: &[ProbeStatus], metrics: &Metrics) -> anyhow::Result<()> {
    let mut failed_required = Vec::new();
    for s in statuses {
        metrics.probe_attached.with_label_values(&[s.program, &s.hook]).set(i64::from(s.ok));
        if let Some(e) = &s.error {
            tracing::warn!(program = s.program, hook = %s.hook, error = %e, "probe not attached");
            if s.usage == Usage::Required {
                failed_required.push(format!("{} on {}: {e}", s.program, s.hook));
            }
        }
    }
    if !failed_required.is_empty() {
        anyhow::bail!("required probes failed to attach:\n  {}", failed_required.join("\n  "));
    }
    Ok(())
}

/// Drops the capabilities not needed at run time. Per-session getenv probes open perf events
/// as sessions start: where the kernel allows that only with CAP_SYS_ADMIN, keep it (and say so).
fn drop_privileges(getenv_probes: GetenvProbes) {
    let mut extra = Vec::new();
    if getenv_probes == GetenvProbes::Session && crate::sys::privileges::perf_paranoid_above_2() {
        extra.push(caps::Capability::CAP_SYS_ADMIN);
        tracing::warn!(
            "kernel.perf_event_paranoid is above 2: keeping CAP_SYS_ADMIN for per-session getenv probes \
             (sysctl kernel.perf_event_paranoid=2 lets aiwatch run without it)"
        );
    }
    match crate::sys::privileges::drop_to_runtime(&extra) {
        Ok(kept) => tracing::info!(kept = ?kept, "dropped capabilities not needed at run time"),
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "could not drop capabilities"),
    }
}

/// The daemon's threads and event loop, until SIGTERM or SIGINT.
pub async fn run(started: Started) -> anyhow::Result<()> {
    let Started { cfg, config_path, started, metrics, listener, obj, logger, links, kernel, ringbuf } =
        started;
    let mut maps = kernel;
    let status = crate::output::status::Shared::default();
    let server = listener.map(|first| {
        let m = &cfg.metrics;
        server::serve(
            server::Endpoint::new(m.listen, m.max_connections.0 as usize, metrics.clone(), status.clone()),
            first,
        )
    });
    let mut logger = logger.map(|l| watch(l).context("watching the kernel log buffer")).transpose()?;
    maps.env.start_worker()?;
    let mut events = watch(ringbuf).context("watching the event ring buffer")?;
    let (sink, writer) = sinks::spawn(&cfg.output, metrics.clone())?;
    let sink_control = sink.clone();
    let (host, prefix) = host_identity(&cfg);
    let mut pipeline = Pipeline::new(&cfg, metrics.clone(), sink, host, &prefix, Box::new(ProcFs));
    // A bad signature file at start-up stops the daemon, as a bad config does.
    let signatures = pipeline.load_signatures(&cfg).map_err(|e| anyhow::anyhow!(e))?;
    if cfg.detection.signatures.is_some() {
        tracing::info!(signatures, "signature file loaded");
    }
    initial_scan(&mut pipeline, &mut maps, started);

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut batch = tokio::time::interval(Duration::from_millis(sensor_common::BATCH_MS));
    batch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The drain one coalescing window after a wake-up: urgent events the kernel submitted
    // without a wake-up, because their CPU had just forced one, are read then.
    let linger_for = Duration::from_micros(sensor_common::WAKE_COALESCE_US);
    let linger = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(linger);
    let mut lingering = false;
    loop {
        // Biased: signals and the tick go first whenever they are due; the event branches,
        // which a flood keeps ready, get what is left, one bounded batch at a time.
        tokio::select! {
            biased;
            _ = term.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: stopping"); break; }
            _ = hup.recv() => {
                sink_control.reopen();
                if let Some(path) = &config_path {
                    reload(path, &cfg, &mut pipeline, &mut maps);
                }
            }
            _ = tick.tick() => each_second(&metrics, &mut pipeline, &mut maps, &status),
            guard = async { logger.as_mut().expect("guarded").readable_mut().await }, if logger.is_some() => {
                if let Ok(mut guard) = guard {
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            }
            guard = events.readable_mut() => {
                let full = on_readable(guard.context("waiting on the ring buffer")?, &mut pipeline, &mut maps);
                linger.as_mut().reset(tokio::time::Instant::now() + linger_for);
                lingering = true;
                if full {
                    tokio::task::yield_now().await;
                }
            }
            _ = &mut linger, if lingering => {
                lingering = false;
                if drain(events.get_mut(), &mut pipeline, &mut maps, Batch::wake_up()) == DRAIN_BATCH {
                    tokio::task::yield_now().await;
                }
            }
            // File events and variable reads come without a wake-up (sensor_common::BATCH_MS).
            _ = batch.tick() => {
                if drain(events.get_mut(), &mut pipeline, &mut maps, Batch::wake_up()) == DRAIN_BATCH {
                    tokio::task::yield_now().await;
                }
            }
        }
        // What this turn rendered goes to the writer now, not when a batch fills.
        sink_control.hand_over();
    }

    let stopping = Instant::now();
    let [detached, drained] =
        last_records(obj.ebpf, links, events.get_mut(), &mut pipeline, &mut maps, &metrics);
    drop(maps);
    let probes = stopping.elapsed();
    // Sessions still running have counted records no rollup has shown yet.
    pipeline.flush();
    drop(pipeline);
    drop(sink_control);
    let _ = writer.await;
    if let Some(s) = server {
        // Closed now: a keeper shares the fd table, and would hold the port for seconds.
        s.abort();
        let _ = s.await;
    }
    let ms = |d: Duration| d.as_millis() as u64;
    let (detached_ms, drained_ms, probes_removed_ms) = (ms(detached), ms(drained), ms(probes));
    tracing::info!(detached_ms, drained_ms, probes_removed_ms, total_ms = ms(stopping.elapsed()), "stopped");
    Ok(())
}

/// A wake-up of the ring buffer: one batch; true if it was full (more is waiting: the fd stays
/// ready, as the ring may not wake the reactor again for it).
fn on_readable(
    mut guard: tokio::io::unix::AsyncFdReadyMutGuard<'_, RingBuf<MapData>>,
    pipeline: &mut Pipeline,
    maps: &mut Kernel,
) -> bool {
    let full = drain(guard.get_inner_mut(), pipeline, maps, Batch::wake_up()) == DRAIN_BATCH;
    if !full {
        guard.clear_ready();
    }
    full
}

/// Hands the hooks to a keeper ([`crate::sys::keeper`]: their teardown takes seconds) or
/// detaches them, then handles what the kernel already sent, for 0.5 s at most (a flood must not
/// keep a stopping daemon alive). Returns the time to each step.
fn last_records(
    ebpf: aya::Ebpf,
    links: loader::Links,
    rb: &mut RingBuf<MapData>,
    pipeline: &mut Pipeline,
    maps: &mut Kernel,
    metrics: &Metrics,
) -> [Duration; 2] {
    let start = Instant::now();
    if crate::sys::keeper::start() {
        std::mem::forget((ebpf, links));
    } else {
        loader::detach_all(ebpf, links);
    }
    let detached = start.elapsed();
    drain(
        rb,
        pipeline,
        maps,
        Batch { records: usize::MAX, until: Instant::now() + Duration::from_millis(500) },
    );
    metrics.set_kernel(&maps.maps.stats());
    [detached, start.elapsed()]
}

/// The host name records carry, and the boot-id prefix that makes session ids unique per boot.
fn host_identity(cfg: &Config) -> (String, String) {
    let host = if cfg.sensor.host_name.is_empty() {
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into())
    } else {
        cfg.sensor.host_name.clone()
    };
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let prefix: String = boot_id.chars().filter(char::is_ascii_hexdigit).take(8).collect();
    (host, prefix)
}

/// Scan after attaching, so a process forked meanwhile inherits from its tracked parent; a
/// second pass picks up children forked between reading /proc and writing the map.
fn initial_scan(pipeline: &mut Pipeline, maps: &mut Kernel, started: Instant) {
    let own = [std::process::id()];
    let scan_started = Instant::now();
    let cpu_started = thread_cpu_us();
    let found = pipeline.scan(maps, &own);
    let scan_us = scan_started.elapsed().as_micros() as u64;
    // The CPU the pass took, apart from the wait for a CPU on a busy host that its wall time
    // includes.
    let scan_cpu_us = thread_cpu_us().saturating_sub(cpu_started);
    let found = found + pipeline.scan(maps, &own);
    let processes = crate::model::procs::procfs::ProcSource::pids(&ProcFs).len();
    tracing::info!(
        found,
        processes,
        scan_us,
        scan_cpu_us,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "start-up scan done; watching"
    );
}

/// CPU time of the calling thread, µs (0 if the clock cannot be read).
fn thread_cpu_us() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .map_or(0, |t| Duration::from(t).as_micros() as u64)
}

/// The 1 s housekeeping: kernel counters and map sizes, reconciliation when due, expiries,
/// gauges, the `/status` view.
fn each_second(
    metrics: &Metrics,
    pipeline: &mut Pipeline,
    maps: &mut Kernel,
    status: &crate::output::status::Shared,
) {
    let stats = maps.maps.stats();
    metrics.set_kernel(&stats);
    let losses = stats[Stat::RingbufFull as usize] + stats[Stat::TrackedFull as usize];
    pipeline.reconcile(maps, losses, &[std::process::id()]);
    let (tracked, socks) = maps.maps.occupancy();
    metrics.kernel_map_entries.with_label_values(&["tracked"]).set(tracked as i64);
    metrics.kernel_map_entries.with_label_values(&["sockets"]).set(socks as i64);
    metrics.kernel_map_entries.with_label_values(&["file_args"]).set(maps.maps.thread_slots() as i64);
    pipeline.tick();
    pipeline.update_gauges();
    if let Ok(mut s) = status.lock() {
        *s = pipeline.status();
    }
}

/// Records handled per wake-up of the event loop: past this, or past [`DRAIN_TIME`], the loop
/// runs its timers and signals before reading on, so a process flooding the ring cannot starve
/// the 1 s tick (loss counters, `/status`), SIGHUP or SIGTERM.
const DRAIN_BATCH: usize = 4096;
const DRAIN_TIME: Duration = Duration::from_millis(50);

/// How much one drain may handle.
struct Batch {
    records: usize,
    until: Instant,
}

impl Batch {
    fn wake_up() -> Self {
        Self { records: DRAIN_BATCH, until: Instant::now() + DRAIN_TIME }
    }
}

/// Handles the records waiting in the ring buffer, within `batch`; returns how many, or
/// [`DRAIN_BATCH`] if it stopped at the time limit with more waiting.
fn drain(rb: &mut RingBuf<MapData>, pipeline: &mut Pipeline, maps: &mut Kernel, batch: Batch) -> usize {
    let mut n = 0;
    while n < batch.records {
        if n % 64 == 0 && Instant::now() >= batch.until {
            return DRAIN_BATCH;
        }
        let Some(item) = rb.next() else { break };
        pipeline.handle(&item, maps);
        n += 1;
    }
    n
}

/// Registers a ring buffer's fd with the reactor for readability.
fn watch<T: std::os::fd::AsRawFd>(inner: T) -> std::io::Result<AsyncFd<T>> {
    // SAFETY: `inner` owns its map fd and keeps it open, unchanged, until it is dropped with
    // the AsyncFd.
    unsafe { AsyncFd::register_with_interest(inner, Interest::READABLE) }.map_err(std::io::Error::from)
}

/// SIGHUP: a valid file is applied to everything that can change while running; an invalid one
/// is logged and the configuration in force stays.
fn reload(path: &std::path::Path, running: &Config, pipeline: &mut Pipeline, kernel: &mut Kernel) {
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "config reload failed; keeping the configuration in force");
            return;
        }
    };
    if let Err(e) = kernel
        .maps
        .replace_candidates(&AssistantClassifier::new(&new.assistants, &new.runtimes).candidate_names())
    {
        tracing::error!(error = %format!("{e:#}"), "config reload failed; keeping the configuration in force");
        return;
    }
    pipeline.reconfigure(&new);
    match pipeline.load_signatures(&new) {
        Ok(n) if new.detection.signatures.is_some() => {
            tracing::info!(signatures = n, "signature file reloaded")
        }
        Ok(_) => {}
        Err(e) => {
            tracing::error!(error = %e, "signature file reload failed; keeping the signatures in force")
        }
    }
    let needs_restart: Vec<&str> = [
        ("sensor", running.sensor != new.sensor),
        ("output", running.output != new.output),
        ("metrics", running.metrics != new.metrics),
        ("log", running.log != new.log),
        ("variables.getenv_probes", running.variables.getenv_probes != new.variables.getenv_probes),
        ("detection.state_dir", running.detection.state_dir != new.detection.state_dir),
    ]
    .into_iter()
    .filter_map(|(k, changed)| changed.then_some(k))
    .collect();
    if !needs_restart.is_empty() {
        tracing::warn!(sections = ?needs_restart, "these settings changed but apply only after a restart");
    }
    tracing::info!(path = %path.display(), "config reloaded");
}
