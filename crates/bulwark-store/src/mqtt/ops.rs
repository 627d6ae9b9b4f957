//! The SQL of each [`MqttOp`] and of the start-up [`MqttSnapshot`].
//!
//! Runs only on the writer thread, inside the writer's transaction.

use std::collections::HashMap;

use rusqlite::{params, Connection};

use super::model::{
    MqttOp, MqttSnapshot, StoredMessage, StoredRetained, StoredSession, StoredSubscription,
    StoredWill,
};
use crate::{Result, StoreError};

/// What applying one op did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Applied {
    Done,
    /// The op's session does not exist; nothing was written.
    Skipped,
}

/// Applies one op. An error leaves the caller to roll the batch back.
pub(super) fn apply(conn: &Connection, op: &MqttOp) -> Result<Applied> {
    // Inserts into per-client tables check for the session first (the
    // foreign keys would refuse the row anyway, failing the batch); updates
    // and deletes run blind and look only when they changed nothing.
    if let (false, Some(client_id)) = (is_change_of_existing(op), op.session()) {
        if !session_exists(conn, client_id)? {
            return Ok(Applied::Skipped);
        }
    }
    let changed = match op {
        MqttOp::PutSession {
            client_id,
            principal,
            protocol_level,
            expiry_secs,
            disconnected_at_ms,
        } => conn
            .prepare_cached(
                "INSERT INTO sessions \
                 (client_id, principal, protocol_level, expiry_secs, disconnected_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (client_id) DO UPDATE SET principal = excluded.principal, \
                 protocol_level = excluded.protocol_level, expiry_secs = excluded.expiry_secs, \
                 disconnected_at_ms = excluded.disconnected_at_ms",
            )?
            .execute(params![
                client_id,
                principal,
                protocol_level,
                expiry_secs,
                disconnected_at_ms
            ])?,
        MqttOp::DeleteSession { client_id } => conn
            .prepare_cached("DELETE FROM sessions WHERE client_id = ?1")?
            .execute([client_id])?,
        MqttOp::PutSubscription {
            client_id,
            filter,
            options,
            subscription_id,
        } => conn
            .prepare_cached(
                "INSERT INTO subscriptions (client_id, filter, options, subscription_id) \
                 VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (client_id, filter) DO UPDATE SET options = excluded.options, \
                 subscription_id = excluded.subscription_id",
            )?
            .execute(params![client_id, filter, options, subscription_id])?,
        MqttOp::DeleteSubscription { client_id, filter } => conn
            .prepare_cached("DELETE FROM subscriptions WHERE client_id = ?1 AND filter = ?2")?
            .execute([client_id, filter])?,
        MqttOp::PutMessage {
            client_id,
            seq,
            packet,
            packet_id,
            state,
            expires_at_ms,
        } => conn
            .prepare_cached(
                "INSERT INTO messages \
                 (client_id, seq, packet, packet_id, state, expires_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (client_id, seq) DO UPDATE SET packet = excluded.packet, \
                 packet_id = excluded.packet_id, state = excluded.state, \
                 expires_at_ms = excluded.expires_at_ms",
            )?
            .execute(params![
                client_id,
                seq_to_sql(*seq)?,
                packet,
                packet_id,
                state,
                expires_at_ms
            ])?,
        MqttOp::UpdateMessage {
            client_id,
            seq,
            packet_id,
            state,
        } => conn
            .prepare_cached(
                "UPDATE messages SET packet_id = ?3, state = ?4 \
                 WHERE client_id = ?1 AND seq = ?2",
            )?
            .execute(params![client_id, seq_to_sql(*seq)?, packet_id, state])?,
        MqttOp::DeleteMessage { client_id, seq } => conn
            .prepare_cached("DELETE FROM messages WHERE client_id = ?1 AND seq = ?2")?
            .execute(params![client_id, seq_to_sql(*seq)?])?,
        MqttOp::SetRetained {
            topic,
            packet,
            expires_at_ms,
        } => conn
            .prepare_cached(
                "INSERT INTO retained (topic, packet, expires_at_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (topic) DO UPDATE SET packet = excluded.packet, \
                 expires_at_ms = excluded.expires_at_ms",
            )?
            .execute(params![topic, packet, expires_at_ms])?,
        MqttOp::ClearRetained { topic } => conn
            .prepare_cached("DELETE FROM retained WHERE topic = ?1")?
            .execute([topic])?,
        MqttOp::PutWill {
            client_id,
            packet,
            publish_at_ms,
        } => conn
            .prepare_cached(
                "INSERT INTO wills (client_id, packet, publish_at_ms) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (client_id) DO UPDATE SET packet = excluded.packet, \
                 publish_at_ms = excluded.publish_at_ms",
            )?
            .execute(params![client_id, packet, publish_at_ms])?,
        MqttOp::DeleteWill { client_id } => conn
            .prepare_cached("DELETE FROM wills WHERE client_id = ?1")?
            .execute([client_id])?,
    };
    match (changed, op.session()) {
        (0, Some(client_id)) if !session_exists(conn, client_id)? => Ok(Applied::Skipped),
        _ => Ok(Applied::Done),
    }
}

