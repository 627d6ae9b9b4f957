//! Input that arrives in pieces, and the size limit: a decoder never
//! consumes or allocates for an incomplete packet, and refuses an oversized
//! one from its header alone.

use bytes::{BufMut, BytesMut};

use super::{decoder, encode, samples};
use crate::{DecodeError, Decoder, Packet, ProtocolVersion};

use ProtocolVersion::{V311, V5};

#[test]
fn a_declared_256_mb_packet_is_refused_from_five_header_bytes() {
    for (mut decoder, first) in [
        (Decoder::with_version(V5, 1 << 20), 0x30),
        (Decoder::with_version(V311, 1 << 20), 0x30),
        // A server that has not seen CONNECT yet.
        (Decoder::new(1 << 20), 0x10),
    ] {
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(&[first, 0xFF, 0xFF, 0xFF, 0x7F]);
        let capacity = buf.capacity();
        assert_eq!(
            decoder.decode(&mut buf),
            Err(DecodeError::PacketTooLarge {
                size: 268_435_460,
                max: 1 << 20
            })
        );
        assert_eq!(
            DecodeError::PacketTooLarge { size: 0, max: 0 }
                .reason_code()
                .as_u8(),
            0x95
        );
        assert_eq!(buf.capacity(), capacity, "the buffer did not grow");
        assert_eq!(buf.len(), 5, "nothing was consumed");
    }
}

#[test]
fn an_oversized_packet_is_refused_before_its_length_is_complete() {
    let mut d = Decoder::with_version(V5, 1000);
    let mut buf = BytesMut::from(&[0x30, 0xFF][..]);
    // At least 258 bytes: could still fit.
    assert_eq!(d.decode(&mut buf), Ok(None));
    buf.put_u8(0xFF);
    // At least 32,771 bytes.
    assert_eq!(
        d.decode(&mut buf),
        Err(DecodeError::PacketTooLarge {
            size: 32_771,
            max: 1000
        })
    );
}

#[test]
fn the_limit_counts_the_whole_packet() {
    let packet = samples::packets(V5).swap_remove(5);
    let bytes = encode(V5, &packet);
    let size = u32::try_from(bytes.len()).unwrap();
    let mut exact = Decoder::with_version(V5, size);
    assert_eq!(
        exact.decode(&mut BytesMut::from(&bytes[..])),
        Ok(Some(packet))
    );
    let mut under = Decoder::with_version(V5, size - 1);
    assert_eq!(
        under.decode(&mut BytesMut::from(&bytes[..])),
        Err(DecodeError::PacketTooLarge {
            size: u64::from(size),
            max: size - 1
        })
    );
    // Raised after authentication, the same bytes pass.
    under.set_max_packet_size(size);
    assert!(under.decode(&mut BytesMut::from(&bytes[..])).is_ok());
}

#[test]
fn every_sample_fed_one_byte_at_a_time() {
    for version in [V311, V5] {
        for packet in samples::packets(version) {
            let bytes = encode(version, &packet);
            let mut d = decoder(Some(version));
            let mut buf = BytesMut::new();
            for (i, byte) in bytes.iter().enumerate() {
                buf.put_u8(*byte);
                let got = d.decode(&mut buf).unwrap();
                if i + 1 < bytes.len() {
                    assert_eq!(got, None, "{packet:?} after {} bytes", i + 1);
                    assert_eq!(buf.len(), i + 1, "nothing consumed while incomplete");
                } else {
                    assert_eq!(got.as_ref(), Some(&packet));
                    assert!(buf.is_empty());
                }
            }
        }
    }
}

#[test]
fn a_stream_of_packets_in_chunks_of_any_size() {
    for version in [V311, V5] {
        let packets = samples::packets(version);
        assert!(matches!(packets.first(), Some(Packet::Connect(_))));
        let stream: Vec<u8> = packets.iter().flat_map(|p| encode(version, p)).collect();
        for chunk in [1, 2, 3, 7, 64, 1000, stream.len()] {
            let mut d = decoder(None);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(packet) = d.decode(&mut buf).unwrap() {
                    got.push(packet);
                }
            }
            assert_eq!(got, packets, "{version}, chunks of {chunk}");
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn an_empty_buffer_needs_more() {
    assert_eq!(decoder(None).decode(&mut BytesMut::new()), Ok(None));
}
