//! Packets from the server: CONNACK (limits, resend or loss report),
//! PUBLISH and its QoS flows, acknowledgements of our messages and
//! requests, PINGRESP and DISCONNECT. Anything else, and anything out of
//! place, is a protocol violation that closes the connection.

use std::time::Instant;

use super::outbox::{AckOutcome, Resend};
use super::session::{incoming_receive_maximum, Request, State};
use super::{
    Ack, ClientError, ClientSession, CloseReason, ConnectRefused, Connected, Event, Message,
    ProtocolViolation, ServerDisconnect,
};
use crate::session::{IncomingQos2, Qos2Arrival};
use crate::{
    ConnAck, Disconnect, Packet, PacketType, ProtocolVersion, PubResponse, Publish, QoS,
    ReasonCode, SubAck, UnsubAck,
};

impl ClientSession {
    /// Takes bytes received from the transport and handles every complete
    /// packet in them. `Err(Closed)` when the connection is over (refusal,
    /// DISCONNECT, protocol violation; also reported as [`Event::Closed`]);
    /// bytes after that are ignored. `Err(NotConnected)` before
    /// [`ClientSession::connect`].
    pub fn handle_input(&mut self, data: &[u8], now: Instant) -> Result<(), ClientError> {
        match self.state {
            State::Disconnected => return Err(ClientError::NotConnected),
            State::Closed => return Ok(()),
            State::Connecting | State::Connected => {}
        }
        self.input.extend_from_slice(data);
        while self.state != State::Closed {
            let packet = match self.decoder.decode(&mut self.input) {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                Err(e) => return Err(self.violation(e.into())),
            };
            self.last_received = now;
            self.ping_sent = None;
            self.handle_packet(packet)?;
        }
        Ok(())
    }

    pub(super) fn violation(&mut self, violation: ProtocolViolation) -> ClientError {
        self.input.clear();
        self.close(CloseReason::Protocol(violation))
    }

    fn handle_packet(&mut self, packet: Packet) -> Result<(), ClientError> {
        let packet_type = packet.packet_type();
        match (self.state, packet) {
            (State::Connecting, Packet::ConnAck(connack)) => self.on_connack(connack),
            (State::Connected, Packet::Publish(publish)) => self.on_publish(publish),
            (State::Connected, Packet::PubAck(r)) => self.on_ack(PacketType::PubAck, r),
            (State::Connected, Packet::PubRec(r)) => self.on_ack(PacketType::PubRec, r),
            (State::Connected, Packet::PubComp(r)) => self.on_ack(PacketType::PubComp, r),
            (State::Connected, Packet::PubRel(r)) => {
                let reason_code = if self.incoming_qos2.release(r.packet_id) {
                    ReasonCode::Success
                } else {
                    ReasonCode::PacketIdentifierNotFound
                };
                let mut comp = PubResponse::new(r.packet_id);
                comp.reason_code = reason_code;
                self.send_ack(Packet::PubComp(comp));
                Ok(())
            }
            (State::Connected, Packet::SubAck(ack)) => self.on_suback(ack),
            (State::Connected, Packet::UnsubAck(ack)) => self.on_unsuback(ack),
            (State::Connected, Packet::PingResp) => Ok(()),
            (State::Connected, Packet::Disconnect(d))
                if self.options.version == ProtocolVersion::V5 =>
            {
                Err(self.on_disconnect(d))
            }
            _ => Err(self.violation(ProtocolViolation::UnexpectedPacket(packet_type))),
        }
    }

