//! The client state machine against a real broker: Mosquitto on
//! 127.0.0.1:1883 (plaintext, anonymous), driven over blocking
//! `std::net::TcpStream`s, in MQTT 3.1.1 and 5. Each test uses its own
//! client identifiers and topics.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bulwark_mqtt::client::{ClientOptions, ClientSession, Connected, Event, Message, State};
use bulwark_mqtt::{
    ProtocolVersion, QoS, ReasonCode, Subscription, SubscriptionOptions, TopicFilter, TopicName,
};

const BROKER: &str = "127.0.0.1:1883";
const WAIT: Duration = Duration::from_secs(10);

/// A name no other test (or earlier run) uses.
fn unique(what: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("bw-{what}-{}-{nanos}-{n}", std::process::id())
}

/// A blocking driver: one socket, one session.
struct Conn {
    stream: TcpStream,
    session: ClientSession,
    /// Events seen while waiting for another one.
    seen: Vec<Event>,
}

impl Conn {
    fn open(options: ClientOptions) -> (Conn, Connected) {
        let session = ClientSession::new(options, Instant::now());
        Conn::reopen(session)
    }

    /// Connects `session` over a new socket and waits for CONNACK.
    fn reopen(mut session: ClientSession) -> (Conn, Connected) {
        let stream = TcpStream::connect(BROKER).expect("mosquitto on 127.0.0.1:1883");
        stream.set_nodelay(true).unwrap();
        session.connect(Instant::now()).unwrap();
        let mut conn = Conn {
            stream,
            session,
            seen: Vec::new(),
        };
        let Event::Connected(c) = conn.wait(|e| matches!(e, Event::Connected(_))) else {
            unreachable!()
        };
        (conn, c)
    }

    fn flush(&mut self) {
        while let Some(bytes) = self.session.poll_transmit(Instant::now()) {
            self.stream.write_all(&bytes).unwrap();
        }
    }