/// Updates and deletes: they need no session check up front.
fn is_change_of_existing(op: &MqttOp) -> bool {
    matches!(
        op,
        MqttOp::DeleteSession { .. }
            | MqttOp::DeleteSubscription { .. }
            | MqttOp::UpdateMessage { .. }
            | MqttOp::DeleteMessage { .. }
            | MqttOp::DeleteWill { .. }
    )
}

fn session_exists(conn: &Connection, client_id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM sessions WHERE client_id = ?1")?
        .exists([client_id])?)
}

/// SQLite integers are `i64`; a larger `seq` is the gateway's bug and fails
/// its batch rather than wrapping.
fn seq_to_sql(seq: u64) -> Result<i64> {
    i64::try_from(seq)
        .map_err(|_| StoreError::Internal(format!("MQTT message seq {seq} is out of range")))
}

/// The session a subscription or message row belongs to; the foreign keys
/// guarantee it exists.
fn owner<'a>(
    sessions: &'a mut [StoredSession],
    index: &HashMap<String, usize>,
    client_id: String,
) -> Result<&'a mut StoredSession> {
    index
        .get(&client_id)
        .map(|&i| &mut sessions[i])
        .ok_or_else(|| StoreError::Internal(format!("orphan MQTT row for {client_id}")))
}

/// Reads everything stored. Only the writer thread writes, and it is busy
/// here, so the separate queries see one state.
pub(super) fn load(conn: &Connection) -> Result<MqttSnapshot> {
    let mut sessions = Vec::new();
    let mut index = HashMap::new();
    let mut st = conn.prepare(
        "SELECT client_id, principal, protocol_level, expiry_secs, disconnected_at_ms \
         FROM sessions ORDER BY client_id",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        let client_id: String = r.get(0)?;
        index.insert(client_id.clone(), sessions.len());
        sessions.push(StoredSession {
            client_id,
            principal: r.get(1)?,
            protocol_level: r.get(2)?,
            expiry_secs: r.get(3)?,
            disconnected_at_ms: r.get(4)?,
            subscriptions: Vec::new(),
            messages: Vec::new(),
        });
    }
    let mut st = conn.prepare(
        "SELECT client_id, filter, options, subscription_id FROM subscriptions \
         ORDER BY client_id, filter",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        owner(&mut sessions, &index, r.get(0)?)?
            .subscriptions
            .push(StoredSubscription {
                filter: r.get(1)?,
                options: r.get(2)?,
                subscription_id: r.get(3)?,
            });
    }
    let mut st = conn.prepare(
        "SELECT client_id, seq, packet, packet_id, state, expires_at_ms FROM messages \
         ORDER BY client_id, seq",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        owner(&mut sessions, &index, r.get(0)?)?
            .messages
            .push(StoredMessage {
                seq: r.get(1)?,
                packet: r.get(2)?,
                packet_id: r.get(3)?,
                state: r.get(4)?,
                expires_at_ms: r.get(5)?,
            });
    }
    let retained = conn
        .prepare("SELECT topic, packet, expires_at_ms FROM retained ORDER BY topic")?
        .query_map([], |r| {
            Ok(StoredRetained {
                topic: r.get(0)?,
                packet: r.get(1)?,
                expires_at_ms: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let wills = conn
        .prepare("SELECT client_id, packet, publish_at_ms FROM wills ORDER BY client_id")?
        .query_map([], |r| {
            Ok(StoredWill {
                client_id: r.get(0)?,
                packet: r.get(1)?,
                publish_at_ms: r.get(2)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok(MqttSnapshot {
        sessions,
        retained,
        wills,
    })
}
