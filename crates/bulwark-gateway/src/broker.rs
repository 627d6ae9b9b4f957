//! The broker core shared by every connection: the session table, the
//! subscription index, retained messages, and the router between them.
//!
//! Lock order, everywhere: session table, then one session, then the
//! subscription index or the retained store. The router never holds the
//! index while it takes a session lock (it collects targets first), and no
//! lock is held across an await. The session table is touched on connect,
//! disconnect, expiry and enforcement, never per message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Instant;

use bulwark_mqtt::{ReasonCode, RetainHandling, TopicFilter};
use bulwark_policy::{Action, CompiledPolicy};
use tokio::sync::oneshot;

use crate::config::GatewayLimits;
use crate::message::{Delivery, Message, SessionKey};
use crate::metrics::Metrics;
use crate::persist::{self, Journal};
use crate::session::{Control, Link, Offer, Owner, Session, SubRecord};
use bulwark_mqtt::tree::{Subscriber, Tree};
use bulwark_store::{MqttOp, MqttStore};

/// One subscription in the index.
#[derive(Debug, Clone)]
pub struct SubEntry {
    pub session: Arc<Session>,
    pub record: SubRecord,
}

impl Subscriber for SubEntry {
    fn key(&self) -> &str {
        &self.session.key
    }
    fn is_online(&self) -> bool {
        self.session.is_online()
    }
}

/// The result of attaching a connection to a session.
#[derive(Debug)]
pub struct Attached {
    pub session: Arc<Session>,
    pub session_present: bool,
    pub generation: u64,
    pub control: oneshot::Receiver<Control>,
    /// The remote address of the connection this one took over.
    pub took_over: Option<String>,
}

/// What a new connection brings to [`Broker::attach`].
#[derive(Debug)]
pub struct AttachRequest {
    pub key: SessionKey,
    pub owner: Owner,
    pub policy: Arc<CompiledPolicy>,
    pub clean_start: bool,
    pub remote: String,
    pub serial: Option<bulwark_types::CertSerial>,
    pub send_window: u16,
    pub expiry_secs: u32,
    pub protocol_level: u8,
}

#[derive(Debug)]
pub struct Broker {
    pub limits: GatewayLimits,
    pub metrics: Arc<Metrics>,
    /// Where persistent sessions and retained messages are kept.
    pub store: Option<MqttStore>,
    sessions: Mutex<HashMap<SessionKey, Arc<Session>>>,
    tree: RwLock<Tree<SubEntry>>,
    retained: RwLock<HashMap<String, Arc<Message>>>,
    generation: AtomicU64,
}

fn split_filter(filter: &TopicFilter) -> (&str, Option<&str>) {
    match filter.shared() {
        Some(s) => (s.filter, Some(s.group)),
        None => (filter.as_str(), None),
    }
}

impl Broker {
    pub fn new(limits: GatewayLimits, metrics: Arc<Metrics>, store: Option<MqttStore>) -> Self {
        Self {
            limits,
            metrics,
            store,
            sessions: Mutex::default(),
            tree: RwLock::default(),
            retained: RwLock::default(),
            generation: AtomicU64::new(1),
        }
    }

    /// Writes `ops` without waiting (their loss only causes redelivery).
    pub fn persist_nowait(&self, ops: Journal) {
        if let (Some(store), false) = (&self.store, ops.is_empty()) {
            store.apply_nowait(ops);
        }
    }

    /// Writes `ops` and waits for the commit.
    pub async fn persist(&self, ops: Journal) -> Result<(), bulwark_store::StoreError> {
        match (&self.store, ops.is_empty()) {
            (Some(store), false) => store.apply(ops).await,
            _ => Ok(()),
        }
    }

