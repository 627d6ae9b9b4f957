//! A session: what outlives a connection (subscriptions, queued and
//! in-flight QoS 1/2 messages, packet-id state) plus a link to the
//! connection currently attached, if any.
//!
//! Each session has its own lock; the router takes it only to push a
//! delivery, the connection task to take deliveries within its send window
//! and to record acknowledgements. No lock is held across an await.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Instant;

use bulwark_mqtt::session::PacketIds;
use bulwark_mqtt::{PacketId, Publish, QoS, ReasonCode, SubscriptionOptions};
use bulwark_policy::{Action, CompiledPolicy};
use bulwark_types::CertSerial;
use tokio::sync::{oneshot, Notify};

use bulwark_store::MqttOp;

use crate::message::{Delivery, SessionKey};
use crate::metrics::{Metrics, PrincipalCounters};
use crate::persist::{self, Journal};

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    Device(bulwark_types::DeviceId),
    Service(String),
    /// An anonymous client of the loopback dev listener.
    Dev,
}

impl Owner {
    /// How the owner is written in the session store.
    pub fn principal_string(&self) -> String {
        match self {
            Owner::Device(d) => format!("device:{d}"),
            Owner::Service(s) => format!("service:{s}"),
            Owner::Dev => "dev".to_owned(),
        }
    }

    /// The owner written by [`Owner::principal_string`].
    pub fn from_principal_string(s: &str) -> Option<Self> {
        match s.split_once(':') {
            Some(("device", d)) => bulwark_types::DeviceId::new(d).ok().map(Owner::Device),
            Some(("service", n)) => Some(Owner::Service(n.to_owned())),
            None if s == "dev" => Some(Owner::Dev),
            _ => None,
        }
    }

    /// The device, when the owner is one.
    pub fn device(&self) -> Option<bulwark_types::DeviceId> {
        match self {
            Owner::Device(d) => Some(d.clone()),
            _ => None,
        }
    }

    /// The key of the principal's counters.
    pub fn counter_key(&self) -> String {
        match self {
            Owner::Device(d) => d.to_string(),
            Owner::Service(s) => format!("service:{s}"),
            Owner::Dev => "dev".to_owned(),
        }
    }
}

/// Sent by the gateway to a connection task.
#[derive(Debug, Clone)]
pub enum Control {
    /// Close the connection, telling an MQTT 5 client why.
    Disconnect {
        reason: ReasonCode,
        message: &'static str,
    },
}

/// A subscription as the session remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubRecord {
    pub options: SubscriptionOptions,
    pub id: Option<u32>,
}

/// A QoS 1/2 message sent and not yet fully acknowledged.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub delivery: Delivery,
    /// PUBREC received, PUBREL sent (QoS 2 second half).
    pub released: bool,
}

/// The connection attached to a session.
#[derive(Debug)]
pub struct Link {
    pub generation: u64,
    /// The connection is told to leave at most once: a one-shot channel
    /// (a few dozen bytes, not a queue per idle connection).
    pub control: Option<oneshot::Sender<Control>>,
    pub remote: String,
    /// The certificate serial the connection authenticated with.
    pub serial: Option<CertSerial>,
    /// The client's Receive Maximum, capped by ours.
    pub send_window: u16,
}

/// Mutable session state.
#[derive(Debug)]
pub struct SessionState {
    pub link: Option<Link>,
    pub subscriptions: HashMap<String, SubRecord>,
    pub queue: VecDeque<Delivery>,
    pub inflight: BTreeMap<u16, Outgoing>,
    packet_ids: PacketIds,
    /// Session expiry in seconds, once disconnected.
    pub expiry_secs: u32,
    /// Bumped whenever the session ends or is replaced, so timers armed for
    /// an earlier incarnation do nothing.
    pub epoch: u64,
    pub disconnected_at: Option<Instant>,
    /// Kept in the session store (session expiry above 0).
    pub persistent: bool,
    pub protocol_level: u8,
    pub next_seq: u64,
}

