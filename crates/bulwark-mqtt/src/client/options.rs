//! What a client asks for when it connects ([`ClientOptions`]) and the
//! application messages it sends and receives ([`Message`]).

use std::time::Duration;

use bytes::Bytes;

use crate::{LastWill, Properties, ProtocolVersion, QoS, TopicName, UserProperty};

/// The client's side of the connection: identity, session, limits.
///
/// Build it with [`ClientOptions::new`] and adjust the public fields; every
/// field has a safe default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    pub version: ProtocolVersion,
    /// May be empty: the server then assigns one (MQTT 5), which the session
    /// keeps for its later connections.
    pub client_id: String,
    /// Start a new session at every connection ("clean session" in 3.1.1).
    /// `false` (the default) resumes the server's session when it has one.
    pub clean_start: bool,
    /// MQTT 5: how long the server keeps the session after the connection
    /// ends, in seconds (`u32::MAX`: forever). 0 ends it with the
    /// connection. Ignored in 3.1.1, where the session lasts until a clean
    /// connection.
    pub session_expiry_interval: u32,
    /// Seconds; 0 turns keep-alive off. The server may impose another value
    /// (MQTT 5 Server Keep Alive), which the session then uses.
    pub keep_alive: u16,
    /// How long to wait for CONNACK after CONNECT, and for any packet after
    /// PINGREQ, before the connection is declared dead.
    pub response_timeout: Duration,
    pub will: Option<LastWill>,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    /// MQTT 5: how many QoS 1/2 messages the server may have unacknowledged
    /// towards us (QoS 2 messages up to their PUBREL count here).
    pub receive_maximum: u16,
    /// Largest packet accepted from the server, fixed header included; a
    /// larger one closes the connection with Packet Too Large. Announced in
    /// MQTT 5 so the server does not send larger ones.
    pub maximum_packet_size: u32,
    /// MQTT 5: how many topic aliases the server may set up towards us.
    pub topic_alias_maximum: u16,
    /// MQTT 5 user properties of CONNECT.
    pub user_properties: Vec<UserProperty>,
    /// Outgoing QoS 1/2 messages in flight at once, whatever the server's
    /// Receive Maximum (the only limit in 3.1.1, which has none).
    pub max_inflight: u16,
    /// QoS 1/2 messages that wait for a free slot in flight (or for the
    /// connection); one more is refused with
    /// [`ClientError::QueueFull`](super::ClientError::QueueFull).
    pub max_queued: usize,
    /// SUBSCRIBE and UNSUBSCRIBE requests waiting for their answer; one more
    /// is refused with
    /// [`ClientError::TooManyRequests`](super::ClientError::TooManyRequests).
    pub max_pending_requests: usize,
}

impl ClientOptions {
    /// Options for `client_id` speaking `version`: a persistent session
    /// (one hour in MQTT 5), 60 s keep-alive, 10 s response timeout, 64 KiB
    /// packets, no topic aliases, 100 messages in flight, 1,000 queued.
    pub fn new(version: ProtocolVersion, client_id: impl Into<String>) -> Self {
        ClientOptions {
            version,
            client_id: client_id.into(),
            clean_start: false,
            session_expiry_interval: 3600,
            keep_alive: 60,
            response_timeout: Duration::from_secs(10),
            will: None,
            username: None,
            password: None,
            receive_maximum: 100,
            maximum_packet_size: 64 * 1024,
            topic_alias_maximum: 0,
            user_properties: Vec::new(),
            max_inflight: 100,
            max_queued: 1000,
            max_pending_requests: 64,
        }
    }
}

/// An application message, as published or as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5 only (3.1.1 sends none): expiry, content type, response topic,
    /// correlation data, user properties; on receipt also the subscription
    /// identifiers. The client sends full topic names, so a topic alias set
    /// here is not sent.
    pub properties: Properties,
}

impl Message {
    /// A message without properties that is not retained.
    pub fn new(topic: TopicName, payload: impl Into<Bytes>, qos: QoS) -> Self {
        Message {
            topic,
            payload: payload.into(),
            qos,
            retain: false,
            properties: Properties::default(),
        }
    }

    /// The same message with the RETAIN flag set to `retain`.
    pub fn with_retain(mut self, retain: bool) -> Self {
        self.retain = retain;
        self
    }
}