    fn on_connack(&mut self, connack: ConnAck) -> Result<(), ClientError> {
        let p = connack.properties;
        if connack.reason_code.is_error() {
            return Err(self.close(CloseReason::Refused(ConnectRefused {
                reason_code: connack.reason_code,
                reason_string: p.reason_string,
                server_reference: p.server_reference,
            })));
        }
        if connack.session_present && self.options.clean_start {
            return Err(self.violation(ProtocolViolation::SessionPresentAfterCleanStart));
        }
        let info = Connected {
            session_present: connack.session_present,
            assigned_client_id: p.assigned_client_identifier,
            receive_maximum: p.receive_maximum.map_or(u16::MAX, |r| r.get()),
            maximum_packet_size: p
                .maximum_packet_size
                .map_or(crate::MAX_PACKET_SIZE, |m| m.get()),
            keep_alive: p.server_keep_alive.unwrap_or(self.options.keep_alive),
            session_expiry_interval: p.session_expiry_interval,
            topic_alias_maximum: p.topic_alias_maximum.unwrap_or(0),
            maximum_qos: p.maximum_qos.unwrap_or(QoS::ExactlyOnce),
            retain_available: p.retain_available.unwrap_or(true),
            wildcard_subscription_available: p.wildcard_subscription_available.unwrap_or(true),
            subscription_identifiers_available: p.subscription_identifier_available.unwrap_or(true),
            shared_subscription_available: p.shared_subscription_available.unwrap_or(true),
            reason_string: p.reason_string,
            response_information: p.response_information,
            server_reference: p.server_reference,
            user_properties: p.user_properties,
        };
        if let Some(id) = &info.assigned_client_id {
            self.assigned_client_id = Some(id.clone());
        }
        self.encoder.set_max_packet_size(info.maximum_packet_size);
        self.keep_alive = std::time::Duration::from_secs(u64::from(info.keep_alive));
        self.state = State::Connected;
        self.server = Some(info.clone());
        self.events.push_back(Event::Connected(info));

        if connack.session_present {
            self.resend();
        } else {
            for (packet_id, publish) in self.outbox.take_inflight() {
                let message = publish.and_then(message_of);
                self.events
                    .push_back(Event::PublishLost { packet_id, message });
            }
            self.incoming_qos2 = IncomingQos2::new(incoming_receive_maximum(&self.options));
        }
        self.resend_requests();
        self.drain_queue();
        Ok(())
    }

    /// Sends the pending requests on the new connection; one larger than
    /// the server accepts is answered locally with Packet Too Large.
    fn resend_requests(&mut self) {
        let mut kept = std::collections::VecDeque::with_capacity(self.requests.len());
        for request in std::mem::take(&mut self.requests) {
            if self.send(&request.to_packet()).is_ok() {
                kept.push_back(request);
                continue;
            }
            let too_large = ReasonCode::PacketTooLarge;
            self.events.push_back(match request {
                Request::Subscribe(s) => Event::SubAck {
                    packet_id: s.packet_id,
                    results: vec![Err(too_large); s.subscriptions.len()],
                },
                Request::Unsubscribe(u) => Event::UnsubAck {
                    packet_id: u.packet_id,
                    reason_codes: vec![too_large; u.filters.len()],
                },
            });
        }
        self.requests = kept;
    }

    /// Sends again what the resumed session has in flight, in order.
    fn resend(&mut self) {
        for resend in self.outbox.resend() {
            match resend {
                Resend::Publish(publish) => {
                    let Some(id) = publish.packet_id else {
                        continue;
                    };
                    let sent = self
                        .check_publish(&publish)
                        .and_then(|()| Ok(self.send(&Packet::Publish(*publish))?));
                    if let Err(error) = sent {
                        self.outbox.remove(id);
                        self.events.push_back(Event::PublishDropped {
                            packet_id: id,
                            error,
                        });
                    }
                }
                Resend::PubRel(id) => self.send_ack(Packet::PubRel(PubResponse::new(id))),
            }
        }
    }

