//! Known-good byte sequences written by hand from the specifications'
//! examples and field layouts, checked in both directions.

use bytes::{Bytes, BytesMut};

use super::{check_vector, filter, pid, topic};
use crate::{
    varint, ConnAck, Connect, LastWill, Packet, Properties, ProtocolVersion, PubResponse, Publish,
    QoS, ReasonCode, SubAck, Subscribe, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe,
};

use ProtocolVersion::{V311, V5};

#[test]
fn remaining_length_examples_from_the_spec() {
    // MQTT 3.1.1 table 2.4 / MQTT 5 §1.5.5.
    for (value, hex) in [
        (0, "00"),
        (127, "7F"),
        (128, "80 01"),
        (16_383, "FF 7F"),
        (16_384, "80 80 01"),
        (2_097_151, "FF FF 7F"),
        (2_097_152, "80 80 80 01"),
        (268_435_455, "FF FF FF 7F"),
    ] {
        let bytes = super::h(hex);
        let mut out = BytesMut::new();
        varint::write(value, &mut out);
        assert_eq!(out.as_ref(), bytes.as_slice(), "{value}");
        assert_eq!(varint::len(value), bytes.len());
        assert_eq!(
            varint::parse(&bytes),
            Ok(varint::Parsed::Complete {
                value,
                len: bytes.len()
            })
        );
    }
}

#[test]
fn packets_without_a_body() {
    for version in [V311, V5] {
        check_vector(version, "C0 00", Packet::PingReq);
        check_vector(version, "D0 00", Packet::PingResp);
        check_vector(version, "E0 00", Packet::Disconnect(Default::default()));
    }
}

fn connect(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol_version: version,
        clean_start: true,
        keep_alive: 60,
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }
}

#[test]
fn connect_v311_with_client_id() {
    // 00 04 "MQTT", level 4, flags: clean session, keep alive 60, "abc".
    check_vector(
        V311,
        "10 0F 00 04 4D 51 54 54 04 02 00 3C 00 03 61 62 63",
        Packet::Connect(Box::new(connect(V311, "abc"))),
    );
}

#[test]
fn connect_v311_with_will_and_credentials() {
    // Flags 0xCE as in MQTT 3.1.1 figure 3.6 (user name, password, will
    // QoS 1, will flag, clean session), keep alive 10.
    let packet = Connect {
        keep_alive: 10,
        will: Some(LastWill {
            topic: topic("w"),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Properties::default(),
        }),
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"p")),
        ..connect(V311, "c")
    };
    check_vector(
        V311,
        "10 1B 00 04 4D 51 54 54 04 CE 00 0A 00 01 63 00 01 77 00 03 62 79 65 00 01 75 00 01 70",
        Packet::Connect(Box::new(packet)),
    );
}

#[test]
fn connect_v5_with_session_expiry() {
    // MQTT 5 figure 3-6: level 5, flags 0xC2, keep alive 10, properties of
    // length 5 holding Session Expiry Interval 10; then client id, user, password.
    let packet = Connect {
        keep_alive: 10,
        username: Some("u".into()),
        password: Some(Bytes::from_static(b"p")),
        properties: Properties {
            session_expiry_interval: Some(10),
            ..Properties::default()
        },
        ..connect(V5, "a")
    };
    check_vector(
        V5,
        "10 19 00 04 4D 51 54 54 05 C2 00 0A 05 11 00 00 00 0A 00 01 61 00 01 75 00 01 70",
        Packet::Connect(Box::new(packet)),
    );
}

#[test]
fn connack_both_versions() {
    let accepted = |session_present| {
        Packet::ConnAck(ConnAck {
            session_present,
            ..ConnAck::default()
        })
    };
    check_vector(V311, "20 02 00 00", accepted(false));
    check_vector(V311, "20 02 01 00", accepted(true));
    check_vector(
        V311,
        "20 02 00 05",
        Packet::ConnAck(ConnAck {
            reason_code: ReasonCode::NotAuthorized,
            ..ConnAck::default()
        }),
    );
    check_vector(V5, "20 03 01 00 00", accepted(true));
    check_vector(
        V5,
        "20 08 00 87 05 1F 00 02 6E 6F",
        Packet::ConnAck(ConnAck {
            reason_code: ReasonCode::NotAuthorized,
            properties: Properties {
                reason_string: Some("no".into()),
                ..Properties::default()
            },
            ..ConnAck::default()
        }),
    );
}

