//! MQTT packets from untrusted peers: arbitrary bytes decoded as a server
//! (version fixed by CONNECT), as a 3.1.1 peer and as a 5.0 peer. Decoding
//! never panics; anything decoded re-encodes to no more bytes than it came
//! from, and those bytes decode to the same packet.
#![no_main]
use bulwark_mqtt::{Decoder, ProtocolVersion};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

const MAX: u32 = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    for start in [None, Some(ProtocolVersion::V311), Some(ProtocolVersion::V5)] {
        let mut decoder = match start {
            None => Decoder::new(MAX),
            Some(v) => Decoder::with_version(v, MAX),
        };
        let mut buf = BytesMut::from(data);
        loop {
            let before = buf.len();
            let packet = match decoder.decode(&mut buf) {
                Ok(Some(packet)) => packet,
                Ok(None) => break,
                Err(e) => {
                    let _ = e.reason_code();
                    break;
                }
            };
            let consumed = before - buf.len();
            let version = decoder
                .version()
                .expect("the version is known after a packet");
            let mut out = BytesMut::new();
            packet
                .encode(version, &mut out)
                .unwrap_or_else(|e| panic!("{packet:?} does not re-encode: {e}"));
            assert!(
                out.len() <= consumed,
                "{packet:?} grew from {consumed} to {}",
                out.len()
            );
            let mut fresh = Decoder::with_version(version, MAX);
            let again = fresh.decode(&mut out);
            assert_eq!(again, Ok(Some(packet)));
            assert!(out.is_empty());
        }
    }
});
