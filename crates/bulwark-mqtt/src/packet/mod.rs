//! The fifteen MQTT control packets as one [`Packet`] enum, the small types
//! they share (protocol version, QoS, packet identifier, packet type), and
//! the framing common to all of them: a fixed header of one type-and-flags
//! byte and a Remaining Length, then the body.
//!
//! Each packet's body is decoded and encoded in its own module. Encoding
//! first computes the exact length, which also validates everything, and
//! only then writes, so a failed encode leaves the destination untouched.

use std::fmt;
use std::num::NonZeroU16;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::strings::Reader;
use crate::varint;

mod connect;
mod control;
mod encoder;
mod publish;
mod subscribe;

pub use connect::{ConnAck, Connect, LastWill};
pub use control::{Auth, Disconnect};
pub use encoder::Encoder;
pub use publish::{PubResponse, Publish};
pub use subscribe::{
    RetainHandling, SubAck, Subscribe, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe,
};

/// The protocol a connection speaks, fixed by its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolVersion {
    /// MQTT 3.1.1, protocol level 4.
    V311,
    /// MQTT 5.0, protocol level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte of CONNECT.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V311 => 4,
            ProtocolVersion::V5 => 5,
        }
    }

    /// The version for a protocol level; 3 (MQTT 3.1) is not supported.
    pub fn from_level(level: u8) -> Option<Self> {
        match level {
            4 => Some(ProtocolVersion::V311),
            5 => Some(ProtocolVersion::V5),
            _ => None,
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtocolVersion::V311 => "MQTT 3.1.1",
            ProtocolVersion::V5 => "MQTT 5",
        })
    }
}

/// Quality of service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    #[default]
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    /// The QoS for its two-bit wire value; 3 is not one.
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// A packet identifier; never zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PacketId(NonZeroU16);

impl PacketId {
    /// `None` for zero, which MQTT forbids.
    pub fn new(value: u16) -> Option<Self> {
        NonZeroU16::new(value).map(PacketId)
    }

    pub fn get(self) -> u16 {
        self.0.get()
    }

    pub(crate) fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        Self::new(r.u16()?).ok_or(DecodeError::ZeroPacketId)
    }
}

impl From<NonZeroU16> for PacketId {
    fn from(value: NonZeroU16) -> Self {
        PacketId(value)
    }
}

macro_rules! packet_types {
    ($($name:ident = $value:literal, $wire:literal;)*) => {
        /// The control packet type (the high nibble of the first byte).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum PacketType {
            $($name = $value,)*
        }

        impl PacketType {
            /// The type for a high nibble; 0 is reserved.
            pub fn from_u8(value: u8) -> Option<Self> {
                match value {
                    $($value => Some(PacketType::$name),)*
                    _ => None,
                }
            }

            /// The name the specification uses.
            pub fn name(self) -> &'static str {
                match self {
                    $(PacketType::$name => $wire,)*
                }
            }
        }
    };
}

packet_types! {
    Connect = 1, "CONNECT";
    ConnAck = 2, "CONNACK";
    Publish = 3, "PUBLISH";
    PubAck = 4, "PUBACK";
    PubRec = 5, "PUBREC";
    PubRel = 6, "PUBREL";
    PubComp = 7, "PUBCOMP";
    Subscribe = 8, "SUBSCRIBE";
    SubAck = 9, "SUBACK";
    Unsubscribe = 10, "UNSUBSCRIBE";
    UnsubAck = 11, "UNSUBACK";
    PingReq = 12, "PINGREQ";
    PingResp = 13, "PINGRESP";
    Disconnect = 14, "DISCONNECT";
    Auth = 15, "AUTH";
}

impl PacketType {
    /// Whether a client may send this packet (a server receiving any other
    /// must close the connection).
    pub fn client_may_send(self) -> bool {
        !matches!(
            self,
            PacketType::ConnAck | PacketType::SubAck | PacketType::UnsubAck | PacketType::PingResp
        )
    }

    /// Whether a server may send this packet.
    pub fn server_may_send(self) -> bool {
        !matches!(
            self,
            PacketType::Connect
                | PacketType::Subscribe
                | PacketType::Unsubscribe
                | PacketType::PingReq
        )
    }

