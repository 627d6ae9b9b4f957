//! The connected phase: the read/write loop and one handler per packet.
//!
//! Detection hooks on this path cost one atomic load each when nobody
//! subscribed to events: `Published`, `DeviceReport` and `Subscribed` are
//! built per accepted packet, `Delivered` once per write to the socket
//! (what the loop turn drained, aggregated). The device throttle costs one
//! atomic load per PUBLISH (see `response`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bulwark_mqtt::session::{IncomingQos2, Qos2Arrival, TopicAliases};
use bulwark_mqtt::{
    DecodeError, Decoder, Encoder, LastWill, Packet, PacketId, ProtocolVersion, PubResponse,
    Publish, QoS, ReasonCode, SubAck, Subscribe, TopicFilter, UnsubAck, Unsubscribe,
};
use bulwark_policy::Action;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;

use super::{disconnect_packet, End};
use crate::config::GatewayLimits;
use crate::events::{GatewayEvent, ReportKind, MAX_DEVICE_REPORT};
use crate::limits::TokenBucket;
use crate::message::Message;
use crate::metrics::Metrics;
use crate::persist::{self, Journal};
use crate::session::{Control, Offer, Session, SubRecord};
use crate::Shared;
use bulwark_store::MqttOp;

/// How long a publisher is held back, per batch of packets, by full
/// subscriber queues before those deliveries are dropped.
const BACKPRESSURE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Bytes an idle connection reads into before it has an input buffer.
const SMALL_READ: usize = 256;

/// Reads what is available: into `inbuf` when it has room, otherwise
/// through `small` (an idle connection keeps no heap buffer). Cancel-safe:
/// data is appended in the same poll that reads it.
async fn read_some<R: AsyncRead + Unpin>(
    rd: &mut R,
    inbuf: &mut BytesMut,
    small: &mut [u8; SMALL_READ],
) -> std::io::Result<usize> {
    if inbuf.capacity() == inbuf.len() {
        let n = rd.read(small).await?;
        inbuf.extend_from_slice(&small[..n]);
        Ok(n)
    } else {
        rd.read_buf(inbuf).await
    }
}

/// Why a topic name or filter is refused regardless of policy.
pub(crate) fn topic_problem(topic: &str, limits: &GatewayLimits) -> Option<&'static str> {
    if topic.len() > limits.max_topic_len {
        Some("the topic is longer than the server allows")
    } else if topic.split('/').count() > limits.max_topic_levels {
        Some("the topic has more levels than the server allows")
    } else if topic.starts_with('$') && !topic.starts_with("$share/") {
        Some("topics starting with '$' are reserved for the server")
    } else {
        None
    }
}

/// Publishes a will, if the session's current policy still allows it.
pub(crate) fn publish_will(shared: &Shared, session: &Arc<Session>, will: LastWill) {
    let metrics = &shared.broker.metrics;
    if !session.allows(Action::Publish, will.topic.as_str()) {
        Metrics::inc(&metrics.publish_denied_total);
        return;
    }
    let LastWill {
        topic,
        payload,
        qos,
        retain,
        mut properties,
    } = will;
    properties.will_delay_interval = None;
    let mut p = Publish::new(topic.clone(), payload);
    p.qos = qos;
    p.retain = retain;
    p.properties = properties;
    let msg = Arc::new(Message::from_publish(
        p,
        topic,
        session.key.clone(),
        Instant::now(),
    ));
    let mut journal = Journal::new();
    if msg.retain {
        shared.broker.retain(&msg, &mut journal);
    }
    // Nobody to hold back: a will's deliveries to full queues are dropped.
    let mut blocked = Vec::new();
    shared.broker.route(&msg, &mut journal, &mut blocked);
    for _ in blocked {
        Metrics::inc(&metrics.queue_dropped_total);
    }
    shared.broker.persist_nowait(journal);
    Metrics::inc(&metrics.wills_published_total);
}

/// What a handler asks of the loop.
enum Flow {
    Continue,
    Close(End),
}

