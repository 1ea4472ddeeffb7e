//! Load benchmarks: throughput at stepped rates with exact accounting (generated = received +
//! counted drops), and a soak at a fixed rate for memory under load, memory growth and
//! detection latency. The load is a tracked generator of watched reads (`bench-driver gen`,
//! running as the configured assistant); the daemon's counters are read from its `/metrics`.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};

use super::{
    daemon::{reap, scrape, start_aiwatch, sum, Stopper},
    median,
    observe::{cpu_seconds, free_addr, log_field, rss_kib},
    Env,
};

/// Rates tried in order; stepping stops after the first step that loses events.
pub const RATES: [u64; 12] = [
    25_000, 50_000, 100_000, 150_000, 200_000, 250_000, 300_000, 400_000, 500_000, 600_000, 800_000,
    1_000_000,
];
/// Length of one throughput step.
pub const STEP_MS: u64 = 2_000;
/// Generator threads: one thread tops out below 200,000 tracked open+close pairs per second.
pub const GEN_THREADS: u64 = 2;
/// Seconds between the soak's RSS samples.
pub const RSS_EVERY: u64 = 5;
/// How often the soak starts a session that raises a finding.
pub const FINDING_EVERY: Duration = Duration::from_millis(1000);

/// How records leave the daemon during a throughput run.
#[derive(Clone, Copy, PartialEq)]
pub enum Output {
    /// `--format none`: events are received and counted, nothing is written.
    Counted,
    /// JSON to a file on disk.
    JsonFile,
}

impl Output {
    pub fn name(self) -> &'static str {
        match self {
            Output::Counted => "counted",
            Output::JsonFile => "json_file",
        }
    }
}

pub struct Step {
    pub rate: u64,
    pub generated: u64,
    pub achieved: f64,
    /// Counted: file events the daemon decoded. JSON: fingerprint records in the file.
    pub received: u64,
    /// Ring buffer full, stash full, undecodable (kernel side and decoding).
    pub kernel_drops: u64,
    /// Records dropped at a full sink queue or failed writes.
    pub sink_drops: u64,
    /// Daemon CPU time (user + system, all threads) per generated event, µs.
    pub daemon_cpu_us: f64,
}

impl Step {
    pub fn exact(&self) -> bool {
        self.generated == self.received + self.kernel_drops + self.sink_drops
    }
    pub fn lossless(&self) -> bool {
        self.exact() && self.kernel_drops + self.sink_drops == 0
    }
}

pub struct Throughput {
    pub output: Output,
    pub steps: Vec<Step>,
    /// Why stepping stopped before the last rate, if it did.
    pub stopped: Option<String>,
}

impl Throughput {
    pub fn best_lossless(&self) -> Option<u64> {
        self.steps.iter().filter(|s| s.lossless()).map(|s| s.rate).max()
    }
}

/// Events the kernel side did not send or the daemon could not decode. `ringbuf_shed` is one:
/// a batched event left out to keep room for process and connection records.
fn kernel_drops(m: &BTreeMap<String, f64>) -> u64 {
    ["ringbuf_full", "ringbuf_shed", "stash_full", "tracked_map_full"]
        .iter()
        .map(|o| sum(m, &format!("aiwatch_kernel_events_total{{outcome=\"{o}\"}}")))
        .sum::<u64>()
        + sum(m, "aiwatch_event_decode_errors_total")
}

fn sink_drops(m: &BTreeMap<String, f64>) -> u64 {
    sum(m, "aiwatch_sink_dropped_total") + sum(m, "aiwatch_sink_write_errors_total")
}

fn file_events(m: &BTreeMap<String, f64>) -> u64 {
    sum(m, "aiwatch_events_total{kind=\"file\"}")
}

/// The generator, fed one `RATE MILLIS THREADS` line per step; killed by PID on drop.
struct Generator {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Generator {
    fn start(tracked: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(tracked)
            .arg("gen")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the generator")?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().context("generator stdout")?);
        // Let the daemon see the exec and start the session before the first step.
        std::thread::sleep(Duration::from_millis(300));
        Ok(Self { child, stdin, stdout })
    }

