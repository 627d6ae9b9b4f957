//! The MQTT store against real database files: [`ops`] covers every op,
//! atomicity, cascades, skipped ops and the file's settings; [`queue`] the
//! writer and its queue (group commit, a panicking batch, ordering of
//! `apply_nowait` with `apply`, bounds). The `kill -9` test is
//! `tests/mqtt_crash.rs`.

mod ops;
mod queue;

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::writer::Msg;
use super::*;

fn open(dir: &tempfile::TempDir) -> (MqttStore, PathBuf) {
    let path = dir.path().join("mqtt.db");
    (MqttStore::open(&path).unwrap(), path)
}

fn session(id: &str) -> MqttOp {
    MqttOp::PutSession {
        client_id: id.into(),
        principal: format!("device:{id}"),
        protocol_level: 5,
        expiry_secs: 3600,
        disconnected_at_ms: None,
    }
}

fn message(id: &str, seq: u64) -> MqttOp {
    MqttOp::PutMessage {
        client_id: id.into(),
        seq,
        packet: vec![0x32, seq as u8, 0xff],
        packet_id: None,
        state: 0,
        expires_at_ms: None,
    }
}

fn stored(seq: u64, packet_id: Option<u16>, state: u8) -> StoredMessage {
    StoredMessage {
        seq,
        packet: vec![0x32, seq as u8, 0xff],
        packet_id,
        state,
        expires_at_ms: None,
    }
}

fn seqs(snapshot: &MqttSnapshot, client_id: &str) -> Vec<u64> {
    snapshot
        .sessions
        .iter()
        .find(|s| s.client_id == client_id)
        .map(|s| s.messages.iter().map(|m| m.seq).collect())
        .unwrap_or_default()
}

fn count(path: &Path, sql: &str) -> i64 {
    Connection::open(path)
        .unwrap()
        .query_row(sql, [], |r| r.get(0))
        .unwrap()
}

/// Stalls the writer inside a transaction until the returned sender is
/// used (or dropped); returns once the writer is stalled.
async fn stall(store: &MqttStore) -> std::sync::mpsc::Sender<()> {
    let (started, wait_started) = oneshot::channel();
    let (release, wait_release) = std::sync::mpsc::channel::<()>();
    store
        .queue
        .send(Msg::Hook(Box::new(move |_| {
            let _ = started.send(());
            let _ = wait_release.recv();
            Ok(())
        })))
        .await
        .unwrap();
    wait_started.await.unwrap();
    release
}
