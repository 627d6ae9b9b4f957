//! Sans-I/O pieces of an MQTT session that both ends need, kept here so the
//! gateway, the agent and the simulator share one implementation:
//!
//! - [`TopicAliases`]: the receiver's table of topic aliases (MQTT 5
//!   §3.3.2.3.4), resolving each PUBLISH to its full topic name;
//! - [`PacketIds`]: packet identifiers for outgoing QoS 1/2 messages, never
//!   reusing one still in flight;
//! - [`IncomingQos2`]: QoS 2 messages received and not yet released, so a
//!   retransmission is acknowledged without being delivered twice, and a
//!   peer exceeding the Receive Maximum is caught.
//!
//! None of them does I/O or reads a clock.

use std::collections::HashSet;

use crate::{PacketId, Publish, ReasonCode, TopicName};

/// The topic aliases a peer has set up, up to the maximum we announced.
#[derive(Debug, Clone, Default)]
pub struct TopicAliases {
    maximum: u16,
    /// Grown on first use up to the alias used: most peers never send an
    /// alias, and an idle connection should not carry an empty table.
    slots: Vec<Option<TopicName>>,
}

impl TopicAliases {
    /// A table for aliases 1..=`maximum` (0 disables aliases).
    pub fn new(maximum: u16) -> Self {
        Self {
            maximum,
            slots: Vec::new(),
        }
    }

    /// Takes the topic (and alias) out of `p` and returns the full topic:
    /// a topic with an alias (re)binds the alias; an empty topic uses it.
    /// Errors are the reason codes to disconnect with.
    pub fn resolve(&mut self, p: &mut Publish) -> Result<TopicName, ReasonCode> {
        let Some(alias) = p.properties.topic_alias.take() else {
            return p.topic.take().ok_or(ReasonCode::ProtocolError);
        };
        if alias.get() > self.maximum {
            return Err(ReasonCode::TopicAliasInvalid);
        }
        let index = usize::from(alias.get()) - 1;
        if index >= self.slots.len() {
            if p.topic.is_none() {
                // Never bound.
                return Err(ReasonCode::ProtocolError);
            }
            self.slots.resize(index + 1, None);
        }
        let slot = self
            .slots
            .get_mut(index)
            .ok_or(ReasonCode::TopicAliasInvalid)?;
        match (p.topic.take(), slot) {
            (Some(t), slot) => {
                *slot = Some(t.clone());
                Ok(t)
            }
            (None, Some(t)) => Ok(t.clone()),
            (None, None) => Err(ReasonCode::ProtocolError),
        }
    }
}

/// Allocates packet identifiers, skipping those in use.
#[derive(Debug, Clone)]
pub struct PacketIds {
    next: u16,
}

impl Default for PacketIds {
    fn default() -> Self {
        Self { next: 1 }
    }
}

impl PacketIds {
    /// The next identifier for which `in_use` is false; `None` only if all
    /// 65,535 are in use.
    pub fn next(&mut self, in_use: impl Fn(u16) -> bool) -> Option<PacketId> {
        for _ in 0..u16::MAX {
            let id = self.next;
            self.next = self.next.checked_add(1).unwrap_or(1);
            if !in_use(id) {
                return PacketId::new(id);
            }
        }
        None
    }
}

/// What to do with a received QoS 2 PUBLISH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qos2Arrival {
    /// New: deliver it, then answer PUBREC.
    Deliver,
    /// A retransmission of one not yet released: answer PUBREC only.
    Duplicate,
}

/// QoS 2 messages between PUBREC and PUBREL, bounded by the Receive
/// Maximum we announced.
#[derive(Debug, Clone)]
pub struct IncomingQos2 {
    pending: HashSet<u16>,
    receive_maximum: u16,
}

impl IncomingQos2 {
    pub fn new(receive_maximum: u16) -> Self {
        Self {
            pending: HashSet::new(),
            receive_maximum,
        }
    }

