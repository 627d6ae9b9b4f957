//! Unit tests of the client session, driven from bytes: a [`Harness`]
//! plays the server with the codec (decoding what the client sends,
//! encoding what the server answers) and a clock it advances by hand.

mod connect;
mod incoming;
mod keepalive;
mod prop;
mod publish;
mod subscribe;

use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::{ClientError, ClientOptions, ClientSession, Event, Message};
use crate::{
    ConnAck, Decoder, Packet, PacketId, Properties, ProtocolVersion, PubResponse, Publish, QoS,
    ReasonCode, TopicFilter, TopicName, MAX_PACKET_SIZE,
};

const BOTH: [ProtocolVersion; 2] = [ProtocolVersion::V311, ProtocolVersion::V5];

fn topic(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn msg(t: &str, payload: &'static [u8], qos: QoS) -> Message {
    Message::new(topic(t), payload, qos)
}

fn options(version: ProtocolVersion) -> ClientOptions {
    ClientOptions::new(version, "c1")
}

/// A server's PUBLISH with `qos` (and `id` above 0).
fn server_publish(t: &str, payload: &'static [u8], qos: QoS, id: Option<u16>) -> Packet {
    let mut p = Publish::new(topic(t), payload);
    p.qos = qos;
    p.packet_id = id.map(pid);
    Packet::Publish(p)
}

fn ack(id: u16) -> PubResponse {
    PubResponse::new(pid(id))
}

fn ack_with(id: u16, reason_code: ReasonCode) -> PubResponse {
    PubResponse {
        reason_code,
        ..PubResponse::new(pid(id))
    }
}

struct Harness {
    session: ClientSession,
    version: ProtocolVersion,
    server: Decoder,
    now: Instant,
}

impl Harness {
    fn new(options: ClientOptions) -> Self {
        let now = Instant::now();
        Harness {
            version: options.version,
            session: ClientSession::new(options, now),
            server: Decoder::new(MAX_PACKET_SIZE),
            now,
        }
    }

    /// A session connected with `connack` (events of the connection left
    /// in place).
    fn connected(options: ClientOptions, connack: ConnAck) -> Self {
        let mut h = Harness::new(options);
        h.connect(connack).unwrap();
        h
    }

    /// Connects, checks that CONNECT went out, and answers `connack`.
    fn connect(&mut self, connack: ConnAck) -> Result<(), ClientError> {
        self.session.connect(self.now)?;
        self.server = Decoder::new(MAX_PACKET_SIZE);
        let sent = self.sent();
        assert!(
            matches!(sent.first(), Some(Packet::Connect(_))),
            "expected CONNECT first: {sent:?}"
        );
        assert_eq!(sent.len(), 1, "only CONNECT before CONNACK: {sent:?}");
        self.feed(Packet::ConnAck(connack))
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Everything the client sent since the last call, decoded.
    fn sent(&mut self) -> Vec<Packet> {
        let Some(bytes) = self.session.poll_transmit(self.now) else {
            return Vec::new();
        };
        let mut buf = BytesMut::from(&bytes[..]);
        let mut packets = Vec::new();
        while let Some(p) = self.server.decode(&mut buf).unwrap() {
            packets.push(p);
        }
        assert!(buf.is_empty(), "partial packet sent");
        packets
    }

    /// The server sends `packet`.
    fn feed(&mut self, packet: Packet) -> Result<(), ClientError> {
        let mut buf = BytesMut::new();
        packet.encode(self.version, &mut buf).unwrap();
        self.session.handle_input(&buf, self.now)
    }

    fn feed_bytes(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        self.session.handle_input(bytes, self.now)
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.session.poll_event()).collect()
    }

    /// Drops the connection and reconnects with `connack`; returns what the
    /// client sent after CONNACK.
    fn reconnect(&mut self, connack: ConnAck) -> Vec<Packet> {
        self.session.connection_lost();
        self.connect(connack).unwrap();
        self.sent()
    }
}

fn connack(session_present: bool) -> ConnAck {
    ConnAck {
        session_present,
        ..ConnAck::default()
    }
}

fn connack_props(properties: Properties) -> ConnAck {
    ConnAck {
        properties,
        ..ConnAck::default()
    }
}

/// The packet identifiers and DUP flags of the PUBLISHes in `packets`, and
/// the other packets by type name.
fn summary(packets: &[Packet]) -> Vec<String> {
    packets
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => format!(
                "PUBLISH {}{}",
                p.packet_id.map_or(0, PacketId::get),
                if p.dup { " dup" } else { "" }
            ),
            Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
                format!("{} {}", p.packet_type(), r.packet_id.get())
            }
            other => other.packet_type().to_string(),
        })
        .collect()
}
