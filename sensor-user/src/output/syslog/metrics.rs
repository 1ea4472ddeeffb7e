//! The syslog output's series, registered in the daemon's registry when the output is
//! configured (documented in docs/metrics.md).

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Why a record did not reach the receiver.
pub const DROP_REASONS: [&str; 5] = ["queue_full", "oversize", "send_error", "shutdown", "serialize"];

#[derive(Clone)]
pub struct SyslogMetrics {
    pub sent: IntCounter,
    pub resent: IntCounter,
    pub dropped: IntCounterVec,
    pub connected: IntGauge,
    pub connects: IntCounterVec,
}

impl SyslogMetrics {
    pub fn register(r: &Registry) -> anyhow::Result<Self> {
        let sent = IntCounter::new(
            "aiwatch_syslog_sent_total",
            "Records written to the syslog receiver's connection (resent ones included).",
        )?;
        let resent = IntCounter::new(
            "aiwatch_syslog_resent_total",
            "Records sent again after a reconnection: written within the second before the receiver closed the connection, so possibly lost with it (the receiver may see them twice).",
        )?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "aiwatch_syslog_dropped_total",
                "Records that did not reach the syslog receiver, by reason: queue_full (the receiver was down or slow longer than output.syslog.queue records), oversize (larger than a UDP datagram may be), send_error (UDP send failed), shutdown (still queued when the daemon stopped).",
            ),
            &["reason"],
        )?;
        let connected = IntGauge::new(
            "aiwatch_syslog_connected",
            "1 while the syslog output has a connection (for UDP: a socket), 0 while it reconnects.",
        )?;
        let connects = IntCounterVec::new(
            Opts::new(
                "aiwatch_syslog_connections_total",
                "Connection attempts to the syslog receiver, by result (ok, error).",
            ),
            &["result"],
        )?;
        r.register(Box::new(sent.clone()))?;
        r.register(Box::new(resent.clone()))?;
        r.register(Box::new(dropped.clone()))?;
        r.register(Box::new(connected.clone()))?;
        r.register(Box::new(connects.clone()))?;
        for reason in DROP_REASONS {
            dropped.with_label_values(&[reason]).inc_by(0);
        }
        for result in ["ok", "error"] {
            connects.with_label_values(&[result]).inc_by(0);
        }
        Ok(Self { sent, resent, dropped, connected, connects })
    }

    pub fn drop(&self, reason: &str, n: u64) {
        self.dropped.with_label_values(&[reason]).inc_by(n);
    }
}