    /// Records an arrival; `Err(ReceiveMaximumExceeded)` when the peer has
    /// more unreleased messages than it may.
    pub fn arrive(&mut self, id: PacketId) -> Result<Qos2Arrival, ReasonCode> {
        if self.pending.contains(&id.get()) {
            return Ok(Qos2Arrival::Duplicate);
        }
        if self.pending.len() >= usize::from(self.receive_maximum) {
            return Err(ReasonCode::ReceiveMaximumExceeded);
        }
        self.pending.insert(id.get());
        Ok(Qos2Arrival::Deliver)
    }

    /// PUBREL received: true if the id was pending (else answer PUBCOMP
    /// with "packet identifier not found").
    pub fn release(&mut self, id: PacketId) -> bool {
        self.pending.remove(&id.get())
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU16;

    fn publish(topic: Option<&str>, alias: Option<u16>) -> Publish {
        let mut p = Publish::new(TopicName::new("x").unwrap(), "");
        p.topic = topic.map(|t| TopicName::new(t).unwrap());
        p.properties.topic_alias = alias.and_then(NonZeroU16::new);
        p
    }

    #[test]
    fn aliases_bind_rebind_and_refuse() {
        let mut a = TopicAliases::new(2);
        let cases = [
            (publish(Some("a/b"), None), Ok("a/b")),
            (publish(None, Some(1)), Err(ReasonCode::ProtocolError)),
            (publish(Some("a/b"), Some(1)), Ok("a/b")),
            (publish(None, Some(1)), Ok("a/b")),
            (publish(Some("c"), Some(1)), Ok("c")),
            (publish(None, Some(1)), Ok("c")),
            (publish(None, Some(2)), Err(ReasonCode::ProtocolError)),
            (publish(Some("e"), Some(2)), Ok("e")),
            (publish(None, Some(2)), Ok("e")),
            (publish(None, Some(1)), Ok("c")),
            (
                publish(Some("d"), Some(3)),
                Err(ReasonCode::TopicAliasInvalid),
            ),
            (publish(None, None), Err(ReasonCode::ProtocolError)),
        ];
        for (mut p, want) in cases {
            let got = a.resolve(&mut p).map(|t| t.as_str().to_owned());
            assert_eq!(got, want.map(str::to_owned));
            assert_eq!(p.properties.topic_alias, None, "alias is per hop");
        }
        assert_eq!(
            TopicAliases::new(0).resolve(&mut publish(Some("x"), Some(1))),
            Err(ReasonCode::TopicAliasInvalid)
        );
    }

    #[test]
    fn packet_ids_skip_those_in_flight_and_wrap() {
        let mut ids = PacketIds { next: u16::MAX - 1 };
        let busy = [u16::MAX, 1];
        let got: Vec<u16> = (0..3)
            .map(|_| ids.next(|id| busy.contains(&id)).unwrap().get())
            .collect();
        assert_eq!(got, [u16::MAX - 1, 2, 3]);
        assert_eq!(PacketIds::default().next(|_| true), None);
    }

    #[test]
    fn qos2_duplicates_and_receive_maximum() {
        let id = |n| PacketId::new(n).unwrap();
        let mut q = IncomingQos2::new(2);
        assert_eq!(q.arrive(id(1)), Ok(Qos2Arrival::Deliver));
        assert_eq!(q.arrive(id(1)), Ok(Qos2Arrival::Duplicate));
        assert_eq!(q.arrive(id(2)), Ok(Qos2Arrival::Deliver));
        assert_eq!(q.arrive(id(3)), Err(ReasonCode::ReceiveMaximumExceeded));
        assert!(q.release(id(1)));
        assert!(!q.release(id(1)));
        assert_eq!(
            q.arrive(id(1)),
            Ok(Qos2Arrival::Deliver),
            "ids are reused after release"
        );
        assert_eq!(q.len(), 2);
    }
}
