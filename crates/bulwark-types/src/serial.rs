//! Certificate serial numbers.
//!
//! Serials are positive integers of up to 20 octets (RFC 5280 §4.1.2.2),
//! kept as minimal big-endian bytes. They print as upper-case hex without
//! separators, as `openssl x509 -serial` does, and parse from hex with any
//! case and optional colons.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SerialError {
    #[error("serial must be hex digits (colons allowed)")]
    NotHex,
    #[error("serial must not be empty or zero")]
    Zero,
    #[error("serial is longer than 20 octets")]
    TooLong,
}

/// A certificate serial number, positive, at most 20 octets.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CertSerial(Vec<u8>);

impl CertSerial {
    /// From big-endian bytes; leading zero octets are dropped.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SerialError> {
        let start = bytes
            .iter()
            .position(|b| *b != 0)
            .ok_or(SerialError::Zero)?;
        let b = &bytes[start..];
        if b.len() > 20 {
            return Err(SerialError::TooLong);
        }
        Ok(Self(b.to_vec()))
    }

    /// Parses hex as `openssl x509 -serial` prints it; case and colons ignored.
    pub fn parse_hex(s: &str) -> Result<Self, SerialError> {
        let s = s.trim();
        let s = s.strip_prefix("serial=").unwrap_or(s);
        let cleaned: String = s.chars().filter(|c| *c != ':').collect();
        if cleaned.is_empty() {
            return Err(SerialError::Zero);
        }
        let padded = if cleaned.len() % 2 == 1 {
            format!("0{cleaned}")
        } else {
            cleaned
        };
        let bytes = hex::decode(padded).map_err(|_| SerialError::NotHex)?;
        Self::from_bytes(&bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Upper-case hex, no separators.
    pub fn to_hex(&self) -> String {
        hex::encode_upper(&self.0)
    }
}

impl fmt::Display for CertSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for CertSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CertSerial({})", self.to_hex())
    }
}

impl std::str::FromStr for CertSerial {
    type Err = SerialError;
    fn from_str(s: &str) -> Result<Self, SerialError> {
        Self::parse_hex(s)
    }
}

impl Serialize for CertSerial {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for CertSerial {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse_hex(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_openssl_forms() {
        let a = CertSerial::parse_hex("serial=0A1B2C").unwrap();
        let b = CertSerial::parse_hex("0a:1b:2c").unwrap();
        let c = CertSerial::parse_hex("A1B2C").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
        assert_eq!(a.to_hex(), "0A1B2C");
    }

    #[test]
    fn refuses_bad() {
        assert_eq!(CertSerial::parse_hex("xyz"), Err(SerialError::NotHex));
        assert_eq!(CertSerial::parse_hex("00"), Err(SerialError::Zero));
        assert_eq!(CertSerial::parse_hex(""), Err(SerialError::Zero));
        assert_eq!(
            CertSerial::parse_hex(&"11".repeat(21)),
            Err(SerialError::TooLong)
        );
    }
}