#[test]
fn publish_from_the_spec_example() {
    // MQTT 3.1.1 §3.3.2.3: topic "a/b", packet identifier 10, QoS 1.
    let packet = Packet::Publish(Publish {
        qos: QoS::AtLeastOnce,
        packet_id: Some(pid(10)),
        ..Publish::new(topic("a/b"), Bytes::new())
    });
    check_vector(V311, "32 07 00 03 61 2F 62 00 0A", packet.clone());
    check_vector(V5, "32 08 00 03 61 2F 62 00 0A 00", packet);
    check_vector(
        V311,
        "31 05 00 01 74 68 69",
        Packet::Publish(Publish {
            retain: true,
            ..Publish::new(topic("t"), Bytes::from_static(b"hi"))
        }),
    );
}

#[test]
fn publish_v5_with_properties() {
    // Topic alias 1 and one user property ("a", "b").
    let packet = Packet::Publish(Publish {
        properties: Properties {
            topic_alias: std::num::NonZeroU16::new(1),
            user_properties: vec![crate::UserProperty {
                name: "a".into(),
                value: "b".into(),
            }],
            ..Properties::default()
        },
        ..Publish::new(topic("t"), Bytes::from_static(b"x"))
    });
    check_vector(
        V5,
        "30 0F 00 01 74 0A 23 00 01 26 00 01 61 00 01 62 78",
        packet,
    );
}

#[test]
fn acknowledgements() {
    check_vector(
        V311,
        "40 02 00 0A",
        Packet::PubAck(PubResponse::new(pid(10))),
    );
    check_vector(
        V311,
        "50 02 00 0A",
        Packet::PubRec(PubResponse::new(pid(10))),
    );
    check_vector(
        V311,
        "62 02 00 0A",
        Packet::PubRel(PubResponse::new(pid(10))),
    );
    check_vector(
        V311,
        "70 02 00 0A",
        Packet::PubComp(PubResponse::new(pid(10))),
    );
}

#[test]
fn subscribe_and_suback_from_the_spec_example() {
    // MQTT 3.1.1 §3.8.3.1: packet id 10, "a/b" QoS 1, "c/d" QoS 2.
    let subscribe = Packet::Subscribe(Subscribe {
        packet_id: pid(10),
        properties: Properties::default(),
        subscriptions: vec![
            Subscription {
                filter: filter("a/b"),
                options: SubscriptionOptions::new(QoS::AtLeastOnce),
            },
            Subscription {
                filter: filter("c/d"),
                options: SubscriptionOptions::new(QoS::ExactlyOnce),
            },
        ],
    });
    check_vector(
        V311,
        "82 0E 00 0A 00 03 61 2F 62 01 00 03 63 2F 64 02",
        subscribe.clone(),
    );
    check_vector(
        V5,
        "82 0F 00 0A 00 00 03 61 2F 62 01 00 03 63 2F 64 02",
        subscribe,
    );
    // MQTT 3.1.1 §3.9.3.1: granted QoS 0, QoS 2, failure.
    check_vector(
        V311,
        "90 05 00 0A 00 02 80",
        Packet::SubAck(SubAck {
            packet_id: pid(10),
            properties: Properties::default(),
            reason_codes: vec![
                ReasonCode::GRANTED_QOS_0,
                ReasonCode::GrantedQoS2,
                ReasonCode::UnspecifiedError,
            ],
        }),
    );
}

#[test]
fn subscription_options_byte_v5() {
    // No local, retain as published, retain handling 2, QoS 1: 0b10_1101.
    let packet = Packet::Subscribe(Subscribe {
        packet_id: pid(1),
        properties: Properties::default(),
        subscriptions: vec![Subscription {
            filter: filter("t"),
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: crate::RetainHandling::DoNotSend,
            },
        }],
    });
    check_vector(V5, "82 07 00 01 00 00 01 74 2D", packet);
}

#[test]
fn unsubscribe_and_unsuback() {
    let unsubscribe = Packet::Unsubscribe(Unsubscribe {
        packet_id: pid(10),
        properties: Properties::default(),
        filters: vec![filter("a/b"), filter("c/d")],
    });
    check_vector(
        V311,
        "A2 0C 00 0A 00 03 61 2F 62 00 03 63 2F 64",
        unsubscribe.clone(),
    );
    check_vector(
        V5,
        "A2 0D 00 0A 00 00 03 61 2F 62 00 03 63 2F 64",
        unsubscribe,
    );
    check_vector(
        V311,
        "B0 02 00 0A",
        Packet::UnsubAck(UnsubAck {
            packet_id: pid(10),
            properties: Properties::default(),
            reason_codes: vec![],
        }),
    );
    check_vector(
        V5,
        "B0 05 00 0A 00 00 11",
        Packet::UnsubAck(UnsubAck {
            packet_id: pid(10),
            properties: Properties::default(),
            reason_codes: vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
        }),
    );
}