    /// Checks the low nibble of the first byte (MQTT 5 §2.1.3): PUBREL,
    /// SUBSCRIBE and UNSUBSCRIBE have 0b0010, PUBLISH carries DUP, QoS and
    /// RETAIN, every other packet 0.
    pub(crate) fn check_flags(self, flags: u8) -> Result<(), DecodeError> {
        let expected = match self {
            PacketType::Publish => return publish::check_flags(flags).map(drop),
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => 0b0010,
            _ => 0,
        };
        if flags == expected {
            Ok(())
        } else {
            Err(DecodeError::InvalidFixedHeaderFlags {
                packet_type: self,
                flags,
            })
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Box<Connect>),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(PubResponse),
    PubRec(PubResponse),
    PubRel(PubResponse),
    PubComp(PubResponse),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(UnsubAck),
    PingReq,
    PingResp,
    Disconnect(Disconnect),
    /// MQTT 5 only.
    Auth(Auth),
}

impl Packet {
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    /// Encodes this packet for `version`, limited only by MQTT's own maximum
    /// packet size; use an [`Encoder`] to respect the peer's maximum.
    ///
    /// In MQTT 3.1.1, properties, subscription options other than QoS, and
    /// reason codes of acknowledgements are not sent (3.1.1 cannot express
    /// them); CONNACK and SUBACK codes become 3.1.1 return codes.
    pub fn encode(&self, version: ProtocolVersion, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.encode_limited(version, crate::MAX_PACKET_SIZE, dst)
    }

    /// Size of the encoded packet, fixed header included.
    pub fn encoded_len(&self, version: ProtocolVersion) -> Result<usize, EncodeError> {
        self.lengths(version).map(|(total, _)| total)
    }

    /// The total size and the Remaining Length, after validating everything.
    fn lengths(&self, version: ProtocolVersion) -> Result<(usize, u32), EncodeError> {
        let body = self.body_len(version)?;
        let body32 = u32::try_from(body)
            .ok()
            .filter(|&b| b <= varint::MAX)
            .ok_or(EncodeError::TooLarge { size: body })?;
        Ok((1 + varint::len(body32) + body, body32))
    }

    pub(crate) fn encode_limited(
        &self,
        version: ProtocolVersion,
        max_packet_size: u32,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let (total, body) = self.lengths(version)?;
        if u64::try_from(total).unwrap_or(u64::MAX) > u64::from(max_packet_size) {
            return Err(EncodeError::PacketTooLarge {
                size: total,
                max: max_packet_size,
            });
        }
        let start = dst.len();
        dst.reserve(total);
        dst.put_u8(self.first_byte());
        varint::write(body, dst);
        self.write_body(version, dst);
        debug_assert_eq!(dst.len() - start, total, "length and writer disagree");
        Ok(())
    }

    fn first_byte(&self) -> u8 {
        let flags = match self {
            Packet::Publish(p) => p.flags(),
            Packet::PubRel(_) | Packet::Subscribe(_) | Packet::Unsubscribe(_) => 0b0010,
            _ => 0,
        };
        (self.packet_type() as u8) << 4 | flags
    }

    fn body_len(&self, v: ProtocolVersion) -> Result<usize, EncodeError> {
        match self {
            Packet::Connect(p) => p.body_len(v),
            Packet::ConnAck(p) => p.body_len(v),
            Packet::Publish(p) => p.body_len(v),
            Packet::PubAck(p) => p.body_len(v, PacketType::PubAck),
            Packet::PubRec(p) => p.body_len(v, PacketType::PubRec),
            Packet::PubRel(p) => p.body_len(v, PacketType::PubRel),
            Packet::PubComp(p) => p.body_len(v, PacketType::PubComp),
            Packet::Subscribe(p) => p.body_len(v),
            Packet::SubAck(p) => p.body_len(v),
            Packet::Unsubscribe(p) => p.body_len(v),
            Packet::UnsubAck(p) => p.body_len(v),
            Packet::PingReq | Packet::PingResp => Ok(0),
            Packet::Disconnect(p) => p.body_len(v),
            Packet::Auth(p) => p.body_len(v),
        }
    }

    fn write_body(&self, v: ProtocolVersion, dst: &mut BytesMut) {
        match self {
            Packet::Connect(p) => p.write_body(v, dst),
            Packet::ConnAck(p) => p.write_body(v, dst),
            Packet::Publish(p) => p.write_body(v, dst),
            Packet::PubAck(p) | Packet::PubRec(p) | Packet::PubRel(p) | Packet::PubComp(p) => {
                p.write_body(v, dst)
            }
            Packet::Subscribe(p) => p.write_body(v, dst),
            Packet::SubAck(p) => p.write_body(v, dst),
            Packet::Unsubscribe(p) => p.write_body(v, dst),
            Packet::UnsubAck(p) => p.write_body(v, dst),
            Packet::PingReq | Packet::PingResp => {}
            Packet::Disconnect(p) => p.write_body(v, dst),
            Packet::Auth(p) => p.write_body(v, dst),
        }
    }

