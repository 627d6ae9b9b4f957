//! What the client session reports: [`Event`]s for the application, and the
//! typed reasons a call fails ([`ClientError`]) or a connection ends
//! ([`CloseReason`]).
//!
//! Messages never echo strings the server supplied (reason strings, server
//! references), so they are safe to log; those strings are in the fields.

use std::fmt;
use std::time::Duration;

use crate::{DecodeError, EncodeError, PacketId, PacketType, QoS, ReasonCode, UserProperty};

use super::Message;

/// Something the application should know, taken with
/// [`ClientSession::poll_event`](super::ClientSession::poll_event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// CONNACK accepted the connection.
    Connected(Connected),
    /// The server did not keep the session, so this message, sent on an
    /// earlier connection and not fully acknowledged, is forgotten on both
    /// sides. `message` is the message as it was sent, or `None` for a QoS 2
    /// message the server had already received (PUBREC) and whose release
    /// only was lost: it was most likely delivered. Reported right after
    /// [`Event::Connected`]; publishing it again is the application's call.
    PublishLost {
        packet_id: PacketId,
        message: Option<Message>,
    },
    /// A queued or resent message cannot be sent on this connection (larger
    /// than the server's maximum packet size, or a QoS or RETAIN the server
    /// does not support); it is dropped.
    PublishDropped {
        packet_id: PacketId,
        error: ClientError,
    },
    /// A message from the server, delivered once per QoS 2 packet
    /// identifier and at least once for QoS 1.
    Message(Message),
    /// PUBACK for a QoS 1 message: its flow is over.
    PubAck(Ack),
    /// PUBREC for a QoS 2 message: with a success code PUBREL was sent and
    /// [`Event::PubComp`] follows; with an error code the flow is over.
    PubRec(Ack),
    /// PUBCOMP for a QoS 2 message: its flow is over.
    PubComp(Ack),
    /// SUBACK: per filter, in the order subscribed, the granted QoS or the
    /// server's refusal (or Packet Too Large, locally, for a request resent
    /// to a server that accepts no packet that large).
    SubAck {
        packet_id: PacketId,
        results: Vec<Result<QoS, ReasonCode>>,
    },
    /// UNSUBACK: per filter, the server's answer (3.1.1 has none: all
    /// [`ReasonCode::Success`]).
    UnsubAck {
        packet_id: PacketId,
        reason_codes: Vec<ReasonCode>,
    },
    /// The connection is over; the driver closes the socket after sending
    /// what [`ClientSession::poll_transmit`](super::ClientSession::poll_transmit)
    /// still returns, then calls
    /// [`ClientSession::connection_lost`](super::ClientSession::connection_lost).
    Closed(CloseReason),
}

/// What the server said in an accepting CONNACK, with MQTT 5's defaults for
/// what it left out (and 3.1.1's fixed values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    pub session_present: bool,
    /// The client identifier the server assigned (to an empty one).
    pub assigned_client_id: Option<String>,
    /// QoS 1/2 messages the server accepts in flight from us.
    pub receive_maximum: u16,
    /// Largest packet the server accepts, fixed header included.
    pub maximum_packet_size: u32,
    /// The keep-alive in force, in seconds (the server's when it set one).
    pub keep_alive: u16,
    pub session_expiry_interval: Option<u32>,
    pub topic_alias_maximum: u16,
    pub maximum_qos: QoS,
    pub retain_available: bool,
    pub wildcard_subscription_available: bool,
    pub subscription_identifiers_available: bool,
    pub shared_subscription_available: bool,
    pub reason_string: Option<String>,
    pub response_information: Option<String>,
    pub server_reference: Option<String>,
    pub user_properties: Vec<UserProperty>,
}

/// The answer to one outgoing QoS 1/2 message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub packet_id: PacketId,
    /// Success, No Matching Subscribers, or the server's refusal (MQTT 5;
    /// always success in 3.1.1).
    pub reason_code: ReasonCode,
    pub reason_string: Option<String>,
}