    /// Reads once (up to the session's next timer or 50 ms), runs timers.
    fn pump(&mut self) {
        self.flush();
        let now = Instant::now();
        let until = self
            .session
            .poll_timeout()
            .map_or(now + Duration::from_millis(50), |t| {
                t.min(now + Duration::from_millis(50))
            });
        let wait = until
            .saturating_duration_since(now)
            .max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut buf = [0u8; 4096];
        match self.stream.read(&mut buf) {
            Ok(0) => panic!("broker closed the connection"),
            Ok(n) => {
                if let Err(e) = self.session.handle_input(&buf[..n], Instant::now()) {
                    panic!("connection closed: {e:?}");
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
        self.session.handle_timeout(Instant::now()).unwrap();
        self.flush();
    }

    /// Pumps until an event matches `want` (earlier ones are kept in
    /// `seen`).
    fn wait(&mut self, mut want: impl FnMut(&Event) -> bool) -> Event {
        let deadline = Instant::now() + WAIT;
        loop {
            while let Some(e) = self.session.poll_event() {
                if want(&e) {
                    return e;
                }
                self.seen.push(e);
            }
            assert!(Instant::now() < deadline, "timed out; seen {:?}", self.seen);
            self.pump();
        }
    }

    fn messages(&mut self, count: usize) -> Vec<Message> {
        (0..count)
            .map(|_| match self.wait(|e| matches!(e, Event::Message(_))) {
                Event::Message(m) => m,
                _ => unreachable!(),
            })
            .collect()
    }

    fn subscribe(&mut self, filter: &str, qos: QoS) -> Result<QoS, ReasonCode> {
        let id = self
            .session
            .subscribe(vec![Subscription {
                filter: TopicFilter::new(filter).unwrap(),
                options: SubscriptionOptions::new(qos),
            }])
            .unwrap();
        let event = self.wait(|e| matches!(e, Event::SubAck { packet_id, .. } if *packet_id == id));
        let Event::SubAck { mut results, .. } = event else {
            unreachable!()
        };
        assert_eq!(results.len(), 1);
        results.remove(0)
    }

    fn close(mut self) {
        self.session.disconnect(ReasonCode::Success).unwrap();
        self.flush();
    }
}

fn options(version: ProtocolVersion, id: &str) -> ClientOptions {
    let mut o = ClientOptions::new(version, id);
    o.clean_start = true;
    o.session_expiry_interval = 0;
    o
}

fn roundtrip(version: ProtocolVersion) {
    let base = unique("rt");
    let (mut sub, c) = Conn::open(options(version, &format!("{base}-sub")));
    assert!(!c.session_present);
    assert_eq!(
        sub.subscribe(&format!("{base}/#"), QoS::ExactlyOnce),
        Ok(QoS::ExactlyOnce)
    );

    let (mut publisher, _) = Conn::open(options(version, &format!("{base}-pub")));
    let topic = |n: u8| TopicName::new(format!("{base}/q{n}")).unwrap();
    let qos = [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce];
    let mut ids = Vec::new();
    for (n, q) in (0u8..).zip(qos) {
        let payload = format!("payload {n}");
        ids.push(
            publisher
                .session
                .publish(Message::new(topic(n), payload, q))
                .unwrap(),
        );
    }
    assert_eq!(ids[0], None);
    let (one, two) = (ids[1].unwrap(), ids[2].unwrap());
    let acked = publisher.wait(|e| matches!(e, Event::PubAck(a) if a.packet_id == one));
    let Event::PubAck(ack) = acked else {
        unreachable!()
    };
    assert!(!ack.reason_code.is_error(), "{ack:?}");
    publisher.wait(|e| matches!(e, Event::PubRec(a) if a.packet_id == two));
    publisher.wait(|e| matches!(e, Event::PubComp(a) if a.packet_id == two));
    assert_eq!(publisher.session.inflight_len(), 0);

    let mut got = sub.messages(3);
    got.sort_by(|a, b| a.topic.cmp(&b.topic));
    for ((n, q), m) in (0u8..).zip(qos).zip(&got) {
        assert_eq!(m.topic, topic(n));
        assert_eq!(&m.payload[..], format!("payload {n}").as_bytes());
        assert_eq!(m.qos, q);
    }
    // Exactly once: nothing more arrives.
    for _ in 0..10 {
        sub.pump();
    }
    assert!(sub.session.poll_event().is_none());
    publisher.close();
    sub.close();
}

#[test]
fn roundtrip_qos_0_1_2_v311() {
    roundtrip(ProtocolVersion::V311);
}

#[test]
fn roundtrip_qos_0_1_2_v5() {
    roundtrip(ProtocolVersion::V5);
}

fn persistent_session(version: ProtocolVersion) {
    let base = unique("persist");
    let topic = format!("{base}/t");
    let mut o = ClientOptions::new(version, format!("{base}-sub"));
    o.session_expiry_interval = 300;
    let (mut sub, c) = Conn::open(o);
    assert!(!c.session_present);
    assert_eq!(
        sub.subscribe(&topic, QoS::AtLeastOnce),
        Ok(QoS::AtLeastOnce)
    );
    let Conn { session, .. } = {
        sub.session.disconnect(ReasonCode::Success).unwrap();
        sub.flush();
        sub
    };
    let mut session = session;
    session.connection_lost();

    let (mut publisher, _) = Conn::open(options(version, &format!("{base}-pub")));
    let message = Message::new(
        TopicName::new(topic.as_str()).unwrap(),
        "while away",
        QoS::AtLeastOnce,
    );
    let id = publisher.session.publish(message).unwrap().unwrap();
    publisher.wait(|e| matches!(e, Event::PubAck(a) if a.packet_id == id));
    publisher.close();

    let (mut sub, c) = Conn::reopen(session);
    assert!(c.session_present, "the broker kept the session");
    let got = sub.messages(1);
    assert_eq!(&got[0].payload[..], b"while away");
    assert_eq!(got[0].qos, QoS::AtLeastOnce);
    sub.close();

    // Leave no session behind.
    let mut o = options(version, &format!("{base}-sub"));
    o.clean_start = true;
    let (cleanup, c) = Conn::open(o);
    assert!(!c.session_present);
    cleanup.close();
}

#[test]
fn persistent_session_gets_qos1_after_reconnect_v311() {
    persistent_session(ProtocolVersion::V311);
}

#[test]
fn persistent_session_gets_qos1_after_reconnect_v5() {
    persistent_session(ProtocolVersion::V5);
}

#[test]
fn keepalive_pings_are_answered() {
    for version in [ProtocolVersion::V311, ProtocolVersion::V5] {
        let mut o = options(version, &unique("ka"));
        o.keep_alive = 1;
        o.response_timeout = Duration::from_millis(800);
        let (mut conn, _) = Conn::open(o);
        // Three keep-alive periods of silence: each PINGREQ must be answered
        // within 800 ms or the session closes (and `pump` panics).
        let end = Instant::now() + Duration::from_millis(3500);
        while Instant::now() < end {
            conn.pump();
        }
        assert_eq!(conn.session.state(), State::Connected);
        conn.close();
    }
}

#[test]
fn unsubscribe_v5_reports_per_filter() {
    let base = unique("unsub");
    let (mut conn, _) = Conn::open(options(ProtocolVersion::V5, &base));
    assert_eq!(
        conn.subscribe(&format!("{base}/a"), QoS::AtMostOnce),
        Ok(QoS::AtMostOnce)
    );
    let filters = vec![
        TopicFilter::new(format!("{base}/a")).unwrap(),
        TopicFilter::new(format!("{base}/never")).unwrap(),
    ];
    let id = conn.session.unsubscribe(filters).unwrap();
    let event = conn.wait(|e| matches!(e, Event::UnsubAck { packet_id, .. } if *packet_id == id));
    let Event::UnsubAck { reason_codes, .. } = event else {
        unreachable!()
    };
    assert_eq!(
        reason_codes,
        [ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
    );
    conn.close();
}
