//! The MQTT store's writer: one thread owns the connection and commits
//! batches from many callers together.
//!
//! The same design as the registry's writer (`sqlite/writer.rs`), without
//! its audit chain: the thread takes the oldest queued message, keeps
//! taking what else is waiting (up to [`MAX_BATCH`]), runs each batch of
//! ops in its own SAVEPOINT of one transaction, commits once and only then
//! answers. One fsync covers many callers; a failing or panicking batch
//! rolls back alone; nobody hears "done" before the data is durable.

use std::panic::{catch_unwind, AssertUnwindSafe};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::model::{MqttOp, MqttSnapshot};
use super::ops::{self, Applied};
use super::queue::{Consumer, Counters};
use crate::{Result, StoreError};

/// Most messages taken into one transaction.
pub(super) const MAX_BATCH: usize = 512;

/// What callers send the writer.
pub(super) enum Msg {
    /// Apply `ops` atomically; answer on `reply` after the commit (`None`:
    /// nobody waits).
    Apply {
        ops: Vec<MqttOp>,
        reply: Option<oneshot::Sender<Result<()>>>,
    },
    /// Answer once everything queued before is committed.
    Flush(oneshot::Sender<Result<()>>),
    /// Commit what is pending, then read everything.
    Load(oneshot::Sender<Result<MqttSnapshot>>),
    /// Tests only: run as a batch of its own (to stall the writer, or to
    /// write and then fail or panic).
    #[cfg(test)]
    Hook(Hook),
}

/// A test's code for [`Msg::Hook`].
#[cfg(test)]
pub(super) type Hook = Box<dyn FnOnce(&Connection) -> Result<()> + Send>;

impl Msg {
    /// Approximate memory held while queued.
    pub(super) fn weight(&self) -> usize {
        const OVERHEAD: usize = 64;
        match self {
            Msg::Apply { ops, .. } => OVERHEAD + ops.iter().map(MqttOp::weight).sum::<usize>(),
            _ => OVERHEAD,
        }
    }
}

/// Who to answer when the open transaction ends.
enum Pending {
    /// An applied batch; `None` for `apply_nowait`.
    Applied(Option<oneshot::Sender<Result<()>>>),
    Flush(oneshot::Sender<Result<()>>),
}

/// The open transaction, if any, and who waits for it.
#[derive(Default)]
struct Batch {
    open: bool,
    /// A failed batch could not be rolled back alone (or SQLite rolled the
    /// whole transaction back): nothing of this transaction may commit.
    poisoned: bool,
    pending: Vec<Pending>,
    skipped_ops: u64,
}

pub(super) struct Writer {
    conn: Connection,
    queue: Consumer,
}

impl Writer {
    pub(super) fn new(conn: Connection, queue: Consumer) -> Self {
        Self { conn, queue }
    }

    /// Runs until every store handle is gone and the queue is empty.
    pub(super) fn run(mut self) {
        while let Some(first) = self.queue.next(true) {
            let mut batch = Batch::default();
            self.handle(first, &mut batch);
            for _ in 1..MAX_BATCH {
                match self.queue.next(false) {
                    Some(m) => self.handle(m, &mut batch),
                    None => break,
                }
            }
            self.finish(batch);
        }
    }

    fn handle(&mut self, msg: Msg, batch: &mut Batch) {
        match msg {
            Msg::Apply { ops, reply } => {
                let r = self.job(batch, |conn| {
                    let mut skipped = 0;
                    for op in &ops {
                        if ops::apply(conn, op)? == Applied::Skipped {
                            skipped += 1;
                        }
                    }
                    Ok(skipped)
                });
                match (r, reply) {
                    (Ok(()), reply) => batch.pending.push(Pending::Applied(reply)),
                    (Err(e), Some(reply)) => {
                        let _ = reply.send(Err(e));
                    }
                    (Err(e), None) => {
                        Counters::add(&self.queue.shared.counters.failed_batches, 1);
                        tracing::warn!(
                            error = %e,
                            ops = ops.len(),
                            "an MQTT store apply_nowait batch failed and was rolled back"
                        );
                    }
                }
            }
            Msg::Flush(reply) => batch.pending.push(Pending::Flush(reply)),
            Msg::Load(reply) => {
                // Everything queued before the load is in the snapshot.
                self.finish(std::mem::take(batch));
                let _ = reply.send(ops::load(&self.conn));
            }
            #[cfg(test)]
            Msg::Hook(f) => {
                if let Err(e) = self.job(batch, |conn| f(conn).map(|()| 0)) {
                    tracing::warn!(error = %e, "test hook failed");
                }
            }
        }
    }

    /// Runs `f` in its own savepoint of the open transaction (beginning one
    /// if needed); on error or panic only its changes are rolled back. `f`
    /// returns how many ops it skipped.
    fn job(&mut self, batch: &mut Batch, f: impl FnOnce(&Connection) -> Result<u64>) -> Result<()> {
        if batch.poisoned {
            return Err(StoreError::internal(
                "the MQTT store transaction was aborted",
            ));
        }
        if !batch.open {
            self.conn.execute_batch("BEGIN IMMEDIATE")?;
            batch.open = true;
        }
        self.conn.execute_batch("SAVEPOINT job")?;
        // A bug in one batch must not take the writer (and every later
        // write) down.
        let r = catch_unwind(AssertUnwindSafe(|| f(&self.conn))).unwrap_or_else(|_| {
            tracing::error!("an MQTT store batch panicked; its changes are rolled back");
            Err(StoreError::internal("an MQTT store batch panicked"))
        });
        let r = r.and_then(|skipped| {
            self.conn.execute_batch("RELEASE job")?;
            Ok(skipped)
        });
        match r {
            Ok(skipped) => {
                batch.skipped_ops += skipped;
                Ok(())
            }
            Err(e) => {
                let undone = self.conn.execute_batch("ROLLBACK TO job; RELEASE job");
                if undone.is_err() || self.conn.is_autocommit() {
                    tracing::error!(
                        "could not roll an MQTT store batch back alone; aborting its transaction"
                    );
                    batch.poisoned = true;
                }
                Err(e)
            }
        }
    }

    /// Commits the open transaction (if any), then answers everyone in it.
    fn finish(&mut self, batch: Batch) {
        let outcome = if !batch.open {
            Ok(())
        } else if batch.poisoned {
            let _ = self.conn.execute_batch("ROLLBACK");
            Err(StoreError::internal(
                "the MQTT store transaction was aborted",
            ))
        } else {
            self.conn.execute_batch("COMMIT").map_err(|e| {
                tracing::error!(error = %e, "MQTT store commit failed");
                let _ = self.conn.execute_batch("ROLLBACK");
                StoreError::internal(e)
            })
        };
        let counters = &self.queue.shared.counters;
        if outcome.is_ok() {
            if batch.open {
                Counters::add(&counters.commits, 1);
            }
            Counters::add(&counters.skipped_ops, batch.skipped_ops);
        }
        let answer = || match &outcome {
            Ok(()) => Ok(()),
            Err(e) => Err(StoreError::internal(e)),
        };
        for p in batch.pending {
            match p {
                Pending::Applied(reply) => {
                    if outcome.is_ok() {
                        Counters::add(&counters.batches, 1);
                    }
                    match reply {
                        Some(reply) => {
                            let _ = reply.send(answer());
                        }
                        None if outcome.is_err() => {
                            Counters::add(&counters.failed_batches, 1);
                        }
                        None => {}
                    }
                }
                Pending::Flush(reply) => {
                    let _ = reply.send(answer());
                }
            }
        }
    }
}