    fn on_publish(&mut self, mut publish: Publish) -> Result<(), ClientError> {
        let topic = match self.aliases.resolve(&mut publish) {
            Ok(topic) => topic,
            Err(code) => return Err(self.violation(ProtocolViolation::TopicAlias(code))),
        };
        let message = Message {
            topic,
            payload: publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            properties: publish.properties,
        };
        match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => self.events.push_back(Event::Message(message)),
            (QoS::AtLeastOnce, Some(id)) => {
                self.events.push_back(Event::Message(message));
                self.send_ack(Packet::PubAck(PubResponse::new(id)));
            }
            (QoS::ExactlyOnce, Some(id)) => match self.incoming_qos2.arrive(id) {
                Ok(arrival) => {
                    if arrival == Qos2Arrival::Deliver {
                        self.events.push_back(Event::Message(message));
                    }
                    self.send_ack(Packet::PubRec(PubResponse::new(id)));
                }
                Err(_) => return Err(self.violation(ProtocolViolation::ReceiveMaximumExceeded)),
            },
            // The decoder guarantees an identifier above QoS 0.
            (_, None) => {
                return Err(self.violation(ProtocolViolation::UnexpectedPacket(PacketType::Publish)))
            }
        }
        Ok(())
    }

    fn on_ack(&mut self, packet_type: PacketType, r: PubResponse) -> Result<(), ClientError> {
        let id = r.packet_id;
        let outcome = match packet_type {
            PacketType::PubAck => self.outbox.puback(id),
            PacketType::PubRec => self.outbox.pubrec(id, r.reason_code.is_error()),
            _ => self.outbox.pubcomp(id),
        };
        let ack = Ack {
            packet_id: id,
            reason_code: r.reason_code,
            reason_string: r.properties.reason_string,
        };
        let event = match packet_type {
            PacketType::PubAck => Event::PubAck(ack),
            PacketType::PubRec => Event::PubRec(ack),
            _ => Event::PubComp(ack),
        };
        match outcome {
            AckOutcome::Unknown => Err(self.violation(ProtocolViolation::UnknownPacketId {
                packet_type,
                packet_id: id.get(),
            })),
            AckOutcome::Release => {
                self.send_ack(Packet::PubRel(PubResponse::new(id)));
                self.events.push_back(event);
                Ok(())
            }
            AckOutcome::Done => {
                self.events.push_back(event);
                self.drain_queue();
                Ok(())
            }
        }
    }

    /// Removes the pending request `id` of the kind `packet_type` answers.
    fn take_request(&mut self, packet_type: PacketType, id: u16) -> Option<Request> {
        let index = self.requests.iter().position(|r| {
            r.packet_id().get() == id
                && matches!(
                    (r, packet_type),
                    (Request::Subscribe(_), PacketType::SubAck)
                        | (Request::Unsubscribe(_), PacketType::UnsubAck)
                )
        })?;
        self.requests.remove(index)
    }

    fn unknown(&mut self, packet_type: PacketType, packet_id: u16) -> ClientError {
        self.violation(ProtocolViolation::UnknownPacketId {
            packet_type,
            packet_id,
        })
    }

    fn on_suback(&mut self, ack: SubAck) -> Result<(), ClientError> {
        let id = ack.packet_id.get();
        let Some(Request::Subscribe(sub)) = self.take_request(PacketType::SubAck, id) else {
            return Err(self.unknown(PacketType::SubAck, id));
        };
        if sub.subscriptions.len() != ack.reason_codes.len() {
            return Err(self.violation(ProtocolViolation::ReasonCodeCount {
                packet_type: PacketType::SubAck,
                expected: sub.subscriptions.len(),
                got: ack.reason_codes.len(),
            }));
        }
        let results = ack
            .reason_codes
            .iter()
            .map(|code| match code {
                ReasonCode::Success => Ok(QoS::AtMostOnce),
                ReasonCode::GrantedQoS1 => Ok(QoS::AtLeastOnce),
                ReasonCode::GrantedQoS2 => Ok(QoS::ExactlyOnce),
                refused => Err(*refused),
            })
            .collect();
        self.events.push_back(Event::SubAck {
            packet_id: ack.packet_id,
            results,
        });
        Ok(())
    }

    fn on_unsuback(&mut self, ack: UnsubAck) -> Result<(), ClientError> {
        let id = ack.packet_id.get();
        let Some(Request::Unsubscribe(unsub)) = self.take_request(PacketType::UnsubAck, id) else {
            return Err(self.unknown(PacketType::UnsubAck, id));
        };
        let reason_codes = match self.options.version {
            ProtocolVersion::V311 => vec![ReasonCode::Success; unsub.filters.len()],
            ProtocolVersion::V5 => ack.reason_codes,
        };
        if reason_codes.len() != unsub.filters.len() {
            return Err(self.violation(ProtocolViolation::ReasonCodeCount {
                packet_type: PacketType::UnsubAck,
                expected: unsub.filters.len(),
                got: reason_codes.len(),
            }));
        }
        self.events.push_back(Event::UnsubAck {
            packet_id: ack.packet_id,
            reason_codes,
        });
        Ok(())
    }

    fn on_disconnect(&mut self, d: Disconnect) -> ClientError {
        self.input.clear();
        self.close(CloseReason::ServerDisconnect(ServerDisconnect {
            reason_code: d.reason_code,
            reason_string: d.properties.reason_string,
            server_reference: d.properties.server_reference,
        }))
    }

    /// Sends a small control packet. Only a server announcing an absurd
    /// maximum packet size (smaller than these few bytes) makes this fail;
    /// the packet is then not sent, as MQTT 5 §3.1.2.11.4 requires.
    fn send_ack(&mut self, packet: Packet) {
        let _ = self.send(&packet);
    }
}

/// The application message an outgoing PUBLISH carries.
fn message_of(publish: Publish) -> Option<Message> {
    Some(Message {
        topic: publish.topic?,
        payload: publish.payload,
        qos: publish.qos,
        retain: publish.retain,
        properties: publish.properties,
    })
}
