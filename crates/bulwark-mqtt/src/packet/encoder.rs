//! The encoder half of a connection: the negotiated protocol version and the
//! peer's maximum packet size, applied to every packet sent.

use bytes::BytesMut;

use super::{Packet, ProtocolVersion};
use crate::error::EncodeError;

/// Encodes packets for one peer.
///
/// The peer's maximum packet size is MQTT's own maximum until the peer
/// announces a smaller one (CONNECT or CONNACK property); a packet larger
/// than it is refused with [`EncodeError::PacketTooLarge`] and nothing is
/// written (MQTT 5 §3.1.2.11.4: the server then drops that message for that
/// client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoder {
    version: ProtocolVersion,
    max_packet_size: u32,
}

impl Encoder {
    pub fn new(version: ProtocolVersion) -> Self {
        Encoder {
            version,
            max_packet_size: crate::MAX_PACKET_SIZE,
        }
    }

    /// Sets the peer's maximum packet size, in bytes, fixed header included.
    pub fn with_max_packet_size(mut self, max: u32) -> Self {
        self.max_packet_size = max;
        self
    }

    pub fn set_max_packet_size(&mut self, max: u32) {
        self.max_packet_size = max;
    }

    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    pub fn max_packet_size(&self) -> u32 {
        self.max_packet_size
    }

    /// Appends `packet` to `dst`, or fails and leaves `dst` unchanged.
    pub fn encode(&self, packet: &Packet, dst: &mut BytesMut) -> Result<(), EncodeError> {
        packet.encode_limited(self.version, self.max_packet_size, dst)
    }
}
