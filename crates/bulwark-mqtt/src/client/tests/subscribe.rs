//! SUBSCRIBE / SUBACK and UNSUBSCRIBE / UNSUBACK: options on the wire,
//! per-filter results, pending requests across connections.

use super::*;
use crate::client::{CloseReason, ProtocolViolation};
use crate::{PacketType, RetainHandling, SubAck, Subscription, SubscriptionOptions, UnsubAck};

fn sub(f: &str, qos: QoS) -> Subscription {
    Subscription {
        filter: filter(f),
        options: SubscriptionOptions::new(qos),
    }
}

fn suback(id: u16, reason_codes: Vec<ReasonCode>) -> Packet {
    Packet::SubAck(SubAck {
        packet_id: pid(id),
        properties: Properties::default(),
        reason_codes,
    })
}

fn unsuback(id: u16, reason_codes: Vec<ReasonCode>) -> Packet {
    Packet::UnsubAck(UnsubAck {
        packet_id: pid(id),
        properties: Properties::default(),
        reason_codes,
    })
}

#[test]
fn subscribe_v311_bytes_and_results() {
    let mut h = Harness::connected(options(ProtocolVersion::V311), connack(false));
    h.events();
    let id = h
        .session
        .subscribe(vec![
            sub("a/+", QoS::AtLeastOnce),
            sub("b/#", QoS::ExactlyOnce),
        ])
        .unwrap();
    assert_eq!(id, pid(1));
    let bytes = h.session.poll_transmit(h.now).unwrap();
    assert_eq!(
        &bytes[..],
        b"\x82\x0e\x00\x01\x00\x03a/+\x01\x00\x03b/#\x02"
    );
    // Granted QoS 1, refused.
    h.feed_bytes(b"\x90\x04\x00\x01\x01\x80").unwrap();
    assert_eq!(
        h.events(),
        [Event::SubAck {
            packet_id: pid(1),
            results: vec![Ok(QoS::AtLeastOnce), Err(ReasonCode::UnspecifiedError)],
        }]
    );
}

#[test]
fn subscribe_v5_options_and_reason_codes() {
    let mut h = Harness::connected(options(ProtocolVersion::V5), connack(false));
    h.events();
    let options = SubscriptionOptions {
        qos: QoS::ExactlyOnce,
        no_local: true,
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
    };
    let props = Properties {
        subscription_identifiers: vec![42],
        ..Properties::default()
    };
    let subs = vec![
        Subscription {
            filter: filter("cmd/#"),
            options,
        },
        sub("secret", QoS::AtMostOnce),
        sub("$share/g/jobs", QoS::AtLeastOnce),
    ];
    h.session
        .subscribe_with(subs.clone(), props.clone())
        .unwrap();
    let sent = h.sent();
    let [Packet::Subscribe(s)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(s.subscriptions, subs);
    assert_eq!(s.properties, props);
    h.feed(suback(
        1,
        vec![
            ReasonCode::GrantedQoS2,
            ReasonCode::NotAuthorized,
            ReasonCode::GRANTED_QOS_0,
        ],
    ))
    .unwrap();
    assert_eq!(
        h.events(),
        [Event::SubAck {
            packet_id: pid(1),
            results: vec![
                Ok(QoS::ExactlyOnce),
                Err(ReasonCode::NotAuthorized),
                Ok(QoS::AtMostOnce)
            ],
        }]
    );
}

#[test]
fn unsubscribe_both_versions() {
    for v in BOTH {
        let mut h = Harness::connected(options(v), connack(false));
        h.events();
        let id = h
            .session
            .unsubscribe(vec![filter("a"), filter("b")])
            .unwrap();
        let sent = h.sent();
        let [Packet::Unsubscribe(u)] = &sent[..] else {
            panic!("{sent:?}")
        };
        assert_eq!(u.filters, [filter("a"), filter("b")]);
        h.feed(unsuback(
            id.get(),
            vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
        ))
        .unwrap();
        let want = match v {
            ProtocolVersion::V311 => vec![ReasonCode::Success; 2],
            ProtocolVersion::V5 => vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
        };
        assert_eq!(
            h.events(),
            [Event::UnsubAck {
                packet_id: id,
                reason_codes: want
            }]
        );
    }
}

#[test]
fn answers_must_match_the_request() {
    // (the answer, the violation)
    let cases = [
        (
            suback(1, vec![ReasonCode::Success]),
            ProtocolViolation::ReasonCodeCount {
                packet_type: PacketType::SubAck,
                expected: 2,
                got: 1,
            },
        ),
        (
            suback(2, vec![ReasonCode::Success]),
            ProtocolViolation::UnknownPacketId {
                packet_type: PacketType::SubAck,
                packet_id: 2,
            },
        ),
        (
            unsuback(1, vec![ReasonCode::Success, ReasonCode::Success]),
            ProtocolViolation::UnknownPacketId {
                packet_type: PacketType::UnsubAck,
                packet_id: 1,
            },
        ),
    ];
    for (answer, violation) in cases {
        let mut h = Harness::connected(options(ProtocolVersion::V5), connack(false));
        h.session
            .subscribe(vec![sub("a", QoS::AtMostOnce), sub("b", QoS::AtMostOnce)])
            .unwrap();
        assert_eq!(
            h.feed(answer),
            Err(ClientError::Closed(CloseReason::Protocol(violation)))
        );
    }
}

#[test]
fn requests_wait_for_the_connection_and_survive_it() {
    for v in BOTH {
        let mut o = options(v);
        o.max_pending_requests = 2;
        let mut h = Harness::new(o);
        let first = h
            .session
            .subscribe(vec![sub("a", QoS::AtLeastOnce)])
            .unwrap();
        h.session.publish(msg("t", b"x", QoS::AtLeastOnce)).unwrap();
        let second = h.session.unsubscribe(vec![filter("a")]).unwrap();
        assert_eq!((first, second), (pid(1), pid(3)), "one identifier space");
        assert_eq!(
            h.session.subscribe(vec![sub("c", QoS::AtMostOnce)]),
            Err(ClientError::TooManyRequests { max: 2 })
        );
        assert_eq!(
            h.session.subscribe(vec![]),
            Err(ClientError::NoTopicFilters)
        );
        assert_eq!(
            h.session.unsubscribe(vec![]),
            Err(ClientError::NoTopicFilters)
        );

        h.connect(connack(false)).unwrap();
        assert_eq!(
            summary(&h.sent()),
            ["SUBSCRIBE", "UNSUBSCRIBE", "PUBLISH 2"]
        );
        h.feed(suback(1, vec![ReasonCode::GrantedQoS1])).unwrap();
        // The unanswered UNSUBSCRIBE goes again on the next connection.
        let sent = h.reconnect(connack(true));
        assert_eq!(summary(&sent), ["PUBLISH 2 dup", "UNSUBSCRIBE"]);
        h.feed(unsuback(3, vec![ReasonCode::Success])).unwrap();
        let events = h.events();
        assert!(
            matches!(events.last(), Some(Event::UnsubAck { packet_id, .. }) if *packet_id == pid(3))
        );
        assert_eq!(
            h.session.subscribe(vec![sub("c", QoS::AtMostOnce)]),
            Ok(pid(4)),
            "identifiers move on"
        );
    }
}