pub(crate) struct Conn {
    shared: Arc<Shared>,
    session: Arc<Session>,
    encoder: Encoder,
    version: ProtocolVersion,
    keep_alive: u16,
    /// Boxed: most connections have none, and every connection's task
    /// would otherwise carry room for one.
    will: Option<Box<LastWill>>,
    expiry: u32,
    out: BytesMut,
    aliases: TopicAliases,
    incoming_qos2: IncomingQos2,
    messages: TokenBucket,
    bytes: TokenBucket,
    /// The device's throttle (a response action), checked before
    /// `messages`; rebuilt when the session's throttle epoch moves.
    throttle: Option<TokenBucket>,
    throttle_epoch: u64,
    /// Deliveries encoded into `out` and not yet reported as a
    /// `Delivered` event.
    delivered: crate::session::Drained,
    /// Writes to commit before the output buffer may be sent.
    journal: Journal,
    /// Writes that need not be waited for.
    nowait: Journal,
    /// QoS 1/2 deliveries waiting for room in a subscriber's queue; the
    /// publisher's acknowledgements wait with them (backpressure).
    blocked: Vec<(Arc<Session>, crate::message::Delivery)>,
}

impl Conn {
    pub(crate) fn new(
        shared: Arc<Shared>,
        session: Arc<Session>,
        encoder: Encoder,
        keep_alive: u16,
        will: Option<LastWill>,
        expiry: u32,
    ) -> Self {
        let now = Instant::now();
        let limits = &shared.broker.limits;
        // The epoch first: a throttle set after this load bumps it, so
        // it is seen at the next PUBLISH if the map read below missed it.
        let throttle_epoch = session.throttle_epoch();
        let throttle = shared.throttles.bucket_for(&session.owner, now);
        Self {
            version: encoder.version(),
            aliases: TopicAliases::new(limits.topic_alias_maximum),
            incoming_qos2: IncomingQos2::new(limits.receive_maximum),
            messages: TokenBucket::new(limits.publish_rate, limits.publish_burst, now),
            bytes: TokenBucket::new(limits.publish_bytes_rate, limits.publish_bytes_burst, now),
            throttle,
            throttle_epoch,
            delivered: crate::session::Drained::default(),
            shared,
            session,
            encoder,
            keep_alive,
            will: will.map(Box::new),
            expiry,
            out: BytesMut::new(),
            journal: Journal::new(),
            nowait: Journal::new(),
            blocked: Vec::new(),
        }
    }

    pub(crate) fn expiry_secs(&self) -> u32 {
        self.expiry
    }

    pub(crate) fn take_will(&mut self) -> Option<LastWill> {
        self.will.take().map(|w| *w)
    }

    /// Queues the CONNACK, then what the session owes the client: its
    /// unacknowledged deliveries and whatever the window allows.
    pub(crate) fn start(&mut self, connack: &Packet) {
        self.push(connack);
        self.resend_inflight();
        self.drain();
    }

    fn push(&mut self, packet: &Packet) {
        if let Err(e) = self.encoder.encode(packet, &mut self.out) {
            tracing::debug!(error = %e, packet = %packet.packet_type(), "packet not sent");
        }
    }

    fn limits(&self) -> &GatewayLimits {
        &self.shared.broker.limits
    }

    fn metrics(&self) -> &Metrics {
        &self.shared.broker.metrics
    }

