//! Property-based tests: PUBLISH and SUBSCRIBE round-trip for any valid
//! content in both versions, and no byte string makes the decoder panic.

use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use super::check_roundtrip;
use crate::{
    Packet, PacketId, PayloadFormat, Properties, ProtocolVersion, Publish, QoS, RetainHandling,
    Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName, UserProperty, MAX_VARINT,
};

pub(super) fn topic_name() -> impl Strategy<Value = TopicName> {
    vec("[a-zA-Z0-9 _$é€😀-]{0,6}", 1..6).prop_filter_map("valid topic name", |levels| {
        TopicName::new(levels.join("/")).ok()
    })
}

pub(super) fn topic_filter() -> impl Strategy<Value = TopicFilter> {
    (
        vec(prop_oneof!["[a-z0-9$]{0,4}", Just("+".to_owned())], 1..5),
        any::<bool>(),
        option::of("[a-z0-9]{1,4}"),
    )
        .prop_filter_map("valid topic filter", |(levels, hash, group)| {
            let mut s = levels.join("/");
            if hash {
                s.push_str("/#");
            }
            if let Some(group) = group {
                s = format!("$share/{group}/{s}");
            }
            TopicFilter::new(s).ok()
        })
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,8}"
}

fn user_properties() -> impl Strategy<Value = Vec<UserProperty>> {
    vec(
        (text(), text()).prop_map(|(name, value)| UserProperty { name, value }),
        0..3,
    )
}

fn publish_properties() -> impl Strategy<Value = Properties> {
    (
        option::of(prop_oneof![
            Just(PayloadFormat::Unspecified),
            Just(PayloadFormat::Utf8)
        ]),
        option::of(any::<u32>()),
        option::of(text()),
        option::of(topic_name()),
        option::of(vec(any::<u8>(), 0..8)),
        vec(1..=MAX_VARINT, 0..3),
        option::of(1..=u16::MAX),
        user_properties(),
    )
        .prop_map(
            |(format, expiry, content, response, corr, ids, alias, users)| Properties {
                payload_format_indicator: format,
                message_expiry_interval: expiry,
                content_type: content,
                response_topic: response,
                correlation_data: corr.map(Bytes::from),
                subscription_identifiers: ids,
                topic_alias: alias.and_then(NonZeroU16::new),
                user_properties: users,
                ..Properties::default()
            },
        )
}

fn publish(version: ProtocolVersion) -> impl Strategy<Value = Publish> {
    let v5 = version == ProtocolVersion::V5;
    (
        topic_name(),
        any::<bool>(),
        qos(),
        any::<bool>(),
        any::<bool>(),
        1..=u16::MAX,
        vec(any::<u8>(), 0..300),
        publish_properties(),
    )
        .prop_map(
            move |(topic, drop_topic, qos, dup, retain, id, payload, props)| {
                let properties = if v5 { props } else { Properties::default() };
                let aliased = properties.topic_alias.is_some();
                Publish {
                    dup: dup && qos != QoS::AtMostOnce,
                    qos,
                    retain,
                    topic: if drop_topic && aliased {
                        None
                    } else {
                        Some(topic)
                    },
                    packet_id: (qos != QoS::AtMostOnce)
                        .then_some(id)
                        .and_then(PacketId::new),
                    properties,
                    payload: Bytes::from(payload),
                }
            },
        )
}

fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Subscribe> {
    let v5 = version == ProtocolVersion::V5;
    let entry = (topic_filter(), qos(), any::<bool>(), any::<bool>(), 0u8..3).prop_map(
        move |(filter, qos, no_local, rap, rh)| {
            let options = SubscriptionOptions {
                qos,
                no_local: v5 && no_local && !filter.is_shared(),
                retain_as_published: v5 && rap,
                retain_handling: match rh {
                    _ if !v5 => RetainHandling::SendAtSubscribe,
                    0 => RetainHandling::SendAtSubscribe,
                    1 => RetainHandling::SendAtSubscribeIfNew,
                    _ => RetainHandling::DoNotSend,
                },
            };
            Subscription { filter, options }
        },
    );
    (
        1..=u16::MAX,
        vec(entry, 1..6),
        option::of(1..=MAX_VARINT),
        user_properties(),
    )
        .prop_map(move |(id, subscriptions, sub_id, users)| Subscribe {
            packet_id: PacketId::new(id).unwrap_or(PacketId::new(1).unwrap()),
            properties: if v5 {
                Properties {
                    subscription_identifiers: sub_id.into_iter().collect(),
                    user_properties: users,
                    ..Properties::default()
                }
            } else {
                Properties::default()
            },
            subscriptions,
        })
}

proptest! {
    #[test]
    fn publish_round_trips_v5(p in publish(ProtocolVersion::V5)) {
        check_roundtrip(ProtocolVersion::V5, &Packet::Publish(p));
    }

    #[test]
    fn publish_round_trips_v311(p in publish(ProtocolVersion::V311)) {
        check_roundtrip(ProtocolVersion::V311, &Packet::Publish(p));
    }

    #[test]
    fn subscribe_round_trips_v5(s in subscribe(ProtocolVersion::V5)) {
        check_roundtrip(ProtocolVersion::V5, &Packet::Subscribe(s));
    }

    #[test]
    fn subscribe_round_trips_v311(s in subscribe(ProtocolVersion::V311)) {
        check_roundtrip(ProtocolVersion::V311, &Packet::Subscribe(s));
    }

    /// Arbitrary bytes: the decoder returns, and whatever it decodes
    /// re-encodes to something that decodes the same.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..64), first in any::<u8>()) {
        for version in [None, Some(ProtocolVersion::V311), Some(ProtocolVersion::V5)] {
            let mut buf = BytesMut::from(&[first][..]);
            buf.extend_from_slice(&[u8::try_from(bytes.len()).unwrap()]);
            buf.extend_from_slice(&bytes);
            let mut decoder = super::decoder(version);
            if let Ok(Some(packet)) = decoder.decode(&mut buf) {
                let v = decoder.version().unwrap();
                check_roundtrip(v, &packet);
            }
        }
    }
}
