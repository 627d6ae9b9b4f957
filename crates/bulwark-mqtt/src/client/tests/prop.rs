//! Property tests against a model server: whatever the order of
//! acknowledgements and connection drops, every outgoing QoS 1/2 message
//! ends exactly once, first sends keep publish order and the Receive
//! Maximum is never exceeded; every incoming QoS 2 message is delivered
//! exactly once per identifier until released.

use std::collections::{HashMap, HashSet};

use proptest::collection::vec;
use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Op {
    /// Publish with QoS 2 (true) or 1.
    Publish(bool),
    /// The server answers the i-th (modulo) packet it owes an answer to.
    Answer(usize),
    /// The connection drops; the server kept the session (true) or not.
    Drop(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<bool>().prop_map(Op::Publish),
        3 => any::<usize>().prop_map(Op::Answer),
        1 => any::<bool>().prop_map(Op::Drop),
    ]
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![Just(ProtocolVersion::V311), Just(ProtocolVersion::V5)]
}

/// What the model server owes the client, per packet identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owed {
    Ack,
    Rec,
    Comp,
}

struct Model {
    owed: Vec<(u16, Owed)>,
    ends: HashMap<u16, usize>,
    last_first_send: u16,
    payloads: HashMap<u16, bytes::Bytes>,
}

impl Model {
    fn owe(&mut self, id: u16, what: Owed) {
        self.owed.retain(|(i, _)| *i != id);
        self.owed.push((id, what));
    }

    /// Reads what the client sent and the events it reported.
    fn observe(&mut self, h: &mut Harness, receive_max: u16) -> Result<(), TestCaseError> {
        for packet in h.sent() {
            match packet {
                Packet::Publish(p) => {
                    let id = p.packet_id.map_or(0, PacketId::get);
                    if p.dup {
                        prop_assert_eq!(Some(&p.payload), self.payloads.get(&id));
                    } else {
                        prop_assert!(id > self.last_first_send, "first sends in order");
                        self.last_first_send = id;
                        prop_assert_eq!(Some(&p.payload), self.payloads.get(&id));
                    }
                    let owed = match p.qos {
                        QoS::ExactlyOnce => Owed::Rec,
                        _ => Owed::Ack,
                    };
                    self.owe(id, owed);
                }
                Packet::PubRel(r) => self.owe(r.packet_id.get(), Owed::Comp),
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        for event in h.events() {
            match event {
                Event::PubAck(a) | Event::PubComp(a) => {
                    *self.ends.entry(a.packet_id.get()).or_default() += 1;
                }
                Event::PublishLost { packet_id, .. } => {
                    *self.ends.entry(packet_id.get()).or_default() += 1;
                }
                Event::PubRec(_) | Event::Connected(_) => {}
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        prop_assert!(h.session.inflight_len() <= usize::from(receive_max));
        Ok(())
    }

    fn answer(&mut self, h: &mut Harness, index: usize) -> Result<(), TestCaseError> {
        if self.owed.is_empty() {
            return Ok(());
        }
        let (id, what) = self.owed.remove(index % self.owed.len());
        let packet = match what {
            Owed::Ack => Packet::PubAck(ack(id)),
            Owed::Rec => Packet::PubRec(ack(id)),
            Owed::Comp => Packet::PubComp(ack(id)),
        };
        prop_assert_eq!(h.feed(packet), Ok(()));
        Ok(())
    }
}

proptest! {
    #[test]
    fn outgoing_messages_end_exactly_once(
        v in version(),
        receive_max in 1u16..5,
        ops in vec(op(), 0..80),
    ) {
        let mut o = options(v);
        o.max_inflight = receive_max;
        let mut h = Harness::connected(o, connack(false));
        let mut model = Model {
            owed: Vec::new(),
            ends: HashMap::new(),
            last_first_send: 0,
            payloads: HashMap::new(),
        };
        let mut published = Vec::new();
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Publish(qos2) => {
                    let qos = if qos2 { QoS::ExactlyOnce } else { QoS::AtLeastOnce };
                    let payload = bytes::Bytes::from(n.to_string());
                    let m = Message::new(topic("t"), payload.clone(), qos);
                    let id = h.session.publish(m).unwrap().unwrap();
                    model.payloads.insert(id.get(), payload);
                    published.push(id.get());
                }
                Op::Answer(i) => model.answer(&mut h, i)?,
                Op::Drop(present) => {
                    h.session.connection_lost();
                    if !present {
                        model.owed.clear();
                    }
                    h.connect(connack(present)).unwrap();
                }
            }
            model.observe(&mut h, receive_max)?;
        }
        // The server answers everything it owes; the queue drains.
        while !model.owed.is_empty() {
            model.answer(&mut h, 0)?;
            model.observe(&mut h, receive_max)?;
        }
        prop_assert_eq!(h.session.inflight_len() + h.session.queued_len(), 0);
        for id in published {
            prop_assert_eq!(model.ends.get(&id), Some(&1), "message {}", id);
        }
    }

    #[test]
    fn incoming_qos2_delivered_once_per_identifier(
        v in version(),
        ops in vec((0u8..3, 1u16..4), 0..60),
    ) {
        let mut h = Harness::connected(options(v), connack(false));
        h.events();
        let mut pending = HashSet::new();
        let mut expected = 0usize;
        for (kind, id) in ops {
            match kind {
                0 => {
                    h.feed(server_publish("s", b"x", QoS::ExactlyOnce, Some(id))).unwrap();
                    if pending.insert(id) {
                        expected += 1;
                    }
                    prop_assert_eq!(summary(&h.sent()), [format!("PUBREC {id}")]);
                }
                1 => {
                    h.feed(Packet::PubRel(ack(id))).unwrap();
                    pending.remove(&id);
                    prop_assert_eq!(summary(&h.sent()), [format!("PUBCOMP {id}")]);
                }
                _ => {
                    let present = id % 2 == 0;
                    h.reconnect(connack(present));
                    if !present {
                        pending.clear();
                    }
                }
            }
        }
        let delivered = h
            .events()
            .iter()
            .filter(|e| matches!(e, Event::Message(_)))
            .count();
        prop_assert_eq!(delivered, expected);
    }
}
