//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (MQTT 3.1.1 §3.8–3.11,
//! MQTT 5 §3.8–3.11), with subscription options.
//!
//! Every topic filter is validated on decode, shared subscriptions included;
//! a packet that lists no filter is refused (protocol error). How many
//! filters a client may hold is a session limit, not a codec rule.

use bytes::{BufMut, BytesMut};

use super::{check_reason, read_reason, PacketId, PacketType, ProtocolVersion, QoS};
use crate::error::{DecodeError, EncodeError};
use crate::properties::{Properties, PropertyContext};
use crate::reason::ReasonCode;
use crate::strings::{self, Reader};
use crate::topic::TopicFilter;

/// When retained messages are sent for a new subscription (MQTT 5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum RetainHandling {
    /// Send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// Send them only if the subscription did not exist yet.
    SendAtSubscribeIfNew = 1,
    /// Do not send them.
    DoNotSend = 2,
}

/// The options byte of each SUBSCRIBE entry; 3.1.1 has only `qos`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SubscriptionOptions {
    /// The maximum QoS the client accepts on this subscription.
    pub qos: QoS,
    /// MQTT 5: do not deliver the client's own messages back to it.
    pub no_local: bool,
    /// MQTT 5: keep the RETAIN flag of forwarded messages.
    pub retain_as_published: bool,
    /// MQTT 5.
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Options with this QoS and everything else at its default.
    pub fn new(qos: QoS) -> Self {
        SubscriptionOptions {
            qos,
            ..Self::default()
        }
    }

    fn decode(byte: u8, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let invalid = DecodeError::InvalidSubscriptionOptions { options: byte };
        let reserved = match v {
            ProtocolVersion::V311 => 0xFC,
            ProtocolVersion::V5 => 0xC0,
        };
        if byte & reserved != 0 {
            return Err(invalid);
        }
        let qos = QoS::from_u8(byte & 0x03).ok_or(invalid)?;
        let retain_handling = match (byte >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendAtSubscribeIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::InvalidRetainHandling),
        };
        Ok(SubscriptionOptions {
            qos,
            no_local: byte & 0x04 != 0,
            retain_as_published: byte & 0x08 != 0,
            retain_handling,
        })
    }

    fn to_byte(self, v: ProtocolVersion) -> u8 {
        let mut byte = self.qos as u8;
        if v == ProtocolVersion::V5 {
            if self.no_local {
                byte |= 0x04;
            }
            if self.retain_as_published {
                byte |= 0x08;
            }
            byte |= (self.retain_handling as u8) << 4;
        }
        byte
    }
}

/// One entry of a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Subscription {
    pub filter: TopicFilter,
    pub options: SubscriptionOptions,
}

/// A SUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub packet_id: PacketId,
    /// MQTT 5 only: at most one subscription identifier, user properties.
    pub properties: Properties,
    /// Never empty.
    pub subscriptions: Vec<Subscription>,
}

/// A SUBACK packet: one reason code per subscription, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub packet_id: PacketId,
    /// MQTT 5 only.
    pub properties: Properties,
    /// Never empty; in 3.1.1 every failure is sent as 0x80.
    pub reason_codes: Vec<ReasonCode>,
}

/// An UNSUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub packet_id: PacketId,
    /// MQTT 5 only.
    pub properties: Properties,
    /// Never empty.
    pub filters: Vec<TopicFilter>,
}

/// An UNSUBACK packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    pub packet_id: PacketId,
    /// MQTT 5 only.
    pub properties: Properties,
    /// MQTT 5 only (one per filter, never empty); 3.1.1 has no payload.
    pub reason_codes: Vec<ReasonCode>,
}

fn read_filter(r: &mut Reader) -> Result<TopicFilter, DecodeError> {
    TopicFilter::new(r.string()?).map_err(|source| DecodeError::InvalidTopicFilter { source })
}

fn read_properties(
    r: &mut Reader,
    v: ProtocolVersion,
    packet_type: PacketType,
) -> Result<Properties, DecodeError> {
    match v {
        ProtocolVersion::V5 => Properties::decode(r, PropertyContext::Packet(packet_type)),
        ProtocolVersion::V311 => Ok(Properties::default()),
    }
}

fn properties_len(
    p: &Properties,
    v: ProtocolVersion,
    packet_type: PacketType,
) -> Result<usize, EncodeError> {
    match v {
        ProtocolVersion::V5 => p.encoded_len(PropertyContext::Packet(packet_type)),
        ProtocolVersion::V311 => Ok(0),
    }
}

fn write_properties(p: &Properties, v: ProtocolVersion, dst: &mut BytesMut) {
    if v == ProtocolVersion::V5 {
        p.write(dst);
    }
}

impl Subscribe {
    pub(crate) fn decode(r: &mut Reader, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = PacketId::read(r)?;
        let properties = read_properties(r, v, PacketType::Subscribe)?;
        let mut subscriptions = Vec::new();
        while !r.is_empty() {
            let filter = read_filter(r)?;
            let options = SubscriptionOptions::decode(r.u8()?, v)?;
            if options.no_local && filter.is_shared() {
                return Err(DecodeError::NoLocalOnSharedSubscription);
            }
            subscriptions.push(Subscription { filter, options });
        }
        if subscriptions.is_empty() {
            return Err(DecodeError::NoTopicFilters {
                packet_type: PacketType::Subscribe,
            });
        }
        Ok(Subscribe {
            packet_id,
            properties,
            subscriptions,
        })
    }

