//! `[output.syslog]`: every record, as RFC 5424 syslog, to a SIEM's receiver over TCP, TLS or
//! UDP. The pipeline never waits for it: records are queued (bounded; a full queue drops and
//! counts) for a task that connects, reconnects with backoff when the receiver goes away, and
//! counts every record it cannot deliver (`aiwatch_syslog_dropped_total{reason}`).
//!
//! TCP has no acknowledgement: bytes written just before the receiver stops can vanish with its
//! socket. So the task watches the stream for the receiver's close, and after a reconnection
//! sends again what it wrote in the last second before it saw the close (counted in
//! `aiwatch_syslog_resent_total`): delivery around a restart is at least once, not at most once.

pub mod conn;
pub mod header;
pub mod metrics;

use std::{
    collections::VecDeque,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use crate::{
    config::{
        syslog::{SyslogConfig, Transport},
        OutputFormat, OutputSchema,
    },
    output::{report::Record, sinks::render},
};
use conn::{Conn, Dialer};
use header::Fixed;
use metrics::SyslogMetrics;

const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Frames written this long before the close was seen are sent again after reconnecting.
const RESEND_WINDOW: Duration = Duration::from_secs(1);
/// At most this many frames are kept for resending.
const RESEND_MAX: usize = 4096;
/// At shutdown, the queue gets this long to reach the receiver; the rest is counted.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

type Frame = Arc<[u8]>;

/// The pipeline's side: queues records, never blocks.
#[derive(Clone)]
pub struct SyslogHandle {
    tx: mpsc::Sender<Arc<Record>>,
    metrics: SyslogMetrics,
}

impl SyslogHandle {
    pub fn send(&self, rec: Arc<Record>) {
        if self.tx.try_send(rec).is_err() {
            self.metrics.drop("queue_full", 1);
        }
    }
}

/// The sending task. It ends once every handle is dropped and the queue is sent.
pub struct SyslogTask {
    join: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

impl SyslogTask {
    /// Waits for the queue to be sent, at most [`SHUTDOWN_GRACE`]; what is left is counted.
    pub async fn finish(mut self) {
        if tokio::time::timeout(SHUTDOWN_GRACE, &mut self.join).await.is_err() {
            let _ = self.stop.send(true);
            let _ = self.join.await;
        }
    }
}

/// Starts the output; a CA file that cannot be used fails start-up.
pub fn spawn(
    cfg: &SyslogConfig,
    registry: &prometheus::Registry,
) -> anyhow::Result<(SyslogHandle, SyslogTask)> {
    let metrics = SyslogMetrics::register(registry)?;
    let (tx, rx) = mpsc::channel(cfg.queue.0 as usize);
    let (stop, stop_rx) = watch::channel(false);
    let writer = Writer {
        dialer: Dialer::new(cfg)?,
        fixed: Fixed {
            facility: cfg.facility.code(),
            app_name: cfg.app_name.0.clone(),
            procid: std::process::id(),
        },
        schema: cfg.format,
        transport: cfg.transport,
        max_datagram: cfg.max_datagram.0 as usize,
        metrics: metrics.clone(),
        pending: VecDeque::new(),
        recent: VecDeque::new(),
    };
    tracing::info!(address = %cfg.address.0, transport = cfg.transport.label(), format = %cfg.format, "syslog output");
    let join = tokio::spawn(writer.run(rx, stop_rx));
    Ok((SyslogHandle { tx, metrics }, SyslogTask { join, stop }))
}

/// How a connection's service ended.
enum Ended {
    /// Every handle is gone and the queue is sent.
    Done,
    /// Shutdown grace is over.
    Stop,
    /// The connection broke.
    Lost(String),
}

struct Writer {
    dialer: Dialer,
    fixed: Fixed,
    schema: OutputSchema,
    transport: Transport,
    max_datagram: usize,
    metrics: SyslogMetrics,
    /// Frames to send before anything new: the one a failed write was sending, those resent.
    pending: VecDeque<Frame>,
    /// Frames written on the current connection, with when (for [`RESEND_WINDOW`]).
    recent: VecDeque<(Instant, Frame)>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Arc<Record>>, mut stop: watch::Receiver<bool>) {
        let mut backoff = BACKOFF_MIN;
        let mut failing = false;
        loop {
            let dialed = tokio::select! {
                biased;
                _ = stop.changed() => return self.shutdown(&mut rx),
                c = self.dialer.connect() => c,
            };
            let mut conn = match dialed {
                Ok(c) => c,
                Err(e) => {
                    self.metrics.connects.with_label_values(&["error"]).inc();
                    // Once per outage at warn; the retries every few seconds at debug.
                    if !failing {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "cannot connect to the syslog receiver; retrying"
                        );
                    } else {
                        tracing::debug!(error = format!("{e:#}"), "syslog reconnect failed");
                    }
                    failing = true;
                    tokio::select! {
                        biased;
                        _ = stop.changed() => return self.shutdown(&mut rx),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            };
            self.metrics.connects.with_label_values(&["ok"]).inc();
            self.metrics.connected.set(1);
            tracing::info!(transport = self.transport.label(), "connected to the syslog receiver");
            (backoff, failing) = (BACKOFF_MIN, false);
            let ended = self.serve(&mut conn, &mut rx, &mut stop).await;
            self.metrics.connected.set(0);
            match ended {
                Ended::Done => return,
                Ended::Stop => return self.shutdown(&mut rx),
                Ended::Lost(why) => {
                    let resent = self.requeue_recent();
                    tracing::warn!(why, resent, "lost the syslog receiver; reconnecting");
                }
            }
        }
    }

    /// Sends until the connection breaks or the queue ends.
    async fn serve(
        &mut self,
        conn: &mut Conn,
        rx: &mut mpsc::Receiver<Arc<Record>>,
        stop: &mut watch::Receiver<bool>,
    ) -> Ended {
        loop {
            while let Some(frame) = self.pending.front().cloned() {
                match conn.send(&frame).await {
                    Ok(()) => self.written(frame, conn.is_stream()),
                    // Kept in `pending`: sent whole on the next connection.
                    Err(e) if conn.is_stream() => return Ended::Lost(e.to_string()),
                    // A datagram is gone (an ICMP error of an earlier one, often).
                    Err(_) => self.metrics.drop("send_error", 1),
                }
                self.pending.pop_front();
            }
            // Biased: a close the receiver announced is seen before anything more is written.
            tokio::select! {
                biased;
                _ = stop.changed() => return Ended::Stop,
                _ = conn.closed() => return Ended::Lost("the receiver closed the connection".into()),
                rec = rx.recv() => match rec {
                    None => return Ended::Done,
                    Some(rec) => {
                        if let Some(f) = self.frame(&rec) {
                            self.pending.push_back(f);
                        }
                    }
                },
            }
        }
    }

    fn written(&mut self, frame: Frame, stream: bool) {
        self.metrics.sent.inc();
        if !stream {
            return;
        }
        let now = Instant::now();
        while self.recent.front().is_some_and(|(t, _)| now.duration_since(*t) > RESEND_WINDOW)
            || self.recent.len() >= RESEND_MAX
        {
            self.recent.pop_front();
        }
        self.recent.push_back((now, frame));
    }

    /// Puts the frames written within [`RESEND_WINDOW`] back in front of `pending`.
    fn requeue_recent(&mut self) -> usize {
        let now = Instant::now();
        let again: Vec<Frame> = self
            .recent
            .drain(..)
            .filter(|(t, _)| now.duration_since(*t) <= RESEND_WINDOW)
            .map(|(_, f)| f)
            .collect();
        self.metrics.resent.inc_by(again.len() as u64);
        for f in again.iter().rev() {
            self.pending.push_front(f.clone());
        }
        again.len()
    }

    /// The record as sent; None (counted) if it cannot be.
    fn frame(&self, rec: &Record) -> Option<Frame> {
        let msg = match render(rec, OutputFormat::Json, self.schema) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "cannot serialize record");
                self.metrics.drop("serialize", 1);
                return None;
            }
        };
        let message = header::message(&self.fixed, rec, &msg);
        if self.transport != Transport::Udp {
            return Some(header::octet_counted(&message).into());
        }
        if message.len() > self.max_datagram {
            self.metrics.drop("oversize", 1);
            return None;
        }
        Some(message.into())
    }

    /// Counts what is still queued as dropped.
    fn shutdown(&mut self, rx: &mut mpsc::Receiver<Arc<Record>>) {
        rx.close();
        let mut left = self.pending.len() as u64;
        while rx.try_recv().is_ok() {
            left += 1;
        }
        self.metrics.drop("shutdown", left);
        if left > 0 {
            tracing::warn!(records = left, "syslog receiver unreachable at shutdown; records dropped");
        }
    }
}

#[cfg(test)]
mod tests;