/// A session.
#[derive(Debug)]
pub struct Session {
    pub key: SessionKey,
    pub owner: Owner,
    pub counters: Arc<PrincipalCounters>,
    online: AtomicBool,
    notify: Notify,
    /// Signalled when the queue shrinks, for publishers held back by a
    /// full queue.
    room: Notify,
    policy: RwLock<Arc<CompiledPolicy>>,
    /// Bumped when the owner's throttle changes (see `response`): the
    /// attached connection compares it with the value it last saw on each
    /// PUBLISH (one atomic load) and re-reads the throttle when it moved.
    throttle_epoch: AtomicU64,
    state: Mutex<SessionState>,
}

/// What happened to a delivery offered to a session.
#[derive(Debug)]
pub enum Offer {
    Queued,
    /// The session may not receive the topic.
    Denied,
    /// Dropped (and counted): the queue is full and the delivery is QoS 0
    /// or the session is offline.
    Dropped,
    /// The queue of a connected session is full and the delivery is QoS 1
    /// or 2: the caller holds the publisher back until there is room
    /// ([`Session::room`]) rather than lose an acknowledged message.
    Full(Delivery),
}

impl Session {
    pub fn new(
        key: SessionKey,
        owner: Owner,
        counters: Arc<PrincipalCounters>,
        policy: Arc<CompiledPolicy>,
    ) -> Arc<Self> {
        Arc::new(Self {
            key,
            owner,
            counters,
            online: AtomicBool::new(false),
            notify: Notify::new(),
            room: Notify::new(),
            policy: RwLock::new(policy),
            throttle_epoch: AtomicU64::new(0),
            state: Mutex::new(SessionState {
                link: None,
                subscriptions: HashMap::new(),
                queue: VecDeque::new(),
                inflight: BTreeMap::new(),
                packet_ids: PacketIds::default(),
                expiry_secs: 0,
                epoch: 0,
                disconnected_at: None,
                persistent: false,
                protocol_level: 5,
                next_seq: 1,
            }),
        })
    }

    pub fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    pub fn set_online(&self, online: bool) {
        self.online.store(online, Ordering::Release);
    }

    /// The throttle epoch (see the field).
    pub fn throttle_epoch(&self) -> u64 {
        self.throttle_epoch.load(Ordering::Acquire)
    }

    /// Tells the attached connection its owner's throttle changed.
    pub fn bump_throttle_epoch(&self) {
        self.throttle_epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Resolves when deliveries leave the queue (see [`Offer::Full`]).
    pub fn room(&self) -> &Notify {
        &self.room
    }

    /// Wakes the attached connection to send what is queued.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    pub async fn woken(&self) {
        self.notify.notified().await;
    }

    pub fn policy(&self) -> Arc<CompiledPolicy> {
        self.policy
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_policy(&self, policy: Arc<CompiledPolicy>) {
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = policy;
    }

    /// Checks `action` on `resource` against the current policy.
    pub fn allows(&self, action: Action, resource: &str) -> bool {
        self.policy
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .check(action, resource)
            .is_allowed()
    }

    /// Offers a delivery: checked against the receive policy now (and again
    /// when it is sent), queued if there is room.
    pub fn offer(
        &self,
        mut d: Delivery,
        max_queued: usize,
        metrics: &Metrics,
        journal: &mut Journal,
    ) -> Offer {
        if !self.allows(Action::Receive, d.message.topic.as_str()) {
            Metrics::inc(&metrics.receive_denied_total);
            Metrics::inc(&self.counters.denials);
            return Offer::Denied;
        }
        let mut st = self.lock();
        if st.queue.len() >= max_queued {
            // Make room by dropping the oldest QoS 0 message, if any;
            // QoS 1/2 messages are never dropped for a QoS 0 one.
            match st.queue.iter().position(|q| q.qos == QoS::AtMostOnce) {
                Some(i) => {
                    st.queue.remove(i);
                    Metrics::inc(&metrics.queue_dropped_total);
                }
                None if d.qos > QoS::AtMostOnce && st.link.is_some() => return Offer::Full(d),
                None => {
                    Metrics::inc(&metrics.queue_dropped_total);
                    return Offer::Dropped;
                }
            }
        }
        if st.persistent && d.qos > QoS::AtMostOnce {
            let seq = st.next_seq;
            st.next_seq += 1;
            d.seq = Some(seq);
            let now = Instant::now();
            let packet = d
                .message
                .to_publish(&d, None, false, now)
                .map(persist::encode)
                .unwrap_or_default();
            journal.push(MqttOp::PutMessage {
                client_id: self.key.to_string(),
                seq,
                packet,
                packet_id: None,
                state: persist::QUEUED,
                expires_at_ms: d
                    .message
                    .expires_at
                    .map(|at| persist::instant_to_ms(at, now)),
            });
        }
        st.queue.push_back(d);
        let online = st.link.is_some();
        drop(st);
        if online {
            self.wake();
        }
        Offer::Queued
    }
}

/// Deliveries moved to the wire by [`SessionState::drain`]: messages and
/// payload bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    pub messages: u32,
    pub bytes: u64,
}

