//! Sample packets of every type, with every property their context allows
//! in MQTT 5 and none in 3.1.1.

use std::num::{NonZeroU16, NonZeroU32};

use bytes::Bytes;

use super::{filter, pid, topic};
use crate::{
    Auth, ConnAck, Connect, Disconnect, LastWill, Packet, PayloadFormat, Properties,
    ProtocolVersion, PubResponse, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    Subscription, SubscriptionOptions, UnsubAck, Unsubscribe, UserProperty,
};

fn user(name: &str, value: &str) -> UserProperty {
    UserProperty {
        name: name.into(),
        value: value.into(),
    }
}

fn users() -> Vec<UserProperty> {
    // Repeated names, kept in order.
    vec![user("k", "1"), user("k", "2"), user("région", "€")]
}

pub(super) fn connect_props() -> Properties {
    Properties {
        session_expiry_interval: Some(3600),
        authentication_method: Some("SCRAM-SHA-256".into()),
        authentication_data: Some(Bytes::from_static(b"\x00\x01client-first")),
        request_problem_information: Some(false),
        request_response_information: Some(true),
        receive_maximum: NonZeroU16::new(20),
        topic_alias_maximum: Some(10),
        user_properties: users(),
        maximum_packet_size: NonZeroU32::new(65_536),
        ..Properties::default()
    }
}

pub(super) fn will_props() -> Properties {
    Properties {
        payload_format_indicator: Some(PayloadFormat::Utf8),
        message_expiry_interval: Some(60),
        content_type: Some("text/plain".into()),
        response_topic: Some(topic("reply/here")),
        correlation_data: Some(Bytes::from_static(b"corr")),
        will_delay_interval: Some(30),
        user_properties: users(),
        ..Properties::default()
    }
}

pub(super) fn connack_props() -> Properties {
    Properties {
        session_expiry_interval: Some(0),
        assigned_client_identifier: Some("auto-1".into()),
        server_keep_alive: Some(30),
        authentication_method: Some("SCRAM-SHA-256".into()),
        authentication_data: Some(Bytes::from_static(b"server-final")),
        response_information: Some("resp/".into()),
        server_reference: Some("other:8883".into()),
        reason_string: Some("welcome".into()),
        receive_maximum: NonZeroU16::new(100),
        topic_alias_maximum: Some(0),
        maximum_qos: Some(QoS::AtLeastOnce),
        retain_available: Some(false),
        user_properties: users(),
        maximum_packet_size: NonZeroU32::new(1 << 20),
        wildcard_subscription_available: Some(true),
        subscription_identifier_available: Some(true),
        shared_subscription_available: Some(false),
        ..Properties::default()
    }
}

pub(super) fn publish_props() -> Properties {
    Properties {
        payload_format_indicator: Some(PayloadFormat::Unspecified),
        message_expiry_interval: Some(u32::MAX),
        content_type: Some("application/cbor".into()),
        response_topic: Some(topic("devices/d1/replies")),
        correlation_data: Some(Bytes::from_static(&[0, 0xFF, 7])),
        subscription_identifiers: vec![1, 268_435_455, 300],
        topic_alias: NonZeroU16::new(3),
        user_properties: users(),
        ..Properties::default()
    }
}

pub(super) fn ack_props() -> Properties {
    Properties {
        reason_string: Some("because".into()),
        user_properties: users(),
        ..Properties::default()
    }
}

fn v5<T: Default>(version: ProtocolVersion, value: impl FnOnce() -> T) -> T {
    match version {
        ProtocolVersion::V5 => value(),
        ProtocolVersion::V311 => T::default(),
    }
}

