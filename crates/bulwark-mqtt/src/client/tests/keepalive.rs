//! Keep-alive: PINGREQ after a keep-alive without traffic, the connection
//! declared dead when nothing answers in time, and the timer's inputs.

use std::time::Duration;

use super::*;
use crate::client::{CloseReason, State};

const SEC: Duration = Duration::from_secs(1);

fn keepalive(v: ProtocolVersion, keep_alive: u16) -> Harness {
    let mut o = options(v);
    o.keep_alive = keep_alive;
    o.response_timeout = 5 * SEC;
    let mut h = Harness::connected(o, connack(false));
    h.sent();
    h.events();
    h
}

#[test]
fn pingreq_after_silence_then_pingresp() {
    for v in BOTH {
        let mut h = keepalive(v, 30);
        let start = h.now;
        assert_eq!(h.session.poll_timeout(), Some(start + 30 * SEC));
        h.advance(29 * SEC);
        h.session.handle_timeout(h.now).unwrap();
        assert!(h.sent().is_empty(), "not yet");
        h.advance(SEC);
        h.session.handle_timeout(h.now).unwrap();
        assert_eq!(summary(&h.sent()), ["PINGREQ"]);
        assert_eq!(h.session.poll_timeout(), Some(h.now + 5 * SEC));
        h.advance(2 * SEC);
        h.feed(Packet::PingResp).unwrap();
        // Next ping counts from the PINGREQ sent (the older direction).
        assert_eq!(h.session.poll_timeout(), Some(start + 60 * SEC));
        assert_eq!(h.session.state(), State::Connected);
    }
}

#[test]
fn sending_postpones_the_ping_only_while_the_server_talks_too() {
    let mut h = keepalive(ProtocolVersion::V5, 10);
    let start = h.now;
    h.advance(8 * SEC);
    h.session.publish(msg("t", b"x", QoS::AtLeastOnce)).unwrap();
    h.sent();
    // Nothing received for 10 s is reason enough to probe.
    assert_eq!(h.session.poll_timeout(), Some(start + 10 * SEC));
    h.advance(SEC);
    h.feed(Packet::PubAck(ack(1))).unwrap();
    assert_eq!(h.session.poll_timeout(), Some(start + 18 * SEC));
}

#[test]
fn no_answer_means_the_connection_is_dead() {
    for v in BOTH {
        let mut h = keepalive(v, 10);
        h.advance(10 * SEC);
        h.session.handle_timeout(h.now).unwrap();
        assert_eq!(summary(&h.sent()), ["PINGREQ"]);
        h.advance(4 * SEC);
        h.session.handle_timeout(h.now).unwrap();
        h.advance(SEC);
        let want = CloseReason::KeepAliveTimeout(5 * SEC);
        assert_eq!(
            h.session.handle_timeout(h.now),
            Err(ClientError::Closed(want.clone()))
        );
        assert_eq!(h.events(), [Event::Closed(want)]);
        assert_eq!(h.session.state(), State::Closed);
        assert_eq!(h.session.poll_timeout(), None);
    }
}

#[test]
fn any_packet_answers_a_ping() {
    let mut h = keepalive(ProtocolVersion::V311, 10);
    h.advance(10 * SEC);
    h.session.handle_timeout(h.now).unwrap();
    h.sent();
    h.advance(4 * SEC);
    h.feed(server_publish("s", b"", QoS::AtMostOnce, None))
        .unwrap();
    h.advance(2 * SEC);
    h.session.handle_timeout(h.now).unwrap();
    assert_eq!(h.session.state(), State::Connected);
}

#[test]
fn keep_alive_zero_has_no_timer_but_the_server_may_set_one() {
    let h = keepalive(ProtocolVersion::V5, 0);
    assert_eq!(h.session.poll_timeout(), None);

    let mut o = options(ProtocolVersion::V5);
    o.keep_alive = 0;
    let props = Properties {
        server_keep_alive: Some(7),
        ..Properties::default()
    };
    let h = Harness::connected(o, connack_props(props));
    assert_eq!(h.session.poll_timeout(), Some(h.now + 7 * SEC));
}

#[test]
fn the_timer_counts_from_bytes_sent_not_queued() {
    let mut h = keepalive(ProtocolVersion::V311, 10);
    h.advance(5 * SEC);
    h.feed(Packet::PingResp).unwrap();
    h.session.publish(msg("t", b"x", QoS::AtMostOnce)).unwrap();
    assert_eq!(
        h.session.poll_timeout(),
        Some(h.now + 5 * SEC),
        "queued bytes do not count"
    );
    h.sent();
    assert_eq!(h.session.poll_timeout(), Some(h.now + 10 * SEC));
}
