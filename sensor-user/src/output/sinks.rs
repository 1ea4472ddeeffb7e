//! Where records go: stdout or a file (appending, reopened on SIGHUP for logrotate), as native
//! JSON, OCSF JSON, or human lines. The event loop never waits for a sink: it renders each record
//! into a batch of lines, and whole batches (64 KiB, or what one turn of the event loop made)
//! pass to a writer thread. At most `output.queue` records wait to be written; more are dropped
//! (and counted) instead of blocking the reader of the kernel ring buffer. Format `none` writes
//! nothing: records are only counted, for hosts that export metrics alone.
//!
//! Rendered where they are built: a record built on the event thread and freed on the writer's
//! took glibc's arena lock at every allocation of the event thread (a profile at 120,000 records/s
//! had 40 % of the daemon's samples in `malloc`, its lock and the writer's futex waits).

use std::{
    io::Write,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc, Mutex,
    },
};

use anyhow::Context as _;
use tokio::task::JoinHandle;

use crate::{
    config::{OutputConfig, OutputFormat, OutputSchema},
    output::{
        metrics::Metrics,
        report::Record,
        syslog::{SyslogHandle, SyslogTask},
    },
};

/// A batch is handed to the writer once it holds this many bytes.
const BATCH_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct SinkHandle {
    /// None with format `none`.
    lines: Option<Arc<Lines>>,
    /// `[output.syslog]`, whatever the format.
    syslog: Option<SyslogHandle>,
    metrics: Arc<Metrics>,
    reopen: Arc<AtomicBool>,
}

/// Lines rendered and not yet handed to the writer, and the records not yet written.
struct Lines {
    format: OutputFormat,
    schema: OutputSchema,
    batch: Mutex<Batch>,
    tx: mpsc::Sender<Batch>,
    /// Records rendered and not yet written (this batch's and those handed over).
    waiting: Arc<AtomicU64>,
    limit: u64,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Batch {
    bytes: Vec<u8>,
    records: u64,
}

impl Lines {
    fn add(&self, rec: &Record) {
        if self.waiting.load(Ordering::Relaxed) >= self.limit {
            self.metrics.sink_dropped.inc();
            return;
        }
        let mut b = self.batch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let start = b.bytes.len();
        match write_line(&mut b.bytes, rec, self.format, self.schema) {
            Ok(()) => {
                b.records += 1;
                self.waiting.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                b.bytes.truncate(start);
                tracing::error!(error = %e, "cannot serialize record");
            }
        }
        if b.bytes.len() >= BATCH_BYTES {
            self.send(&mut b);
        }
    }

    fn hand_over(&self) {
        let mut b = self.batch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if b.records > 0 {
            self.send(&mut b);
        }
    }

    fn send(&self, b: &mut Batch) {
        let full = std::mem::replace(b, Batch { bytes: Vec::with_capacity(BATCH_BYTES + 4096), records: 0 });
        let records = full.records;
        if self.tx.send(full).is_err() {
            // The writer is gone (it only ends when every handle is dropped).
            self.waiting.fetch_sub(records, Ordering::Relaxed);
            self.metrics.sink_errors.inc_by(records);
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        self.hand_over();
    }
}

impl SinkHandle {
    /// Counts a record and renders it for the writer; never blocks. With format `none` the
    /// record is not built.
    pub fn emit(&self, record: impl FnOnce() -> Record) {
        self.metrics.records_produced.inc();
        if self.lines.is_none() && self.syslog.is_none() {
            return;
        }
        let rec = record();
        if let Some(lines) = &self.lines {
            lines.add(&rec);
        }
        if let Some(s) = &self.syslog {
            s.send(Arc::new(rec));
        }
    }

    /// Hands the lines rendered so far to the writer: once per turn of the event loop, so no
    /// record waits for a batch to fill.
    pub fn hand_over(&self) {
        if let Some(lines) = &self.lines {
            lines.hand_over();
        }
    }

    /// Asks the writer to reopen its file before the next write (SIGHUP).
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Relaxed);
    }
}

