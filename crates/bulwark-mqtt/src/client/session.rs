//! [`ClientSession`]: the state that outlives one connection (messages in
//! flight, pending requests, the client identifier) and the state of the
//! current connection (codec, server limits, keep-alive timers), with the
//! calls the application and the driver make. Incoming packets are handled
//! in `inbound.rs`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::outbox::Outbox;
use super::{ClientError, ClientOptions, CloseReason, Connected, Event, Message};
use crate::session::{IncomingQos2, TopicAliases};
use crate::{
    Connect, Decoder, Disconnect, EncodeError, Encoder, Packet, PacketId, Properties,
    ProtocolVersion, Publish, QoS, ReasonCode, Subscribe, Subscription, TopicFilter, Unsubscribe,
};

/// Where the connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// No connection: call [`ClientSession::connect`].
    Disconnected,
    /// CONNECT queued or sent, waiting for CONNACK.
    Connecting,
    /// CONNACK accepted the connection.
    Connected,
    /// The protocol ended the connection (refusal, DISCONNECT, violation,
    /// timeout, or [`ClientSession::disconnect`]): send what is left, close
    /// the socket, call [`ClientSession::connection_lost`].
    Closed,
}

/// A SUBSCRIBE or UNSUBSCRIBE waiting for its answer; sent again on each
/// new connection until answered.
#[derive(Debug, Clone)]
pub(super) enum Request {
    Subscribe(Subscribe),
    Unsubscribe(Unsubscribe),
}

impl Request {
    pub(super) fn packet_id(&self) -> PacketId {
        match self {
            Request::Subscribe(s) => s.packet_id,
            Request::Unsubscribe(u) => u.packet_id,
        }
    }

    pub(super) fn to_packet(&self) -> Packet {
        match self {
            Request::Subscribe(s) => Packet::Subscribe(s.clone()),
            Request::Unsubscribe(u) => Packet::Unsubscribe(u.clone()),
        }
    }
}

/// The client side of an MQTT 3.1.1 or 5.0 session, without I/O.
///
/// The driver owns the socket and the clock. It calls [`connect`] once the
/// transport is up, feeds received bytes to [`handle_input`], writes what
/// [`poll_transmit`] returns, arms a timer for [`poll_timeout`] and calls
/// [`handle_timeout`] when it fires, and calls [`connection_lost`] when the
/// socket closes. The application calls [`publish`], [`subscribe`],
/// [`unsubscribe`] and [`disconnect`], and takes [`Event`]s from
/// [`poll_event`].
///
/// Outgoing QoS 1/2 messages get their packet identifier at once. They are
/// sent while fewer than the server's Receive Maximum (and
/// [`ClientOptions::max_inflight`]) are in flight; the others wait in a
/// queue of at most [`ClientOptions::max_queued`], also while disconnected,
/// and one more is refused with [`ClientError::QueueFull`]. QoS 0 messages
/// are sent at once or refused with [`ClientError::NotConnected`].
///
/// [`connect`]: ClientSession::connect
/// [`handle_input`]: ClientSession::handle_input
/// [`poll_transmit`]: ClientSession::poll_transmit
/// [`poll_timeout`]: ClientSession::poll_timeout
/// [`handle_timeout`]: ClientSession::handle_timeout
/// [`connection_lost`]: ClientSession::connection_lost
/// [`publish`]: ClientSession::publish
/// [`subscribe`]: ClientSession::subscribe
/// [`unsubscribe`]: ClientSession::unsubscribe
/// [`disconnect`]: ClientSession::disconnect
/// [`poll_event`]: ClientSession::poll_event
#[derive(Debug)]
pub struct ClientSession {
    pub(super) options: ClientOptions,
    pub(super) state: State,
    pub(super) assigned_client_id: Option<String>,
    pub(super) decoder: Decoder,
    pub(super) encoder: Encoder,
    pub(super) input: BytesMut,
    pub(super) output: BytesMut,
    pub(super) events: VecDeque<Event>,
    pub(super) outbox: Outbox,
    pub(super) requests: VecDeque<Request>,
    pub(super) incoming_qos2: IncomingQos2,
    pub(super) aliases: TopicAliases,
    /// The accepting CONNACK of the current connection.
    pub(super) server: Option<Connected>,
    pub(super) keep_alive: Duration,
    pub(super) connect_sent: Instant,
    pub(super) last_sent: Instant,
    pub(super) last_received: Instant,
    pub(super) ping_sent: Option<Instant>,
}