    pub(crate) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.subscriptions.is_empty() {
            return Err(EncodeError::NoTopicFilters {
                packet_type: PacketType::Subscribe,
            });
        }
        let mut len = 2 + properties_len(&self.properties, v, PacketType::Subscribe)?;
        for s in &self.subscriptions {
            if v == ProtocolVersion::V5 && s.options.no_local && s.filter.is_shared() {
                return Err(EncodeError::NoLocalOnSharedSubscription);
            }
            len += strings::string_len(s.filter.as_str())? + 1;
        }
        Ok(len)
    }

    pub(crate) fn write_body(&self, v: ProtocolVersion, dst: &mut BytesMut) {
        dst.put_u16(self.packet_id.get());
        write_properties(&self.properties, v, dst);
        for s in &self.subscriptions {
            strings::put_string(dst, s.filter.as_str());
            dst.put_u8(s.options.to_byte(v));
        }
    }
}

impl SubAck {
    pub(crate) fn decode(r: &mut Reader, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = PacketId::read(r)?;
        let properties = read_properties(r, v, PacketType::SubAck)?;
        let mut reason_codes = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            let code = match v {
                ProtocolVersion::V5 => read_reason(r, PacketType::SubAck)?,
                ProtocolVersion::V311 => {
                    let code = r.u8()?;
                    ReasonCode::from_v311_suback(code).ok_or(DecodeError::InvalidReasonCode {
                        packet_type: PacketType::SubAck,
                        code,
                    })?
                }
            };
            reason_codes.push(code);
        }
        if reason_codes.is_empty() {
            return Err(DecodeError::NoReasonCodes {
                packet_type: PacketType::SubAck,
            });
        }
        Ok(SubAck {
            packet_id,
            properties,
            reason_codes,
        })
    }

    pub(crate) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.reason_codes.is_empty() {
            return Err(EncodeError::NoReasonCodes {
                packet_type: PacketType::SubAck,
            });
        }
        for code in &self.reason_codes {
            check_reason(*code, PacketType::SubAck)?;
        }
        Ok(2 + properties_len(&self.properties, v, PacketType::SubAck)? + self.reason_codes.len())
    }

    pub(crate) fn write_body(&self, v: ProtocolVersion, dst: &mut BytesMut) {
        dst.put_u16(self.packet_id.get());
        write_properties(&self.properties, v, dst);
        for code in &self.reason_codes {
            dst.put_u8(match v {
                ProtocolVersion::V5 => code.as_u8(),
                ProtocolVersion::V311 => code.to_v311_suback(),
            });
        }
    }
}

impl Unsubscribe {
    pub(crate) fn decode(r: &mut Reader, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = PacketId::read(r)?;
        let properties = read_properties(r, v, PacketType::Unsubscribe)?;
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(read_filter(r)?);
        }
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilters {
                packet_type: PacketType::Unsubscribe,
            });
        }
        Ok(Unsubscribe {
            packet_id,
            properties,
            filters,
        })
    }

    pub(crate) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::NoTopicFilters {
                packet_type: PacketType::Unsubscribe,
            });
        }
        let mut len = 2 + properties_len(&self.properties, v, PacketType::Unsubscribe)?;
        for f in &self.filters {
            len += strings::string_len(f.as_str())?;
        }
        Ok(len)
    }

    pub(crate) fn write_body(&self, v: ProtocolVersion, dst: &mut BytesMut) {
        dst.put_u16(self.packet_id.get());
        write_properties(&self.properties, v, dst);
        for f in &self.filters {
            strings::put_string(dst, f.as_str());
        }
    }
}

impl UnsubAck {
    pub(crate) fn decode(r: &mut Reader, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = PacketId::read(r)?;
        if v == ProtocolVersion::V311 {
            return Ok(UnsubAck {
                packet_id,
                properties: Properties::default(),
                reason_codes: Vec::new(),
            });
        }
        let properties = Properties::decode(r, PropertyContext::Packet(PacketType::UnsubAck))?;
        let mut reason_codes = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            reason_codes.push(read_reason(r, PacketType::UnsubAck)?);
        }
        if reason_codes.is_empty() {
            return Err(DecodeError::NoReasonCodes {
                packet_type: PacketType::UnsubAck,
            });
        }
        Ok(UnsubAck {
            packet_id,
            properties,
            reason_codes,
        })
    }

    pub(crate) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        for code in &self.reason_codes {
            check_reason(*code, PacketType::UnsubAck)?;
        }
        match v {
            ProtocolVersion::V311 => Ok(2),
            ProtocolVersion::V5 => {
                if self.reason_codes.is_empty() {
                    return Err(EncodeError::NoReasonCodes {
                        packet_type: PacketType::UnsubAck,
                    });
                }
                let props = self
                    .properties
                    .encoded_len(PropertyContext::Packet(PacketType::UnsubAck))?;
                Ok(2 + props + self.reason_codes.len())
            }
        }
    }

    pub(crate) fn write_body(&self, v: ProtocolVersion, dst: &mut BytesMut) {
        dst.put_u16(self.packet_id.get());
        if v == ProtocolVersion::V5 {
            self.properties.write(dst);
            for code in &self.reason_codes {
                dst.put_u8(code.as_u8());
            }
        }
    }
}
