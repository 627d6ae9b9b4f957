//! What the MQTT session store takes ([`MqttOp`]) and gives back at start-up
//! ([`MqttSnapshot`]).
//!
//! The store does not interpret MQTT: packets are opaque bytes, `state` and
//! `options` are the gateway's own bytes. It only keeps rows, enforces the
//! few value ranges MQTT itself fixes (packet identifiers are never 0,
//! protocol levels are 3, 4 or 5) and ties every per-client row to its
//! session.

/// One change to the stored MQTT state. A batch of them is applied
/// atomically by [`MqttStore::apply`](super::MqttStore::apply).
///
/// Every op other than `PutSession`, `SetRetained` and `ClearRetained` names
/// a session. If that session does not exist (it may have been deleted
/// while acks were still in flight) the op is skipped, the rest of the batch
/// still applies, and [`MqttStoreStats::skipped_ops`] counts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MqttOp {
    /// Creates or replaces a session (upsert by `client_id`); its
    /// subscriptions, messages and will are kept.
    PutSession {
        /// The MQTT client identifier.
        client_id: String,
        /// Who owns the session (the authenticated identity), so a resumed
        /// session can be refused to anybody else.
        principal: String,
        /// 3 (MQTT 3.1), 4 (3.1.1) or 5.
        protocol_level: u8,
        /// Session expiry interval; `u32::MAX` means never.
        expiry_secs: u32,
        /// When the client went away (unix ms); `None` while connected.
        disconnected_at_ms: Option<i64>,
    },
    /// Deletes a session together with its subscriptions, messages and
    /// pending will. A will that is due when the session ends must be
    /// published (and this op applied) by the gateway.
    DeleteSession {
        /// The session's client identifier.
        client_id: String,
    },
    /// Creates or replaces a subscription (upsert by `(client_id, filter)`).
    PutSubscription {
        /// The session's client identifier.
        client_id: String,
        /// The topic filter, as subscribed (`$share/...` included).
        filter: String,
        /// The MQTT 5 subscription options byte (QoS, no-local,
        /// retain-as-published, retain handling).
        options: u8,
        /// MQTT 5 subscription identifier, 1..=268,435,455.
        subscription_id: Option<u32>,
    },
    /// Deletes one subscription; a missing one is not an error.
    DeleteSubscription {
        /// The session's client identifier.
        client_id: String,
        /// The topic filter, as subscribed.
        filter: String,
    },
    /// Stores a message queued for, or in flight to, a client (upsert by
    /// `(client_id, seq)`).
    PutMessage {
        /// The session's client identifier.
        client_id: String,
        /// The gateway's per-session order; 0..=`i64::MAX`.
        seq: u64,
        /// An encoded PUBLISH; the store never looks inside.
        packet: Vec<u8>,
        /// The packet identifier once one is assigned; never 0.
        packet_id: Option<u16>,
        /// The gateway's delivery state (queued, sent, PUBREC received…).
        state: u8,
        /// When the message expires (unix ms), if it does.
        expires_at_ms: Option<i64>,
    },
    /// Changes the packet identifier and state of a stored message; a
    /// missing message is not an error.
    UpdateMessage {
        /// The session's client identifier.
        client_id: String,
        /// Which message.
        seq: u64,
        /// The new packet identifier; never 0.
        packet_id: Option<u16>,
        /// The new delivery state.
        state: u8,
    },
    /// Deletes a stored message; a missing one is not an error.
    DeleteMessage {
        /// The session's client identifier.
        client_id: String,
        /// Which message.
        seq: u64,
    },
    /// Sets the retained message of a topic (upsert by `topic`).
    SetRetained {
        /// The topic name.
        topic: String,
        /// An encoded PUBLISH; the store never looks inside.
        packet: Vec<u8>,
        /// When the message expires (unix ms), if it does.
        expires_at_ms: Option<i64>,
    },
    /// Clears the retained message of a topic; a missing one is not an error.
    ClearRetained {
        /// The topic name.
        topic: String,
    },
    /// Records a delayed will (upsert by `client_id`), to be published at
    /// `publish_at_ms` unless the client comes back first.
    PutWill {
        /// The session's client identifier.
        client_id: String,
        /// The encoded will PUBLISH; the store never looks inside.
        packet: Vec<u8>,
        /// When to publish it (unix ms).
        publish_at_ms: i64,
    },
    /// Forgets a pending will; a missing one is not an error.
    DeleteWill {
        /// The session's client identifier.
        client_id: String,
    },
}

impl MqttOp {
    /// The session the op belongs to, if it needs one.
    pub(crate) fn session(&self) -> Option<&str> {
        match self {
            MqttOp::PutSession { .. }
            | MqttOp::SetRetained { .. }
            | MqttOp::ClearRetained { .. } => None,
            MqttOp::DeleteSession { client_id }
            | MqttOp::PutSubscription { client_id, .. }
            | MqttOp::DeleteSubscription { client_id, .. }
            | MqttOp::PutMessage { client_id, .. }
            | MqttOp::UpdateMessage { client_id, .. }
            | MqttOp::DeleteMessage { client_id, .. }
            | MqttOp::PutWill { client_id, .. }
            | MqttOp::DeleteWill { client_id } => Some(client_id),
        }
    }

