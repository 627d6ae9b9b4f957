//! Outgoing messages: the QoS flows, reason codes, the server's Receive
//! Maximum, maximum packet size and capabilities, and what a reconnection
//! does to messages in flight.

use std::num::{NonZeroU16, NonZeroU32};

use super::*;
use crate::client::{Ack, ProtocolViolation};
use crate::EncodeError;

fn acked(id: u16, reason_code: ReasonCode) -> Ack {
    Ack {
        packet_id: pid(id),
        reason_code,
        reason_string: None,
    }
}

#[test]
fn qos_0_1_2_flows() {
    for v in BOTH {
        let mut h = Harness::connected(options(v), connack(false));
        h.events();
        assert_eq!(
            h.session.publish(msg("t/0", b"zero", QoS::AtMostOnce)),
            Ok(None)
        );
        let one = h.session.publish(msg("t/1", b"one", QoS::AtLeastOnce));
        let two = h.session.publish(msg("t/2", b"two", QoS::ExactlyOnce));
        assert_eq!((one, two), (Ok(Some(pid(1))), Ok(Some(pid(2)))));
        let sent = h.sent();
        assert_eq!(summary(&sent), ["PUBLISH 0", "PUBLISH 1", "PUBLISH 2"]);
        let Packet::Publish(p) = &sent[2] else {
            panic!()
        };
        assert_eq!(
            (p.topic.as_ref().unwrap().as_str(), &p.payload[..]),
            ("t/2", &b"two"[..])
        );
        assert_eq!(h.session.inflight_len(), 2);

        h.feed(Packet::PubAck(ack(1))).unwrap();
        h.feed(Packet::PubRec(ack(2))).unwrap();
        assert_eq!(summary(&h.sent()), ["PUBREL 2"]);
        h.feed(Packet::PubComp(ack(2))).unwrap();
        assert_eq!(
            h.events(),
            [
                Event::PubAck(acked(1, ReasonCode::Success)),
                Event::PubRec(acked(2, ReasonCode::Success)),
                Event::PubComp(acked(2, ReasonCode::Success)),
            ]
        );
        assert_eq!(h.session.inflight_len(), 0);
        assert!(h.sent().is_empty());
    }
}

#[test]
fn v5_reason_codes_are_surfaced() {
    let mut h = Harness::connected(options(ProtocolVersion::V5), connack(false));
    h.events();
    for _ in 0..2 {
        h.session.publish(msg("t", b"x", QoS::ExactlyOnce)).unwrap();
    }
    h.session.publish(msg("t", b"x", QoS::AtLeastOnce)).unwrap();
    h.sent();
    let mut refused = ack_with(1, ReasonCode::NotAuthorized);
    refused.properties.reason_string = Some("policy".into());
    h.feed(Packet::PubRec(refused)).unwrap();
    h.feed(Packet::PubRec(ack_with(
        2,
        ReasonCode::NoMatchingSubscribers,
    )))
    .unwrap();
    h.feed(Packet::PubAck(ack_with(3, ReasonCode::QuotaExceeded)))
        .unwrap();
    assert_eq!(
        summary(&h.sent()),
        ["PUBREL 2"],
        "no PUBREL after a refusal"
    );
    let mut first = acked(1, ReasonCode::NotAuthorized);
    first.reason_string = Some("policy".into());
    assert_eq!(
        h.events(),
        [
            Event::PubRec(first),
            Event::PubRec(acked(2, ReasonCode::NoMatchingSubscribers)),
            Event::PubAck(acked(3, ReasonCode::QuotaExceeded)),
        ]
    );
    assert_eq!(h.session.inflight_len(), 1, "only 2 waits for PUBCOMP");
    // PUBCOMP for the refused one is not expected.
    assert!(matches!(
        h.feed(Packet::PubComp(ack(1))),
        Err(ClientError::Closed(_))
    ));
}