    /// Runs one step; returns (operations done, nanoseconds taken).
    fn step(&mut self, rate: u64, ms: u64) -> anyhow::Result<(u64, u64)> {
        let stdin = self.stdin.as_mut().context("generator stdin closed")?;
        writeln!(stdin, "{rate} {ms} {GEN_THREADS}")?;
        stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let mut it = line.split_whitespace().map(str::parse::<u64>);
        match (it.next(), it.next()) {
            (Some(Ok(ops)), Some(Ok(ns))) => Ok((ops, ns)),
            _ => bail!("generator answered {line:?}"),
        }
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        // Closing stdin ends it.
        self.stdin.take();
        reap(&mut self.child, Duration::from_secs(5));
    }
}

const FINGERPRINT_READ: &[u8] = b"\"type\":\"fingerprint_read\"";

/// Fingerprint-read records appended to `path` since byte `from`; returns (count, new end).
fn records_since(path: &Path, from: u64) -> anyhow::Result<(u64, u64)> {
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(from))?;
    let mut n = 0;
    let mut end = from;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut line = Vec::new();
    loop {
        line.clear();
        let got = r.read_until(b'\n', &mut line)?;
        // A line still being written is counted next time.
        if got == 0 || line.last() != Some(&b'\n') {
            break;
        }
        end += got as u64;
        if line.windows(FINGERPRINT_READ.len()).any(|w| w == FINGERPRINT_READ) {
            n += 1;
        }
    }
    Ok((n, end))
}

/// A throughput run in progress: the daemon and its metrics address, and (with JSON to a file)
/// how far the output file has been counted.
struct Stepper {
    output: Output,
    daemon: Stopper,
    addr: SocketAddr,
    json: PathBuf,
    offset: u64,
}

