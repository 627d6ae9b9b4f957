//! The embedded SQLite store.
//!
//! Writes go through the single [`writer`] thread (group commit, audit chain
//! head); reads use a small pool of WAL reader connections on the blocking
//! thread pool. Open one `SqliteStore` per database file: the writer thread
//! assumes it is the only writer.

mod alerts;
mod manufacturer;
mod ops;
mod ota;
mod policies;
mod posture;
mod rollout;
mod rows;
mod schema;
mod summaries;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulwark_audit::{Checkpoint, Entry, VerifyError, VerifyReport};
use rusqlite::{Connection, OpenFlags};
use tokio::sync::{mpsc, oneshot};

pub use writer::{CheckpointPolicy, CheckpointSigner, WriteTx};

use crate::{Result, StoreError};
use writer::{Job, Msg, Outcome, Writer};

/// Requests waiting for the writer before callers are made to wait.
const QUEUE: usize = 4096;

/// Idle reader connections kept open (more are opened under load and
/// closed when returned to a full pool).
const READERS: usize = 32;

/// Bulwark's embedded store: one SQLite file in WAL mode.
pub struct SqliteStore {
    path: PathBuf,
    tx: mpsc::Sender<Msg>,
    readers: Arc<Mutex<Vec<Connection>>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path` and
    /// starts its writer thread.
    pub fn open(
        path: &Path,
        signer: Box<dyn CheckpointSigner>,
        policy: CheckpointPolicy,
    ) -> Result<Self> {
        let mut conn = Connection::open(path)?;
        schema::configure(&conn)?;
        schema::migrate(&mut conn)?;
        let writer = Writer::new(conn, signer, policy)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name("bulwark-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(StoreError::internal)?;
        spawn_ticker(tx.downgrade(), policy.every);
        Ok(Self {
            path: path.to_path_buf(),
            tx,
            readers: Arc::new(Mutex::new(Vec::new())),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in the writer's transaction; answers after the commit.
    pub(crate) async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut WriteTx<'_>) -> Result<R> + Send + 'static,
    {
        let (done, wait) = oneshot::channel();
        let job: Job = Box::new(move |tx| {
            let r = f(tx);
            Outcome {
                ok: r.is_ok(),
                reply: Box::new(move |commit: Result<()>| {
                    let _ = done.send(commit.and(r));
                }),
            }
        });
        self.tx
            .send(Msg::Job(job))
            .await
            .map_err(|_| StoreError::Unavailable)?;
        wait.await.map_err(|_| StoreError::Unavailable)?
    }

    /// Runs `f` on a reader connection on the blocking pool.
    pub(crate) async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
    {
        let readers = self.readers.clone();
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match readers.lock().map_err(StoreError::internal)?.pop() {
                Some(c) => c,
                None => open_reader(&path)?,
            };
            let r = f(&conn);
            if let Ok(mut pool) = readers.lock() {
                if pool.len() < READERS {
                    pool.push(conn);
                }
            }
            r
        })
        .await
        .map_err(StoreError::internal)?
    }

    pub(crate) async fn request_checkpoint(&self) -> Result<()> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Msg::Checkpoint(done))
            .await
            .map_err(|_| StoreError::Unavailable)?;
        wait.await.map_err(|_| StoreError::Unavailable)?
    }
}

fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "query_only", "ON")?;
    Ok(conn)
}

/// Asks the writer every `every` whether a checkpoint is due; stops when the
/// store is dropped.
fn spawn_ticker(tx: mpsc::WeakSender<Msg>, every: Duration) {
    let period = every.clamp(Duration::from_millis(100), Duration::from_secs(5));
    let _ = std::thread::Builder::new()
        .name("bulwark-store-ticker".into())
        .spawn(move || loop {
            std::thread::sleep(period);
            match tx.upgrade() {
                Some(s) => {
                    if s.try_send(Msg::Tick).is_err() && s.is_closed() {
                        return;
                    }
                }
                None => return,
            }
        });
}

/// Verifies the audit log of the database at `path` offline, without the
/// server running, against the Ed25519 `public_key`. The outer `Result` is
/// about reading the database; the inner one is the verdict.
pub fn verify_audit_offline(
    path: &Path,
    public_key: &[u8; 32],
) -> Result<std::result::Result<VerifyReport, VerifyError>> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    posture::verify_audit(&conn, public_key)
}

pub(crate) fn audit_entry(r: &rusqlite::Row) -> rusqlite::Result<Entry> {
    Ok(Entry {
        seq: r.get::<_, i64>(0)? as u64,
        ts: r.get(1)?,
        actor: r.get(2)?,
        event: r.get(3)?,
        prev_hash: hash32(r, 4)?,
        hash: hash32(r, 5)?,
    })
}

fn hash32(r: &rusqlite::Row, idx: usize) -> rusqlite::Result<[u8; 32]> {
    let v: Vec<u8> = r.get(idx)?;
    // A wrong-length hash is tampering; map it to a hash that cannot match.
    Ok(v.try_into().unwrap_or([0xff; 32]))
}

pub(crate) fn read_checkpoints(conn: &Connection) -> Result<Vec<Checkpoint>> {
    let mut st =
        conn.prepare("SELECT seq, hash, ts, signature FROM audit_checkpoints ORDER BY seq")?;
    let rows = st.query_map([], |r| {
        Ok(Checkpoint {
            seq: r.get::<_, i64>(0)? as u64,
            hash: hash32(r, 1)?,
            ts: r.get(2)?,
            signature: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
    use bulwark_audit::{Actor, AuditEvent};

    use super::*;
    use crate::Store;

    struct Signer(Ed25519KeyPair);
    impl CheckpointSigner for Signer {
        fn sign(&self, m: &[u8]) -> Vec<u8> {
            self.0.sign(m).as_ref().to_vec()
        }
    }

    #[tokio::test]
    async fn a_panicking_job_is_rolled_back_alone_and_the_writer_survives() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let pk: [u8; 32] = key.public_key().as_ref().try_into().unwrap();
        let store =
            SqliteStore::open(&path, Box::new(Signer(key)), CheckpointPolicy::default()).unwrap();
        let failed = |reason: &str| AuditEvent::AuthenticationFailed {
            reason: reason.into(),
        };
        store
            .append_audit(Actor::System, failed("a"))
            .await
            .unwrap();
        let r: Result<()> = store
            .write(|tx| {
                tx.conn
                    .execute("INSERT INTO meta (key, value) VALUES ('panic', 'x')", [])?;
                tx.audit(
                    &Actor::System,
                    &AuditEvent::AuthenticationFailed { reason: "p".into() },
                )?;
                panic!("deliberate panic in a store job");
            })
            .await;
        assert!(matches!(r, Err(StoreError::Unavailable)), "{r:?}");
        // The writer still works and the chain has no hole.
        let seq = store
            .append_audit(Actor::System, failed("b"))
            .await
            .unwrap();
        assert_eq!(seq, 2);
        store.checkpoint_now().await.unwrap();
        assert_eq!(
            verify_audit_offline(&path, &pk).unwrap().unwrap().entries,
            2
        );
        let conn = Connection::open(&path).unwrap();
        let leaked: i64 = conn
            .query_row("SELECT COUNT(*) FROM meta WHERE key = 'panic'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(leaked, 0, "the panicking job's write was rolled back");
    }
}