#[test]
fn receive_maximum_queues_and_refuses() {
    let mut o = options(ProtocolVersion::V5);
    o.max_queued = 2;
    let props = Properties {
        receive_maximum: NonZeroU16::new(2),
        ..Properties::default()
    };
    let mut h = Harness::connected(o, connack_props(props));
    for n in 1..=4 {
        assert_eq!(
            h.session.publish(msg("t", b"x", QoS::AtLeastOnce)),
            Ok(Some(pid(n)))
        );
    }
    assert_eq!(
        h.session.publish(msg("t", b"x", QoS::ExactlyOnce)),
        Err(ClientError::QueueFull { max: 2 })
    );
    assert_eq!(summary(&h.sent()), ["PUBLISH 1", "PUBLISH 2"]);
    assert_eq!((h.session.inflight_len(), h.session.queued_len()), (2, 2));
    // QoS 0 is not counted and not queued.
    assert_eq!(h.session.publish(msg("t", b"x", QoS::AtMostOnce)), Ok(None));
    assert_eq!(summary(&h.sent()), ["PUBLISH 0"]);

    h.feed(Packet::PubAck(ack(2))).unwrap();
    assert_eq!(summary(&h.sent()), ["PUBLISH 3"]);
    h.feed(Packet::PubAck(ack(1))).unwrap();
    h.feed(Packet::PubAck(ack(3))).unwrap();
    assert_eq!(summary(&h.sent()), ["PUBLISH 4"]);
    assert_eq!((h.session.inflight_len(), h.session.queued_len()), (1, 0));
    // A QoS 2 message holds its slot until PUBCOMP.
    h.session.publish(msg("t", b"x", QoS::ExactlyOnce)).unwrap();
    h.session.publish(msg("t", b"x", QoS::AtLeastOnce)).unwrap();
    assert_eq!(summary(&h.sent()), ["PUBLISH 5"]);
    h.feed(Packet::PubRec(ack(5))).unwrap();
    assert_eq!(summary(&h.sent()), ["PUBREL 5"]);
    h.feed(Packet::PubComp(ack(5))).unwrap();
    assert_eq!(summary(&h.sent()), ["PUBLISH 6"]);
}

#[test]
fn max_inflight_applies_in_v311() {
    let mut o = options(ProtocolVersion::V311);
    o.max_inflight = 1;
    let mut h = Harness::connected(o, connack(false));
    h.session.publish(msg("t", b"x", QoS::AtLeastOnce)).unwrap();
    h.session.publish(msg("t", b"x", QoS::AtLeastOnce)).unwrap();
    assert_eq!(summary(&h.sent()), ["PUBLISH 1"]);
    h.feed(Packet::PubAck(ack(1))).unwrap();
    assert_eq!(summary(&h.sent()), ["PUBLISH 2"]);
}

#[test]
fn packets_larger_than_the_server_accepts_are_refused() {
    let props = Properties {
        maximum_packet_size: NonZeroU32::new(32),
        ..Properties::default()
    };
    let mut h = Harness::connected(options(ProtocolVersion::V5), connack_props(props));
    let fits = msg("t", &[0; 24], QoS::AtLeastOnce); // 2 + 3 + 2 + 1 + 24 = 32
    assert_eq!(h.session.publish(fits), Ok(Some(pid(1))));
    assert_eq!(
        h.session.publish(msg("t", &[0; 25], QoS::AtLeastOnce)),
        Err(ClientError::Encode(EncodeError::PacketTooLarge {
            size: 33,
            max: 32
        }))
    );
    assert_eq!(
        h.session.publish(msg("t", &[0; 27], QoS::AtMostOnce)),
        Err(ClientError::Encode(EncodeError::PacketTooLarge {
            size: 33,
            max: 32
        }))
    );
    assert_eq!(summary(&h.sent()), ["PUBLISH 1"]);
    assert_eq!(h.session.inflight_len(), 1);
    let long = filter("a-filter-that-is-too-long-for-the-server");
    assert!(matches!(
        h.session.subscribe(vec![crate::Subscription {
            filter: long,
            options: Default::default()
        }]),
        Err(ClientError::Encode(EncodeError::PacketTooLarge { .. }))
    ));
    assert!(h.sent().is_empty());
}

#[test]
fn server_capabilities_are_respected() {
    let props = Properties {
        maximum_qos: Some(QoS::AtLeastOnce),
        retain_available: Some(false),
        ..Properties::default()
    };
    let mut h = Harness::connected(options(ProtocolVersion::V5), connack_props(props));
    assert_eq!(
        h.session.publish(msg("t", b"x", QoS::ExactlyOnce)),
        Err(ClientError::QoSNotSupported {
            requested: QoS::ExactlyOnce,
            maximum: QoS::AtLeastOnce
        })
    );
    assert_eq!(
        h.session
            .publish(msg("t", b"x", QoS::AtMostOnce).with_retain(true)),
        Err(ClientError::RetainNotSupported)
    );
    assert_eq!(
        h.session.publish(msg("t", b"x", QoS::AtLeastOnce)),
        Ok(Some(pid(1)))
    );
}

#[test]
fn publishing_while_disconnected() {
    for v in BOTH {
        let mut h = Harness::new(options(v));
        assert_eq!(
            h.session.publish(msg("t", b"x", QoS::AtMostOnce)),
            Err(ClientError::NotConnected)
        );
        assert_eq!(
            h.session.publish(msg("t", b"x", QoS::AtLeastOnce)),
            Ok(Some(pid(1)))
        );
        h.session.connect(h.now).unwrap();
        assert_eq!(
            h.session.publish(msg("t", b"x", QoS::ExactlyOnce)),
            Ok(Some(pid(2))),
            "queued while CONNACK is awaited"
        );
        assert_eq!(summary(&h.sent()), ["CONNECT"]);
        h.feed(Packet::ConnAck(connack(false))).unwrap();
        assert_eq!(summary(&h.sent()), ["PUBLISH 1", "PUBLISH 2"]);
    }
}

