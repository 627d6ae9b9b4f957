//! Variable Byte Integers (MQTT 3.1.1 §2.2.3, MQTT 5 §1.5.5).
//!
//! Seven bits per byte, least significant group first, the top bit saying
//! "more follows"; at most four bytes, and the encoding must be minimal, so a
//! multi-byte encoding never ends in a zero byte.

use bytes::{BufMut, BytesMut};

use crate::error::DecodeError;

/// Largest encodable value (`FF FF FF 7F`).
pub(crate) const MAX: u32 = 268_435_455;

/// Result of looking at the start of a buffer for a Variable Byte Integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// The integer and the number of bytes it took.
    Complete { value: u32, len: usize },
    /// More bytes are needed; `seen` bytes were read and the value will be
    /// at least `min_value` (used to refuse an oversized packet early).
    Incomplete { seen: usize, min_value: u32 },
}

/// Reads a Variable Byte Integer from the start of `buf` without consuming.
pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, DecodeError> {
    let mut value: u32 = 0;
    for (i, &byte) in buf.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return Err(DecodeError::MalformedVarInt);
            }
            return Ok(Parsed::Complete { value, len: i + 1 });
        }
    }
    let seen = buf.len();
    if seen >= 4 {
        return Err(DecodeError::MalformedVarInt);
    }
    // The next byte is non-zero (minimal encoding), so it adds at least 128^seen.
    let min_value = if seen == 0 {
        0
    } else {
        value + (1 << (7 * seen))
    };
    Ok(Parsed::Incomplete { seen, min_value })
}

/// Number of bytes `value` takes on the wire (`value` must be at most [`MAX`]).
pub(crate) fn len(value: u32) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Writes `value` (at most [`MAX`]; callers check) to `dst`.
pub(crate) fn write(mut value: u32, dst: &mut BytesMut) {
    loop {
        // Truncation to the low seven bits is the encoding.
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        dst.put_u8(byte);
        if value == 0 {
            break;
        }
    }
}