impl ClientSession {
    /// A session that is not connected yet; `now` only seeds the timers.
    pub fn new(options: ClientOptions, now: Instant) -> Self {
        let version = options.version;
        ClientSession {
            decoder: Decoder::with_version(version, options.maximum_packet_size),
            encoder: Encoder::new(version),
            incoming_qos2: IncomingQos2::new(incoming_receive_maximum(&options)),
            aliases: TopicAliases::new(0),
            options,
            state: State::Disconnected,
            assigned_client_id: None,
            input: BytesMut::new(),
            output: BytesMut::new(),
            events: VecDeque::new(),
            outbox: Outbox::default(),
            requests: VecDeque::new(),
            server: None,
            keep_alive: Duration::ZERO,
            connect_sent: now,
            last_sent: now,
            last_received: now,
            ping_sent: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// The client identifier the next CONNECT carries: the configured one,
    /// or the one the server assigned.
    pub fn client_id(&self) -> &str {
        match (&self.assigned_client_id, self.options.client_id.as_str()) {
            (Some(assigned), "") => assigned,
            (_, configured) => configured,
        }
    }

    /// What the server accepted the current connection with.
    pub fn connected(&self) -> Option<&Connected> {
        self.server
            .as_ref()
            .filter(|_| self.state == State::Connected)
    }

    /// Outgoing QoS 1/2 messages sent and not yet fully acknowledged.
    pub fn inflight_len(&self) -> usize {
        self.outbox.inflight_len()
    }

    /// Outgoing QoS 1/2 messages waiting to be sent.
    pub fn queued_len(&self) -> usize {
        self.outbox.queued_len()
    }

    /// Starts a connection over a transport that is up: queues CONNECT.
    pub fn connect(&mut self, now: Instant) -> Result<(), ClientError> {
        if self.state != State::Disconnected {
            return Err(ClientError::AlreadyConnected);
        }
        let o = &self.options;
        let mut properties = Properties::default();
        if o.version == ProtocolVersion::V5 {
            properties.session_expiry_interval =
                Some(o.session_expiry_interval).filter(|&s| s != 0);
            properties.receive_maximum =
                std::num::NonZeroU16::new(o.receive_maximum).filter(|r| r.get() != u16::MAX);
            properties.maximum_packet_size = std::num::NonZeroU32::new(o.maximum_packet_size)
                .filter(|&m| m.get() < crate::MAX_PACKET_SIZE);
            properties.topic_alias_maximum = Some(o.topic_alias_maximum).filter(|&t| t != 0);
            properties.user_properties.clone_from(&o.user_properties);
        }
        let connect = Connect {
            protocol_version: o.version,
            clean_start: o.clean_start,
            keep_alive: o.keep_alive,
            client_id: self.client_id().to_owned(),
            will: o.will.clone(),
            username: o.username.clone(),
            password: o.password.clone(),
            properties,
        };
        // The server's limit is unknown until CONNACK.
        let encoder = Encoder::new(o.version);
        self.output.clear();
        encoder.encode(&Packet::Connect(Box::new(connect)), &mut self.output)?;
        self.encoder = encoder;
        self.decoder = Decoder::with_version(o.version, o.maximum_packet_size);
        self.aliases = TopicAliases::new(match o.version {
            ProtocolVersion::V5 => o.topic_alias_maximum,
            ProtocolVersion::V311 => 0,
        });
        self.input.clear();
        self.server = None;
        self.state = State::Connecting;
        self.connect_sent = now;
        self.last_sent = now;
        self.last_received = now;
        self.ping_sent = None;
        Ok(())
    }

    /// The transport is gone (closed, failed, or closed by the driver after
    /// [`State::Closed`]): unsent bytes are dropped, messages in flight and
    /// pending requests are kept for the next connection.
    pub fn connection_lost(&mut self) {
        self.state = State::Disconnected;
        self.input.clear();
        self.output.clear();
        self.server = None;
        self.ping_sent = None;
    }

    /// Bytes to write to the transport, if any; `now` is when they go out
    /// (keep-alive counts from the last bytes sent).
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        if self.output.is_empty() || self.state == State::Disconnected {
            return None;
        }
        self.last_sent = now;
        Some(self.output.split().freeze())
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`ClientSession::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Connecting => Some(self.connect_sent + self.options.response_timeout),
            State::Connected => match self.ping_sent {
                Some(sent) => Some(sent + self.options.response_timeout),
                None if self.keep_alive.is_zero() => None,
                None => Some(self.last_sent.min(self.last_received) + self.keep_alive),
            },
            State::Disconnected | State::Closed => None,
        }
    }

    /// Runs the timers: no CONNACK in time closes the connection, as does
    /// no packet in time after PINGREQ; a keep-alive without traffic in
    /// either direction sends PINGREQ. `Err(Closed)` when the connection is
    /// over (also reported as [`Event::Closed`]).
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), ClientError> {
        let Some(deadline) = self.poll_timeout() else {
            return Ok(());
        };
        if now < deadline {
            return Ok(());
        }
        let timeout = self.options.response_timeout;
        match (self.state, self.ping_sent) {
            (State::Connecting, _) => Err(self.close(CloseReason::ConnectTimeout(timeout))),
            (State::Connected, Some(_)) => Err(self.close(CloseReason::KeepAliveTimeout(timeout))),
            (State::Connected, None) => {
                self.send(&Packet::PingReq)?;
                self.ping_sent = Some(now);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Publishes `message`: `Ok(Some(id))` for QoS 1/2 (sent or queued, see
    /// the type's documentation), `Ok(None)` for QoS 0 (sent).
    pub fn publish(&mut self, message: Message) -> Result<Option<PacketId>, ClientError> {
        let mut properties = message.properties;
        properties.topic_alias = None;
        let mut publish = Publish {
            dup: false,
            qos: message.qos,
            retain: message.retain,
            topic: Some(message.topic),
            packet_id: None,
            properties,
            payload: message.payload,
        };
        let connected = self.state == State::Connected;
        if message.qos == QoS::AtMostOnce {
            if !connected {
                return Err(ClientError::NotConnected);
            }
            self.check_publish(&publish)?;
            self.send(&Packet::Publish(publish))?;
            return Ok(None);
        }
        let send_now = connected
            && self.outbox.queued_len() == 0
            && self.outbox.inflight_len() < self.send_quota();
        if !send_now && self.outbox.queued_len() >= self.options.max_queued {
            return Err(ClientError::QueueFull {
                max: self.options.max_queued,
            });
        }
        // Checked with a stand-in identifier (same size) so that a refusal
        // leaves the identifier counter alone.
        publish.packet_id = Some(PacketId::from(std::num::NonZeroU16::MIN));
        self.check_publish(&publish)?;
        let id = self.next_id()?;
        publish.packet_id = Some(id);
        if send_now {
            self.send(&Packet::Publish(publish.clone()))?;
            self.outbox.insert_sent(id, publish);
        } else {
            self.outbox.enqueue(id, publish);
        }
        Ok(Some(id))
    }

    /// Subscribes to `subscriptions` (MQTT 5 options included); the answer
    /// is [`Event::SubAck`] with the returned identifier. Sent now if
    /// connected, else after the next CONNACK.
    pub fn subscribe(&mut self, subscriptions: Vec<Subscription>) -> Result<PacketId, ClientError> {
        self.subscribe_with(subscriptions, Properties::default())
    }

    /// [`ClientSession::subscribe`] with MQTT 5 properties (a subscription
    /// identifier, user properties).
    pub fn subscribe_with(
        &mut self,
        subscriptions: Vec<Subscription>,
        properties: Properties,
    ) -> Result<PacketId, ClientError> {
        if subscriptions.is_empty() {
            return Err(ClientError::NoTopicFilters);
        }
        self.request(|packet_id| {
            Request::Subscribe(Subscribe {
                packet_id,
                properties,
                subscriptions,
            })
        })
    }

    /// Unsubscribes from `filters`; the answer is [`Event::UnsubAck`].
    pub fn unsubscribe(&mut self, filters: Vec<TopicFilter>) -> Result<PacketId, ClientError> {
        if filters.is_empty() {
            return Err(ClientError::NoTopicFilters);
        }
        self.request(|packet_id| {
            Request::Unsubscribe(Unsubscribe {
                packet_id,
                properties: Properties::default(),
                filters,
            })
        })
    }

    /// Ends the connection: queues DISCONNECT (with `reason` in MQTT 5,
    /// e.g. [`ReasonCode::NORMAL_DISCONNECTION`], or
    /// [`ReasonCode::DisconnectWithWillMessage`] to have the will sent) and
    /// moves to [`State::Closed`]. The session's state is kept.
    pub fn disconnect(&mut self, reason: ReasonCode) -> Result<(), ClientError> {
        match self.state {
            State::Connected => {
                let packet = Packet::Disconnect(Disconnect {
                    reason_code: reason,
                    properties: Properties::default(),
                });
                self.send(&packet)?;
            }
            State::Connecting => {}
            State::Disconnected | State::Closed => return Err(ClientError::NotConnected),
        }
        self.state = State::Closed;
        self.ping_sent = None;
        Ok(())
    }

    fn request(
        &mut self,
        build: impl FnOnce(PacketId) -> Request,
    ) -> Result<PacketId, ClientError> {
        if self.requests.len() >= self.options.max_pending_requests {
            return Err(ClientError::TooManyRequests {
                max: self.options.max_pending_requests,
            });
        }
        // Checked with a stand-in identifier (same size) so that a refusal
        // leaves the identifier counter alone.
        let mut request = build(PacketId::from(std::num::NonZeroU16::MIN));
        let len = request.to_packet().encoded_len(self.options.version)?;
        if self.state == State::Connected {
            self.check_size(len)?;
        }
        let id = self.next_id()?;
        match &mut request {
            Request::Subscribe(s) => s.packet_id = id,
            Request::Unsubscribe(u) => u.packet_id = id,
        }
        if self.state == State::Connected {
            self.send(&request.to_packet())?;
        }
        self.requests.push_back(request);
        Ok(id)
    }

    fn next_id(&mut self) -> Result<PacketId, ClientError> {
        let requests = &self.requests;
        self.outbox
            .next_id(|id| requests.iter().any(|r| r.packet_id().get() == id))
            .ok_or(ClientError::PacketIdsExhausted)
    }

    /// Messages in flight allowed on this connection.
    pub(super) fn send_quota(&self) -> usize {
        let server = self.server.as_ref().map_or(u16::MAX, |s| s.receive_maximum);
        usize::from(server.min(self.options.max_inflight).max(1))
    }

    /// Checks `publish` against what the server announced (when connected)
    /// and against the codec's rules.
    pub(super) fn check_publish(&self, publish: &Publish) -> Result<(), ClientError> {
        let len = Packet::Publish(publish.clone()).encoded_len(self.options.version)?;
        if self.state != State::Connected {
            return Ok(());
        }
        if let Some(server) = &self.server {
            if publish.qos > server.maximum_qos {
                return Err(ClientError::QoSNotSupported {
                    requested: publish.qos,
                    maximum: server.maximum_qos,
                });
            }
            if publish.retain && !server.retain_available {
                return Err(ClientError::RetainNotSupported);
            }
        }
        self.check_size(len)
    }

    fn check_size(&self, len: usize) -> Result<(), ClientError> {
        let max = self.encoder.max_packet_size();
        if u64::try_from(len).unwrap_or(u64::MAX) > u64::from(max) {
            return Err(EncodeError::PacketTooLarge { size: len, max }.into());
        }
        Ok(())
    }

    /// Encodes `packet` into the output, within the server's limit.
    pub(super) fn send(&mut self, packet: &Packet) -> Result<(), EncodeError> {
        self.encoder.encode(packet, &mut self.output)
    }

    /// Sends queued messages while the quota allows.
    pub(super) fn drain_queue(&mut self) {
        while self.state == State::Connected && self.outbox.inflight_len() < self.send_quota() {
            let Some((id, publish)) = self.outbox.pop_queued() else {
                return;
            };
            let sent = self
                .check_publish(&publish)
                .and_then(|()| Ok(self.send(&Packet::Publish(publish.clone()))?));
            match sent {
                Ok(()) => self.outbox.insert_sent(id, publish),
                Err(error) => self.events.push_back(Event::PublishDropped {
                    packet_id: id,
                    error,
                }),
            }
        }
    }

    /// Ends the connection for `reason`: reports it, and in MQTT 5 tells
    /// the server why when the reason is its protocol violation.
    pub(super) fn close(&mut self, reason: CloseReason) -> ClientError {
        if let (CloseReason::Protocol(violation), State::Connected, ProtocolVersion::V5) =
            (&reason, self.state, self.options.version)
        {
            let packet = Packet::Disconnect(Disconnect {
                reason_code: violation.reason_code(),
                properties: Properties::default(),
            });
            // The server's limit may refuse even this; closing is enough.
            let _ = self.send(&packet);
        }
        self.state = State::Closed;
        self.ping_sent = None;
        self.events.push_back(Event::Closed(reason.clone()));
        ClientError::Closed(reason)
    }
}

/// The Receive Maximum the server must respect towards us: announced in
/// MQTT 5 only, so 3.1.1 servers are not held to it.
pub(super) fn incoming_receive_maximum(options: &ClientOptions) -> u16 {
    match options.version {
        ProtocolVersion::V5 => options.receive_maximum.max(1),
        ProtocolVersion::V311 => u16::MAX,
    }
}
