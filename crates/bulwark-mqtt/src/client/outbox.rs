//! Outgoing QoS 1/2 messages from `publish` until their flow ends: waiting
//! in the queue, then in flight (PUBLISH sent), then, for QoS 2, released
//! (PUBREL sent).
//!
//! In-flight entries are kept in the order a resend must follow (MQTT 5
//! §4.6): a PUBLISH at the position it was first sent, a PUBREL at the
//! position its PUBREC arrived. One sequence number serves both, so a single
//! ordered walk resends everything in order.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::session::PacketIds;
use crate::{PacketId, Publish, QoS};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    /// Waiting for a slot in flight or for the connection.
    Queued,
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Sent { seq: u64 },
    /// PUBREL sent, waiting for PUBCOMP.
    Released { seq: u64 },
}

#[derive(Debug, Clone)]
struct Entry {
    stage: Stage,
    /// Dropped once released: only the identifier is needed then.
    publish: Option<Publish>,
}

/// What to send again on a resumed session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Resend {
    Publish(Box<Publish>),
    PubRel(PacketId),
}

/// What an acknowledgement did to its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AckOutcome {
    /// The flow is over; a slot in flight is free.
    Done,
    /// PUBREC with success: send PUBREL.
    Release,
    /// No entry in the state the acknowledgement answers.
    Unknown,
}

#[derive(Debug, Default)]
pub(super) struct Outbox {
    entries: HashMap<u16, Entry>,
    /// Sequence number → identifier, for every entry in flight.
    order: BTreeMap<u64, u16>,
    queue: VecDeque<u16>,
    next_seq: u64,
    ids: PacketIds,
}

impl Outbox {
    pub(super) fn inflight_len(&self) -> usize {
        self.order.len()
    }

    pub(super) fn queued_len(&self) -> usize {
        self.queue.len()
    }

    /// The next identifier that neither this outbox nor `also_used` holds.
    pub(super) fn next_id(&mut self, also_used: impl Fn(u16) -> bool) -> Option<PacketId> {
        let entries = &self.entries;
        self.ids
            .next(|id| entries.contains_key(&id) || also_used(id))
    }

    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// Records `publish` (QoS 1/2, identifier set) as sent.
    pub(super) fn insert_sent(&mut self, id: PacketId, publish: Publish) {
        let seq = self.seq();
        self.order.insert(seq, id.get());
        self.entries.insert(
            id.get(),
            Entry {
                stage: Stage::Sent { seq },
                publish: Some(publish),
            },
        );
    }

    /// Records `publish` as waiting.
    pub(super) fn enqueue(&mut self, id: PacketId, publish: Publish) {
        self.queue.push_back(id.get());
        self.entries.insert(
            id.get(),
            Entry {
                stage: Stage::Queued,
                publish: Some(publish),
            },
        );
    }

    /// The oldest waiting message, removed from the outbox: the caller
    /// sends it and records it with [`Outbox::insert_sent`], or drops it.
    pub(super) fn pop_queued(&mut self) -> Option<(PacketId, Publish)> {
        while let Some(id) = self.queue.pop_front() {
            let entry = self.entries.remove(&id);
            if let (
                Some(pid),
                Some(Entry {
                    publish: Some(p), ..
                }),
            ) = (PacketId::new(id), entry)
            {
                return Some((pid, p));
            }
        }
        None
    }

    /// PUBACK: ends a QoS 1 message in flight.
    pub(super) fn puback(&mut self, id: PacketId) -> AckOutcome {
        self.finish_if(id, |e| {
            matches!(e.stage, Stage::Sent { .. })
                && e.publish.as_ref().map(|p| p.qos) == Some(QoS::AtLeastOnce)
        })
    }

    /// PUBREC: a QoS 2 message in flight is released (success) or ends
    /// (error). A PUBREC for one already released asks for PUBREL again.
    pub(super) fn pubrec(&mut self, id: PacketId, is_error: bool) -> AckOutcome {
        let Some(entry) = self.entries.get(&id.get()) else {
            return AckOutcome::Unknown;
        };
        let old_seq = match entry.stage {
            Stage::Sent { seq }
                if entry.publish.as_ref().map(|p| p.qos) == Some(QoS::ExactlyOnce) =>
            {
                seq
            }
            Stage::Released { .. } if !is_error => return AckOutcome::Release,
            _ => return AckOutcome::Unknown,
        };
        if is_error {
            return self.finish_if(id, |_| true);
        }
        self.order.remove(&old_seq);
        let seq = self.seq();
        self.order.insert(seq, id.get());
        if let Some(entry) = self.entries.get_mut(&id.get()) {
            entry.stage = Stage::Released { seq };
            entry.publish = None;
        }
        AckOutcome::Release
    }

    /// PUBCOMP: ends a released QoS 2 message.
    pub(super) fn pubcomp(&mut self, id: PacketId) -> AckOutcome {
        self.finish_if(id, |e| matches!(e.stage, Stage::Released { .. }))
    }

    fn finish_if(&mut self, id: PacketId, ok: impl Fn(&Entry) -> bool) -> AckOutcome {
        let seq = match self.entries.get(&id.get()) {
            Some(e) if ok(e) => match e.stage {
                Stage::Sent { seq } | Stage::Released { seq } => seq,
                Stage::Queued => return AckOutcome::Unknown,
            },
            _ => return AckOutcome::Unknown,
        };
        self.order.remove(&seq);
        self.entries.remove(&id.get());
        AckOutcome::Done
    }

    /// Everything in flight, in resend order, PUBLISHes marked DUP.
    pub(super) fn resend(&mut self) -> Vec<Resend> {
        let mut out = Vec::with_capacity(self.order.len());
        for id in self.order.values() {
            let (Some(pid), Some(entry)) = (PacketId::new(*id), self.entries.get_mut(id)) else {
                continue;
            };
            match (&entry.stage, entry.publish.as_mut()) {
                (Stage::Sent { .. }, Some(p)) => {
                    p.dup = true;
                    out.push(Resend::Publish(Box::new(p.clone())));
                }
                (Stage::Released { .. }, _) => out.push(Resend::PubRel(pid)),
                _ => {}
            }
        }
        out
    }

    /// Removes one entry in flight (it could not be resent).
    pub(super) fn remove(&mut self, id: PacketId) {
        self.finish_if(id, |_| true);
    }

    /// Removes everything in flight (the server lost the session), in
    /// order; queued messages stay.
    pub(super) fn take_inflight(&mut self) -> Vec<(PacketId, Option<Publish>)> {
        let order = std::mem::take(&mut self.order);
        order
            .into_values()
            .filter_map(|id| {
                let entry = self.entries.remove(&id)?;
                Some((PacketId::new(id)?, entry.publish))
            })
            .collect()
    }
}
