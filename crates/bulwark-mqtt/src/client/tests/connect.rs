//! CONNECT as built from the options, CONNACK's limits and refusals, and
//! the connection states.

use std::num::{NonZeroU16, NonZeroU32};
use std::time::Duration;

use super::*;
use crate::client::{CloseReason, ConnectRefused, ProtocolViolation, State};
use crate::{LastWill, UserProperty};

#[test]
fn connect_v311_bytes() {
    let mut o = options(ProtocolVersion::V311);
    o.keep_alive = 30;
    o.username = Some("u".into());
    o.password = Some("p".into());
    let mut h = Harness::new(o);
    h.session.connect(h.now).unwrap();
    let bytes = h.session.poll_transmit(h.now).unwrap();
    // Level 4, flags user+password (clean session off), keep-alive 30,
    // client id "c1", user "u", password "p".
    assert_eq!(
        &bytes[..],
        b"\x10\x14\x00\x04MQTT\x04\xc0\x00\x1e\x00\x02c1\x00\x01u\x00\x01p"
    );
}

#[test]
fn connect_v5_carries_the_options() {
    let mut o = options(ProtocolVersion::V5);
    o.clean_start = true;
    o.session_expiry_interval = 600;
    o.receive_maximum = 5;
    o.maximum_packet_size = 4096;
    o.topic_alias_maximum = 8;
    o.user_properties = vec![UserProperty {
        name: "k".into(),
        value: "v".into(),
    }];
    o.will = Some(LastWill {
        topic: topic("dev/c1/status"),
        payload: "gone".into(),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Properties::default(),
    });
    let mut h = Harness::new(o);
    h.session.connect(h.now).unwrap();
    let sent = h.sent();
    let [Packet::Connect(c)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert!(c.clean_start);
    assert_eq!(c.client_id, "c1");
    assert_eq!(c.keep_alive, 60);
    assert_eq!(c.will.as_ref().unwrap().topic, topic("dev/c1/status"));
    let p = &c.properties;
    assert_eq!(p.session_expiry_interval, Some(600));
    assert_eq!(p.receive_maximum, NonZeroU16::new(5));
    assert_eq!(p.maximum_packet_size, NonZeroU32::new(4096));
    assert_eq!(p.topic_alias_maximum, Some(8));
    assert_eq!(p.user_properties.len(), 1);
}

#[test]
fn connack_limits_are_applied_and_the_assigned_id_kept() {
    let mut o = options(ProtocolVersion::V5);
    o.client_id = String::new();
    let props = Properties {
        receive_maximum: NonZeroU16::new(3),
        maximum_packet_size: NonZeroU32::new(200),
        assigned_client_identifier: Some("auto-7".into()),
        server_keep_alive: Some(15),
        topic_alias_maximum: Some(4),
        maximum_qos: Some(QoS::AtLeastOnce),
        retain_available: Some(false),
        ..Properties::default()
    };
    let mut h = Harness::connected(o, connack_props(props));
    let events = h.events();
    let [Event::Connected(c)] = &events[..] else {
        panic!("{events:?}")
    };
    assert!(!c.session_present);
    assert_eq!(c.receive_maximum, 3);
    assert_eq!(c.maximum_packet_size, 200);
    assert_eq!(c.assigned_client_id.as_deref(), Some("auto-7"));
    assert_eq!(c.keep_alive, 15);
    assert_eq!(c.topic_alias_maximum, 4);
    assert_eq!(c.maximum_qos, QoS::AtLeastOnce);
    assert!(!c.retain_available);
    assert_eq!(h.session.connected(), Some(c));
    assert_eq!(h.session.client_id(), "auto-7");
    // The server keep-alive is the one in force.
    assert_eq!(
        h.session.poll_timeout(),
        Some(h.now + Duration::from_secs(15))
    );

    h.session.connection_lost();
    assert_eq!(h.session.connected(), None);
    h.session.connect(h.now).unwrap();
    let sent = h.sent();
    let [Packet::Connect(c)] = &sent[..] else {
        panic!("{sent:?}")
    };
    assert_eq!(c.client_id, "auto-7", "the assigned id resumes the session");
}

#[test]
fn connack_defaults_when_the_server_says_nothing() {
    for v in BOTH {
        let mut h = Harness::connected(options(v), connack(false));
        let c = h.session.connected().unwrap().clone();
        assert_eq!(
            (c.receive_maximum, c.maximum_packet_size, c.keep_alive),
            (u16::MAX, MAX_PACKET_SIZE, 60)
        );
        assert_eq!(c.maximum_qos, QoS::ExactlyOnce);
        assert!(c.retain_available && c.shared_subscription_available);
        assert_eq!(h.events(), vec![Event::Connected(c)]);
    }
}

#[test]
fn refusals_are_typed() {
    // (version, CONNACK bytes, expected reason, expected reason string)
    let cases: [(ProtocolVersion, &[u8], ReasonCode, Option<&str>); 7] = [
        (
            ProtocolVersion::V311,
            b"\x20\x02\x00\x01",
            ReasonCode::UnsupportedProtocolVersion,
            None,
        ),
        (
            ProtocolVersion::V311,
            b"\x20\x02\x00\x02",
            ReasonCode::ClientIdentifierNotValid,
            None,
        ),
        (
            ProtocolVersion::V311,
            b"\x20\x02\x00\x03",
            ReasonCode::ServerUnavailable,
            None,
        ),
        (
            ProtocolVersion::V311,
            b"\x20\x02\x00\x04",
            ReasonCode::BadUserNameOrPassword,
            None,
        ),
        (
            ProtocolVersion::V311,
            b"\x20\x02\x00\x05",
            ReasonCode::NotAuthorized,
            None,
        ),
        (
            ProtocolVersion::V5,
            b"\x20\x03\x00\x8a\x00",
            ReasonCode::Banned,
            None,
        ),
        (
            ProtocolVersion::V5,
            b"\x20\x08\x00\x87\x05\x1f\x00\x02no",
            ReasonCode::NotAuthorized,
            Some("no"),
        ),
    ];
    for (v, bytes, reason_code, reason_string) in cases {
        let mut h = Harness::new(options(v));
        h.session.connect(h.now).unwrap();
        h.sent();
        let want = CloseReason::Refused(ConnectRefused {
            reason_code,
            reason_string: reason_string.map(str::to_owned),
            server_reference: None,
        });
        assert_eq!(
            h.feed_bytes(bytes),
            Err(ClientError::Closed(want.clone())),
            "{bytes:02x?}"
        );
        assert_eq!(h.session.state(), State::Closed);
        assert_eq!(h.events(), vec![Event::Closed(want)]);
        assert!(h.sent().is_empty(), "nothing is sent to a refusing server");
        assert_eq!(h.session.poll_timeout(), None);
    }
}

#[test]
fn states_and_misuse() {
    for v in BOTH {
        let mut h = Harness::new(options(v));
        assert_eq!(h.session.state(), State::Disconnected);
        assert_eq!(
            h.feed_bytes(b"\x20\x02\x00\x00"),
            Err(ClientError::NotConnected)
        );
        assert_eq!(
            h.session.disconnect(ReasonCode::Success),
            Err(ClientError::NotConnected)
        );
        h.session.connect(h.now).unwrap();
        assert_eq!(h.session.state(), State::Connecting);
        assert_eq!(h.session.connect(h.now), Err(ClientError::AlreadyConnected));
        h.sent();
        h.feed(Packet::ConnAck(connack(false))).unwrap();
        assert_eq!(h.session.state(), State::Connected);
        h.session.disconnect(ReasonCode::Success).unwrap();
        assert_eq!(summary(&h.sent()), ["DISCONNECT"]);
        assert_eq!(h.session.state(), State::Closed);
        assert_eq!(h.feed_bytes(b"\xd0\x00"), Ok(()), "ignored once closed");
        assert_eq!(h.session.connect(h.now), Err(ClientError::AlreadyConnected));
        h.session.connection_lost();
        assert_eq!(h.session.state(), State::Disconnected);
        assert_eq!(h.session.poll_transmit(h.now), None);
    }
}

#[test]
fn disconnect_v5_carries_the_reason() {
    let mut h = Harness::connected(options(ProtocolVersion::V5), connack(false));
    h.sent();
    h.session
        .disconnect(ReasonCode::DisconnectWithWillMessage)
        .unwrap();
    let bytes = h.session.poll_transmit(h.now).unwrap();
    assert_eq!(&bytes[..], b"\xe0\x01\x04");
}

#[test]
fn packets_out_of_place_are_violations() {
    // (version, CONNACK first?, the packet the server sends)
    let cases = [
        (ProtocolVersion::V311, false, Packet::PingResp),
        (
            ProtocolVersion::V5,
            false,
            server_publish("a", b"", QoS::AtMostOnce, None),
        ),
        (ProtocolVersion::V311, true, Packet::ConnAck(connack(false))),
        (ProtocolVersion::V5, true, Packet::PingReq),
        (
            ProtocolVersion::V311,
            true,
            Packet::Disconnect(Default::default()),
        ),
        (ProtocolVersion::V5, true, Packet::Auth(Default::default())),
    ];
    for (v, connected, packet) in cases {
        let mut h = Harness::new(options(v));
        h.session.connect(h.now).unwrap();
        h.sent();
        if connected {
            h.feed(Packet::ConnAck(connack(false))).unwrap();
            h.events();
        }
        let packet_type = packet.packet_type();
        let want = CloseReason::Protocol(ProtocolViolation::UnexpectedPacket(packet_type));
        assert_eq!(h.feed(packet), Err(ClientError::Closed(want.clone())));
        assert_eq!(h.events(), vec![Event::Closed(want)]);
        let sent = summary(&h.sent());
        if connected && v == ProtocolVersion::V5 {
            assert_eq!(sent, ["DISCONNECT"], "{packet_type}");
        } else {
            assert!(sent.is_empty(), "{packet_type}: {sent:?}");
        }
    }
}

#[test]
fn session_present_after_clean_start_is_a_violation() {
    let mut o = options(ProtocolVersion::V5);
    o.clean_start = true;
    let mut h = Harness::new(o);
    let want = CloseReason::Protocol(ProtocolViolation::SessionPresentAfterCleanStart);
    assert_eq!(h.connect(connack(true)), Err(ClientError::Closed(want)));
}

#[test]
fn no_connack_in_time() {
    for v in BOTH {
        let mut h = Harness::new(options(v));
        h.session.connect(h.now).unwrap();
        h.sent();
        let deadline = h.now + Duration::from_secs(10);
        assert_eq!(h.session.poll_timeout(), Some(deadline));
        h.advance(Duration::from_secs(9));
        assert_eq!(h.session.handle_timeout(h.now), Ok(()));
        h.advance(Duration::from_secs(1));
        let want = CloseReason::ConnectTimeout(Duration::from_secs(10));
        assert_eq!(
            h.session.handle_timeout(h.now),
            Err(ClientError::Closed(want.clone()))
        );
        assert_eq!(h.events(), vec![Event::Closed(want)]);
    }
}