/// Resolves `auto` against whether the output is a terminal.
pub fn effective_format(f: OutputFormat, to_file: bool) -> OutputFormat {
    match f {
        OutputFormat::Auto if !to_file && std::io::IsTerminal::is_terminal(&std::io::stdout()) => {
            OutputFormat::Human
        }
        OutputFormat::Auto => OutputFormat::Json,
        other => other,
    }
}

/// One record as a line.
pub fn render(rec: &Record, format: OutputFormat, schema: OutputSchema) -> serde_json::Result<String> {
    match (format, schema) {
        (OutputFormat::Human | OutputFormat::None, _) => Ok(rec.human()),
        (_, OutputSchema::Ocsf) => serde_json::to_string(&crate::output::ocsf::to_ocsf(rec)),
        (_, OutputSchema::Native) => serde_json::to_string(rec),
    }
}

/// One record as a line, newline included, appended to `buf`: JSON is serialized straight into
/// it, without the intermediate `String` of [`render`] (a third of the writer's time per record
/// at 100,000 records/s). On an error, `buf` may hold part of the line.
fn write_line(
    buf: &mut Vec<u8>,
    rec: &Record,
    format: OutputFormat,
    schema: OutputSchema,
) -> serde_json::Result<()> {
    match (format, schema) {
        (OutputFormat::Human | OutputFormat::None, _) => buf.extend_from_slice(rec.human().as_bytes()),
        (_, OutputSchema::Ocsf) => serde_json::to_writer(&mut *buf, &crate::output::ocsf::to_ocsf(rec))?,
        (_, OutputSchema::Native) => serde_json::to_writer(&mut *buf, rec)?,
    }
    buf.push(b'\n');
    Ok(())
}

fn open(path: &PathBuf) -> std::io::Result<Box<dyn Write + Send>> {
    let f = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    Ok(Box::new(std::io::BufWriter::with_capacity(64 * 1024, f)))
}

/// Starts the writers (and the syslog output, if configured). Dropping every [`SinkHandle`] ends
/// the returned task after what was queued is written and flushed (and sent, or counted, by the
/// syslog output). A file that cannot be opened, or a syslog CA file, fails start-up.
pub fn spawn(cfg: &OutputConfig, metrics: Arc<Metrics>) -> anyhow::Result<(SinkHandle, JoinHandle<()>)> {
    let (syslog, syslog_task) = match &cfg.syslog {
        Some(s) => {
            let (h, t) =
                crate::output::syslog::spawn(s, &metrics.registry).context("starting the syslog output")?;
            (Some(h), Some(t))
        }
        None => (None, None),
    };
    let (handle, task) = spawn_writer(cfg, metrics, syslog)?;
    Ok((handle, both(task, syslog_task)))
}

/// One task that ends when the writer and the syslog output have.
fn both(writer: JoinHandle<()>, syslog: Option<SyslogTask>) -> JoinHandle<()> {
    match syslog {
        None => writer,
        Some(s) => tokio::task::spawn(async move {
            let _ = writer.await;
            s.finish().await;
        }),
    }
}