    fn table(&self) -> MutexGuard<'_, HashMap<SessionKey, Arc<Session>>> {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Attaches a new connection: resumes the existing session (clean
    /// start false) or starts a fresh one; a connection already attached is
    /// told to leave with "session taken over".
    pub fn attach(&self, req: AttachRequest, journal: &mut Journal) -> Attached {
        let persistent = req.expiry_secs > 0 && self.store.is_some();
        let put_session = |journal: &mut Journal| {
            if persistent {
                journal.push(MqttOp::PutSession {
                    client_id: req.key.to_string(),
                    principal: req.owner.principal_string(),
                    protocol_level: req.protocol_level,
                    expiry_secs: req.expiry_secs,
                    disconnected_at_ms: None,
                });
            }
        };
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let link = Link {
            generation,
            control: Some(tx),
            remote: req.remote,
            serial: req.serial,
            send_window: req.send_window,
        };
        let mut table = self.table();
        let existing = table.get(&req.key).cloned();
        let mut took_over = None;
        if let Some(old) = &existing {
            let mut st = old.lock();
            if let Some(l) = st.link.take() {
                if let Some(tx) = l.control {
                    let _ = tx.send(Control::Disconnect {
                        reason: ReasonCode::SessionTakenOver,
                        message: "another connection with this identity took the session over",
                    });
                }
                took_over = Some(l.remote);
                Metrics::inc(&self.metrics.takeovers_total);
            }
            st.epoch += 1;
            if !req.clean_start {
                st.link = Some(link);
                st.disconnected_at = None;
                if st.persistent && !persistent {
                    journal.push(MqttOp::DeleteSession {
                        client_id: req.key.to_string(),
                    });
                }
                st.persistent = persistent;
                st.protocol_level = req.protocol_level;
                put_session(journal);
                drop(st);
                old.set_policy(req.policy);
                old.set_online(true);
                return Attached {
                    session: old.clone(),
                    session_present: true,
                    generation,
                    control: rx,
                    took_over,
                };
            }
            // Clean start: the old session ends here.
            if st.persistent {
                journal.push(MqttOp::DeleteSession {
                    client_id: req.key.to_string(),
                });
            }
            let subs: Vec<String> = st.subscriptions.drain().map(|(f, _)| f).collect();
            st.queue.clear();
            st.inflight.clear();
            drop(st);
            old.set_online(false);
            self.unindex(&old.key, &subs);
        }
        let counters = self.metrics.principal(&req.owner.counter_key());
        put_session(journal);
        let session = Session::new(req.key.clone(), req.owner, counters, req.policy);
        {
            let mut st = session.lock();
            st.link = Some(link);
            st.persistent = persistent;
            st.protocol_level = req.protocol_level;
        }
        session.set_online(true);
        table.insert(req.key, session.clone());
        Attached {
            session,
            session_present: false,
            generation,
            control: rx,
            took_over,
        }
    }

    /// The connection `generation` left. Returns the session's epoch after
    /// the detach when it was still attached (so will and expiry timers can
    /// tell whether it was resumed since), or `None` when it had been taken
    /// over.
    pub fn detach(&self, session: &Arc<Session>, generation: u64, expiry_secs: u32) -> Option<u64> {
        let mut table = self.table();
        let mut st = session.lock();
        if st.link.as_ref().map(|l| l.generation) != Some(generation) {
            return None;
        }
        st.link = None;
        st.epoch += 1;
        st.expiry_secs = expiry_secs;
        st.disconnected_at = Some(Instant::now());
        let epoch = st.epoch;
        session.set_online(false);
        if st.persistent {
            self.persist_nowait(vec![if expiry_secs == 0 {
                MqttOp::DeleteSession {
                    client_id: session.key.to_string(),
                }
            } else {
                MqttOp::PutSession {
                    client_id: session.key.to_string(),
                    principal: session.owner.principal_string(),
                    protocol_level: st.protocol_level,
                    expiry_secs,
                    disconnected_at_ms: Some(persist::now_ms()),
                }
            }]);
            st.persistent = expiry_secs > 0;
        }
        if expiry_secs == 0 {
            let subs: Vec<String> = st.subscriptions.drain().map(|(f, _)| f).collect();
            st.queue.clear();
            st.inflight.clear();
            drop(st);
            if table
                .get(&session.key)
                .is_some_and(|s| Arc::ptr_eq(s, session))
            {
                table.remove(&session.key);
            }
            self.unindex(&session.key, &subs);
        }
        Some(epoch)
    }

