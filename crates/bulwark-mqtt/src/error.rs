//! The codec's two error enums, one per direction, and the single place
//! where a decoding failure is mapped to the MQTT 5 reason code sent to the
//! peer before the connection is closed.
//!
//! Messages never echo peer-supplied strings, so they are safe to log.

use crate::packet::{PacketType, ProtocolVersion};
use crate::properties::{PropertyContext, PropertyId};
use crate::reason::ReasonCode;
use crate::topic::TopicError;

/// Why bytes from a peer are not a valid packet. After any of these the
/// connection must be closed (MQTT 5 §4.13).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("packet of {size} bytes exceeds the maximum of {max}")]
    PacketTooLarge { size: u64, max: u32 },
    #[error("malformed variable byte integer (more than four bytes, or not minimal)")]
    MalformedVarInt,
    #[error("invalid packet type {packet_type}")]
    InvalidPacketType { packet_type: u8 },
    #[error("expected CONNECT as the first packet, got {packet_type}")]
    ExpectedConnect { packet_type: PacketType },
    #[error("invalid fixed header flags {flags:#06b} for {packet_type}")]
    InvalidFixedHeaderFlags { packet_type: PacketType, flags: u8 },
    #[error("PUBLISH with QoS 3")]
    InvalidQoS,
    #[error("PUBLISH with QoS 0 has the DUP flag set")]
    DupWithQoS0,
    #[error("string is not valid UTF-8")]
    InvalidUtf8 {
        #[source]
        source: std::str::Utf8Error,
    },
    #[error("string contains U+0000")]
    NulInString,
    #[error("packet is shorter than its fields declare")]
    Truncated,
    #[error("{count} unexpected bytes at the end of the packet")]
    TrailingBytes { count: usize },
    #[error("unknown property identifier {id:#04x}")]
    UnknownProperty { id: u32 },
    #[error("property {property} is not allowed in {context}")]
    PropertyNotAllowed {
        property: PropertyId,
        context: PropertyContext,
    },
    #[error("property {property} appears more than once")]
    DuplicateProperty { property: PropertyId },
    #[error("property {property} has an invalid value")]
    InvalidPropertyValue { property: PropertyId },
    #[error("authentication data without an authentication method")]
    AuthenticationDataWithoutMethod,
    #[error("invalid topic name")]
    InvalidTopicName {
        #[source]
        source: TopicError,
    },
    #[error("invalid topic filter")]
    InvalidTopicFilter {
        #[source]
        source: TopicError,
    },
    #[error("PUBLISH with an empty topic name and no topic alias")]
    EmptyTopicWithoutAlias,
    #[error("packet identifier is zero")]
    ZeroPacketId,
    #[error("{packet_type} without topic filters")]
    NoTopicFilters { packet_type: PacketType },
    #[error("{packet_type} without reason codes")]
    NoReasonCodes { packet_type: PacketType },
    #[error("reason code {code:#04x} is not allowed in {packet_type}")]
    InvalidReasonCode { packet_type: PacketType, code: u8 },
    #[error("protocol name is not \"MQTT\"")]
    InvalidProtocolName,
    #[error("unsupported protocol level {level}")]
    UnsupportedProtocolVersion { level: u8 },
    #[error("reserved CONNECT flag is set")]
    ReservedConnectFlag,
    #[error("will QoS 3")]
    InvalidWillQoS,
    #[error("will QoS or will retain set without the will flag")]
    WillFlagsWithoutWill,
    #[error("password without user name (MQTT 3.1.1)")]
    PasswordWithoutUsername,
    #[error("reserved CONNACK flags are set")]
    InvalidConnAckFlags,
    #[error("CONNACK with session present and a refusal")]
    SessionPresentWithError,
    #[error("invalid subscription options {options:#010b}")]
    InvalidSubscriptionOptions { options: u8 },
    #[error("retain handling 3")]
    InvalidRetainHandling,
    #[error("no-local on a shared subscription")]
    NoLocalOnSharedSubscription,
}