/// Sample packets valid in `version`.
pub(super) fn packets(version: ProtocolVersion) -> Vec<Packet> {
    let is_v5 = version == ProtocolVersion::V5;
    let mut out = vec![
        Packet::Connect(Box::new(Connect {
            protocol_version: version,
            clean_start: true,
            keep_alive: 60,
            client_id: "device-001".into(),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        })),
        Packet::Connect(Box::new(Connect {
            protocol_version: version,
            clean_start: false,
            keep_alive: 0,
            client_id: String::new(),
            will: Some(LastWill {
                topic: topic("devices/d1/status"),
                payload: Bytes::from_static(b"offline"),
                qos: QoS::ExactlyOnce,
                retain: true,
                properties: v5(version, will_props),
            }),
            username: Some("user".into()),
            password: Some(Bytes::from_static(b"\x00secret\xFF")),
            properties: v5(version, connect_props),
        })),
        Packet::ConnAck(ConnAck {
            session_present: true,
            reason_code: ReasonCode::Success,
            properties: v5(version, connack_props),
        }),
        Packet::ConnAck(ConnAck {
            session_present: false,
            reason_code: ReasonCode::NotAuthorized,
            properties: Properties::default(),
        }),
        Packet::Publish(Publish::new(topic("a/b"), Bytes::new())),
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: Some(topic("devices/d1/telemetry")),
            packet_id: Some(pid(65_535)),
            properties: v5(version, publish_props),
            payload: Bytes::from(vec![0xAB; 300]),
        }),
        Packet::PubAck(PubResponse::new(pid(1))),
        Packet::PubRec(PubResponse::new(pid(2))),
        Packet::PubRel(PubResponse::new(pid(3))),
        Packet::PubComp(PubResponse::new(pid(4))),
        Packet::Subscribe(Subscribe {
            packet_id: pid(10),
            properties: v5(version, || Properties {
                subscription_identifiers: vec![42],
                user_properties: users(),
                ..Properties::default()
            }),
            subscriptions: vec![
                Subscription {
                    filter: filter("a/+/c"),
                    options: SubscriptionOptions::new(QoS::AtLeastOnce),
                },
                Subscription {
                    filter: filter("$share/group/devices/#"),
                    options: SubscriptionOptions {
                        qos: QoS::ExactlyOnce,
                        no_local: false,
                        retain_as_published: is_v5,
                        retain_handling: v5(version, || RetainHandling::DoNotSend),
                    },
                },
                Subscription {
                    filter: filter("#"),
                    options: SubscriptionOptions {
                        qos: QoS::AtMostOnce,
                        no_local: is_v5,
                        retain_as_published: false,
                        retain_handling: v5(version, || RetainHandling::SendAtSubscribeIfNew),
                    },
                },
            ],
        }),
        Packet::SubAck(SubAck {
            packet_id: pid(10),
            properties: v5(version, ack_props),
            reason_codes: vec![
                ReasonCode::GrantedQoS1,
                ReasonCode::GRANTED_QOS_0,
                ReasonCode::GrantedQoS2,
                if is_v5 {
                    ReasonCode::NotAuthorized
                } else {
                    ReasonCode::UnspecifiedError
                },
            ],
        }),
        Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(11),
            properties: v5(version, || Properties {
                user_properties: users(),
                ..Properties::default()
            }),
            filters: vec![filter("a/+/c"), filter("$share/g/x")],
        }),
        Packet::UnsubAck(UnsubAck {
            packet_id: pid(11),
            properties: v5(version, ack_props),
            reason_codes: v5(version, || {
                vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
            }),
        }),
        Packet::PingReq,
        Packet::PingResp,
        Packet::Disconnect(Disconnect::default()),
    ];
    if is_v5 {
        out.extend([
            Packet::Publish(Publish {
                topic: None,
                properties: Properties {
                    topic_alias: NonZeroU16::new(7),
                    ..Properties::default()
                },
                ..Publish::new(topic("unused"), &b"aliased"[..])
            }),
            Packet::PubAck(PubResponse {
                packet_id: pid(5),
                reason_code: ReasonCode::NoMatchingSubscribers,
                properties: Properties::default(),
            }),
            Packet::PubRec(PubResponse {
                packet_id: pid(6),
                reason_code: ReasonCode::QuotaExceeded,
                properties: ack_props(),
            }),
            Packet::PubRel(PubResponse {
                packet_id: pid(7),
                reason_code: ReasonCode::PacketIdentifierNotFound,
                properties: ack_props(),
            }),
            Packet::PubComp(PubResponse {
                packet_id: pid(8),
                reason_code: ReasonCode::Success,
                properties: ack_props(),
            }),
            Packet::Disconnect(Disconnect {
                reason_code: ReasonCode::SessionTakenOver,
                properties: Properties::default(),
            }),
            Packet::Disconnect(Disconnect {
                reason_code: ReasonCode::ServerMoved,
                properties: Properties {
                    session_expiry_interval: Some(0),
                    server_reference: Some("b:8883".into()),
                    ..ack_props()
                },
            }),
            Packet::Auth(Auth::default()),
            Packet::Auth(Auth {
                reason_code: ReasonCode::ContinueAuthentication,
                properties: Properties {
                    authentication_method: Some("SCRAM-SHA-256".into()),
                    authentication_data: Some(Bytes::from_static(b"challenge")),
                    ..ack_props()
                },
            }),
            Packet::Auth(Auth {
                reason_code: ReasonCode::ReAuthenticate,
                properties: Properties::default(),
            }),
        ]);
    }
    out
}
