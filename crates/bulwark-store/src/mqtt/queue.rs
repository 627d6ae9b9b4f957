//! The one queue in front of the writer: a bounded channel, and behind it a
//! bounded, ordered spill for submissions that found the channel full.
//!
//! `apply_nowait` must neither block nor await, and everything must still
//! reach the writer in submission order (an ack's `DeleteMessage` must not
//! overtake the `PutMessage` it deletes, or the message would come back).
//! A task spawned to wait for room would be overtaken by later submissions;
//! blocking would stall a runtime worker. So a submission that finds the
//! channel full waits in the spill instead, and the writer reads the spill
//! itself. The rules, all under the spill's lock:
//!
//! - a producer sends into the channel only while the spill is empty;
//!   otherwise it appends to the spill;
//! - the writer takes from the spill only when the channel is empty.
//!
//! So everything in the channel is older than everything in the spill, and
//! the writer sees submissions in order. Memory stays bounded: the channel
//! holds at most [`Limits::channel`] messages and the spill at most
//! [`Limits::spill_bytes`] (or one message, however large). When the spill
//! is full, `apply` waits for room; `apply_nowait` drops its batch, logs it
//! and counts it ([`MqttStoreStats::dropped_batches`]) — a loss its caller
//! accepted by not waiting, the same a crash before the commit would cause.
//!
//! [`MqttStoreStats::dropped_batches`]: super::MqttStoreStats::dropped_batches

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, Notify};

use super::model::MqttStoreStats;
use super::writer::Msg;
use crate::{Result, StoreError};

/// How much may wait for the writer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Messages (batches, flushes, loads) in the channel.
    pub(super) channel: usize,
    /// Approximate bytes in the spill.
    pub(super) spill_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            channel: 1024,
            spill_bytes: 64 << 20,
        }
    }
}

/// Creates the queue: the producers' end (cloned into every store handle)
/// and the writer's end.
pub(super) fn new(limits: Limits) -> (Queue, Consumer) {
    let (tx, rx) = mpsc::channel(limits.channel);
    let shared = Arc::new(Shared {
        spill: Mutex::new(Spill::default()),
        room: Notify::new(),
        limit: limits.spill_bytes,
        counters: Counters::default(),
    });
    (
        Queue {
            tx,
            shared: shared.clone(),
        },
        Consumer { rx, shared },
    )
}

/// State both ends share. It holds no sender, so the channel closes when
/// the last [`Queue`] is dropped.
pub(super) struct Shared {
    spill: Mutex<Spill>,
    /// Woken when the spill gets room (or closes).
    room: Notify,
    limit: usize,
    pub(super) counters: Counters,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Spill> {
        // Nothing panics while holding the lock; a poisoned one is intact.
        self.spill.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct Spill {
    queue: VecDeque<(Msg, usize)>,
    bytes: usize,
    /// The writer is gone: nothing will be taken any more.
    closed: bool,
}

/// The store's counters; see [`MqttStoreStats`].
#[derive(Default)]
pub(super) struct Counters {
    pub(super) skipped_ops: AtomicU64,
    pub(super) spilled_batches: AtomicU64,
    pub(super) dropped_batches: AtomicU64,
    pub(super) failed_batches: AtomicU64,
    pub(super) commits: AtomicU64,
    pub(super) batches: AtomicU64,
}

impl Counters {
    pub(super) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> MqttStoreStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MqttStoreStats {
            skipped_ops: get(&self.skipped_ops),
            spilled_batches: get(&self.spilled_batches),
            dropped_batches: get(&self.dropped_batches),
            failed_batches: get(&self.failed_batches),
            commits: get(&self.commits),
            batches: get(&self.batches),
        }
    }
}

/// Why a message was not queued.
enum Refused {
    /// The spill is full; try again when it has room.
    Full(Msg),
    /// The writer is gone.
    Closed,
}

/// The producers' end.
#[derive(Clone)]
pub(super) struct Queue {
    tx: mpsc::Sender<Msg>,
    pub(super) shared: Arc<Shared>,
}

impl Queue {
    /// Queues `msg` in submission order, waiting while the queue is full.
    pub(super) async fn send(&self, mut msg: Msg) -> Result<()> {
        loop {
            // Registered before trying, so a wake-up in between is not lost.
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(Refused::Closed) => return Err(StoreError::Unavailable),
                Err(Refused::Full(m)) => {
                    msg = m;
                    room.await;
                }
            }
        }
    }

    /// Queues `msg` in submission order without waiting; drops and counts
    /// it if the queue is full.
    pub(super) fn send_nowait(&self, msg: Msg) {
        match self.try_send(msg) {
            Ok(()) => {}
            Err(Refused::Full(_)) => {
                Counters::add(&self.shared.counters.dropped_batches, 1);
                tracing::warn!("MQTT store queue full: an apply_nowait batch was dropped");
            }
            Err(Refused::Closed) => {
                Counters::add(&self.shared.counters.dropped_batches, 1);
                tracing::error!("MQTT store writer is gone: an apply_nowait batch was dropped");
            }
        }
    }

    fn try_send(&self, msg: Msg) -> std::result::Result<(), Refused> {
        let mut spill = self.shared.lock();
        if spill.closed {
            return Err(Refused::Closed);
        }
        let msg = if spill.queue.is_empty() {
            match self.tx.try_send(msg) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(_)) => return Err(Refused::Closed),
                Err(TrySendError::Full(msg)) => msg,
            }
        } else {
            msg
        };
        let weight = msg.weight();
        if !spill.queue.is_empty() && spill.bytes + weight > self.shared.limit {
            return Err(Refused::Full(msg));
        }
        spill.bytes += weight;
        spill.queue.push_back((msg, weight));
        Counters::add(&self.shared.counters.spilled_batches, 1);
        Ok(())
    }
}

/// The writer's end.
pub(super) struct Consumer {
    rx: mpsc::Receiver<Msg>,
    pub(super) shared: Arc<Shared>,
}

impl Consumer {
    /// The oldest queued message; if none, waits for one when `block`
    /// (`None` then means every producer is gone) or returns `None`.
    /// Blocks the thread: only for the writer thread.
    pub(super) fn next(&mut self, block: bool) -> Option<Msg> {
        if let Ok(m) = self.rx.try_recv() {
            return Some(m);
        }
        {
            let mut spill = self.shared.lock();
            // Producers use the channel only under this lock and only while
            // the spill is empty: if the channel is empty now, the spill's
            // front is the oldest message.
            if let Ok(m) = self.rx.try_recv() {
                return Some(m);
            }
            if let Some((m, weight)) = spill.queue.pop_front() {
                spill.bytes -= weight;
                drop(spill);
                self.shared.room.notify_waiters();
                return Some(m);
            }
        }
        // Both are empty, so whatever arrives next comes through the
        // channel (a producer spills only behind a non-empty spill or a
        // full channel).
        if block {
            self.rx.blocking_recv()
        } else {
            None
        }
    }
}

impl Drop for Consumer {
    /// Whatever is still queued is dropped with its reply channel, so its
    /// callers see `Unavailable` instead of waiting forever.
    fn drop(&mut self) {
        let stranded = {
            let mut spill = self.shared.lock();
            spill.closed = true;
            spill.bytes = 0;
            std::mem::take(&mut spill.queue)
        };
        drop(stranded);
        self.shared.room.notify_waiters();
    }
}