    /// Removes a disconnected session whose expiry passed, unless it was
    /// resumed since `epoch`.
    pub fn expire(&self, key: &str, epoch: u64) -> bool {
        let mut table = self.table();
        let Some(session) = table.get(key).cloned() else {
            return false;
        };
        let mut st = session.lock();
        if st.epoch != epoch || st.link.is_some() {
            return false;
        }
        let subs: Vec<String> = st.subscriptions.drain().map(|(f, _)| f).collect();
        st.queue.clear();
        st.inflight.clear();
        st.epoch += 1;
        let persistent = st.persistent;
        drop(st);
        table.remove(key);
        self.unindex(key, &subs);
        if persistent {
            self.persist_nowait(vec![MqttOp::DeleteSession {
                client_id: key.to_owned(),
            }]);
        }
        Metrics::inc(&self.metrics.sessions_expired_total);
        true
    }

    /// Whether the session at `key` is the one detached at `epoch` and not
    /// resumed since (for delayed wills).
    pub fn still_detached(&self, key: &str, epoch: u64) -> bool {
        let table = self.table();
        match table.get(key) {
            Some(s) => {
                let st = s.lock();
                st.epoch == epoch && st.link.is_none()
            }
            // Expired meanwhile: the will is due all the same.
            None => true,
        }
    }

    fn unindex(&self, key: &str, filters: &[String]) {
        if filters.is_empty() {
            return;
        }
        let mut tree = self.tree.write().unwrap_or_else(PoisonError::into_inner);
        for f in filters {
            if let Ok(filter) = TopicFilter::new(f.as_str()) {
                let (m, g) = split_filter(&filter);
                tree.remove(m, g, key);
            }
        }
    }

