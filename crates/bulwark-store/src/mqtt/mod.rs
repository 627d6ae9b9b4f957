//! Durable MQTT session state for the gateway: persistent sessions (their
//! subscriptions and unacknowledged QoS 1/2 messages), retained messages
//! and pending delayed wills, in their own SQLite file (`<data-dir>/mqtt.db`)
//! so their high write rate never competes with the registry's.
//!
//! Writes are [`MqttOp`] batches. A batch applies atomically;
//! [`MqttStore::apply`] returns after the COMMIT that contains it (WAL,
//! `synchronous=FULL`), so whatever the gateway acknowledges after it
//! survives a `kill -9` or a power loss. Concurrent batches are
//! group-committed by one writer thread (`writer.rs`): one fsync for many
//! callers. [`MqttStore::apply_nowait`] is for writes whose loss only causes
//! a redelivery; it shares the one ordered, bounded queue (`queue.rs`), so a
//! later `apply` never overtakes it.
//!
//! Open one `MqttStore` per file: the writer thread assumes it is the only
//! writer.

mod model;
mod ops;
mod queue;
mod schema;
#[cfg(test)]
mod tests;
mod writer;

use std::path::{Path, PathBuf};

use tokio::sync::oneshot;

pub use model::{
    MqttOp, MqttSnapshot, MqttStoreStats, StoredMessage, StoredRetained, StoredSession,
    StoredSubscription, StoredWill,
};

use crate::{Result, StoreError};
use queue::{Limits, Queue};
use writer::{Msg, Writer};

/// The gateway's durable MQTT state. Cheap to clone: clones share the
/// writer thread, which stops when the last clone is dropped, after
/// committing everything queued.
#[derive(Clone)]
pub struct MqttStore {
    path: PathBuf,
    queue: Queue,
}

impl std::fmt::Debug for MqttStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttStore")
            .field("path", &self.path)
            .finish()
    }
}

impl MqttStore {
    /// Opens the store at `path`, creating the file (mode 0600) and its
    /// schema if needed, in WAL mode with `synchronous=FULL`, and starts its
    /// writer thread. Refuses a file that is another kind of SQLite database.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, Limits::default())
    }

    fn open_with(path: &Path, limits: Limits) -> Result<Self> {
        let conn = schema::open(path)?;
        let (queue, consumer) = queue::new(limits);
        let writer = Writer::new(conn, consumer);
        std::thread::Builder::new()
            .name("bulwark-mqtt-writer".into())
            .spawn(move || writer.run())
            .map_err(StoreError::internal)?;
        Ok(Self {
            path: path.to_path_buf(),
            queue,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Everything stored, for the gateway's start-up. It includes every
    /// batch submitted before the call (waited for or not), and holds the
    /// writer while it reads.
    pub async fn load(&self) -> Result<MqttSnapshot> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Msg::Load(reply)).await?;
        answer.await.map_err(|_| StoreError::Unavailable)?
    }

    /// Applies `ops` atomically (all or nothing) and returns after the
    /// COMMIT that contains them. Concurrent callers are group-committed:
    /// one transaction for many batches. Ops whose session does not exist
    /// are skipped (see [`MqttOp`]), the others still apply.
    ///
    /// Waits while the queue is full. If the future is dropped after the
    /// batch was queued, the batch is still applied.
    ///
    /// # Errors
    /// A failing op (a value out of range, say) fails the whole batch and
    /// nothing of it is written; [`StoreError::Unavailable`] if the writer
    /// is gone.
    pub async fn apply(&self, ops: Vec<MqttOp>) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Msg::Apply {
                ops,
                reply: Some(reply),
            })
            .await?;
        answer.await.map_err(|_| StoreError::Unavailable)?
    }

    /// Like [`apply`](Self::apply) but returns at once, for acks and other
    /// writes whose loss only causes a redelivery. Ordered with `apply`:
    /// everything goes through one queue, in submission order.
    ///
    /// Never blocks or awaits, so it is safe anywhere on the async runtime.
    /// When the channel to the writer is full the batch waits, in order, in
    /// a bounded spill that the writer reads itself (no task is spawned);
    /// when that is full too (the disk cannot keep up) the batch is dropped.
    /// A failing or dropped batch is logged and counted in
    /// [`stats`](Self::stats) (`failed_batches`, `dropped_batches`).
    pub fn apply_nowait(&self, ops: Vec<MqttOp>) {
        self.queue.send_nowait(Msg::Apply { ops, reply: None });
    }

    /// Waits until everything submitted so far is committed (for
    /// shutdown). It does not report whether `apply_nowait` batches
    /// succeeded: see [`stats`](Self::stats).
    pub async fn flush(&self) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(Msg::Flush(reply)).await?;
        answer.await.map_err(|_| StoreError::Unavailable)?
    }

    /// The store's counters since it was opened.
    pub fn stats(&self) -> MqttStoreStats {
        self.queue.shared.counters.snapshot()
    }
}
