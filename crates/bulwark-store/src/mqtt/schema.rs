//! The MQTT store's file: created private (0600), tagged with its own
//! `application_id` so it is never confused with the registry database,
//! configured for durable commits and migrated by `PRAGMA user_version`.

use std::fs::{OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::{Result, StoreError};

/// "BMQT": marks a file as a Bulwark MQTT session store.
const APPLICATION_ID: i64 = 0x424d_5154;

/// Mode of the database file; SQLite gives its `-wal` and `-shm` files the
/// same mode.
const FILE_MODE: u32 = 0o600;

/// Every per-client table references `sessions` with `ON DELETE CASCADE`, so
/// deleting a session takes its rows with it, and no row can exist without
/// its session. CHECKs hold the ranges MQTT fixes (and keep `u64`/`u32`
/// values from wrapping).
const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE sessions (
    client_id TEXT PRIMARY KEY,
    principal TEXT NOT NULL,
    protocol_level INTEGER NOT NULL CHECK (protocol_level IN (3, 4, 5)),
    expiry_secs INTEGER NOT NULL CHECK (expiry_secs BETWEEN 0 AND 4294967295),
    disconnected_at_ms INTEGER
);
CREATE TABLE subscriptions (
    client_id TEXT NOT NULL REFERENCES sessions(client_id) ON DELETE CASCADE,
    filter TEXT NOT NULL,
    options INTEGER NOT NULL CHECK (options BETWEEN 0 AND 255),
    subscription_id INTEGER CHECK (subscription_id BETWEEN 1 AND 268435455),
    PRIMARY KEY (client_id, filter)
) WITHOUT ROWID;
CREATE TABLE messages (
    client_id TEXT NOT NULL REFERENCES sessions(client_id) ON DELETE CASCADE,
    seq INTEGER NOT NULL CHECK (seq >= 0),
    packet BLOB NOT NULL,
    packet_id INTEGER CHECK (packet_id BETWEEN 1 AND 65535),
    state INTEGER NOT NULL CHECK (state BETWEEN 0 AND 255),
    expires_at_ms INTEGER,
    PRIMARY KEY (client_id, seq)
);
CREATE TABLE retained (
    topic TEXT PRIMARY KEY,
    packet BLOB NOT NULL,
    expires_at_ms INTEGER
);
CREATE TABLE wills (
    client_id TEXT PRIMARY KEY REFERENCES sessions(client_id) ON DELETE CASCADE,
    packet BLOB NOT NULL,
    publish_at_ms INTEGER NOT NULL
);
"#];

/// Opens (creating if needed) the store at `path` with its schema current.
pub(super) fn open(path: &Path) -> Result<Connection> {
    create_private(path)?;
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(10))?;
    check_application_id(&conn, path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before it returns, so acknowledged writes
    // survive a crash or a power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    // Needed for the cascades; per connection.
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrate(&mut conn)?;
    Ok(conn)
}

/// Creates the file with mode 0600 if it is missing, and sets exactly 0600
/// on an existing one (an operator may have widened it).
fn create_private(path: &Path) -> Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(FILE_MODE)
        .open(path)
        .and_then(|_| std::fs::set_permissions(path, Permissions::from_mode(FILE_MODE)))
        .map_err(|e| StoreError::Internal(format!("cannot create {}: {e}", path.display())))
}

/// Refuses a file that is some other SQLite database (the registry's, say).
fn check_application_id(conn: &Connection, path: &Path) -> Result<()> {
    let id: i64 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let tables: i64 = conn.query_row("SELECT COUNT(*) FROM sqlite_schema", [], |r| r.get(0))?;
    if id == APPLICATION_ID || (id == 0 && tables == 0) {
        Ok(())
    } else {
        Err(StoreError::Internal(format!(
            "{} is not a Bulwark MQTT session store",
            path.display()
        )))
    }
}

/// Brings the schema up to date, one transaction per step.
fn migrate(conn: &mut Connection) -> Result<()> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > MIGRATIONS.len() {
        return Err(StoreError::Internal(format!(
            "the MQTT store has schema version {version}, newer than this server's {}",
            MIGRATIONS.len()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}