    /// Adds or replaces a subscription. Returns whether it existed.
    pub fn subscribe(
        &self,
        session: &Arc<Session>,
        filter: &TopicFilter,
        record: SubRecord,
        journal: &mut Journal,
    ) -> bool {
        let mut st = session.lock();
        let existed = st
            .subscriptions
            .insert(filter.as_str().to_owned(), record)
            .is_some();
        if st.persistent {
            journal.push(MqttOp::PutSubscription {
                client_id: session.key.to_string(),
                filter: filter.as_str().to_owned(),
                options: persist::options_byte(&record.options),
                subscription_id: record.id,
            });
        }
        let (m, g) = split_filter(filter);
        self.tree
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                m,
                g,
                SubEntry {
                    session: session.clone(),
                    record,
                },
            );
        existed
    }

    /// Removes a subscription. Returns whether it existed.
    pub fn unsubscribe(
        &self,
        session: &Arc<Session>,
        filter: &TopicFilter,
        journal: &mut Journal,
    ) -> bool {
        let mut st = session.lock();
        if st.subscriptions.remove(filter.as_str()).is_none() {
            return false;
        }
        if st.persistent {
            journal.push(MqttOp::DeleteSubscription {
                client_id: session.key.to_string(),
                filter: filter.as_str().to_owned(),
            });
        }
        let (m, g) = split_filter(filter);
        self.tree
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(m, g, &session.key);
        true
    }

    /// Delivers `msg` to every matching subscription: once per session
    /// (with the highest granted QoS and all matching subscription ids),
    /// once per shared group. Returns how many sessions it was queued for.
    /// QoS 1/2 deliveries to connected sessions whose queue is full go to
    /// `blocked`, for the publisher's connection to wait for room.
    pub fn route(
        &self,
        msg: &Arc<Message>,
        journal: &mut Journal,
        blocked: &mut Vec<(Arc<Session>, Delivery)>,
    ) -> usize {
        let mut targets: Vec<(Arc<Session>, SubRecord)> = Vec::new();
        self.tree
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .for_each_match(msg.topic.as_str(), |e| {
                if e.record.options.no_local && *e.session.key == *msg.origin {
                    return;
                }
                targets.push((e.session.clone(), e.record));
            });
        if targets.len() > 1 {
            targets.sort_by(|a, b| a.0.key.cmp(&b.0.key));
        }
        let mut queued = 0;
        let mut i = 0;
        while let Some((session, first)) = targets.get(i) {
            let mut qos = first.options.qos;
            let mut rap = first.options.retain_as_published;
            let mut ids: Vec<u32> = first.id.into_iter().collect();
            let mut j = i + 1;
            while let Some((s, r)) = targets.get(j) {
                if !Arc::ptr_eq(s, session) {
                    break;
                }
                qos = qos.max(r.options.qos);
                rap |= r.options.retain_as_published;
                ids.extend(r.id);
                j += 1;
            }
            let d = Delivery {
                message: msg.clone(),
                qos: qos.min(msg.qos),
                retain: rap && msg.retain,
                subscription_ids: ids,
                seq: None,
            };
            // Once one of this publisher's messages waits for room in a
            // session's queue, later ones wait behind it: a message that
            // found room first would overtake it (MQTT keeps a publisher's
            // order per subscriber).
            if blocked.iter().any(|(s, _)| Arc::ptr_eq(s, session)) {
                blocked.push((session.clone(), d));
                i = j;
                continue;
            }
            match session.offer(d, self.limits.max_queued, &self.metrics, journal) {
                Offer::Queued => queued += 1,
                Offer::Full(d) => blocked.push((session.clone(), d)),
                Offer::Denied | Offer::Dropped => {}
            }
            i = j;
        }
        queued
    }

    /// Stores (or, for an empty payload, clears) a retained message.
    /// Returns false when the store is full and the topic is new.
    pub fn retain(&self, msg: &Arc<Message>, journal: &mut Journal) -> bool {
        let mut r = self
            .retained
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let topic = msg.topic.as_str().to_owned();
        if msg.payload.is_empty() {
            r.remove(&topic);
            if self.store.is_some() {
                journal.push(MqttOp::ClearRetained { topic });
            }
            return true;
        }
        if r.len() >= self.limits.max_retained && !r.contains_key(&topic) {
            return false;
        }
        r.insert(topic.clone(), msg.clone());
        drop(r);
        if self.store.is_some() {
            let now = Instant::now();
            let d = Delivery {
                message: msg.clone(),
                qos: msg.qos,
                retain: true,
                subscription_ids: Vec::new(),
                seq: None,
            };
            if let Some(p) = msg.to_publish(&d, None, false, now) {
                journal.push(MqttOp::SetRetained {
                    topic,
                    packet: persist::encode(p),
                    expires_at_ms: msg.expires_at.map(|at| persist::instant_to_ms(at, now)),
                });
            }
        }
        true
    }

    /// Restores a retained message from the store (not written back).
    pub fn restore_retained(&self, msg: Arc<Message>) {
        self.retained
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(msg.topic.as_str().to_owned(), msg);
    }

    /// Puts a restored session in the table and its subscriptions in the
    /// index.
    pub fn restore_session(&self, session: Arc<Session>) {
        let subs: Vec<(String, SubRecord)> = session
            .lock()
            .subscriptions
            .iter()
            .map(|(f, r)| (f.clone(), *r))
            .collect();
        {
            let mut tree = self.tree.write().unwrap_or_else(PoisonError::into_inner);
            for (f, record) in subs {
                if let Ok(filter) = TopicFilter::new(f) {
                    let (m, g) = split_filter(&filter);
                    tree.insert(
                        m,
                        g,
                        SubEntry {
                            session: session.clone(),
                            record,
                        },
                    );
                }
            }
        }
        self.table().insert(session.key.clone(), session);
    }

    /// Queues the retained messages matching a new subscription, as its
    /// Retain Handling asks (never for shared subscriptions). Each passes
    /// the session's receive check.
    pub fn deliver_retained(
        &self,
        session: &Arc<Session>,
        filter: &TopicFilter,
        record: SubRecord,
        existed: bool,
        journal: &mut Journal,
    ) {
        if filter.is_shared() {
            return;
        }
        match record.options.retain_handling {
            RetainHandling::DoNotSend => return,
            RetainHandling::SendAtSubscribeIfNew if existed => return,
            _ => {}
        }
        let now = Instant::now();
        let matching: Vec<Arc<Message>> = {
            let r = self.retained.read().unwrap_or_else(PoisonError::into_inner);
            if filter.has_wildcards() {
                r.values()
                    .filter(|m| filter.matches(&m.topic) && !m.is_expired(now))
                    .cloned()
                    .collect()
            } else {
                r.get(filter.as_str())
                    .filter(|m| !m.is_expired(now))
                    .cloned()
                    .into_iter()
                    .collect()
            }
        };
        for m in matching {
            let d = Delivery {
                qos: record.options.qos.min(m.qos),
                message: m,
                retain: true,
                subscription_ids: record.id.into_iter().collect(),
                seq: None,
            };
            // The subscriber's own queue: it is not held back by itself.
            if let Offer::Full(_) = session.offer(d, self.limits.max_queued, &self.metrics, journal)
            {
                Metrics::inc(&self.metrics.queue_dropped_total);
            }
        }
    }

    /// Sessions, live or persistent.
    pub fn session_count(&self) -> usize {
        self.table().len()
    }

    /// Every session, for enforcement.
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.table().values().cloned().collect()
    }

    pub fn session(&self, key: &str) -> Option<Arc<Session>> {
        self.table().get(key).cloned()
    }

    /// Installs a recompiled policy and drops the subscriptions it no
    /// longer allows. Returns the filters removed.
    pub fn rescope(&self, session: &Arc<Session>, policy: Arc<CompiledPolicy>) -> Vec<String> {
        session.set_policy(policy.clone());
        let st = session.lock();
        let denied: Vec<String> = st
            .subscriptions
            .keys()
            .filter(|f| !policy.check(Action::Subscribe, f).is_allowed())
            .cloned()
            .collect();
        drop(st);
        let mut journal = Journal::new();
        for f in &denied {
            if let Ok(filter) = TopicFilter::new(f.as_str()) {
                if self.unsubscribe(session, &filter, &mut journal) {
                    Metrics::inc(&self.metrics.subscriptions_revoked_total);
                }
            }
        }
        self.persist_nowait(journal);
        denied
    }

    /// Number of subscriptions indexed.
    pub fn subscription_count(&self) -> usize {
        self.tree
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Retained messages stored.
    pub fn retained_count(&self) -> usize {
        self.retained
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_mqtt::{Publish, QoS, SubscriptionOptions, TopicName};
    use bulwark_policy::{default_device_policy, dev_permissive_policy, Principal};
    use bulwark_types::DeviceId;

    impl Broker {
        fn route_(&self, m: &Arc<Message>) -> usize {
            self.route(m, &mut Journal::new(), &mut Vec::new())
        }
    }

    fn broker() -> Broker {
        Broker::new(GatewayLimits::default(), Arc::new(Metrics::default()), None)
    }

    fn policy(doc: bulwark_policy::PolicyDocument, id: &str) -> Arc<CompiledPolicy> {
        let p = Principal::new(DeviceId::new(id).unwrap());
        Arc::new(CompiledPolicy::compile(&[doc], &p).unwrap())
    }

    fn attach(b: &Broker, key: &str, doc: bulwark_policy::PolicyDocument) -> Attached {
        b.attach(
            AttachRequest {
                key: key.into(),
                owner: Owner::Dev,
                policy: policy(doc, "d1"),
                clean_start: false,
                remote: "test".into(),
                serial: None,
                send_window: 10,
                expiry_secs: 0,
                protocol_level: 5,
            },
            &mut Journal::new(),
        )
    }

    fn msg(topic: &str, qos: QoS, retain: bool, origin: &str) -> Arc<Message> {
        let mut p = Publish::new(TopicName::new(topic).unwrap(), "x");
        p.qos = qos;
        p.retain = retain;
        Arc::new(Message::from_publish(
            p,
            TopicName::new(topic).unwrap(),
            origin.into(),
            Instant::now(),
        ))
    }

    fn sub(b: &Broker, s: &Arc<Session>, f: &str, qos: QoS, id: Option<u32>) -> SubRecord {
        let mut options = SubscriptionOptions::new(qos);
        options.no_local = f.starts_with("a/");
        let r = SubRecord { options, id };
        b.subscribe(s, &TopicFilter::new(f).unwrap(), r, &mut Journal::new());
        r
    }

    #[test]
    fn overlapping_subscriptions_deliver_once_with_max_qos_and_all_ids() {
        let b = broker();
        let s = attach(&b, "k1", dev_permissive_policy()).session;
        sub(&b, &s, "x/#", QoS::AtMostOnce, Some(1));
        sub(&b, &s, "x/+", QoS::AtLeastOnce, Some(2));
        assert_eq!(b.route_(&msg("x/y", QoS::ExactlyOnce, false, "other")), 1);
        let st = s.lock();
        assert_eq!(st.queue.len(), 1);
        let d = &st.queue[0];
        assert_eq!(d.qos, QoS::AtLeastOnce);
        let mut ids = d.subscription_ids.clone();
        ids.sort_unstable();
        assert_eq!(ids, [1, 2]);
    }

    #[test]
    fn no_local_skips_the_publisher_and_receive_policy_filters() {
        let b = broker();
        let s = attach(&b, "k1", dev_permissive_policy()).session;
        sub(&b, &s, "a/b", QoS::AtMostOnce, None); // no_local (see `sub`)
        assert_eq!(b.route_(&msg("a/b", QoS::AtMostOnce, false, "k1")), 0);
        assert_eq!(b.route_(&msg("a/b", QoS::AtMostOnce, false, "k2")), 1);
        // A device may not receive another device's telemetry even if a
        // subscription somehow exists for it.
        let d = attach(&b, "d1", default_device_policy()).session;
        b.subscribe(
            &d,
            &TopicFilter::new("devices/d2/telemetry").unwrap(),
            SubRecord {
                options: SubscriptionOptions::new(QoS::AtMostOnce),
                id: None,
            },
            &mut Journal::new(),
        );
        assert_eq!(
            b.route_(&msg("devices/d2/telemetry", QoS::AtMostOnce, false, "d2")),
            0
        );
        assert_eq!(b.metrics.receive_denied_total.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn retained_messages_follow_retain_handling_and_can_be_cleared() {
        let b = broker();
        let s = attach(&b, "k1", dev_permissive_policy()).session;
        assert!(b.retain(
            &msg("r/1", QoS::AtLeastOnce, true, "p"),
            &mut Journal::new()
        ));
        assert!(b.retain(&msg("r/2", QoS::AtMostOnce, true, "p"), &mut Journal::new()));
        let mut rec = sub(&b, &s, "r/#", QoS::AtLeastOnce, None);
        b.deliver_retained(
            &s,
            &TopicFilter::new("r/#").unwrap(),
            rec,
            false,
            &mut Journal::new(),
        );
        assert_eq!(s.lock().queue.len(), 2);
        assert!(s.lock().queue.iter().all(|d| d.retain));
        rec.options.retain_handling = RetainHandling::SendAtSubscribeIfNew;
        b.deliver_retained(
            &s,
            &TopicFilter::new("r/#").unwrap(),
            rec,
            true,
            &mut Journal::new(),
        );
        assert_eq!(s.lock().queue.len(), 2);
        // An empty payload clears.
        let mut p = Publish::new(TopicName::new("r/1").unwrap(), "");
        p.retain = true;
        let clear = Arc::new(Message::from_publish(
            p,
            TopicName::new("r/1").unwrap(),
            "p".into(),
            Instant::now(),
        ));
        b.retain(&clear, &mut Journal::new());
        assert_eq!(b.retained_count(), 1);
    }

    #[test]
    fn takeover_and_expiry_follow_epochs() {
        let b = broker();
        let first = attach(&b, "k1", dev_permissive_policy());
        sub(&b, &first.session, "t", QoS::AtLeastOnce, None);
        let mut control = first.control;
        let second = attach(&b, "k1", dev_permissive_policy());
        assert!(second.session_present);
        assert!(Arc::ptr_eq(&first.session, &second.session));
        assert!(matches!(
            control.try_recv(),
            Ok(Control::Disconnect {
                reason: ReasonCode::SessionTakenOver,
                ..
            })
        ));
        // The old connection's detach is ignored: it was taken over.
        assert_eq!(b.detach(&first.session, first.generation, 60), None);
        let epoch = b.detach(&second.session, second.generation, 60).unwrap();
        assert_eq!(
            b.subscription_count(),
            1,
            "a persistent session keeps its subscriptions"
        );
        assert!(b.still_detached("k1", epoch));
        assert!(b.expire("k1", epoch));
        assert_eq!(b.subscription_count(), 0);
        assert_eq!(b.session_count(), 0);
    }
}
