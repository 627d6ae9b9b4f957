//! CONNECT and CONNACK (MQTT 3.1.1 §3.1–3.2, MQTT 5 §3.1–3.2).
//!
//! CONNECT is the one packet that carries its own protocol version: the
//! protocol name must be `MQTT` and the level 4 (3.1.1) or 5 (5.0). Level 3
//! (MQTT 3.1, protocol name `MQIsdp`) is refused as an unsupported version.

use bytes::{BufMut, Bytes, BytesMut};

use super::{check_reason, PacketType, ProtocolVersion, QoS};
use crate::error::{DecodeError, EncodeError};
use crate::properties::{Properties, PropertyContext};
use crate::reason::ReasonCode;
use crate::strings::{self, Reader};
use crate::topic::TopicName;

const PROTOCOL_NAME: &str = "MQTT";

/// A CONNECT packet: the first packet of every connection.
///
/// `client_id` and `username` are claims made by the peer, not identities:
/// the gateway binds them to the authenticated certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    pub protocol_version: ProtocolVersion,
    /// "Clean Session" in 3.1.1.
    pub clean_start: bool,
    /// Seconds; 0 turns keep-alive off.
    pub keep_alive: u16,
    /// May be empty (the server then assigns one).
    pub client_id: String,
    pub will: Option<LastWill>,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    /// MQTT 5 only.
    pub properties: Properties,
}

/// The will message of a CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    pub topic: TopicName,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5 only: will delay, expiry, content type and the like.
    pub properties: Properties,
}

/// A CONNACK packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    /// Sent as a 3.1.1 return code in 3.1.1 (see
    /// [`ReasonCode::to_v311_connack`]).
    pub reason_code: ReasonCode,
    /// MQTT 5 only.
    pub properties: Properties,
}

