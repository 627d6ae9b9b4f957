//! Reading and writing MQTT's primitive data types: two- and four-byte
//! integers, length-prefixed UTF-8 strings, binary data and string pairs.
//!
//! [`Reader`] is a cursor over one packet's body. Every read checks the
//! remaining length first and fails with [`DecodeError::Truncated`] instead of
//! panicking; binary fields are zero-copy slices of the packet. Strings must
//! be well-formed UTF-8 (which already excludes surrogates) and must not
//! contain U+0000 (MQTT 3.1.1 §1.5.3, MQTT 5 §1.5.4).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::varint;

/// Longest string or binary field: the length prefix is two bytes.
pub(crate) const MAX_FIELD_LEN: usize = u16::MAX as usize;

/// A bounds-checked cursor over a packet body.
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Self { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.buf.is_empty() {
            return Err(DecodeError::Truncated);
        }
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.buf.len() < 2 {
            return Err(DecodeError::Truncated);
        }
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        if self.buf.len() < 4 {
            return Err(DecodeError::Truncated);
        }
        Ok(self.buf.get_u32())
    }

    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        match varint::parse(&self.buf)? {
            varint::Parsed::Complete { value, len } => {
                self.buf.advance(len);
                Ok(value)
            }
            varint::Parsed::Incomplete { .. } => Err(DecodeError::Truncated),
        }
    }

    /// The next `n` bytes, zero-copy.
    pub(crate) fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        Ok(self.buf.split_to(n))
    }

    /// A reader over the next `n` bytes (a property block).
    pub(crate) fn sub(&mut self, n: usize) -> Result<Reader, DecodeError> {
        self.take(n).map(Reader::new)
    }

    /// Two-byte length, then that many bytes.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    /// A UTF-8 Encoded String without U+0000.
    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let raw = self.binary()?;
        let s = std::str::from_utf8(&raw).map_err(|source| DecodeError::InvalidUtf8 { source })?;
        if s.contains('\0') {
            return Err(DecodeError::NulInString);
        }
        Ok(s.to_owned())
    }

    /// Everything left (a PUBLISH payload).
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// Fails if anything is left over.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                count: self.buf.len(),
            })
        }
    }
}

/// Wire length of a string field (prefix included), refusing what a peer
/// would refuse: more than 65,535 bytes, or U+0000.
pub(crate) fn string_len(s: &str) -> Result<usize, EncodeError> {
    if s.len() > MAX_FIELD_LEN {
        return Err(EncodeError::FieldTooLong { len: s.len() });
    }
    if s.contains('\0') {
        return Err(EncodeError::NulInString);
    }
    Ok(2 + s.len())
}

/// Wire length of a binary field (prefix included).
pub(crate) fn binary_len(b: &[u8]) -> Result<usize, EncodeError> {
    if b.len() > MAX_FIELD_LEN {
        return Err(EncodeError::FieldTooLong { len: b.len() });
    }
    Ok(2 + b.len())
}

/// Writes a length-prefixed field; the length was checked by
/// [`string_len`] or [`binary_len`] beforehand.
pub(crate) fn put_binary(dst: &mut BytesMut, b: &[u8]) {
    let len = u16::try_from(b.len()).unwrap_or(u16::MAX);
    dst.put_u16(len);
    dst.put_slice(b.get(..usize::from(len)).unwrap_or_default());
}

/// Writes a length-prefixed UTF-8 string (checked beforehand).
pub(crate) fn put_string(dst: &mut BytesMut, s: &str) {
    put_binary(dst, s.as_bytes());
}