    pub(crate) async fn run<S>(
        &mut self,
        io: S,
        mut decoder: Decoder,
        mut inbuf: BytesMut,
        mut control: oneshot::Receiver<Control>,
    ) -> End
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let (mut rd, mut wr) = tokio::io::split(io);
        // Keepalive: the client must send something within 1.5 times it.
        let grace = (self.keep_alive > 0)
            .then(|| std::time::Duration::from_millis(u64::from(self.keep_alive) * 1500));
        // One timer for the connection, pushed forward on every read (not a
        // new timer per loop turn). Without keepalive it is a year away.
        let far = std::time::Duration::from_secs(365 * 24 * 3600);
        let keepalive = tokio::time::sleep(grace.unwrap_or(far));
        tokio::pin!(keepalive);
        // Packets that arrived with the CONNECT.
        let mut flow = self.handle_buffered(&mut decoder, &mut inbuf);
        let mut control_closed = false;
        let mut small = [0u8; SMALL_READ];
        let mut busy = false;
        loop {
            // A subscriber's full queue holds this publisher back: its
            // acknowledgements wait until the messages are queued.
            if !self.blocked.is_empty() {
                Box::pin(self.wait_for_room()).await;
            }
            // Acknowledgements go out only after what they acknowledge is
            // committed.
            if !self.journal.is_empty() {
                let ops = std::mem::take(&mut self.journal);
                if let Err(e) = Box::pin(self.shared.broker.persist(ops)).await {
                    Metrics::inc(&self.metrics().persistence_errors_total);
                    tracing::error!(error = %e, key = %self.session.key, "session store write failed; closing without acknowledging");
                    return End::Abnormal;
                }
            }
            if !self.nowait.is_empty() {
                self.shared
                    .broker
                    .persist_nowait(std::mem::take(&mut self.nowait));
            }
            if !self.out.is_empty() {
                if wr.write_all(&self.out).await.is_err() {
                    return End::Abnormal;
                }
                self.out.clear();
                self.report_delivered();
            }
            if let Flow::Close(end) = flow {
                let _ = wr.flush().await;
                let _ = wr.shutdown().await;
                return end;
            }
            // Idle connections are the common case: one that has read all
            // it was sent holds no input buffer (the next read lands in
            // `small`), and bursts of large packets give back what they grew.
            if inbuf.is_empty() && !busy {
                if inbuf.capacity() > 0 {
                    inbuf = BytesMut::new();
                }
            } else if inbuf.capacity() - inbuf.len() < 512 {
                inbuf.reserve(4096);
            }
            if self.out.capacity() > 64 * 1024 {
                self.out = BytesMut::new();
            }
            flow = tokio::select! {
                ctl = &mut control, if !control_closed => match ctl {
                    Ok(Control::Disconnect { reason, message }) => {
                        if let Some(p) = disconnect_packet(self.version, reason, message) {
                            self.push(&p);
                        }
                        if reason == ReasonCode::SessionTakenOver {
                            Flow::Close(End::Abnormal)
                        } else {
                            Metrics::inc(&self.metrics().enforcement_disconnects_total);
                            Flow::Close(End::Kicked)
                        }
                    }
                    Err(_) => {
                        // Dropped unsent (the link was replaced): no order
                        // can come any more; a completed receiver must not
                        // be polled again.
                        control_closed = true;
                        Flow::Continue
                    }
                },
                r = read_some(&mut rd, &mut inbuf, &mut small) => match r {
                    Ok(0) | Err(_) => Flow::Close(End::Abnormal),
                    Ok(n) => {
                        // A read that filled its space: more is likely coming,
                        // so keep a real buffer for the next one.
                        busy = n >= SMALL_READ;
                        if let Some(g) = grace {
                            keepalive.as_mut().reset(tokio::time::Instant::now() + g);
                        }
                        self.handle_buffered(&mut decoder, &mut inbuf)
                    }
                },
                () = self.session.woken() => Flow::Continue,
                () = &mut keepalive => {
                    Metrics::inc(&self.metrics().keepalive_timeouts_total);
                    if let Some(p) = disconnect_packet(self.version, ReasonCode::KeepAliveTimeout, "keepalive timeout") {
                        self.push(&p);
                    }
                    Flow::Close(End::Abnormal)
                }
            };
            self.drain();
        }
    }

    fn handle_buffered(&mut self, decoder: &mut Decoder, inbuf: &mut BytesMut) -> Flow {
        loop {
            match decoder.decode(inbuf) {
                Ok(None) => return Flow::Continue,
                Ok(Some(packet)) => {
                    if let Flow::Close(end) = self.handle(packet) {
                        return Flow::Close(end);
                    }
                }
                Err(e) => return self.protocol_error(&e),
            }
        }
    }

    fn protocol_error(&mut self, e: &DecodeError) -> Flow {
        Metrics::inc(&self.metrics().protocol_errors_total);
        if matches!(e, DecodeError::PacketTooLarge { .. }) {
            Metrics::inc(&self.metrics().oversized_packets_total);
        }
        tracing::debug!(key = %self.session.key, error = %e, "closing on a malformed packet");
        let text = e.to_string();
        if let Some(p) = disconnect_packet(self.version, e.reason_code(), &text) {
            self.push(&p);
        }
        Flow::Close(End::Abnormal)
    }

    fn close_with(&mut self, reason: ReasonCode, message: &str) -> Flow {
        Metrics::inc(&self.metrics().protocol_errors_total);
        if let Some(p) = disconnect_packet(self.version, reason, message) {
            self.push(&p);
        }
        Flow::Close(End::Abnormal)
    }

    fn handle(&mut self, packet: Packet) -> Flow {
        match packet {
            Packet::Publish(p) => self.on_publish(p),
            Packet::PubAck(r) => {
                let session = self.session.clone();
                let mut st = session.lock();
                if st
                    .inflight
                    .get(&r.packet_id.get())
                    .is_some_and(|o| o.delivery.qos == QoS::AtLeastOnce)
                {
                    if let Some(o) = st.inflight.remove(&r.packet_id.get()) {
                        self.forget(&o.delivery);
                    }
                }
                Flow::Continue
            }
            Packet::PubRec(r) => {
                let id = r.packet_id.get();
                let session = self.session.clone();
                let mut st = session.lock();
                let known = st
                    .inflight
                    .get(&id)
                    .is_some_and(|o| o.delivery.qos == QoS::ExactlyOnce);
                if r.reason_code.as_u8() >= 0x80 {
                    // The receiver refused it: the flow ends here.
                    if let Some(o) = st.inflight.remove(&id) {
                        self.forget(&o.delivery);
                    }
                    return Flow::Continue;
                }
                if let Some(o) = st.inflight.get_mut(&id) {
                    o.released = true;
                    if let Some(seq) = o.delivery.seq {
                        self.nowait.push(MqttOp::UpdateMessage {
                            client_id: self.session.key.to_string(),
                            seq,
                            packet_id: Some(id),
                            state: persist::RELEASED,
                        });
                    }
                }
                drop(st);
                let mut rel = PubResponse::new(r.packet_id);
                if !known {
                    rel.reason_code = ReasonCode::PacketIdentifierNotFound;
                }
                self.push(&Packet::PubRel(rel));
                Flow::Continue
            }
            Packet::PubComp(r) => {
                let session = self.session.clone();
                let mut st = session.lock();
                if st
                    .inflight
                    .get(&r.packet_id.get())
                    .is_some_and(|o| o.released)
                {
                    if let Some(o) = st.inflight.remove(&r.packet_id.get()) {
                        self.forget(&o.delivery);
                    }
                }
                Flow::Continue
            }
            Packet::PubRel(r) => {
                let mut comp = PubResponse::new(r.packet_id);
                if !self.incoming_qos2.release(r.packet_id) {
                    comp.reason_code = ReasonCode::PacketIdentifierNotFound;
                }
                self.push(&Packet::PubComp(comp));
                Flow::Continue
            }
            Packet::Subscribe(s) => self.on_subscribe(s),
            Packet::Unsubscribe(u) => self.on_unsubscribe(u),
            Packet::PingReq => {
                self.push(&Packet::PingResp);
                Flow::Continue
            }
            Packet::Disconnect(d) => {
                if let Some(e) = d.properties.session_expiry_interval {
                    if self.expiry == 0 && e != 0 {
                        return self.close_with(
                            ReasonCode::ProtocolError,
                            "session expiry cannot be set at DISCONNECT when it was 0 at CONNECT",
                        );
                    }
                    self.expiry = e.min(self.limits().max_session_expiry_secs);
                }
                if d.reason_code == ReasonCode::DisconnectWithWillMessage {
                    Flow::Close(End::NormalWithWill)
                } else {
                    Flow::Close(End::Normal)
                }
            }
            Packet::Connect(_) => self.close_with(
                ReasonCode::ProtocolError,
                "a second CONNECT is a protocol error",
            ),
            Packet::Auth(_) => self.close_with(
                ReasonCode::ProtocolError,
                "enhanced authentication is not supported",
            ),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => self
                .close_with(
                    ReasonCode::ProtocolError,
                    "a client may not send this packet",
                ),
        }
    }

    /// Re-offers deliveries that met a full queue, waiting for room up to
    /// [`BACKPRESSURE_WAIT`] in all; what still does not fit is dropped and
    /// counted (a subscriber that stopped reading must not stall its
    /// publishers forever).
    async fn wait_for_room(&mut self) {
        let deadline = tokio::time::Instant::now() + BACKPRESSURE_WAIT;
        let max = self.limits().max_queued;
        for (session, mut d) in std::mem::take(&mut self.blocked) {
            if Arc::ptr_eq(&session, &self.session) {
                // Our own queue drains only in this task: waiting would
                // wait for ourselves.
                Metrics::inc(&self.metrics().queue_dropped_total);
                continue;
            }
            loop {
                let room = session.room().notified();
                tokio::pin!(room);
                room.as_mut().enable();
                match session.offer(d, max, &self.shared.broker.metrics, &mut self.journal) {
                    Offer::Full(back) => d = back,
                    Offer::Queued | Offer::Denied | Offer::Dropped => break,
                }
                if tokio::time::timeout_at(deadline, room).await.is_err() {
                    Metrics::inc(&self.metrics().queue_dropped_total);
                    break;
                }
            }
        }
    }

    /// A persisted delivery is done with: its row goes.
    fn forget(&mut self, d: &crate::message::Delivery) {
        if let Some(seq) = d.seq {
            self.nowait.push(MqttOp::DeleteMessage {
                client_id: self.session.key.to_string(),
                seq,
            });
        }
    }

    /// Sends a PUBACK or PUBREC carrying `code` (a refusal in MQTT 5).
    fn ack(&mut self, qos: QoS, id: Option<PacketId>, code: ReasonCode) {
        let Some(id) = id else { return };
        let mut r = PubResponse::new(id);
        r.reason_code = code;
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.push(&Packet::PubAck(r)),
            QoS::ExactlyOnce => self.push(&Packet::PubRec(r)),
        }
    }

    /// A refused PUBLISH: MQTT 5 gets the reason in the acknowledgement
    /// (QoS 0 is dropped); MQTT 3.1.1 cannot be told, so the connection
    /// is closed rather than acknowledging a message that was not accepted.
    fn refuse_publish(&mut self, p: &Publish, code: ReasonCode, message: &str) -> Flow {
        self.refuse(p.qos, p.packet_id, code, message)
    }

    fn on_publish(&mut self, mut p: Publish) -> Flow {
        let topic = match self.aliases.resolve(&mut p) {
            Ok(t) => t,
            Err(code) => return self.close_with(code, "invalid topic or topic alias"),
        };
        // A retransmitted QoS 2 message already accepted: acknowledge only.
        if let (QoS::ExactlyOnce, Some(id)) = (p.qos, p.packet_id) {
            match self.incoming_qos2.arrive(id) {
                Ok(Qos2Arrival::Deliver) => {}
                Ok(Qos2Arrival::Duplicate) => {
                    self.ack(p.qos, p.packet_id, ReasonCode::Success);
                    return Flow::Continue;
                }
                Err(code) => {
                    return self.close_with(
                        code,
                        "more unacknowledged QoS 2 messages than the receive maximum",
                    )
                }
            }
        }
        let metrics = self.shared.broker.metrics.clone();
        if let Some(problem) = topic_problem(topic.as_str(), self.limits()) {
            Metrics::inc(&metrics.publish_denied_total);
            return self.refuse_publish(&p, ReasonCode::TopicNameInvalid, problem);
        }
        let now = Instant::now();
        let size = p.payload.len() as f64;
        let epoch = self.session.throttle_epoch();
        if epoch != self.throttle_epoch {
            self.throttle_epoch = epoch;
            self.throttle = self.shared.throttles.bucket_for(&self.session.owner, now);
        }
        let throttled = self
            .throttle
            .as_mut()
            .is_some_and(|t| !t.try_take(1.0, now));
        if throttled {
            Metrics::inc(&metrics.throttled_total);
        }
        if throttled || !self.messages.try_take(1.0, now) || !self.bytes.try_take(size, now) {
            Metrics::inc(&metrics.rate_limited_total);
            Metrics::inc(&self.session.counters.denials);
            if self.shared.events.enabled() {
                // The attempt counts for detection: a flood shows as the
                // rate it is sent at, not the rate the limit lets through.
                self.shared.events.emit(GatewayEvent::RateLimited {
                    principal: self.session.owner.counter_key(),
                    device: self.session.owner.device(),
                    topic: topic.as_str().to_owned(),
                    bytes: p.payload.len(),
                });
            }
            return self.refuse_publish(
                &p,
                ReasonCode::QuotaExceeded,
                "publish rate limit exceeded",
            );
        }
        if !self.session.allows(Action::Publish, topic.as_str()) {
            Metrics::inc(&metrics.publish_denied_total);
            Metrics::inc(&self.session.counters.denials);
            if self.shared.events.enabled() {
                self.shared.events.emit(GatewayEvent::Denied {
                    principal: self.session.owner.counter_key(),
                    device: self.session.owner.device(),
                    action: "publish",
                    topic: topic.as_str().to_owned(),
                });
            }
            return self.refuse_publish(
                &p,
                ReasonCode::NotAuthorized,
                "not allowed to publish to this topic",
            );
        }
        let (qos, packet_id) = (p.qos, p.packet_id);
        let len = p.payload.len() as u64;
        let msg = Arc::new(Message::from_publish(
            p,
            topic,
            self.session.key.clone(),
            now,
        ));
        if msg.retain && !self.shared.broker.retain(&msg, &mut self.journal) {
            return self.refuse(
                qos,
                packet_id,
                ReasonCode::QuotaExceeded,
                "the retained-message store is full",
            );
        }
        self.shared
            .broker
            .route(&msg, &mut self.journal, &mut self.blocked);
        if self.shared.events.enabled() {
            self.published_events(&msg);
        }
        for c in [
            &metrics.messages_received_total,
            &self.session.counters.messages_in,
        ] {
            c.fetch_add(1, Ordering::Relaxed);
        }
        for c in [
            &metrics.bytes_received_total,
            &self.session.counters.bytes_in,
        ] {
            c.fetch_add(len, Ordering::Relaxed);
        }
        self.ack(qos, packet_id, ReasonCode::Success);
        Flow::Continue
    }

    /// `Published` for an accepted message, and `DeviceReport` when a
    /// device sent it to one of its own report topics (events enabled).
    fn published_events(&self, msg: &Message) {
        let events = &self.shared.events;
        let device = self.session.owner.device();
        if let Some(d) = &device {
            if let Some(kind) = ReportKind::of_topic(d, msg.topic.as_str()) {
                if msg.payload.len() > MAX_DEVICE_REPORT {
                    Metrics::inc(&self.metrics().device_reports_oversized_total);
                } else {
                    events.emit(GatewayEvent::DeviceReport {
                        device: d.clone(),
                        kind,
                        payload: msg.payload.clone(),
                    });
                }
            }
        }
        events.emit(GatewayEvent::Published {
            principal: self.session.owner.counter_key(),
            device,
            topic: msg.topic.as_str().to_owned(),
            bytes: msg.payload.len(),
            qos: msg.qos as u8,
            retain: msg.retain,
        });
    }

    /// `Delivered` for what the last write sent, if anything (events
    /// enabled; otherwise the tally is just reset).
    fn report_delivered(&mut self) {
        let d = std::mem::take(&mut self.delivered);
        if d.messages > 0 && self.shared.events.enabled() {
            self.shared.events.emit(GatewayEvent::Delivered {
                principal: self.session.owner.counter_key(),
                device: self.session.owner.device(),
                messages: d.messages,
                bytes: d.bytes,
            });
        }
    }

    fn refuse(&mut self, qos: QoS, id: Option<PacketId>, code: ReasonCode, message: &str) -> Flow {
        // A refused QoS 2 message ends at PUBREC: its id is free again.
        if let (QoS::ExactlyOnce, Some(id)) = (qos, id) {
            self.incoming_qos2.release(id);
        }
        if self.version == ProtocolVersion::V5 {
            self.ack(qos, id, code);
            Flow::Continue
        } else {
            tracing::debug!(key = %self.session.key, message, "closing an MQTT 3.1.1 client after a refused PUBLISH");
            Flow::Close(End::Abnormal)
        }
    }

    fn on_subscribe(&mut self, s: Subscribe) -> Flow {
        let metrics = self.shared.broker.metrics.clone();
        let sub_id = s.properties.subscription_identifiers.first().copied();
        let mut codes = Vec::with_capacity(s.subscriptions.len());
        let mut granted = Vec::new();
        for sub in s.subscriptions {
            let filter = sub.filter;
            let refusal = if topic_problem(filter.as_str(), self.limits()).is_some() {
                Some(ReasonCode::TopicFilterInvalid)
            } else if !self.session.allows(Action::Subscribe, filter.as_str()) {
                if self.shared.events.enabled() {
                    self.shared.events.emit(GatewayEvent::Denied {
                        principal: self.session.owner.counter_key(),
                        device: self.session.owner.device(),
                        action: "subscribe",
                        topic: filter.as_str().to_owned(),
                    });
                }
                Some(ReasonCode::NotAuthorized)
            } else {
                let st = self.session.lock();
                let full = st.subscriptions.len() >= self.limits().max_subscriptions
                    && !st.subscriptions.contains_key(filter.as_str());
                full.then_some(ReasonCode::QuotaExceeded)
            };
            if let Some(code) = refusal {
                Metrics::inc(&metrics.subscribe_denied_total);
                Metrics::inc(&self.session.counters.denials);
                codes.push(code);
                continue;
            }
            let record = SubRecord {
                options: sub.options,
                id: sub_id,
            };
            let existed =
                self.shared
                    .broker
                    .subscribe(&self.session, &filter, record, &mut self.journal);
            codes.push(match sub.options.qos {
                QoS::AtMostOnce => ReasonCode::Success,
                QoS::AtLeastOnce => ReasonCode::GrantedQoS1,
                QoS::ExactlyOnce => ReasonCode::GrantedQoS2,
            });
            if self.shared.events.enabled() {
                self.shared.events.emit(GatewayEvent::Subscribed {
                    principal: self.session.owner.counter_key(),
                    device: self.session.owner.device(),
                    filter: filter.as_str().to_owned(),
                });
            }
            granted.push((filter, record, existed));
        }
        self.push(&Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            properties: Default::default(),
            reason_codes: codes,
        }));
        // Retained messages follow the SUBACK.
        for (filter, record, existed) in granted {
            self.shared.broker.deliver_retained(
                &self.session,
                &filter,
                record,
                existed,
                &mut self.journal,
            );
        }
        Flow::Continue
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe) -> Flow {
        let broker = &self.shared.broker;
        let journal = &mut self.journal;
        let codes = u
            .filters
            .iter()
            .map(|f: &TopicFilter| {
                if broker.unsubscribe(&self.session, f, journal) {
                    ReasonCode::Success
                } else {
                    ReasonCode::NoSubscriptionExisted
                }
            })
            .collect();
        self.push(&Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            properties: Default::default(),
            reason_codes: codes,
        }));
        Flow::Continue
    }

    /// On (re)connect: unacknowledged messages again, with DUP, and PUBRELs
    /// for those already received.
    fn resend_inflight(&mut self) {
        let now = Instant::now();
        let st = self.session.lock();
        let mut packets = Vec::with_capacity(st.inflight.len());
        for (id, o) in &st.inflight {
            let Some(pid) = PacketId::new(*id) else {
                continue;
            };
            if o.released {
                packets.push(Packet::PubRel(PubResponse::new(pid)));
            } else if let Some(p) = o
                .delivery
                .message
                .to_publish(&o.delivery, Some(pid), true, now)
            {
                packets.push(Packet::Publish(p));
            }
        }
        drop(st);
        for p in &packets {
            self.push(p);
        }
    }

    /// Moves queued deliveries into the output buffer.
    fn drain(&mut self) {
        let session = self.session.clone();
        let shared = self.shared.clone();
        let mut st = session.lock();
        if st.queue.is_empty() {
            return;
        }
        let encoder = self.encoder;
        let out = &mut self.out;
        let d = st.drain(
            &session,
            Instant::now(),
            &shared.broker.metrics,
            &mut self.nowait,
            |p| encoder.encode(&Packet::Publish(p), out).is_ok(),
        );
        self.delivered.messages = self.delivered.messages.saturating_add(d.messages);
        self.delivered.bytes = self.delivered.bytes.saturating_add(d.bytes);
    }
}