impl SessionState {
    /// A packet id not in flight (the window is far below 65,535, so one
    /// is always free).
    pub fn next_packet_id(&mut self) -> Option<PacketId> {
        let inflight = &self.inflight;
        self.packet_ids.next(|id| inflight.contains_key(&id))
    }

    /// Moves queued deliveries to the wire while the send window allows:
    /// expired ones and ones the policy no longer lets the session receive
    /// are dropped. `emit` gets each PUBLISH; it returns false when the
    /// packet could not be encoded (too large for the client), in which
    /// case the delivery is dropped. Returns what was emitted.
    pub fn drain(
        &mut self,
        session: &Session,
        now: Instant,
        metrics: &Metrics,
        journal: &mut Journal,
        mut emit: impl FnMut(Publish) -> bool,
    ) -> Drained {
        let mut drained = Drained::default();
        let key = &session.key;
        let forget = |journal: &mut Journal, d: &Delivery| {
            if let Some(seq) = d.seq {
                journal.push(MqttOp::DeleteMessage {
                    client_id: key.to_string(),
                    seq,
                });
            }
        };
        let window = self.link.as_ref().map_or(0, |l| usize::from(l.send_window));
        let before = self.queue.len();
        let policy = session.policy();
        while let Some(front) = self.queue.front() {
            if front.qos > QoS::AtMostOnce && self.inflight.len() >= window {
                break;
            }
            let Some(d) = self.queue.pop_front() else {
                break;
            };
            if d.message.is_expired(now) {
                Metrics::inc(&metrics.expired_dropped_total);
                forget(journal, &d);
                continue;
            }
            if !policy
                .check(Action::Receive, d.message.topic.as_str())
                .is_allowed()
            {
                Metrics::inc(&metrics.receive_denied_total);
                Metrics::inc(&session.counters.denials);
                forget(journal, &d);
                continue;
            }
            let packet_id = if d.qos > QoS::AtMostOnce {
                self.next_packet_id()
            } else {
                None
            };
            let Some(publish) = d.message.to_publish(&d, packet_id, false, now) else {
                Metrics::inc(&metrics.expired_dropped_total);
                forget(journal, &d);
                continue;
            };
            if !emit(publish) {
                Metrics::inc(&metrics.too_large_dropped_total);
                forget(journal, &d);
                continue;
            }
            if let (Some(seq), Some(id)) = (d.seq, packet_id) {
                journal.push(MqttOp::UpdateMessage {
                    client_id: key.to_string(),
                    seq,
                    packet_id: Some(id.get()),
                    state: persist::SENT,
                });
            }
            let len = d.message.payload.len() as u64;
            drained.messages = drained.messages.saturating_add(1);
            drained.bytes = drained.bytes.saturating_add(len);
            for c in [
                &metrics.messages_delivered_total,
                &session.counters.messages_out,
            ] {
                c.fetch_add(1, Ordering::Relaxed);
            }
            for c in [&metrics.bytes_delivered_total, &session.counters.bytes_out] {
                c.fetch_add(len, Ordering::Relaxed);
            }
            if let Some(id) = packet_id {
                self.inflight.insert(
                    id.get(),
                    Outgoing {
                        delivery: d,
                        released: false,
                    },
                );
            }
        }
        if self.queue.len() < before {
            session.room.notify_waiters();
        }
        drained
    }
}