/// A CONNACK that refused the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRefused {
    /// In 3.1.1, the reason code the return code stands for.
    pub reason_code: ReasonCode,
    pub reason_string: Option<String>,
    /// MQTT 5: another server to use (Use Another Server, Server Moved).
    pub server_reference: Option<String>,
}

impl fmt::Display for ConnectRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason_code)
    }
}

/// A DISCONNECT from the server (MQTT 5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerDisconnect {
    pub reason_code: ReasonCode,
    pub reason_string: Option<String>,
    pub server_reference: Option<String>,
}

impl fmt::Display for ServerDisconnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.reason_code)
    }
}

/// Why a connection ended on the protocol's side (a socket that closes is
/// the driver's to notice).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    #[error("connection refused by the server: {0}")]
    Refused(ConnectRefused),
    #[error("disconnected by the server: {0}")]
    ServerDisconnect(ServerDisconnect),
    #[error("protocol violation by the server")]
    Protocol(#[source] ProtocolViolation),
    #[error("no CONNACK within {0:?}")]
    ConnectTimeout(Duration),
    #[error("no answer to PINGREQ within {0:?}")]
    KeepAliveTimeout(Duration),
}

/// What the server did wrong; the client closes the connection (sending
/// DISCONNECT with [`ProtocolViolation::reason_code`] in MQTT 5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolViolation {
    #[error("malformed packet")]
    Decode(#[from] DecodeError),
    #[error("unexpected {0} from the server")]
    UnexpectedPacket(PacketType),
    #[error("{packet_type} for packet identifier {packet_id}, which is not in flight")]
    UnknownPacketId {
        packet_type: PacketType,
        packet_id: u16,
    },
    #[error("{packet_type} with {got} reason codes for {expected} topic filters")]
    ReasonCodeCount {
        packet_type: PacketType,
        expected: usize,
        got: usize,
    },
    #[error("invalid topic alias ({0})")]
    TopicAlias(ReasonCode),
    #[error("more unreleased QoS 2 messages than the receive maximum")]
    ReceiveMaximumExceeded,
    #[error("session present in answer to a clean start")]
    SessionPresentAfterCleanStart,
}

impl ProtocolViolation {
    /// The MQTT 5 reason code of the DISCONNECT the client sends.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            ProtocolViolation::Decode(e) => e.reason_code(),
            ProtocolViolation::TopicAlias(code) => *code,
            ProtocolViolation::ReceiveMaximumExceeded => ReasonCode::ReceiveMaximumExceeded,
            ProtocolViolation::UnexpectedPacket(_)
            | ProtocolViolation::UnknownPacketId { .. }
            | ProtocolViolation::ReasonCodeCount { .. }
            | ProtocolViolation::SessionPresentAfterCleanStart => ReasonCode::ProtocolError,
        }
    }
}

/// Why a call on the session failed. Nothing changed in the session
/// (except for [`ClientError::Closed`], which reports that the connection
/// is over).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("not connected")]
    NotConnected,
    #[error("a connection is already open or closing; call connection_lost first")]
    AlreadyConnected,
    #[error("{max} messages are already waiting to be sent")]
    QueueFull { max: usize },
    #[error("{max} subscribe or unsubscribe requests are already waiting for an answer")]
    TooManyRequests { max: usize },
    #[error("every packet identifier is in use")]
    PacketIdsExhausted,
    #[error("the server accepts QoS up to {maximum:?}, not {requested:?}")]
    QoSNotSupported { requested: QoS, maximum: QoS },
    #[error("the server does not support retained messages")]
    RetainNotSupported,
    #[error("the request lists no topic filter")]
    NoTopicFilters,
    #[error("cannot encode the packet")]
    Encode(#[from] EncodeError),
    #[error("the connection is closed")]
    Closed(#[source] CloseReason),
}