    /// Roughly how many bytes of memory the op holds while queued.
    pub(crate) fn weight(&self) -> usize {
        const OVERHEAD: usize = 64;
        OVERHEAD
            + match self {
                MqttOp::PutSession {
                    client_id,
                    principal,
                    ..
                } => client_id.len() + principal.len(),
                MqttOp::DeleteSession { client_id }
                | MqttOp::UpdateMessage { client_id, .. }
                | MqttOp::DeleteMessage { client_id, .. }
                | MqttOp::DeleteWill { client_id } => client_id.len(),
                MqttOp::PutSubscription {
                    client_id, filter, ..
                }
                | MqttOp::DeleteSubscription { client_id, filter } => {
                    client_id.len() + filter.len()
                }
                MqttOp::PutMessage {
                    client_id, packet, ..
                }
                | MqttOp::PutWill {
                    client_id, packet, ..
                } => client_id.len() + packet.len(),
                MqttOp::SetRetained { topic, packet, .. } => topic.len() + packet.len(),
                MqttOp::ClearRetained { topic } => topic.len(),
            }
    }
}

/// Everything stored, as [`MqttStore::load`](super::MqttStore::load) returns
/// it for the gateway's start-up. Expired rows are included: expiry is the
/// gateway's decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MqttSnapshot {
    /// In `client_id` order.
    pub sessions: Vec<StoredSession>,
    /// In `topic` order.
    pub retained: Vec<StoredRetained>,
    /// In `client_id` order.
    pub wills: Vec<StoredWill>,
}

/// A persistent session and everything that belongs to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// The MQTT client identifier.
    pub client_id: String,
    /// Who owns the session.
    pub principal: String,
    /// 3 (MQTT 3.1), 4 (3.1.1) or 5.
    pub protocol_level: u8,
    /// Session expiry interval; `u32::MAX` means never.
    pub expiry_secs: u32,
    /// When the client went away (unix ms); `None` if it was connected
    /// when the server stopped.
    pub disconnected_at_ms: Option<i64>,
    /// In `filter` order.
    pub subscriptions: Vec<StoredSubscription>,
    /// In `seq` order.
    pub messages: Vec<StoredMessage>,
}

/// A stored subscription of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    /// The topic filter, as subscribed.
    pub filter: String,
    /// The MQTT 5 subscription options byte.
    pub options: u8,
    /// MQTT 5 subscription identifier.
    pub subscription_id: Option<u32>,
}

/// A message queued for, or in flight to, a session's client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The gateway's per-session order.
    pub seq: u64,
    /// The encoded PUBLISH, as stored.
    pub packet: Vec<u8>,
    /// The packet identifier, if one was assigned.
    pub packet_id: Option<u16>,
    /// The gateway's delivery state.
    pub state: u8,
    /// When the message expires (unix ms), if it does.
    pub expires_at_ms: Option<i64>,
}

/// The retained message of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRetained {
    /// The topic name.
    pub topic: String,
    /// The encoded PUBLISH, as stored.
    pub packet: Vec<u8>,
    /// When the message expires (unix ms), if it does.
    pub expires_at_ms: Option<i64>,
}

/// A pending delayed will.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredWill {
    /// The session's client identifier.
    pub client_id: String,
    /// The encoded will PUBLISH, as stored.
    pub packet: Vec<u8>,
    /// When to publish it (unix ms).
    pub publish_at_ms: i64,
}

/// Counters of an [`MqttStore`](super::MqttStore) since it was opened, for
/// the gateway's metrics (suggested names in brackets).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MqttStoreStats {
    /// Committed ops skipped because their session did not exist
    /// (`bulwark_mqtt_store_skipped_ops_total`).
    pub skipped_ops: u64,
    /// Batches that found the channel full and waited in the ordered spill
    /// queue (`bulwark_mqtt_store_spilled_batches_total`).
    pub spilled_batches: u64,
    /// `apply_nowait` batches dropped because the spill queue was full too
    /// (`bulwark_mqtt_store_dropped_batches_total`).
    pub dropped_batches: u64,
    /// `apply_nowait` batches that failed or whose commit failed; nobody
    /// waits for them, so they are logged and counted here
    /// (`bulwark_mqtt_store_failed_batches_total`).
    pub failed_batches: u64,
    /// Transactions committed (`bulwark_mqtt_store_commits_total`).
    pub commits: u64,
    /// Batches (`apply` and `apply_nowait` calls) committed
    /// (`bulwark_mqtt_store_batches_total`); divided by `commits`, the
    /// group-commit factor.
    pub batches: u64,
}
