//! The single writer: one thread owns the write connection and the head of
//! the audit chain, and commits concurrent requests together.
//!
//! Requests arrive on a bounded channel. The thread takes one, drains what
//! else is waiting (up to [`MAX_BATCH`]), runs each inside its own SAVEPOINT
//! of one transaction, commits once, and only then answers every request.
//! One fsync thus covers a whole batch (group commit), a failing request
//! rolls back alone, and no caller hears "done" before its data is durable.

use std::time::{Duration, Instant};

use tokio::sync::mpsc::Receiver;

use bulwark_audit::{checkpoint_message, Actor, AuditEvent, Chain};
use rusqlite::{Connection, OptionalExtension};
use time::OffsetDateTime;

use crate::{Result, StoreError};

/// Most requests committed in one transaction.
pub(crate) const MAX_BATCH: usize = 512;

/// Signs audit checkpoints. The key stays with the caller.
pub trait CheckpointSigner: Send + 'static {
    fn sign(&self, message: &[u8]) -> Vec<u8>;
}

/// When the writer signs a checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPolicy {
    /// After this many unsigned entries.
    pub every_entries: u64,
    /// Or after this long with any unsigned entry.
    pub every: Duration,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self {
            every_entries: 1000,
            every: Duration::from_secs(10),
        }
    }
}

/// What a request sees while it runs: the open transaction and the chain.
pub struct WriteTx<'a> {
    pub(crate) conn: &'a Connection,
    chain: &'a mut Chain,
    pub(crate) now: OffsetDateTime,
}