impl DecodeError {
    /// The MQTT 5 reason code for CONNACK (before a session exists) or
    /// DISCONNECT (after): Malformed Packet for bytes that break the
    /// grammar, Protocol Error for well-formed packets that break a rule,
    /// and the specific code where MQTT 5 names one.
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError as E;
        match self {
            E::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            E::InvalidProtocolName | E::UnsupportedProtocolVersion { .. } => {
                ReasonCode::UnsupportedProtocolVersion
            }
            E::InvalidPropertyValue {
                property: PropertyId::TopicAlias,
            } => ReasonCode::TopicAliasInvalid,
            E::ExpectedConnect { .. }
            | E::DuplicateProperty { .. }
            | E::InvalidPropertyValue { .. }
            | E::AuthenticationDataWithoutMethod
            | E::EmptyTopicWithoutAlias
            | E::NoTopicFilters { .. }
            | E::NoReasonCodes { .. }
            | E::SessionPresentWithError
            | E::InvalidRetainHandling
            | E::NoLocalOnSharedSubscription => ReasonCode::ProtocolError,
            E::MalformedVarInt
            | E::InvalidPacketType { .. }
            | E::InvalidFixedHeaderFlags { .. }
            | E::InvalidQoS
            | E::DupWithQoS0
            | E::InvalidUtf8 { .. }
            | E::NulInString
            | E::Truncated
            | E::TrailingBytes { .. }
            | E::UnknownProperty { .. }
            | E::PropertyNotAllowed { .. }
            | E::InvalidTopicName { .. }
            | E::InvalidTopicFilter { .. }
            | E::ZeroPacketId
            | E::InvalidReasonCode { .. }
            | E::ReservedConnectFlag
            | E::InvalidWillQoS
            | E::WillFlagsWithoutWill
            | E::PasswordWithoutUsername
            | E::InvalidConnAckFlags
            | E::InvalidSubscriptionOptions { .. } => ReasonCode::MalformedPacket,
        }
    }
}

/// Why a packet cannot be sent as it is. Nothing is written when encoding
/// fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("packet of {size} bytes exceeds the peer's maximum of {max}")]
    PacketTooLarge { size: usize, max: u32 },
    #[error("{size} bytes do not fit in a variable byte integer")]
    TooLarge { size: usize },
    #[error("field of {len} bytes is longer than 65535")]
    FieldTooLong { len: usize },
    #[error("string contains U+0000")]
    NulInString,
    #[error("reason code {code} is not allowed in {packet_type}")]
    ReasonCodeNotAllowed {
        packet_type: PacketType,
        code: ReasonCode,
    },
    #[error("property {property} is not allowed in {context}")]
    PropertyNotAllowed {
        property: PropertyId,
        context: PropertyContext,
    },
    #[error("property {property} has an invalid value")]
    InvalidPropertyValue { property: PropertyId },
    #[error("authentication data without an authentication method")]
    AuthenticationDataWithoutMethod,
    #[error("PUBLISH needs a packet identifier exactly when its QoS is above 0")]
    PacketIdMismatch,
    #[error("PUBLISH with QoS 0 cannot be a duplicate")]
    DupWithQoS0,
    #[error("PUBLISH without a topic name needs a topic alias (MQTT 5 only)")]
    MissingTopic,
    #[error("{packet_type} without topic filters")]
    NoTopicFilters { packet_type: PacketType },
    #[error("{packet_type} without reason codes")]
    NoReasonCodes { packet_type: PacketType },
    #[error("{packet_type} does not exist in {version}")]
    NotInVersion {
        packet_type: PacketType,
        version: ProtocolVersion,
    },
    #[error("CONNECT for {connect} cannot be encoded as {requested}")]
    VersionMismatch {
        connect: ProtocolVersion,
        requested: ProtocolVersion,
    },
    #[error("CONNACK with session present and a refusal")]
    SessionPresentWithError,
    #[error("password without user name (MQTT 3.1.1)")]
    PasswordWithoutUsername,
    #[error("no-local on a shared subscription")]
    NoLocalOnSharedSubscription,
}
