//! Incoming messages: acknowledgements per QoS, exactly-once delivery of
//! QoS 2, topic aliases, size and Receive Maximum limits, and what the
//! server may end the connection with.

use std::num::NonZeroU16;

use super::*;
use crate::client::{CloseReason, ProtocolViolation, ServerDisconnect};
use crate::DecodeError;

fn delivered(events: &[Event]) -> Vec<(String, Vec<u8>)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some((m.topic.as_str().to_owned(), m.payload.to_vec())),
            _ => None,
        })
        .collect()
}

fn closed_with(violation: ProtocolViolation) -> Result<(), ClientError> {
    Err(ClientError::Closed(CloseReason::Protocol(violation)))
}

#[test]
fn qos_0_1_2_are_delivered_and_acknowledged() {
    for v in BOTH {
        let mut h = Harness::connected(options(v), connack(false));
        h.events();
        h.feed(server_publish("s/0", b"a", QoS::AtMostOnce, None))
            .unwrap();
        h.feed(server_publish("s/1", b"b", QoS::AtLeastOnce, Some(1)))
            .unwrap();
        h.feed(server_publish("s/2", b"c", QoS::ExactlyOnce, Some(1)))
            .unwrap();
        assert_eq!(summary(&h.sent()), ["PUBACK 1", "PUBREC 1"]);
        h.feed(Packet::PubRel(ack(1))).unwrap();
        assert_eq!(summary(&h.sent()), ["PUBCOMP 1"]);
        let events = h.events();
        assert_eq!(
            delivered(&events),
            [
                ("s/0".into(), b"a".to_vec()),
                ("s/1".into(), b"b".to_vec()),
                ("s/2".into(), b"c".to_vec())
            ]
        );
        let Event::Message(m) = &events[2] else {
            panic!()
        };
        assert_eq!(m.qos, QoS::ExactlyOnce);
    }
}

#[test]
fn qos2_duplicates_are_not_delivered_again() {
    for v in BOTH {
        let mut h = Harness::connected(options(v), connack(false));
        h.events();
        let mut dup = server_publish("s", b"once", QoS::ExactlyOnce, Some(7));
        h.feed(dup.clone()).unwrap();
        if let Packet::Publish(p) = &mut dup {
            p.dup = true;
        }
        h.feed(dup.clone()).unwrap();
        assert_eq!(summary(&h.sent()), ["PUBREC 7", "PUBREC 7"]);
        assert_eq!(delivered(&h.events()).len(), 1);

        // Across a resumed session too.
        h.reconnect(connack(true));
        h.feed(dup).unwrap();
        assert_eq!(summary(&h.sent()), ["PUBREC 7"]);
        assert_eq!(delivered(&h.events()).len(), 0);

        h.feed(Packet::PubRel(ack(7))).unwrap();
        h.feed(Packet::PubRel(ack(7))).unwrap();
        let sent = h.sent();
        assert_eq!(summary(&sent), ["PUBCOMP 7", "PUBCOMP 7"]);
        if v == ProtocolVersion::V5 {
            let Packet::PubComp(second) = &sent[1] else {
                panic!()
            };
            assert_eq!(second.reason_code, ReasonCode::PacketIdentifierNotFound);
        }
        // Released: the identifier now names a new message.
        h.feed(server_publish("s", b"again", QoS::ExactlyOnce, Some(7)))
            .unwrap();
        assert_eq!(delivered(&h.events()), [("s".into(), b"again".to_vec())]);
    }
}

#[test]
fn a_lost_session_forgets_unreleased_qos2() {
    let mut h = Harness::connected(options(ProtocolVersion::V5), connack(false));
    h.feed(server_publish("s", b"x", QoS::ExactlyOnce, Some(3)))
        .unwrap();
    h.reconnect(connack(false));
    h.events();
    h.feed(server_publish("s", b"y", QoS::ExactlyOnce, Some(3)))
        .unwrap();
    assert_eq!(delivered(&h.events()), [("s".into(), b"y".to_vec())]);
}

#[test]
fn incoming_topic_aliases() {
    let mut o = options(ProtocolVersion::V5);
    o.topic_alias_maximum = 2;
    let mut h = Harness::connected(o, connack(false));
    h.events();
    let aliased = |t: Option<&str>, alias: u16| {
        let mut p = Publish::new(topic("unused"), "p");
        p.topic = t.map(topic);
        p.properties.topic_alias = NonZeroU16::new(alias);
        Packet::Publish(p)
    };
    h.feed(aliased(Some("long/topic/name"), 1)).unwrap();
    h.feed(aliased(None, 1)).unwrap();
    let events = h.events();
    assert_eq!(delivered(&events).len(), 2);
    for e in &events {
        let Event::Message(m) = e else { panic!() };
        assert_eq!(m.topic.as_str(), "long/topic/name");
        assert_eq!(
            m.properties.topic_alias, None,
            "aliases stay in the session"
        );
    }
    assert_eq!(
        h.feed(aliased(Some("x"), 3)),
        closed_with(ProtocolViolation::TopicAlias(ReasonCode::TopicAliasInvalid))
    );
    assert_eq!(
        h.session.poll_transmit(h.now).as_deref(),
        Some(&b"\xe0\x01\x94"[..])
    );

    // Aliases do not survive the connection.
    h.session.connection_lost();
    h.connect(connack(true)).unwrap();
    assert_eq!(
        h.feed(aliased(None, 1)),
        closed_with(ProtocolViolation::TopicAlias(ReasonCode::ProtocolError))
    );
}