impl Connect {
    pub(crate) fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let name = r.binary()?;
        if name.as_ref() != PROTOCOL_NAME.as_bytes() {
            return Err(DecodeError::InvalidProtocolName);
        }
        let level = r.u8()?;
        let version = ProtocolVersion::from_level(level)
            .ok_or(DecodeError::UnsupportedProtocolVersion { level })?;
        let flags = r.u8()?;
        if flags & 0x01 != 0 {
            return Err(DecodeError::ReservedConnectFlag);
        }
        let clean_start = flags & 0x02 != 0;
        let will_flag = flags & 0x04 != 0;
        let will_qos = QoS::from_u8((flags >> 3) & 0x03).ok_or(DecodeError::InvalidWillQoS)?;
        let will_retain = flags & 0x20 != 0;
        let has_password = flags & 0x40 != 0;
        let has_username = flags & 0x80 != 0;
        if !will_flag && (will_qos != QoS::AtMostOnce || will_retain) {
            return Err(DecodeError::WillFlagsWithoutWill);
        }
        if version == ProtocolVersion::V311 && has_password && !has_username {
            return Err(DecodeError::PasswordWithoutUsername);
        }
        let keep_alive = r.u16()?;
        let properties = match version {
            ProtocolVersion::V5 => Properties::decode(r, PropertyContext::CONNECT)?,
            ProtocolVersion::V311 => Properties::default(),
        };
        let client_id = r.string()?;
        let will = if will_flag {
            let properties = match version {
                ProtocolVersion::V5 => Properties::decode(r, PropertyContext::Will)?,
                ProtocolVersion::V311 => Properties::default(),
            };
            let topic = TopicName::new(r.string()?)
                .map_err(|source| DecodeError::InvalidTopicName { source })?;
            let payload = r.binary()?;
            Some(LastWill {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = if has_username {
            Some(r.string()?)
        } else {
            None
        };
        let password = if has_password {
            Some(r.binary()?)
        } else {
            None
        };
        Ok(Connect {
            protocol_version: version,
            clean_start,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    pub(crate) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        if self.protocol_version != v {
            return Err(EncodeError::VersionMismatch {
                connect: self.protocol_version,
                requested: v,
            });
        }
        if v == ProtocolVersion::V311 && self.password.is_some() && self.username.is_none() {
            return Err(EncodeError::PasswordWithoutUsername);
        }
        // Protocol name, level, flags, keep alive.
        let mut len = 2 + PROTOCOL_NAME.len() + 1 + 1 + 2;
        if v == ProtocolVersion::V5 {
            len += self.properties.encoded_len(PropertyContext::CONNECT)?;
        }
        len += strings::string_len(&self.client_id)?;
        if let Some(will) = &self.will {
            if v == ProtocolVersion::V5 {
                len += will.properties.encoded_len(PropertyContext::Will)?;
            }
            len += strings::string_len(will.topic.as_str())?;
            len += strings::binary_len(&will.payload)?;
        }
        if let Some(username) = &self.username {
            len += strings::string_len(username)?;
        }
        if let Some(password) = &self.password {
            len += strings::binary_len(password)?;
        }
        Ok(len)
    }

    fn flags(&self) -> u8 {
        let mut flags = 0;
        if self.clean_start {
            flags |= 0x02;
        }
        if let Some(will) = &self.will {
            flags |= 0x04 | (will.qos as u8) << 3;
            if will.retain {
                flags |= 0x20;
            }
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if self.username.is_some() {
            flags |= 0x80;
        }
        flags
    }

    pub(crate) fn write_body(&self, v: ProtocolVersion, dst: &mut BytesMut) {
        strings::put_string(dst, PROTOCOL_NAME);
        dst.put_u8(v.level());
        dst.put_u8(self.flags());
        dst.put_u16(self.keep_alive);
        if v == ProtocolVersion::V5 {
            self.properties.write(dst);
        }
        strings::put_string(dst, &self.client_id);
        if let Some(will) = &self.will {
            if v == ProtocolVersion::V5 {
                will.properties.write(dst);
            }
            strings::put_string(dst, will.topic.as_str());
            strings::put_binary(dst, &will.payload);
        }
        if let Some(username) = &self.username {
            strings::put_string(dst, username);
        }
        if let Some(password) = &self.password {
            strings::put_binary(dst, password);
        }
    }
}

impl ConnAck {
    pub(crate) fn decode(r: &mut Reader, v: ProtocolVersion) -> Result<Self, DecodeError> {
        let flags = r.u8()?;
        if flags & 0xFE != 0 {
            return Err(DecodeError::InvalidConnAckFlags);
        }
        let session_present = flags & 0x01 != 0;
        let reason_code = match v {
            ProtocolVersion::V5 => super::read_reason(r, PacketType::ConnAck)?,
            ProtocolVersion::V311 => {
                let code = r.u8()?;
                ReasonCode::from_v311_connack(code).ok_or(DecodeError::InvalidReasonCode {
                    packet_type: PacketType::ConnAck,
                    code,
                })?
            }
        };
        if session_present && reason_code != ReasonCode::Success {
            return Err(DecodeError::SessionPresentWithError);
        }
        let properties = match v {
            ProtocolVersion::V5 => Properties::decode(r, PropertyContext::CONNACK)?,
            ProtocolVersion::V311 => Properties::default(),
        };
        Ok(ConnAck {
            session_present,
            reason_code,
            properties,
        })
    }

    pub(crate) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        check_reason(self.reason_code, PacketType::ConnAck)?;
        if self.session_present && self.reason_code != ReasonCode::Success {
            return Err(EncodeError::SessionPresentWithError);
        }
        match v {
            ProtocolVersion::V5 => Ok(2 + self.properties.encoded_len(PropertyContext::CONNACK)?),
            ProtocolVersion::V311 => Ok(2),
        }
    }

    pub(crate) fn write_body(&self, v: ProtocolVersion, dst: &mut BytesMut) {
        dst.put_u8(u8::from(self.session_present));
        match v {
            ProtocolVersion::V5 => {
                dst.put_u8(self.reason_code.as_u8());
                self.properties.write(dst);
            }
            ProtocolVersion::V311 => dst.put_u8(self.reason_code.to_v311_connack()),
        }
    }
}