impl Stepper {
    /// Generates `rate` for one step, then waits until everything generated is accounted for, or
    /// until it is clear it will not be.
    fn step(&mut self, gen: &mut Generator, rate: u64) -> anyhow::Result<Step> {
        let before = scrape(self.addr)?;
        let cpu_before = cpu_seconds(self.daemon.id());
        let (ops, ns) = gen.step(rate, STEP_MS)?;
        // Kernel counters reach /metrics on the daemon's 1 s tick.
        let settle_end = Instant::now() + Duration::from_secs(6);
        std::thread::sleep(Duration::from_millis(1200));
        // Records are counted as they are flushed: what one pass counted stays counted.
        let mut in_file = 0u64;
        loop {
            let after = scrape(self.addr)?;
            let d = |f: fn(&BTreeMap<String, f64>) -> u64| f(&after).saturating_sub(f(&before));
            if self.output == Output::JsonFile {
                let (n, end) = records_since(&self.json, self.offset)?;
                self.offset = end;
                in_file += n;
            }
            let step = Step {
                rate,
                generated: ops,
                achieved: ops as f64 * 1e9 / ns.max(1) as f64,
                received: match self.output {
                    Output::Counted => d(file_events),
                    Output::JsonFile => in_file,
                },
                kernel_drops: d(kernel_drops),
                sink_drops: if self.output == Output::JsonFile { d(sink_drops) } else { 0 },
                daemon_cpu_us: (cpu_seconds(self.daemon.id()) - cpu_before) * 1e6 / ops.max(1) as f64,
            };
            if step.exact() || Instant::now() > settle_end {
                return Ok(step);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// Steps through [`RATES`] until a step loses events or the generator cannot keep up.
pub fn throughput(env: &Env, output: Output) -> anyhow::Result<Throughput> {
    let addr = free_addr().context("finding a free loopback port")?;
    let listen = addr.to_string();
    let json = env.work.join("throughput.json");
    let _ = std::fs::remove_file(&json);
    let json_s = json.to_string_lossy().into_owned();
    let mut args = vec!["--metrics-listen", &listen];
    match output {
        Output::Counted => args.extend(["--format", "none"]),
        // Every record: what is measured is the cost of writing each one (the default, summary,
        // would write only each artifact's first read).
        Output::JsonFile => args.extend(["--format", "json", "--detail", "all", "--output", &json_s]),
    }
    let (daemon, _) = start_aiwatch(&env.bin, &env.cfg, &env.work.join("throughput.log"), &args, None)?;
    let mut gen = Generator::start(&env.tracked)?;
    // Skip the session-start record.
    let offset = if output == Output::JsonFile { records_since(&json, 0)?.1 } else { 0 };
    let mut run = Stepper { output, daemon, addr, json: json.clone(), offset };
    let mut steps = Vec::new();
    let mut stopped = None;
    for rate in RATES {
        let step = run.step(&mut gen, rate)?;
        eprintln!(
            "xtask: bench: throughput {}: {rate}/s: generated {} received {} kernel drops {} sink drops {}",
            output.name(),
            step.generated,
            step.received,
            step.kernel_drops,
            step.sink_drops
        );
        let (lossy, slow) = (!step.lossless(), step.achieved < 0.9 * rate as f64);
        steps.push(step);
        if lossy {
            stopped = Some(format!("events lost at {rate}/s"));
            break;
        }
        if slow {
            stopped = Some(format!("the generator could not reach {rate}/s"));
            break;
        }
    }
    drop(gen);
    drop(run);
    let _ = std::fs::remove_file(&json);
    Ok(Throughput { output, steps, stopped })
}

pub struct Soak {
    pub seconds: u64,
    pub rate: u64,
    /// (seconds since the load started, RSS KiB).
    pub rss: Vec<(u64, u64)>,
    pub generated: u64,
    pub received: u64,
    pub drops: u64,
    /// Detection latencies (µs) of the findings raised during the soak, from the daemon's log.
    pub latencies_us: Vec<u64>,
    pub sessions: u64,
    /// Findings the daemon counted (aiwatch_findings_total) during the soak.
    pub findings: u64,
}

impl Soak {
    /// RSS when the load had run for `t` seconds (the first sample at or after it).
    pub fn rss_at(&self, t: u64) -> Option<u64> {
        self.rss.iter().find(|(s, _)| *s >= t).map(|(_, r)| *r)
    }
    pub fn rss_end(&self) -> Option<u64> {
        self.rss.last().map(|(_, r)| *r)
    }
    /// RSS growth after the warm-up (None if the soak was shorter).
    pub fn growth_kib(&self) -> Option<i64> {
        Some(self.rss_end()? as i64 - self.rss_at(super::summary::WARMUP_S)? as i64)
    }
    pub fn rss_max(&self) -> u64 {
        self.rss.iter().map(|(_, r)| *r).max().unwrap_or(0)
    }
    pub fn rss_median(&self) -> f64 {
        median(&mut self.rss.iter().map(|(_, r)| *r as f64).collect::<Vec<_>>())
    }
    pub fn percentile_us(&self, p: f64) -> Option<u64> {
        let mut v = self.latencies_us.clone();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
        Some(v[i.clamp(1, v.len()) - 1])
    }
}

/// A loopback stand-in for an LLM API: answers every request with an empty 200.
struct Api {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Api {
    fn start() -> anyhow::Result<Self> {
        let l = TcpListener::bind("127.0.0.1:0")?;
        l.set_nonblocking(true)?;
        let addr = l.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut c, _)) => {
                        let _ = c.set_nonblocking(false);
                        let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                        let _ = c.read(&mut [0u8; 4096]);
                        let _ =
                            c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Self { addr, stop, thread: Some(thread) })
    }

    /// Runs one session (`driver finding`) that reads the timezone and the host's identity and
    /// calls this API as the base URL it was given (`ANTHROPIC_BASE_URL`): what the built-in
    /// relay rule reports.
    fn finding(&self, driver: &Path) -> anyhow::Result<()> {
        Command::new(driver)
            .args(["finding", "gateway.bench.test", &self.addr.port().to_string()])
            .env("ANTHROPIC_BASE_URL", format!("http://127.0.0.1:{}", self.addr.port()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("starting a finding session")?;
        Ok(())
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Until `load` finishes: `pid`'s RSS every [`RSS_EVERY`] s, and a finding session every
/// [`FINDING_EVERY`]. Returns the (seconds, KiB) samples, one more at the end, and how many
/// sessions ran.
fn sample_during<T>(
    load: &std::thread::JoinHandle<T>,
    pid: u32,
    mut session: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(Vec<(u64, u64)>, u64)> {
    let started = Instant::now();
    let mut rss = Vec::new();
    let mut sessions = 0u64;
    let mut next_sample = 0u64;
    while !load.is_finished() {
        let t = started.elapsed().as_secs();
        if t >= next_sample {
            rss.push((t, rss_kib(pid)));
            next_sample += RSS_EVERY;
        }
        session()?;
        sessions += 1;
        std::thread::sleep(FINDING_EVERY);
    }
    rss.push((started.elapsed().as_secs(), rss_kib(pid)));
    Ok((rss, sessions))
}

/// Detection latencies (µs) of the findings in the soak's log, but the calibration session's.
fn latencies(log: &Path) -> Vec<u64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("finding") && l.contains("latency_us="))
        .filter_map(|l| log_field(l, "latency_us"))
        // The first is the calibration session's, before the load started.
        .skip(1)
        .collect()
}

/// `rate` tracked watched reads per second for `seconds`, JSON records to /dev/null; RSS sampled
/// while finding sessions run, so the default rule fires while the load runs and its detection
/// latency is measured.
pub fn soak(env: &Env, rate: u64, seconds: u64) -> anyhow::Result<Soak> {
    let addr = free_addr().context("finding a free loopback port")?;
    let listen = addr.to_string();
    let log = env.work.join("soak.log");
    let args = ["--format", "json", "--detail", "all", "--output", "/dev/null", "--metrics-listen", &listen];
    let (daemon, _) = start_aiwatch(&env.bin, &env.cfg, &log, &args, None)?;
    let api = Api::start()?;
    // File events of one finding session (loader, reads, stats), to tell them from the load.
    let calibrate = scrape(addr)?;
    api.finding(&env.tracked)?;
    std::thread::sleep(Duration::from_millis(500));
    let per_session = file_events(&scrape(addr)?).saturating_sub(file_events(&calibrate));
    let mut gen = Generator::start(&env.tracked)?;
    let before = scrape(addr)?;
    // The generator blocks for the whole soak: run it on a thread, sample from this one.
    let load = std::thread::spawn(move || {
        let r = gen.step(rate, seconds * 1000);
        (gen, r)
    });
    let (rss, sessions) = sample_during(&load, daemon.id(), || api.finding(&env.tracked))?;
    let (gen, result) = load.join().map_err(|_| anyhow::anyhow!("generator thread panicked"))?;
    let (generated, _) = result?;
    drop(gen);
    std::thread::sleep(Duration::from_millis(1500));
    let after = scrape(addr)?;
    drop(api);
    drop(daemon);
    // The finding sessions' own file events are not part of the generated load.
    let received =
        file_events(&after).saturating_sub(file_events(&before)).saturating_sub(per_session * sessions);
    Ok(Soak {
        seconds,
        rate,
        rss,
        generated,
        received,
        drops: kernel_drops(&after).saturating_sub(kernel_drops(&before)),
        latencies_us: latencies(&log),
        sessions,
        findings: sum(&after, "aiwatch_findings_total")
            .saturating_sub(sum(&before, "aiwatch_findings_total")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soak(latencies_us: Vec<u64>, rss: Vec<(u64, u64)>) -> Soak {
        Soak {
            seconds: 600,
            rate: 50_000,
            rss,
            generated: 0,
            received: 0,
            drops: 0,
            latencies_us,
            sessions: 0,
            findings: 0,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let s = soak((1..=100).collect(), Vec::new());
        assert_eq!(s.percentile_us(50.0), Some(50));
        assert_eq!(s.percentile_us(99.0), Some(99));
        assert_eq!(s.percentile_us(100.0), Some(100));
        assert_eq!(soak(vec![7], Vec::new()).percentile_us(99.0), Some(7));
        assert_eq!(soak(Vec::new(), Vec::new()).percentile_us(50.0), None);
    }

    #[test]
    fn rss_samples_by_time() {
        let s = soak(Vec::new(), vec![(0, 100), (55, 200), (60, 300), (65, 250), (600, 310)]);
        assert_eq!(s.rss_at(60), Some(300));
        assert_eq!(s.rss_at(58), Some(300));
        assert_eq!(s.rss_end(), Some(310));
        assert_eq!(s.rss_max(), 310);
        assert_eq!(s.rss_at(700), None);
    }

    #[test]
    fn a_step_is_lossless_only_when_exact_and_without_drops() {
        let step = |received, kernel_drops, sink_drops| Step {
            rate: 1,
            generated: 100,
            achieved: 1.0,
            received,
            kernel_drops,
            sink_drops,
            daemon_cpu_us: 0.0,
        };
        assert!(step(100, 0, 0).lossless());
        assert!(step(90, 6, 4).exact() && !step(90, 6, 4).lossless());
        assert!(!step(99, 0, 0).exact() && !step(99, 0, 0).lossless());
    }

    #[test]
    fn every_event_the_kernel_left_out_or_the_daemon_could_not_decode_is_a_drop() {
        let m: BTreeMap<String, f64> = [
            ("aiwatch_kernel_events_total{outcome=\"emitted\"}", 1000.0),
            ("aiwatch_kernel_events_total{outcome=\"ringbuf_full\"}", 1.0),
            ("aiwatch_kernel_events_total{outcome=\"ringbuf_shed\"}", 20.0),
            ("aiwatch_kernel_events_total{outcome=\"stash_full\"}", 300.0),
            ("aiwatch_kernel_events_total{outcome=\"tracked_map_full\"}", 4000.0),
            ("aiwatch_kernel_events_total{outcome=\"path_truncated\"}", 7.0),
            ("aiwatch_event_decode_errors_total{reason=\"short\"}", 50000.0),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(kernel_drops(&m), 54321);
    }

    #[test]
    fn records_are_counted_once_and_only_whole_lines() {
        let path = std::env::temp_dir().join(format!("aiwatch-records-{}", std::process::id()));
        let read = r#"{"type":"fingerprint_read","path":"/etc/localtime"}"#;
        std::fs::write(
            &path,
            format!("{{\"type\":\"session_start\"}}\n{read}\n{read}\n{{\"type\":\"finding"),
        )
        .unwrap();
        let (n, end) = records_since(&path, 0).unwrap();
        assert_eq!(n, 2);
        // The cut line is left for the next pass.
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        writeln!(f, "\"}}\n{read}").unwrap();
        assert_eq!(records_since(&path, end).unwrap().0, 1);
        std::fs::remove_file(&path).unwrap();
    }
}
