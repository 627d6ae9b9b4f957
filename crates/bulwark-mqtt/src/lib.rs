//! Sans-I/O MQTT 3.1.1 and 5.0 packet codec.
//!
//! Bytes in, packets out ([`Decoder::decode`]); packets in, bytes out
//! ([`Packet::encode`], [`Encoder`]). Nothing here opens a socket, spawns a
//! task or awaits: the gateway, the agent and the simulator drive the codec
//! from their own I/O loops, and tests and fuzzers drive it from byte slices.
//!
//! The decoder is the first line of defence against untrusted peers, so it is
//! strict: every rule of the specifications that can be checked without
//! session state is checked, each violation is its own [`DecodeError`]
//! variant, and [`DecodeError::reason_code`] maps it to the MQTT 5 reason code
//! to send before closing the connection. A packet whose declared size exceeds
//! the configured maximum is refused after reading at most five header bytes,
//! before anything is allocated for it.
//!
//! The encoder refuses to produce what the decoder would refuse, and refuses
//! packets larger than the peer's maximum packet size.
//!
//! Session rules that need state across packets (topic-alias tables,
//! packet-identifier reuse, QoS 2 duplicates and the receive maximum) are
//! in [`session`], also sans-I/O; the subscription index is [`tree`]. The
//! client side of a session (CONNECT to DISCONNECT, QoS flows, resends,
//! keep-alive) is the state machine [`client::ClientSession`].
//!
//! ```
//! use bulwark_mqtt::{ConnAck, Decoder, Encoder, Packet, ProtocolVersion};
//! use bytes::BytesMut;
//!
//! // A server: the version is unknown until CONNECT arrives.
//! let mut decoder = Decoder::new(64 * 1024);
//! let mut inbound = BytesMut::from(&b"\x10\x0f\x00\x04MQTT\x04\x02\x00\x3c"[..]);
//! assert_eq!(decoder.decode(&mut inbound)?, None); // needs more bytes
//! inbound.extend_from_slice(b"\x00\x03abc");
//! let Some(Packet::Connect(connect)) = decoder.decode(&mut inbound)? else {
//!     panic!("expected CONNECT");
//! };
//! assert_eq!(connect.client_id, "abc");
//! assert_eq!(decoder.version(), Some(ProtocolVersion::V311));
//!
//! let encoder = Encoder::new(connect.protocol_version);
//! let mut outbound = BytesMut::new();
//! encoder.encode(&Packet::ConnAck(ConnAck::default()), &mut outbound)?;
//! assert_eq!(&outbound[..], b"\x20\x02\x00\x00");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

pub mod client;
mod decoder;
mod error;
mod packet;
mod properties;
mod reason;
pub mod session;
mod strings;
mod topic;
pub mod tree;
mod varint;

#[cfg(test)]
mod tests;

pub use decoder::Decoder;
pub use error::{DecodeError, EncodeError};
pub use packet::{
    Auth, ConnAck, Connect, Disconnect, Encoder, LastWill, Packet, PacketId, PacketType,
    ProtocolVersion, PubResponse, Publish, QoS, RetainHandling, SubAck, Subscribe, Subscription,
    SubscriptionOptions, UnsubAck, Unsubscribe,
};
pub use properties::{PayloadFormat, Properties, PropertyContext, PropertyId, UserProperty};
pub use reason::ReasonCode;
pub use topic::{matches, SharedSubscription, TopicError, TopicFilter, TopicName};

/// Largest value of a Variable Byte Integer, and so the largest Remaining
/// Length and the largest subscription identifier (268,435,455).
pub const MAX_VARINT: u32 = varint::MAX;

/// Largest packet MQTT can express: a one-byte header, a four-byte Remaining
/// Length and [`MAX_VARINT`] bytes of body.
pub const MAX_PACKET_SIZE: u32 = 1 + 4 + varint::MAX;
