//! The decoder half of a connection: frames packets out of a byte buffer
//! that the I/O layer fills, without ever reserving memory itself.
//!
//! The fixed header is checked as soon as its bytes arrive: packet type and
//! flags from the first byte, then the Remaining Length against the maximum
//! packet size, so a peer declaring a 256 MB packet is refused after at most
//! five bytes and before anything is buffered or allocated for it. Only when
//! the whole packet is in the buffer is it split off (zero-copy) and parsed.

use bytes::{Buf, BytesMut};

use crate::error::DecodeError;
use crate::packet::{Packet, PacketType, ProtocolVersion};
use crate::varint;

/// Decodes packets for one connection.
///
/// A server creates it with [`Decoder::new`]: the protocol version is
/// unknown, the first packet must be CONNECT, and the CONNECT decides the
/// version (3.1.1 or 5) for the rest of the connection. A client knows its
/// version up front and uses [`Decoder::with_version`].
///
/// After an error the connection must be closed: the buffer's content is
/// then unspecified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoder {
    version: Option<ProtocolVersion>,
    max_packet_size: u32,
}

impl Decoder {
    /// A decoder that expects CONNECT first and refuses packets larger than
    /// `max_packet_size` bytes (fixed header included).
    pub fn new(max_packet_size: u32) -> Self {
        Decoder {
            version: None,
            max_packet_size,
        }
    }

    /// A decoder for a connection whose version is already known.
    pub fn with_version(version: ProtocolVersion, max_packet_size: u32) -> Self {
        Decoder {
            version: Some(version),
            max_packet_size,
        }
    }

    /// The connection's version, once known.
    pub fn version(&self) -> Option<ProtocolVersion> {
        self.version
    }

    pub fn max_packet_size(&self) -> u32 {
        self.max_packet_size
    }

    /// Changes the limit, e.g. to a larger one once the peer is
    /// authenticated.
    pub fn set_max_packet_size(&mut self, max: u32) {
        self.max_packet_size = max;
    }

    /// Takes one packet off the front of `buf`: `Ok(None)` when more bytes
    /// are needed (nothing is consumed), `Ok(Some(packet))` with the packet's
    /// bytes consumed, or an error.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let raw_type = first >> 4;
        let flags = first & 0x0F;
        let packet_type = PacketType::from_u8(raw_type).ok_or(DecodeError::InvalidPacketType {
            packet_type: raw_type,
        })?;
        match self.version {
            None if packet_type != PacketType::Connect => {
                return Err(DecodeError::ExpectedConnect { packet_type });
            }
            Some(ProtocolVersion::V311) if packet_type == PacketType::Auth => {
                return Err(DecodeError::InvalidPacketType {
                    packet_type: raw_type,
                });
            }
            _ => {}
        }
        packet_type.check_flags(flags)?;

        let max = u64::from(self.max_packet_size);
        let too_large = |size: u64| DecodeError::PacketTooLarge {
            size,
            max: self.max_packet_size,
        };
        let (body_len, len_len) = match varint::parse(buf.get(1..).unwrap_or_default())? {
            varint::Parsed::Incomplete { seen, min_value } => {
                // Header byte, at least `seen + 1` length bytes, the body.
                let at_least = 2 + seen as u64 + u64::from(min_value);
                if at_least > max {
                    return Err(too_large(at_least));
                }
                return Ok(None);
            }
            varint::Parsed::Complete { value, len } => (value, len),
        };
        let total = 1 + len_len as u64 + u64::from(body_len);
        if total > max {
            return Err(too_large(total));
        }
        let total = usize::try_from(total).map_err(|_| too_large(total))?;
        if buf.len() < total {
            return Ok(None);
        }

        let mut body = buf.split_to(total).freeze();
        body.advance(1 + len_len);
        let packet = Packet::decode(packet_type, flags, body, self.version)?;
        if let Packet::Connect(connect) = &packet {
            self.version = Some(connect.protocol_version);
        }
        Ok(Some(packet))
    }
}