impl WriteTx<'_> {
    /// Appends an audit entry inside the current transaction.
    pub(crate) fn audit(&mut self, actor: &Actor, event: &AuditEvent) -> Result<u64> {
        let json = serde_json::to_string(event).map_err(StoreError::internal)?;
        let ts = rfc3339(self.now);
        let e = self.chain.append(ts, actor.render(), json);
        self.conn
            .prepare_cached(
                "INSERT INTO audit_log (seq, ts, actor, event, prev_hash, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(rusqlite::params![
                e.seq as i64,
                e.ts,
                e.actor,
                e.event,
                &e.prev_hash[..],
                &e.hash[..]
            ])?;
        Ok(e.seq)
    }
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// A request: runs in the transaction and says whether it succeeded (if not,
/// its savepoint is rolled back) and how to answer once the commit's outcome
/// is known.
pub(crate) type Job = Box<dyn FnOnce(&mut WriteTx<'_>) -> Outcome + Send>;

pub(crate) struct Outcome {
    pub(crate) ok: bool,
    pub(crate) reply: Box<dyn FnOnce(Result<()>) + Send>,
}

pub(crate) enum Msg {
    Job(Job),
    /// Sign a checkpoint now if anything is unsigned.
    Checkpoint(tokio::sync::oneshot::Sender<Result<()>>),
    /// Sign a checkpoint if the policy says one is due.
    Tick,
}

pub(crate) struct Writer {
    conn: Connection,
    chain: Chain,
    signer: Box<dyn CheckpointSigner>,
    policy: CheckpointPolicy,
    last_checkpoint_seq: u64,
    last_checkpoint_at: Instant,
}

impl Writer {
    pub(crate) fn new(
        conn: Connection,
        signer: Box<dyn CheckpointSigner>,
        policy: CheckpointPolicy,
    ) -> Result<Self> {
        let chain = conn
            .query_row(
                "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
            )
            .optional()?
            .map(|(seq, hash)| -> Result<Chain> {
                Ok(Chain {
                    last_seq: seq as u64,
                    last_hash: hash
                        .try_into()
                        .map_err(|_| StoreError::internal("audit hash is not 32 bytes"))?,
                })
            })
            .transpose()?
            .unwrap_or_default();
        let last_checkpoint_seq: i64 = conn.query_row(
            "SELECT COALESCE(MAX(seq), 0) FROM audit_checkpoints",
            [],
            |r| r.get(0),
        )?;
        Ok(Self {
            conn,
            chain,
            signer,
            policy,
            last_checkpoint_seq: last_checkpoint_seq as u64,
            last_checkpoint_at: Instant::now(),
        })
    }

    /// Runs until every sender is gone, then signs a final checkpoint.
    pub(crate) fn run(mut self, mut rx: Receiver<Msg>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            self.handle(batch);
            if self.checkpoint_due() {
                if let Err(e) = self.checkpoint() {
                    tracing::error!(error = %e, "audit checkpoint failed");
                }
            }
        }
        if let Err(e) = self.checkpoint() {
            tracing::error!(error = %e, "final audit checkpoint failed");
        }
    }

    fn handle(&mut self, batch: Vec<Msg>) {
        let mut jobs = Vec::with_capacity(batch.len());
        let mut checkpoints = Vec::new();
        for m in batch {
            match m {
                Msg::Job(j) => jobs.push(j),
                Msg::Checkpoint(tx) => checkpoints.push(tx),
                Msg::Tick => {}
            }
        }
        if !jobs.is_empty() {
            self.commit_batch(jobs);
        }
        if !checkpoints.is_empty() {
            let r = self.checkpoint();
            for tx in checkpoints {
                let _ = tx.send(match &r {
                    Ok(()) => Ok(()),
                    Err(e) => Err(StoreError::internal(e)),
                });
            }
        }
    }

    fn commit_batch(&mut self, jobs: Vec<Job>) {
        let before = self.chain;
        if let Err(e) = self.conn.execute_batch("BEGIN IMMEDIATE") {
            // Dropping a job drops its reply channel: each caller gets
            // `Unavailable` and nothing was written.
            tracing::error!(error = %e, jobs = jobs.len(), "could not begin a write transaction");
            return;
        }
        let now = OffsetDateTime::now_utc();
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            let head = self.chain;
            if let Err(e) = self.conn.execute_batch("SAVEPOINT job") {
                // Not run: its caller sees `Unavailable`, nothing written.
                tracing::error!(error = %e, "could not open a savepoint");
                continue;
            }
            let mut tx = WriteTx {
                conn: &self.conn,
                chain: &mut self.chain,
                now,
            };
            // A bug in one job must not take the writer (and every later
            // write) down: a panicking job is rolled back alone, and its
            // caller, whose reply channel unwinds with it, sees `Unavailable`.
            let Ok(Outcome { ok, reply }) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(&mut tx)))
            else {
                tracing::error!("a store job panicked; its changes were rolled back");
                let _ = self.conn.execute_batch("ROLLBACK TO job; RELEASE job");
                self.chain = head;
                continue;
            };
            let closed = if ok {
                self.conn.execute_batch("RELEASE job")
            } else {
                self.conn.execute_batch("ROLLBACK TO job; RELEASE job")
            };
            if !ok || closed.is_err() {
                self.chain = head;
            }
            match closed {
                Ok(()) => replies.push(reply),
                Err(e) => reply(Err(StoreError::internal(e))),
            }
        }
        let outcome = self.conn.execute_batch("COMMIT");
        if outcome.is_err() {
            let _ = self.conn.execute_batch("ROLLBACK");
            self.chain = before;
        }
        for reply in replies {
            reply(match &outcome {
                Ok(()) => Ok(()),
                Err(e) => Err(StoreError::internal(e)),
            });
        }
    }

    fn checkpoint_due(&self) -> bool {
        let unsigned = self.chain.last_seq - self.last_checkpoint_seq;
        unsigned >= self.policy.every_entries
            || (unsigned > 0 && self.last_checkpoint_at.elapsed() >= self.policy.every)
    }

    fn checkpoint(&mut self) -> Result<()> {
        if self.chain.last_seq == self.last_checkpoint_seq {
            return Ok(());
        }
        let ts = rfc3339(OffsetDateTime::now_utc());
        let msg = checkpoint_message(self.chain.last_seq, &self.chain.last_hash, &ts);
        let sig = self.signer.sign(&msg);
        self.conn
            .prepare_cached(
                "INSERT INTO audit_checkpoints (seq, hash, ts, signature) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(rusqlite::params![
                self.chain.last_seq as i64,
                &self.chain.last_hash[..],
                ts,
                sig
            ])?;
        self.last_checkpoint_seq = self.chain.last_seq;
        self.last_checkpoint_at = Instant::now();
        Ok(())
    }
}