fn spawn_writer(
    cfg: &OutputConfig,
    metrics: Arc<Metrics>,
    syslog: Option<SyslogHandle>,
) -> anyhow::Result<(SinkHandle, JoinHandle<()>)> {
    let format = effective_format(cfg.format, cfg.path.is_some());
    let reopen = Arc::new(AtomicBool::new(false));
    if format == OutputFormat::None {
        let task = tokio::task::spawn(async {});
        return Ok((SinkHandle { lines: None, syslog, metrics, reopen }, task));
    }
    let (tx, rx) = mpsc::channel::<Batch>();
    let path = cfg.path.clone();
    let mut out: Box<dyn Write + Send> = match &path {
        Some(p) => open(p).with_context(|| format!("cannot open output file {}", p.display()))?,
        None => Box::new(std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout())),
    };
    let waiting = Arc::new(AtomicU64::new(0));
    let lines = Lines {
        format,
        schema: cfg.schema,
        batch: Mutex::new(Batch::default()),
        tx,
        waiting: waiting.clone(),
        limit: u64::from(cfg.queue.0),
        metrics: metrics.clone(),
    };
    let flag = reopen.clone();
    let m = metrics.clone();
    let task = tokio::task::spawn_blocking(move || {
        while let Ok(first) = rx.recv() {
            if flag.swap(false, Ordering::Relaxed) {
                if let Some(p) = &path {
                    let _ = out.flush();
                    match open(p) {
                        Ok(f) => {
                            out = f;
                            tracing::info!(path = %p.display(), "output file reopened");
                        }
                        Err(e) => {
                            tracing::error!(path = %p.display(), error = %e, "cannot reopen output file; keeping the old one")
                        }
                    }
                }
            }
            let mut next = Some(first);
            // Write everything queued, then flush once.
            while let Some(batch) = next.take() {
                if out.write_all(&batch.bytes).is_ok() {
                    m.records_written.inc_by(batch.records);
                } else {
                    m.sink_errors.inc_by(batch.records);
                }
                waiting.fetch_sub(batch.records, Ordering::Relaxed);
                next = rx.try_recv().ok();
            }
            if out.flush().is_err() {
                m.sink_errors.inc();
            }
        }
        let _ = out.flush();
    });
    Ok((SinkHandle { lines: Some(Arc::new(lines)), syslog, metrics, reopen }, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::report::{Body, SessionRef, SCHEMA};

    fn session_end(n: u64) -> Record {
        let session = SessionRef { id: format!("s-{n}"), assistant: "a".into(), root_pid: 2, uid: 0 };
        Record {
            schema: SCHEMA,
            time: "2026-12-01T03:20:36Z".into(),
            boot_ns: n,
            host: "h".into(),
            body: Body::SessionEnd { session, duration_ms: 7 },
        }
    }

    /// Records wait in a batch until the event loop's turn ends (or the batch fills, or the last
    /// handle goes), and count against `output.queue` from when they are rendered to when they
    /// are written.
    #[tokio::test]
    async fn records_wait_for_the_turn_to_end_and_past_the_queue_are_dropped() {
        let path = std::env::temp_dir().join(format!("aiwatch-sink-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let out =
            OutputConfig { path: Some(path.clone()), queue: crate::config::MapSize(3), ..Default::default() };
        let metrics = Arc::new(Metrics::new().unwrap());
        let (sink, writer) = spawn(&out, metrics.clone()).unwrap();
        let lines = || std::fs::read_to_string(&path).unwrap().lines().count();
        for n in 0..5 {
            sink.emit(|| session_end(n));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(lines(), 0, "nothing is written before the turn ends");
        assert_eq!((metrics.records_produced.get(), metrics.sink_dropped.get()), (5, 2));
        sink.hand_over();
        let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while metrics.records_written.get() < 3 {
            assert!(std::time::Instant::now() < end, "{} written", metrics.records_written.get());
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(lines(), 3);
        // Written, they no longer count against the queue; the last handle hands over the rest.
        sink.emit(|| session_end(5));
        drop(sink);
        writer.await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let ids: Vec<u64> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["boot_ns"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, [0, 1, 2, 5]);
        assert_eq!((metrics.records_written.get(), metrics.sink_dropped.get()), (4, 2));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_written_line_is_the_rendered_record_and_a_newline() {
        let session =
            SessionRef { id: "s-1".into(), assistant: "claude \"code\"".into(), root_pid: 2, uid: 0 };
        let rec = Record {
            schema: SCHEMA,
            time: "2026-12-01T03:20:36Z".into(),
            boot_ns: 6_000_000_000,
            host: "h\u{2019}".into(),
            body: Body::SessionEnd { session, duration_ms: 7 },
        };
        for (format, schema) in [
            (OutputFormat::Json, OutputSchema::Native),
            (OutputFormat::Json, OutputSchema::Ocsf),
            (OutputFormat::Human, OutputSchema::Native),
        ] {
            let mut buf = b"the last record\n".to_vec();
            write_line(&mut buf, &rec, format, schema).unwrap();
            let expected = format!("the last record\n{}\n", render(&rec, format, schema).unwrap());
            assert_eq!(String::from_utf8(buf.clone()).unwrap(), expected);
        }
    }
}
