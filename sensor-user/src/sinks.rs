//! Where records go. The event loop never waits for a sink: records pass through a bounded
//! queue to a writer task, and a full queue drops (and counts) instead of blocking the reader
//! of the kernel ring buffer.

use std::{io::Write, sync::Arc};

use tokio::{sync::mpsc, task::JoinHandle};

use crate::{config::OutputFormat, metrics::Metrics, report::Record};

#[derive(Clone)]
pub struct SinkHandle {
    tx: mpsc::Sender<Arc<Record>>,
    metrics: Arc<Metrics>,
}

impl SinkHandle {
    /// Queues a record; never blocks.
    pub fn emit(&self, record: Record) {
        match self.tx.try_send(Arc::new(record)) {
            Ok(()) => {}
            Err(_) => self.metrics.sink_dropped.inc(),
        }
    }
}

/// Resolves `auto` against whether stdout is a terminal.
pub fn effective_format(f: OutputFormat) -> OutputFormat {
    match f {
        OutputFormat::Auto if std::io::IsTerminal::is_terminal(&std::io::stdout()) => OutputFormat::Human,
        OutputFormat::Auto => OutputFormat::Json,
        other => other,
    }
}

/// Starts the stdout writer. Dropping every [`SinkHandle`] ends it after it has written and
/// flushed what was queued.
pub fn spawn_stdout(
    format: OutputFormat,
    queue: usize,
    metrics: Arc<Metrics>,
) -> (SinkHandle, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Arc<Record>>(queue);
    let format = effective_format(format);
    let m = metrics.clone();
    let task = tokio::task::spawn_blocking(move || {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdout.lock());
        while let Some(first) = rx.blocking_recv() {
            let mut next = Some(first);
            // Write everything queued, then flush once.
            while let Some(rec) = next.take() {
                let line = match format {
                    OutputFormat::Human => Ok(rec.human()),
                    _ => serde_json::to_string(&*rec),
                };
                match line {
                    Ok(line) if writeln!(out, "{line}").is_ok() => m.records_written.inc(),
                    Ok(_) => m.sink_errors.inc(),
                    Err(e) => tracing::error!(error = %e, "cannot serialize record"),
                }
                next = rx.try_recv().ok();
            }
            if out.flush().is_err() {
                m.sink_errors.inc();
            }
        }
        let _ = out.flush();
    });
    (SinkHandle { tx, metrics }, task)
}
