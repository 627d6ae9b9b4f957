//! PUBLISH and its acknowledgements PUBACK, PUBREC, PUBREL and PUBCOMP
//! (MQTT 3.1.1 §3.3–3.7, MQTT 5 §3.3–3.7).
//!
//! The payload is a zero-copy slice of the received packet. The codec does
//! not look inside it: checking a payload that claims to be UTF-8 (payload
//! format indicator 1) is the session's choice, as MQTT 5 makes it optional.

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    check_reason, read_reason, reason_trailer_len, write_reason_trailer, PacketId, PacketType,
    ProtocolVersion, QoS,
};
use crate::error::{DecodeError, EncodeError};
use crate::properties::{Properties, PropertyContext};
use crate::reason::ReasonCode;
use crate::strings::{self, Reader};
use crate::topic::TopicName;

/// A PUBLISH packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// `None` only in MQTT 5 when `properties.topic_alias` is set and the
    /// name is the one that alias was last given (resolved by the session).
    pub topic: Option<TopicName>,
    /// Present exactly when `qos` is above 0.
    pub packet_id: Option<PacketId>,
    /// MQTT 5 only.
    pub properties: Properties,
    pub payload: Bytes,
}

/// PUBACK, PUBREC, PUBREL or PUBCOMP: which one is the [`super::Packet`]
/// variant holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PubResponse {
    pub packet_id: PacketId,
    /// MQTT 5 only; 3.1.1 acknowledgements always mean success.
    pub reason_code: ReasonCode,
    /// MQTT 5 only.
    pub properties: Properties,
}

/// Checks PUBLISH's fixed-header flags: QoS 3 is malformed, and so is DUP
/// on a QoS 0 message (MQTT 5 §3.3.1.1).
pub(crate) fn check_flags(flags: u8) -> Result<QoS, DecodeError> {
    let qos = QoS::from_u8((flags >> 1) & 0x03).ok_or(DecodeError::InvalidQoS)?;
    if flags & 0x08 != 0 && qos == QoS::AtMostOnce {
        return Err(DecodeError::DupWithQoS0);
    }
    Ok(qos)
}

impl Publish {
    /// A QoS 0 message to `topic` with no properties.
    pub fn new(topic: TopicName, payload: impl Into<Bytes>) -> Self {
        Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: Some(topic),
            packet_id: None,
            properties: Properties::default(),
            payload: payload.into(),
        }
    }

    pub(crate) fn decode(
        flags: u8,
        r: &mut Reader,
        v: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let qos = check_flags(flags)?;
        let raw_topic = r.string()?;
        let packet_id = match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce | QoS::ExactlyOnce => Some(PacketId::read(r)?),
        };
        let properties = match v {
            ProtocolVersion::V5 => Properties::decode(r, PropertyContext::PUBLISH)?,
            ProtocolVersion::V311 => Properties::default(),
        };
        let topic = if raw_topic.is_empty() && v == ProtocolVersion::V5 {
            if properties.topic_alias.is_none() {
                return Err(DecodeError::EmptyTopicWithoutAlias);
            }
            None
        } else {
            let name = TopicName::new(raw_topic)
                .map_err(|source| DecodeError::InvalidTopicName { source })?;
            Some(name)
        };
        Ok(Publish {
            dup: flags & 0x08 != 0,
            qos,
            retain: flags & 0x01 != 0,
            topic,
            packet_id,
            properties,
            payload: r.rest(),
        })
    }

    pub(crate) fn flags(&self) -> u8 {
        let mut flags = (self.qos as u8) << 1;
        if self.dup {
            flags |= 0x08;
        }
        if self.retain {
            flags |= 0x01;
        }
        flags
    }

    pub(crate) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.dup && self.qos == QoS::AtMostOnce {
            return Err(EncodeError::DupWithQoS0);
        }
        if self.packet_id.is_some() != (self.qos != QoS::AtMostOnce) {
            return Err(EncodeError::PacketIdMismatch);
        }
        let mut len = match (&self.topic, v) {
            (Some(topic), _) => strings::string_len(topic.as_str())?,
            (None, ProtocolVersion::V5) if self.properties.topic_alias.is_some() => 2,
            (None, _) => return Err(EncodeError::MissingTopic),
        };
        if self.packet_id.is_some() {
            len += 2;
        }
        if v == ProtocolVersion::V5 {
            len += self.properties.encoded_len(PropertyContext::PUBLISH)?;
        }
        Ok(len + self.payload.len())
    }

    pub(crate) fn write_body(&self, v: ProtocolVersion, dst: &mut BytesMut) {
        strings::put_string(dst, self.topic.as_ref().map_or("", TopicName::as_str));
        if let Some(id) = self.packet_id {
            dst.put_u16(id.get());
        }
        if v == ProtocolVersion::V5 {
            self.properties.write(dst);
        }
        dst.put_slice(&self.payload);
    }
}

impl PubResponse {
    /// A successful acknowledgement without properties.
    pub fn new(packet_id: PacketId) -> Self {
        PubResponse {
            packet_id,
            reason_code: ReasonCode::Success,
            properties: Properties::default(),
        }
    }

    pub(crate) fn decode(
        r: &mut Reader,
        v: ProtocolVersion,
        packet_type: PacketType,
    ) -> Result<Self, DecodeError> {
        let packet_id = PacketId::read(r)?;
        if v == ProtocolVersion::V311 || r.is_empty() {
            return Ok(PubResponse::new(packet_id));
        }
        let reason_code = read_reason(r, packet_type)?;
        let properties = if r.is_empty() {
            Properties::default()
        } else {
            Properties::decode(r, PropertyContext::Packet(packet_type))?
        };
        Ok(PubResponse {
            packet_id,
            reason_code,
            properties,
        })
    }

    pub(crate) fn body_len(
        &self,
        v: ProtocolVersion,
        packet_type: PacketType,
    ) -> Result<usize, EncodeError> {
        check_reason(self.reason_code, packet_type)?;
        if v == ProtocolVersion::V311 {
            return Ok(2);
        }
        Ok(2 + reason_trailer_len(
            self.reason_code,
            &self.properties,
            PropertyContext::Packet(packet_type),
        )?)
    }

    pub(crate) fn write_body(&self, v: ProtocolVersion, dst: &mut BytesMut) {
        dst.put_u16(self.packet_id.get());
        if v != ProtocolVersion::V311 {
            write_reason_trailer(self.reason_code, &self.properties, dst);
        }
    }
}
