//! Every [`DecodeError`] variant from bytes a peer could send, with the
//! reason code it maps to.

use std::collections::HashSet;
use std::mem::discriminant;

use bytes::Bytes;

use super::{check_error, decode_one, h};
use crate::properties::PropertyContext;
use crate::{DecodeError as E, Packet, PacketType, PropertyId, ProtocolVersion, TopicError};

use ProtocolVersion::{V311, V5};

/// CONNECT with protocol name `name`, `level`, `flags`, keep alive 60 and
/// the rest of the body as given.
fn connect(name: &str, level: u8, flags: u8, rest: &str) -> String {
    let mut body = Vec::new();
    body.extend((name.len() as u16).to_be_bytes());
    body.extend(name.as_bytes());
    body.extend([level, flags, 0, 60]);
    body.extend(h(rest));
    let mut out = vec![0x10, u8::try_from(body.len()).unwrap()];
    out.extend(body);
    out.iter().map(|b| format!("{b:02X} ")).collect()
}

type Case = (Option<ProtocolVersion>, String, E, u8);

fn case(v: Option<ProtocolVersion>, hex: &str, e: E, reason: u8) -> Case {
    (v, hex.to_owned(), e, reason)
}

fn cases() -> Vec<Case> {
    let (v3, v5) = (Some(V311), Some(V5));
    let invalid = vec![0xFF];
    let bad_utf8 = std::str::from_utf8(&invalid).unwrap_err();
    vec![
        case(v3, "30 FF FF FF FF 01", E::MalformedVarInt, 0x81),
        case(v5, "30 80 00", E::MalformedVarInt, 0x81),
        case(v5, "00 00", E::InvalidPacketType { packet_type: 0 }, 0x81),
        case(v3, "F0 00", E::InvalidPacketType { packet_type: 15 }, 0x81),
        case(
            None,
            "C0 00",
            E::ExpectedConnect {
                packet_type: PacketType::PingReq,
            },
            0x82,
        ),
        case(
            v3,
            "80 00",
            E::InvalidFixedHeaderFlags {
                packet_type: PacketType::Subscribe,
                flags: 0,
            },
            0x81,
        ),
        case(
            v5,
            "C1 00",
            E::InvalidFixedHeaderFlags {
                packet_type: PacketType::PingReq,
                flags: 1,
            },
            0x81,
        ),
        case(
            v3,
            "60 02 00 01",
            E::InvalidFixedHeaderFlags {
                packet_type: PacketType::PubRel,
                flags: 0,
            },
            0x81,
        ),
        case(v3, "36 00", E::InvalidQoS, 0x81),
        case(v5, "38 00", E::DupWithQoS0, 0x81),
        case(
            v3,
            "30 03 00 01 FF",
            E::InvalidUtf8 { source: bad_utf8 },
            0x81,
        ),
        case(v3, "30 03 00 01 00", E::NulInString, 0x81),
        case(v5, "30 03 00 05 61", E::Truncated, 0x81),
        case(v3, "40 01 00", E::Truncated, 0x81),
        case(v5, "E0 03 00 05 11", E::Truncated, 0x81),
        // AUTH may not carry a reason code without a property length.
        case(v5, "F0 01 19", E::Truncated, 0x81),
        case(v3, "C0 01 00", E::TrailingBytes { count: 1 }, 0x81),
        case(v3, "40 03 00 01 00", E::TrailingBytes { count: 1 }, 0x81),
        case(v5, "E0 03 00 01 7F", E::UnknownProperty { id: 0x7F }, 0x81),
        case(
            v5,
            "E0 05 00 03 23 00 01",
            E::PropertyNotAllowed {
                property: PropertyId::TopicAlias,
                context: PropertyContext::DISCONNECT,
            },
            0x81,
        ),
        case(
            v5,
            "E0 0C 00 0A 11 00 00 00 01 11 00 00 00 02",
            E::DuplicateProperty {
                property: PropertyId::SessionExpiryInterval,
            },
            0x82,
        ),
        case(
            v5,
            "82 0B 00 01 04 0B 01 0B 02 00 01 61 00",
            E::DuplicateProperty {
                property: PropertyId::SubscriptionIdentifier,
            },
            0x82,
        ),
        case(
            v5,
            "30 07 00 01 61 03 23 00 00",
            E::InvalidPropertyValue {
                property: PropertyId::TopicAlias,
            },
            0x94,
        ),
        case(
            v5,
            "20 05 00 00 02 25 02",
            E::InvalidPropertyValue {
                property: PropertyId::RetainAvailable,
            },
            0x82,
        ),
        case(
            v5,
            "F0 06 18 04 16 00 01 61",
            E::AuthenticationDataWithoutMethod,
            0x82,
        ),
        case(
            v3,
            "30 05 00 03 61 2F 2B",
            E::InvalidTopicName {
                source: TopicError::WildcardInName,
            },
            0x81,
        ),
        case(
            v3,
            "30 02 00 00",
            E::InvalidTopicName {
                source: TopicError::Empty,
            },
            0x81,
        ),
        case(
            v3,
            "82 05 00 01 00 00 00",
            E::InvalidTopicFilter {
                source: TopicError::Empty,
            },
            0x81,
        ),
        case(
            v3,
            "82 07 00 01 00 02 61 23 00",
            E::InvalidTopicFilter {
                source: TopicError::MisplacedMultiLevelWildcard,
            },
            0x81,
        ),
        case(v5, "30 03 00 00 00", E::EmptyTopicWithoutAlias, 0x82),
        case(v3, "40 02 00 00", E::ZeroPacketId, 0x81),
        case(v3, "32 05 00 01 61 00 00", E::ZeroPacketId, 0x81),
        case(
            v3,
            "82 02 00 01",
            E::NoTopicFilters {
                packet_type: PacketType::Subscribe,
            },
            0x82,
        ),
        case(
            v5,
            "A2 03 00 01 00",
            E::NoTopicFilters {
                packet_type: PacketType::Unsubscribe,
            },
            0x82,
        ),
        case(
            v3,
            "90 02 00 01",
            E::NoReasonCodes {
                packet_type: PacketType::SubAck,
            },
            0x82,
        ),
        case(
            v5,
            "B0 03 00 01 00",
            E::NoReasonCodes {
                packet_type: PacketType::UnsubAck,
            },
            0x82,
        ),
        case(
            v5,
            "62 03 00 01 10",
            E::InvalidReasonCode {
                packet_type: PacketType::PubRel,
                code: 0x10,
            },
            0x81,
        ),
        case(
            v5,
            "40 03 00 01 03",
            E::InvalidReasonCode {
                packet_type: PacketType::PubAck,
                code: 0x03,
            },
            0x81,
        ),
        case(
            v3,
            "20 02 00 06",
            E::InvalidReasonCode {
                packet_type: PacketType::ConnAck,
                code: 6,
            },
            0x81,
        ),
        case(
            v3,
            "90 03 00 01 03",
            E::InvalidReasonCode {
                packet_type: PacketType::SubAck,
                code: 3,
            },
            0x81,
        ),
        case(
            None,
            &connect("MQIsdp", 3, 0x02, "00 01 61"),
            E::InvalidProtocolName,
            0x84,
        ),
        case(
            None,
            &connect("MQTT", 3, 0x02, "00 01 61"),
            E::UnsupportedProtocolVersion { level: 3 },
            0x84,
        ),
        case(
            None,
            &connect("MQTT", 6, 0x02, "00 01 61"),
            E::UnsupportedProtocolVersion { level: 6 },
            0x84,
        ),
        // A CONNECT whose level differs from the version already in use.
        case(
            v3,
            &connect("MQTT", 5, 0x02, "00 00 01 61"),
            E::UnsupportedProtocolVersion { level: 5 },
            0x84,
        ),
        case(
            None,
            &connect("MQTT", 4, 0x03, "00 01 61"),
            E::ReservedConnectFlag,
            0x81,
        ),
        case(
            None,
            &connect("MQTT", 4, 0x1E, "00 01 61"),
            E::InvalidWillQoS,
            0x81,
        ),
        case(
            None,
            &connect("MQTT", 4, 0x0A, "00 01 61"),
            E::WillFlagsWithoutWill,
            0x81,
        ),
        case(
            None,
            &connect("MQTT", 5, 0x22, "00 00 01 61"),
            E::WillFlagsWithoutWill,
            0x81,
        ),
        case(
            None,
            &connect("MQTT", 4, 0x42, "00 01 61 00 01 70"),
            E::PasswordWithoutUsername,
            0x81,
        ),
        case(
            None,
            &connect("MQTT", 4, 0x02, "00 01 61 00"),
            E::TrailingBytes { count: 1 },
            0x81,
        ),
        case(
            None,
            &connect("MQTT", 4, 0x06, "00 01 61 00 03 61 2F 23 00 00"),
            E::InvalidTopicName {
                source: TopicError::WildcardInName,
            },
            0x81,
        ),
        case(
            None,
            &connect("MQTT", 5, 0x02, "03 21 00 00 00 01 61"),
            E::InvalidPropertyValue {
                property: PropertyId::ReceiveMaximum,
            },
            0x82,
        ),
        case(
            None,
            &connect("MQTT", 5, 0x06, "00 00 01 61 02 11 00"),
            E::PropertyNotAllowed {
                property: PropertyId::SessionExpiryInterval,
                context: PropertyContext::Will,
            },
            0x81,
        ),
        case(v3, "20 02 02 00", E::InvalidConnAckFlags, 0x81),
        case(v3, "20 02 01 05", E::SessionPresentWithError, 0x82),
        case(
            v3,
            "82 06 00 01 00 01 61 04",
            E::InvalidSubscriptionOptions { options: 0x04 },
            0x81,
        ),
        case(
            v5,
            "82 07 00 01 00 00 01 61 C0",
            E::InvalidSubscriptionOptions { options: 0xC0 },
            0x81,
        ),
        case(
            v5,
            "82 07 00 01 00 00 01 61 03",
            E::InvalidSubscriptionOptions { options: 0x03 },
            0x81,
        ),
        case(
            v5,
            "82 07 00 01 00 00 01 61 30",
            E::InvalidRetainHandling,
            0x82,
        ),
        case(
            v5,
            "82 10 00 01 00 00 0A 24 73 68 61 72 65 2F 67 2F 61 04",
            E::NoLocalOnSharedSubscription,
            0x82,
        ),
        case(
            v5,
            "82 0F 00 01 00 00 09 24 73 68 61 72 65 2F 2B 2F 00",
            E::InvalidTopicFilter {
                source: TopicError::InvalidShareName,
            },
            0x81,
        ),
    ]
}

#[test]
fn every_decode_error_from_peer_bytes() {
    let cases = cases();
    for (version, hex, expect, reason) in &cases {
        check_error(*version, hex, expect.clone(), *reason);
    }
    // PacketTooLarge is covered in `partial`, where the limit is set.
    let seen: HashSet<_> = cases.iter().map(|c| discriminant(&c.2)).collect();
    assert_eq!(seen.len() + 1, 34, "one case per DecodeError variant");
}

#[test]
fn v5_allows_a_password_without_a_user_name() {
    let packet = decode_one(None, &h(&connect("MQTT", 5, 0x42, "00 00 01 61 00 01 70"))).unwrap();
    let Packet::Connect(c) = packet else {
        panic!("{packet:?}")
    };
    assert_eq!(
        (c.username, c.password),
        (None, Some(Bytes::from_static(b"p")))
    );
}