#[test]
fn queued_messages_the_new_server_refuses_are_dropped() {
    let mut h = Harness::new(options(ProtocolVersion::V5));
    h.session
        .publish(msg("t", &[0; 100], QoS::AtLeastOnce))
        .unwrap();
    h.session.publish(msg("t", b"x", QoS::ExactlyOnce)).unwrap();
    h.session.publish(msg("t", b"y", QoS::AtLeastOnce)).unwrap();
    let props = Properties {
        maximum_packet_size: NonZeroU32::new(64),
        maximum_qos: Some(QoS::AtLeastOnce),
        ..Properties::default()
    };
    h.connect(connack_props(props)).unwrap();
    assert_eq!(summary(&h.sent()), ["PUBLISH 3"]);
    let events = h.events();
    assert!(
        matches!(
            &events[1..],
            [
                Event::PublishDropped {
                    packet_id: a,
                    error: ClientError::Encode(EncodeError::PacketTooLarge { .. })
                },
                Event::PublishDropped {
                    packet_id: b,
                    error: ClientError::QoSNotSupported { .. }
                },
            ] if *a == pid(1) && *b == pid(2)
        ),
        "{events:?}"
    );
}

#[test]
fn unknown_acknowledgements_are_violations() {
    for v in BOTH {
        let mut h = Harness::connected(options(v), connack(false));
        h.session.publish(msg("t", b"x", QoS::AtLeastOnce)).unwrap();
        h.sent();
        // PUBREC for a QoS 1 message.
        let want = ProtocolViolation::UnknownPacketId {
            packet_type: crate::PacketType::PubRec,
            packet_id: 1,
        };
        assert_eq!(
            h.feed(Packet::PubRec(ack(1))),
            Err(ClientError::Closed(crate::client::CloseReason::Protocol(
                want
            )))
        );
    }
}

/// Three messages in flight at different stages: 1 (QoS 1, sent), 2 (QoS 2,
/// released), 3 (QoS 2, sent), and 4 queued behind a Receive Maximum of 3.
fn three_in_flight(v: ProtocolVersion) -> Harness {
    let mut o = options(v);
    o.max_inflight = 3;
    let mut h = Harness::connected(o, connack(false));
    h.events();
    h.session.publish(msg("a", b"1", QoS::AtLeastOnce)).unwrap();
    h.session.publish(msg("b", b"2", QoS::ExactlyOnce)).unwrap();
    h.session.publish(msg("c", b"3", QoS::ExactlyOnce)).unwrap();
    h.session.publish(msg("d", b"4", QoS::AtLeastOnce)).unwrap();
    h.feed(Packet::PubRec(ack(2))).unwrap();
    assert_eq!(
        summary(&h.sent()),
        ["PUBLISH 1", "PUBLISH 2", "PUBLISH 3", "PUBREL 2"]
    );
    h.events();
    h
}

#[test]
fn a_resumed_session_resends_in_order() {
    for v in BOTH {
        let mut h = three_in_flight(v);
        let sent = h.reconnect(connack(true));
        assert_eq!(
            summary(&sent),
            ["PUBLISH 1 dup", "PUBLISH 3 dup", "PUBREL 2"],
            "{v}"
        );
        let Packet::Publish(p) = &sent[1] else {
            panic!()
        };
        assert_eq!(&p.payload[..], b"3");
        assert!(matches!(&h.events()[..], [Event::Connected(c)] if c.session_present));
        h.feed(Packet::PubAck(ack(1))).unwrap();
        assert_eq!(summary(&h.sent()), ["PUBLISH 4"], "the queue moves on");
        h.feed(Packet::PubComp(ack(2))).unwrap();
        h.feed(Packet::PubRec(ack(3))).unwrap();
        h.feed(Packet::PubComp(ack(3))).unwrap();
        h.feed(Packet::PubAck(ack(4))).unwrap();
        assert_eq!(h.session.inflight_len(), 0);
    }
}

#[test]
fn a_lost_session_reports_messages_in_flight() {
    for v in BOTH {
        let mut h = three_in_flight(v);
        let sent = h.reconnect(connack(false));
        assert_eq!(summary(&sent), ["PUBLISH 4"], "queued messages still go");
        let events = h.events();
        let lost: Vec<(u16, Option<&str>)> = events
            .iter()
            .filter_map(|e| match e {
                Event::PublishLost { packet_id, message } => {
                    Some((packet_id.get(), message.as_ref().map(|m| m.topic.as_str())))
                }
                _ => None,
            })
            .collect();
        assert!(matches!(events[0], Event::Connected(_)));
        assert_eq!(lost, [(1, Some("a")), (3, Some("c")), (2, None)], "{v}");
        assert_eq!(h.session.inflight_len(), 1);
    }
}
