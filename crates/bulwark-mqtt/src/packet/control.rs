//! DISCONNECT and AUTH (MQTT 3.1.1 §3.14, MQTT 5 §3.14–3.15). PINGREQ and
//! PINGRESP have no body and need no module.
//!
//! Both MQTT 5 packets may leave out their reason code and properties when
//! the code is success and there are no properties. DISCONNECT may also send
//! a reason code alone (§3.14.2.2.1); AUTH may not (§3.15.2.2.1 has no such
//! rule), so an AUTH with a Remaining Length of 1 is refused as truncated.
//! The encoder writes the shortest allowed form.

use bytes::{BufMut, BytesMut};

use super::{
    check_reason, read_reason, reason_trailer_len, write_reason_trailer, PacketType,
    ProtocolVersion,
};
use crate::error::{DecodeError, EncodeError};
use crate::properties::{Properties, PropertyContext};
use crate::reason::ReasonCode;
use crate::strings::Reader;

/// A DISCONNECT packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disconnect {
    /// MQTT 5 only; [`ReasonCode::NORMAL_DISCONNECTION`] by default.
    pub reason_code: ReasonCode,
    /// MQTT 5 only.
    pub properties: Properties,
}

/// An AUTH packet (MQTT 5 only).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    pub reason_code: ReasonCode,
    pub properties: Properties,
}

/// Reads the optional reason code and properties of DISCONNECT or AUTH;
/// `reason_alone` says whether the properties may be left out after a
/// reason code.
fn decode_tail(
    r: &mut Reader,
    packet_type: PacketType,
    reason_alone: bool,
) -> Result<(ReasonCode, Properties), DecodeError> {
    if r.is_empty() {
        return Ok((ReasonCode::Success, Properties::default()));
    }
    let reason_code = read_reason(r, packet_type)?;
    let properties = if reason_alone && r.is_empty() {
        Properties::default()
    } else {
        Properties::decode(r, PropertyContext::Packet(packet_type))?
    };
    Ok((reason_code, properties))
}

impl Disconnect {
    pub(crate) fn decode(r: &mut Reader, v: ProtocolVersion) -> Result<Self, DecodeError> {
        match v {
            ProtocolVersion::V311 => Ok(Disconnect::default()),
            ProtocolVersion::V5 => {
                let (reason_code, properties) = decode_tail(r, PacketType::Disconnect, true)?;
                Ok(Disconnect {
                    reason_code,
                    properties,
                })
            }
        }
    }

    pub(crate) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        check_reason(self.reason_code, PacketType::Disconnect)?;
        if v == ProtocolVersion::V311 {
            return Ok(0);
        }
        reason_trailer_len(
            self.reason_code,
            &self.properties,
            PropertyContext::DISCONNECT,
        )
    }

    pub(crate) fn write_body(&self, v: ProtocolVersion, dst: &mut BytesMut) {
        if v != ProtocolVersion::V311 {
            write_reason_trailer(self.reason_code, &self.properties, dst);
        }
    }
}

impl Auth {
    pub(crate) fn decode(r: &mut Reader, v: ProtocolVersion) -> Result<Self, DecodeError> {
        if v == ProtocolVersion::V311 {
            return Err(DecodeError::InvalidPacketType {
                packet_type: PacketType::Auth as u8,
            });
        }
        let (reason_code, properties) = decode_tail(r, PacketType::Auth, false)?;
        Ok(Auth {
            reason_code,
            properties,
        })
    }

    pub(crate) fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        if v == ProtocolVersion::V311 {
            return Err(EncodeError::NotInVersion {
                packet_type: PacketType::Auth,
                version: v,
            });
        }
        check_reason(self.reason_code, PacketType::Auth)?;
        if self.reason_code == ReasonCode::Success && self.properties.is_empty() {
            return Ok(0);
        }
        Ok(1 + self.properties.encoded_len(PropertyContext::AUTH)?)
    }

    pub(crate) fn write_body(&self, _v: ProtocolVersion, dst: &mut BytesMut) {
        if self.reason_code == ReasonCode::Success && self.properties.is_empty() {
            return;
        }
        dst.put_u8(self.reason_code.as_u8());
        self.properties.write(dst);
    }
}
