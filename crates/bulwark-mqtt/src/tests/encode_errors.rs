//! What the encoder refuses: anything a conforming peer would refuse, and
//! packets larger than the peer's maximum. Nothing is written on error.

use bytes::{Bytes, BytesMut};

use super::property_table::only;
use super::{pid, samples, topic};
use crate::properties::PropertyContext;
use crate::{
    Auth, ConnAck, EncodeError, Encoder, Packet, PacketType, Properties, PropertyId,
    ProtocolVersion, PubResponse, Publish, QoS, ReasonCode, SubAck, Subscribe, Subscription,
    SubscriptionOptions, UnsubAck, Unsubscribe,
};

use ProtocolVersion::{V311, V5};

fn encode_err(version: ProtocolVersion, packet: Packet) -> EncodeError {
    let mut dst = BytesMut::from(&b"keep"[..]);
    let err = packet.encode(version, &mut dst).unwrap_err();
    assert_eq!(dst.as_ref(), b"keep", "nothing written on error");
    err
}

#[test]
fn the_encoder_refuses_what_a_peer_would_refuse() {
    let v5_connect = samples::packets(V5).swap_remove(1);
    let Packet::Connect(mut c) = v5_connect else {
        panic!()
    };
    let publish = Publish::new(topic("t"), Bytes::from_static(b"x"));
    let cases: Vec<(ProtocolVersion, Packet, EncodeError)> = vec![
        (
            V311,
            Packet::Connect(c.clone()),
            EncodeError::VersionMismatch {
                connect: V5,
                requested: V311,
            },
        ),
        (
            V311,
            Packet::Auth(Auth::default()),
            EncodeError::NotInVersion {
                packet_type: PacketType::Auth,
                version: V311,
            },
        ),
        (
            V5,
            Packet::Publish(Publish {
                dup: true,
                ..publish.clone()
            }),
            EncodeError::DupWithQoS0,
        ),
        (
            V5,
            Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                ..publish.clone()
            }),
            EncodeError::PacketIdMismatch,
        ),
        (
            V311,
            Packet::Publish(Publish {
                packet_id: Some(pid(1)),
                ..publish.clone()
            }),
            EncodeError::PacketIdMismatch,
        ),
        (
            V5,
            Packet::Publish(Publish {
                topic: None,
                ..publish.clone()
            }),
            EncodeError::MissingTopic,
        ),
        (
            V311,
            Packet::Publish(Publish {
                topic: None,
                properties: only(PropertyId::TopicAlias),
                ..publish.clone()
            }),
            EncodeError::MissingTopic,
        ),
        (
            V5,
            Packet::Publish(Publish {
                properties: only(PropertyId::SessionExpiryInterval),
                ..publish.clone()
            }),
            EncodeError::PropertyNotAllowed {
                property: PropertyId::SessionExpiryInterval,
                context: PropertyContext::PUBLISH,
            },
        ),
        (
            V5,
            Packet::Publish(Publish {
                properties: Properties {
                    subscription_identifiers: vec![0],
                    ..Properties::default()
                },
                ..publish.clone()
            }),
            EncodeError::InvalidPropertyValue {
                property: PropertyId::SubscriptionIdentifier,
            },
        ),
        (
            V5,
            Packet::Publish(Publish {
                properties: Properties {
                    correlation_data: Some(Bytes::from(vec![0; 65_536])),
                    ..Properties::default()
                },
                ..publish.clone()
            }),
            EncodeError::FieldTooLong { len: 65_536 },
        ),
        (
            V5,
            Packet::ConnAck(ConnAck {
                properties: Properties {
                    maximum_qos: Some(QoS::ExactlyOnce),
                    ..Properties::default()
                },
                ..ConnAck::default()
            }),
            EncodeError::InvalidPropertyValue {
                property: PropertyId::MaximumQoS,
            },
        ),
        (
            V5,
            Packet::Auth(Auth {
                reason_code: ReasonCode::ContinueAuthentication,
                properties: Properties {
                    authentication_data: Some(Bytes::from_static(b"d")),
                    ..Properties::default()
                },
            }),
            EncodeError::AuthenticationDataWithoutMethod,
        ),
        (
            V5,
            Packet::ConnAck(ConnAck {
                session_present: true,
                reason_code: ReasonCode::Banned,
                properties: Properties::default(),
            }),
            EncodeError::SessionPresentWithError,
        ),
        (
            V5,
            Packet::PubRel(PubResponse {
                reason_code: ReasonCode::NotAuthorized,
                ..PubResponse::new(pid(1))
            }),
            EncodeError::ReasonCodeNotAllowed {
                packet_type: PacketType::PubRel,
                code: ReasonCode::NotAuthorized,
            },
        ),
        (
            V5,
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                properties: Properties::default(),
                subscriptions: vec![],
            }),
            EncodeError::NoTopicFilters {
                packet_type: PacketType::Subscribe,
            },
        ),
        (
            V5,
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                properties: Properties {
                    subscription_identifiers: vec![1, 2],
                    ..Properties::default()
                },
                subscriptions: vec![Subscription {
                    filter: super::filter("a"),
                    options: SubscriptionOptions::default(),
                }],
            }),
            EncodeError::InvalidPropertyValue {
                property: PropertyId::SubscriptionIdentifier,
            },
        ),
        (
            V5,
            Packet::Subscribe(Subscribe {
                packet_id: pid(1),
                properties: Properties::default(),
                subscriptions: vec![Subscription {
                    filter: super::filter("$share/g/a"),
                    options: SubscriptionOptions {
                        no_local: true,
                        ..SubscriptionOptions::default()
                    },
                }],
            }),
            EncodeError::NoLocalOnSharedSubscription,
        ),
        (
            V5,
            Packet::Unsubscribe(Unsubscribe {
                packet_id: pid(1),
                properties: Properties::default(),
                filters: vec![],
            }),
            EncodeError::NoTopicFilters {
                packet_type: PacketType::Unsubscribe,
            },
        ),
        (
            V311,
            Packet::SubAck(SubAck {
                packet_id: pid(1),
                properties: Properties::default(),
                reason_codes: vec![],
            }),
            EncodeError::NoReasonCodes {
                packet_type: PacketType::SubAck,
            },
        ),
        (
            V5,
            Packet::UnsubAck(UnsubAck {
                packet_id: pid(1),
                properties: Properties::default(),
                reason_codes: vec![],
            }),
            EncodeError::NoReasonCodes {
                packet_type: PacketType::UnsubAck,
            },
        ),
    ];
    for (version, packet, expect) in cases {
        assert_eq!(encode_err(version, packet.clone()), expect, "{packet:?}");
    }

    c.protocol_version = V311;
    c.properties = Properties::default();
    c.will = None;
    c.username = None;
    assert_eq!(
        encode_err(V311, Packet::Connect(c.clone())),
        EncodeError::PasswordWithoutUsername
    );
    c.username = Some("a\0b".into());
    assert_eq!(
        encode_err(V311, Packet::Connect(c.clone())),
        EncodeError::NulInString
    );
    c.username = Some("x".repeat(65_536));
    assert_eq!(
        encode_err(V311, Packet::Connect(c)),
        EncodeError::FieldTooLong { len: 65_536 }
    );
}

#[test]
fn the_encoder_respects_the_peers_maximum_packet_size() {
    let packet = Packet::Publish(Publish::new(topic("t"), Bytes::from(vec![7; 100])));
    let size = packet.encoded_len(V5).unwrap();
    assert_eq!(size, 1 + 1 + 3 + 1 + 100);
    let mut dst = BytesMut::new();
    let fits = Encoder::new(V5).with_max_packet_size(u32::try_from(size).unwrap());
    fits.encode(&packet, &mut dst).unwrap();
    assert_eq!(dst.len(), size);
    let mut dst = BytesMut::new();
    let small = Encoder::new(V5).with_max_packet_size(u32::try_from(size - 1).unwrap());
    assert_eq!(
        small.encode(&packet, &mut dst),
        Err(EncodeError::PacketTooLarge {
            size,
            max: u32::try_from(size - 1).unwrap()
        })
    );
    assert!(dst.is_empty());
}
