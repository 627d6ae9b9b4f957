//! Encode-then-decode round trips for every packet type in both versions,
//! and what 3.1.1 leaves out when a packet carries MQTT 5 fields.

use std::collections::HashSet;

use bytes::Bytes;

use super::samples::{self, publish_props};
use super::{check_roundtrip, decode_one, encode, pid, topic};
use crate::{
    ConnAck, Disconnect, Packet, PacketType, Properties, ProtocolVersion, PubResponse, Publish,
    QoS, ReasonCode, SubAck,
};

#[test]
fn every_packet_type_round_trips_in_both_versions() {
    for (version, types) in [(ProtocolVersion::V311, 14), (ProtocolVersion::V5, 15)] {
        let packets = samples::packets(version);
        let seen: HashSet<_> = packets.iter().map(|p| p.packet_type() as u8).collect();
        assert_eq!(
            seen.len(),
            types,
            "{version} samples cover every packet type"
        );
        for packet in &packets {
            check_roundtrip(version, packet);
        }
    }
}

#[test]
fn server_decoder_learns_the_version_from_connect() {
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut bytes = bytes::BytesMut::new();
        for packet in samples::packets(version)
            .iter()
            .filter(|p| p.packet_type() == PacketType::Connect || p.packet_type().client_may_send())
        {
            packet.encode(version, &mut bytes).unwrap();
        }
        let mut decoder = crate::Decoder::new(crate::MAX_PACKET_SIZE);
        assert_eq!(decoder.version(), None);
        let mut count = 0;
        while let Some(packet) = decoder.decode(&mut bytes).unwrap() {
            count += 1;
            assert_eq!(decoder.version(), Some(version), "after {packet:?}");
        }
        assert!(count > 10, "decoded {count} packets");
        assert!(bytes.is_empty());
    }
}

fn encode_v311_decode(packet: &Packet) -> Packet {
    decode_one(
        Some(ProtocolVersion::V311),
        &encode(ProtocolVersion::V311, packet),
    )
    .unwrap()
}

#[test]
fn v311_leaves_out_what_it_cannot_express() {
    let with_props = Publish {
        properties: Properties {
            topic_alias: None,
            ..publish_props()
        },
        ..Publish::new(topic("t"), Bytes::from_static(b"x"))
    };
    let plain = Publish::new(topic("t"), Bytes::from_static(b"x"));
    let cases = [
        (Packet::Publish(with_props), Packet::Publish(plain)),
        (
            Packet::PubAck(PubResponse {
                packet_id: pid(9),
                reason_code: ReasonCode::NotAuthorized,
                properties: samples::ack_props(),
            }),
            Packet::PubAck(PubResponse::new(pid(9))),
        ),
        (
            Packet::Disconnect(Disconnect {
                reason_code: ReasonCode::KeepAliveTimeout,
                properties: Properties::default(),
            }),
            Packet::Disconnect(Disconnect::default()),
        ),
        (
            // Refusals without a 3.1.1 return code become the nearest one.
            Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code: ReasonCode::Banned,
                properties: samples::connack_props(),
            }),
            Packet::ConnAck(ConnAck {
                session_present: false,
                reason_code: ReasonCode::NotAuthorized,
                properties: Properties::default(),
            }),
        ),
        (
            Packet::SubAck(SubAck {
                packet_id: pid(1),
                properties: Properties::default(),
                reason_codes: vec![ReasonCode::QuotaExceeded, ReasonCode::GrantedQoS2],
            }),
            Packet::SubAck(SubAck {
                packet_id: pid(1),
                properties: Properties::default(),
                reason_codes: vec![ReasonCode::UnspecifiedError, ReasonCode::GrantedQoS2],
            }),
        ),
    ];
    for (sent, received) in cases {
        assert_eq!(encode_v311_decode(&sent), received, "{sent:?}");
    }
}

#[test]
fn v5_acknowledgements_use_the_short_forms() {
    let cases = [
        (Packet::PubAck(PubResponse::new(pid(1))), "40 02 00 01"),
        (
            Packet::PubRec(PubResponse {
                packet_id: pid(1),
                reason_code: ReasonCode::NoMatchingSubscribers,
                properties: Properties::default(),
            }),
            "50 03 00 01 10",
        ),
        (Packet::Disconnect(Disconnect::default()), "E0 00"),
        (Packet::Auth(crate::Auth::default()), "F0 00"),
        (
            Packet::Auth(crate::Auth {
                reason_code: ReasonCode::ReAuthenticate,
                properties: Properties::default(),
            }),
            "F0 02 19 00",
        ),
    ];
    for (packet, hex) in cases {
        super::check_vector(ProtocolVersion::V5, hex, packet);
    }
    // The long forms of the same packets decode too.
    for (hex, packet) in [
        (
            "40 04 00 01 00 00",
            Packet::PubAck(PubResponse::new(pid(1))),
        ),
        ("40 03 00 01 00", Packet::PubAck(PubResponse::new(pid(1)))),
        ("E0 02 00 00", Packet::Disconnect(Disconnect::default())),
        ("E0 01 00", Packet::Disconnect(Disconnect::default())),
        ("F0 02 00 00", Packet::Auth(crate::Auth::default())),
    ] {
        assert_eq!(
            decode_one(Some(ProtocolVersion::V5), &super::h(hex)),
            Ok(packet)
        );
    }
}

#[test]
fn qos_levels_and_flags_round_trip() {
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        for (qos, dup, retain) in [
            (QoS::AtMostOnce, false, false),
            (QoS::AtMostOnce, false, true),
            (QoS::AtLeastOnce, true, false),
            (QoS::ExactlyOnce, false, true),
        ] {
            let packet = Packet::Publish(Publish {
                dup,
                qos,
                retain,
                packet_id: (qos != QoS::AtMostOnce).then(|| pid(77)),
                ..Publish::new(topic("x/y"), Bytes::from_static(b"\x00\x01"))
            });
            check_roundtrip(version, &packet);
        }
    }
}
