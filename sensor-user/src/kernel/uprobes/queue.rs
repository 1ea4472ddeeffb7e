//! The worker's queue: bounded, never waited on by the event loop, and with the ends of
//! sessions kept aside so that none is lost.
//!
//! Every request delivered gets the next sequence number. An ended session is noted with the
//! number the next delivered request will get, and the worker forgets it just before handling
//! that request (or, when idle, once it has handled everything delivered): requests sent before
//! the end (an attach still queued) are handled first, and a session started later under the
//! same root pid is not the one forgotten.

use std::{
    sync::{mpsc, Arc, Mutex},
    time::Duration,
};

use super::Request;

#[derive(Default)]
struct Shared {
    /// Sequence number of the next request delivered.
    next: u64,
    /// (root, sequence number) of sessions ended.
    ended: Vec<(u32, u64)>,
}

pub(super) struct Sender {
    tx: mpsc::SyncSender<(u64, Request)>,
    shared: Arc<Mutex<Shared>>,
    dropped: prometheus::IntCounter,
}

pub(super) struct Receiver {
    rx: mpsc::Receiver<(u64, Request)>,
    shared: Arc<Mutex<Shared>>,
    /// Sequence number of the last request handed out.
    last: Option<u64>,
}

/// A queue of `len` requests; `dropped` counts those a full queue refused.
pub(super) fn channel(len: usize, dropped: prometheus::IntCounter) -> (Sender, Receiver) {
    let (tx, rx) = mpsc::sync_channel(len);
    let shared = Arc::new(Mutex::new(Shared::default()));
    (Sender { tx, shared: shared.clone(), dropped }, Receiver { rx, shared, last: None })
}

impl Sender {
    /// Queues `req` without waiting; a full queue drops it, counted.
    pub fn send(&self, req: Request) {
        if !self.deliver(req) {
            self.dropped.inc();
        }
    }

    /// The session of `root` ended: never dropped.
    pub fn end(&self, root: u32) {
        if let Ok(mut s) = self.shared.lock() {
            let at = s.next;
            s.ended.push((root, at));
        }
        // A wake-up for an idle worker; when the queue is full, a later request does it.
        self.deliver(Request::Detach);
    }

    fn deliver(&self, req: Request) -> bool {
        let Ok(mut s) = self.shared.lock() else { return false };
        match self.tx.try_send((s.next, req)) {
            Ok(()) => {
                s.next += 1;
                true
            }
            Err(mpsc::TrySendError::Full(_)) => false,
            // The worker is gone (stopping): nothing to count.
            Err(mpsc::TrySendError::Disconnected(_)) => true,
        }
    }
}

impl Receiver {
    /// The sessions to forget, then the next request (`None` after an idle second); `None`
    /// once the daemon stops.
    pub fn next(&mut self) -> Option<(Vec<u32>, Option<Request>)> {
        loop {
            match self.rx.recv_timeout(Duration::from_secs(1)) {
                Ok((seq, req)) => {
                    self.last = Some(seq);
                    return Some((self.ended(seq), Some(req)));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let gone = self.ended_if_idle();
                    if !gone.is_empty() {
                        return Some((gone, None));
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Sessions ended before request `seq` was sent.
    fn ended(&self, seq: u64) -> Vec<u32> {
        let Ok(mut s) = self.shared.lock() else { return Vec::new() };
        let (gone, kept): (Vec<_>, Vec<_>) = s.ended.drain(..).partition(|(_, at)| *at <= seq);
        s.ended = kept;
        gone.into_iter().map(|(root, _)| root).collect()
    }

    /// Every session ended, if every request delivered has been handled.
    fn ended_if_idle(&self) -> Vec<u32> {
        let Ok(mut s) = self.shared.lock() else { return Vec::new() };
        if s.next != self.last.map_or(0, |l| l + 1) {
            return Vec::new();
        }
        s.ended.drain(..).map(|(root, _)| root).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attach(root: u32) -> Request {
        Request::Attach { root, pids: vec![root] }
    }

    fn root(r: Option<Request>) -> Option<u32> {
        match r {
            Some(Request::Attach { root, .. }) => Some(root),
            _ => None,
        }
    }

    #[test]
    fn full_queue_drops_and_counts_but_never_loses_an_end() {
        let dropped = prometheus::IntCounter::new("d", "d").unwrap();
        let (tx, mut rx) = channel(2, dropped.clone());
        tx.send(attach(1));
        tx.send(attach(2));
        tx.send(attach(3));
        assert_eq!(dropped.get(), 1);
        // Session 1 ends while its attach is still queued; root 1 is then reused.
        tx.end(1);
        let (gone, req) = rx.next().unwrap();
        assert!(gone.is_empty() && root(req) == Some(1));
        tx.send(attach(1));
        let (gone, req) = rx.next().unwrap();
        assert!(gone.is_empty() && root(req) == Some(2));
        // The old session 1 is forgotten before the new one's attach.
        let (gone, req) = rx.next().unwrap();
        assert_eq!((gone, root(req)), (vec![1], Some(1)));
        // Idle: an end whose wake-up was delivered, or not.
        tx.end(2);
        let (gone, req) = rx.next().unwrap();
        assert_eq!(gone, vec![2]);
        assert!(matches!(req, Some(Request::Detach)));
        assert_eq!(dropped.get(), 1, "wake-ups are not counted");
    }
}
