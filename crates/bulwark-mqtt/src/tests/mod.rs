//! Unit tests, data-driven: `check_*` helpers take input bytes or packets
//! and the expected outcome, and each test is a table of such calls.
//!
//! `samples` builds one or more packets of every type with every property
//! its context allows, used by the round-trip, partial-input and limit
//! tests.

mod decode_errors;
mod encode_errors;
mod partial;
mod prop;
mod property_table;
mod roundtrip;
mod samples;
mod topic;
mod vectors;

use bytes::BytesMut;

use crate::{
    DecodeError, Decoder, Packet, PacketId, ProtocolVersion, ReasonCode, TopicFilter, TopicName,
    MAX_PACKET_SIZE,
};

/// Bytes from a hex string such as `"C0 00"`.
fn h(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    assert_eq!(digits.len() % 2, 0, "odd hex string {s:?}");
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
        .collect()
}

fn topic(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

fn filter(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).unwrap()
}

fn decoder(version: Option<ProtocolVersion>) -> Decoder {
    match version {
        Some(v) => Decoder::with_version(v, MAX_PACKET_SIZE),
        None => Decoder::new(MAX_PACKET_SIZE),
    }
}

/// Decodes `bytes` as one whole packet; a success must consume everything.
fn decode_one(version: Option<ProtocolVersion>, bytes: &[u8]) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    match decoder(version).decode(&mut buf)? {
        Some(packet) => {
            assert!(buf.is_empty(), "{} bytes left after {packet:?}", buf.len());
            Ok(packet)
        }
        None => panic!("incomplete: {bytes:02X?}"),
    }
}

fn encode(version: ProtocolVersion, packet: &Packet) -> Vec<u8> {
    let mut buf = BytesMut::new();
    packet.encode(version, &mut buf).unwrap();
    assert_eq!(buf.len(), packet.encoded_len(version).unwrap());
    buf.to_vec()
}

/// `bytes` decode to `packet`, and `packet` encodes to exactly `bytes`.
fn check_vector(version: ProtocolVersion, hex: &str, packet: Packet) {
    let bytes = h(hex);
    let decoder_version = match packet {
        Packet::Connect(_) => None,
        _ => Some(version),
    };
    assert_eq!(
        decode_one(decoder_version, &bytes),
        Ok(packet.clone()),
        "decoding {hex}"
    );
    assert_eq!(encode(version, &packet), bytes, "encoding {packet:?}");
}

/// `packet` survives encode then decode unchanged.
fn check_roundtrip(version: ProtocolVersion, packet: &Packet) {
    let bytes = encode(version, packet);
    assert_eq!(
        decode_one(Some(version), &bytes).as_ref(),
        Ok(packet),
        "{version}: {bytes:02X?}"
    );
}

/// `hex` is refused with `expect`, which maps to `reason`.
fn check_error(version: Option<ProtocolVersion>, hex: &str, expect: DecodeError, reason: u8) {
    let got = decode_one(version, &h(hex));
    assert_eq!(got, Err(expect.clone()), "decoding {hex}");
    assert_eq!(
        expect.reason_code(),
        ReasonCode::try_from(reason).unwrap(),
        "reason for {expect:?}"
    );
}