    /// Decodes one packet's body; the fixed header's flags were checked.
    /// CONNECT determines its own version, which must match `version` when
    /// that is already known; every other packet needs a known version.
    pub(crate) fn decode(
        packet_type: PacketType,
        flags: u8,
        body: Bytes,
        version: Option<ProtocolVersion>,
    ) -> Result<Self, DecodeError> {
        let mut r = Reader::new(body);
        let v = match (packet_type, version) {
            (PacketType::Connect, _) => {
                let connect = Connect::decode(&mut r)?;
                if version.is_some_and(|v| v != connect.protocol_version) {
                    return Err(DecodeError::UnsupportedProtocolVersion {
                        level: connect.protocol_version.level(),
                    });
                }
                r.finish()?;
                return Ok(Packet::Connect(Box::new(connect)));
            }
            (_, Some(v)) => v,
            (_, None) => return Err(DecodeError::ExpectedConnect { packet_type }),
        };
        let packet = match packet_type {
            PacketType::Connect => return Err(DecodeError::ExpectedConnect { packet_type }),
            PacketType::ConnAck => Packet::ConnAck(ConnAck::decode(&mut r, v)?),
            PacketType::Publish => Packet::Publish(Publish::decode(flags, &mut r, v)?),
            PacketType::PubAck => Packet::PubAck(PubResponse::decode(&mut r, v, packet_type)?),
            PacketType::PubRec => Packet::PubRec(PubResponse::decode(&mut r, v, packet_type)?),
            PacketType::PubRel => Packet::PubRel(PubResponse::decode(&mut r, v, packet_type)?),
            PacketType::PubComp => Packet::PubComp(PubResponse::decode(&mut r, v, packet_type)?),
            PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(&mut r, v)?),
            PacketType::SubAck => Packet::SubAck(SubAck::decode(&mut r, v)?),
            PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(&mut r, v)?),
            PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(&mut r, v)?),
            PacketType::PingReq => Packet::PingReq,
            PacketType::PingResp => Packet::PingResp,
            PacketType::Disconnect => Packet::Disconnect(Disconnect::decode(&mut r, v)?),
            PacketType::Auth => Packet::Auth(Auth::decode(&mut r, v)?),
        };
        r.finish()?;
        Ok(packet)
    }
}

/// Reads a reason code and checks that MQTT 5 allows it in `packet_type`.
pub(crate) fn read_reason(
    r: &mut Reader,
    packet_type: PacketType,
) -> Result<crate::ReasonCode, DecodeError> {
    let code = r.u8()?;
    crate::ReasonCode::try_from(code)
        .ok()
        .filter(|rc| rc.allowed_in(packet_type))
        .ok_or(DecodeError::InvalidReasonCode { packet_type, code })
}

/// Checks that MQTT 5 allows `code` in `packet_type`, for encoding.
pub(crate) fn check_reason(
    code: crate::ReasonCode,
    packet_type: PacketType,
) -> Result<(), EncodeError> {
    if code.allowed_in(packet_type) {
        Ok(())
    } else {
        Err(EncodeError::ReasonCodeNotAllowed { packet_type, code })
    }
}

/// Length of the MQTT 5 trailer "reason code, then properties" shared by
/// DISCONNECT and the PUBACK family: both may be left out when the code is
/// Success and there are no properties, and the code alone may stand when
/// there are no properties.
pub(crate) fn reason_trailer_len(
    code: crate::ReasonCode,
    properties: &crate::properties::Properties,
    context: crate::properties::PropertyContext,
) -> Result<usize, EncodeError> {
    if properties.is_empty() {
        return Ok(usize::from(code != crate::ReasonCode::Success));
    }
    Ok(1 + properties.encoded_len(context)?)
}

/// Writes the trailer measured by [`reason_trailer_len`].
pub(crate) fn write_reason_trailer(
    code: crate::ReasonCode,
    properties: &crate::properties::Properties,
    dst: &mut BytesMut,
) {
    if properties.is_empty() {
        if code != crate::ReasonCode::Success {
            dst.put_u8(code.as_u8());
        }
        return;
    }
    dst.put_u8(code.as_u8());
    properties.write(dst);
}