#[test]
fn packets_larger_than_ours_are_refused() {
    for v in BOTH {
        let mut o = options(v);
        o.maximum_packet_size = 32;
        let mut h = Harness::connected(o, connack(false));
        h.sent();
        // Refused from the header alone: 2 + 98 bytes declared.
        let want = ProtocolViolation::Decode(DecodeError::PacketTooLarge { size: 100, max: 32 });
        assert_eq!(h.feed_bytes(b"\x30\x62\x00\x01s"), closed_with(want));
        let sent = h.session.poll_transmit(h.now);
        match v {
            ProtocolVersion::V5 => assert_eq!(sent.as_deref(), Some(&b"\xe0\x01\x95"[..])),
            ProtocolVersion::V311 => assert_eq!(sent, None),
        }
    }
}

#[test]
fn malformed_packets_close_with_malformed_packet() {
    let mut h = Harness::connected(options(ProtocolVersion::V5), connack(false));
    h.sent();
    // PUBLISH with QoS 3.
    let want = ProtocolViolation::Decode(DecodeError::InvalidQoS);
    assert_eq!(h.feed_bytes(b"\x36\x03\x00\x01s"), closed_with(want));
    assert_eq!(
        h.session.poll_transmit(h.now).as_deref(),
        Some(&b"\xe0\x01\x81"[..])
    );
}

#[test]
fn our_receive_maximum_is_enforced_for_qos2() {
    let mut o = options(ProtocolVersion::V5);
    o.receive_maximum = 1;
    let mut h = Harness::connected(o, connack(false));
    h.feed(server_publish("s", b"", QoS::ExactlyOnce, Some(1)))
        .unwrap();
    h.feed(server_publish("s", b"", QoS::ExactlyOnce, Some(1)))
        .unwrap();
    assert_eq!(
        h.feed(server_publish("s", b"", QoS::ExactlyOnce, Some(2))),
        closed_with(ProtocolViolation::ReceiveMaximumExceeded)
    );
}

#[test]
fn server_disconnect_is_surfaced() {
    let mut h = Harness::connected(options(ProtocolVersion::V5), connack(false));
    h.events();
    h.sent();
    let mut d = crate::Disconnect {
        reason_code: ReasonCode::AdministrativeAction,
        ..Default::default()
    };
    d.properties.reason_string = Some("revoked".into());
    let want = CloseReason::ServerDisconnect(ServerDisconnect {
        reason_code: ReasonCode::AdministrativeAction,
        reason_string: Some("revoked".into()),
        server_reference: None,
    });
    // Whatever follows DISCONNECT is ignored.
    let mut bytes = BytesMut::new();
    Packet::Disconnect(d)
        .encode(ProtocolVersion::V5, &mut bytes)
        .unwrap();
    bytes.extend_from_slice(b"\x30\x03\x00\x01s");
    assert_eq!(h.feed_bytes(&bytes), Err(ClientError::Closed(want.clone())));
    assert_eq!(h.events(), [Event::Closed(want)]);
    assert!(h.sent().is_empty(), "no DISCONNECT back");
    assert_eq!(
        want_display(),
        "disconnected by the server: AdministrativeAction (0x98)"
    );
}

fn want_display() -> String {
    CloseReason::ServerDisconnect(ServerDisconnect {
        reason_code: ReasonCode::AdministrativeAction,
        reason_string: Some("peer text is not in the message".into()),
        server_reference: None,
    })
    .to_string()
}

#[test]
fn input_split_anywhere() {
    // Two packets fed one byte at a time give the same result.
    for v in BOTH {
        let mut h = Harness::connected(options(v), connack(false));
        h.events();
        let mut bytes = BytesMut::new();
        server_publish("a/b", b"xyz", QoS::AtLeastOnce, Some(9))
            .encode(v, &mut bytes)
            .unwrap();
        Packet::PingResp.encode(v, &mut bytes).unwrap();
        for b in bytes.iter() {
            h.feed_bytes(&[*b]).unwrap();
        }
        assert_eq!(delivered(&h.events()), [("a/b".into(), b"xyz".to_vec())]);
        assert_eq!(summary(&h.sent()), ["PUBACK 9"]);
    }
}
