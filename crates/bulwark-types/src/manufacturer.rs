//! Manufacturer CAs an operator registered ("bring your own CA"), and the
//! certificates they issued that devices connected with.
//!
//! A device certificate issued by a registered manufacturer CA identifies
//! the device named by its subject CN. The first time such a certificate
//! is seen it is bound to that device (recorded by its SHA-256
//! fingerprint, since a foreign serial may collide with one of ours); what
//! happens to a device Bulwark does not know yet is the CA's [`JitMode`].

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{GroupId, ManufacturerCaName, RevocationReason};

/// Just-in-time registration: what a certificate from a registered
/// manufacturer CA does for a device id the inventory does not hold yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JitMode {
    /// Nothing: the device must already be in the inventory, bound to
    /// this CA (`POST /v1/devices` with `manufacturer_ca`).
    #[default]
    Off,
    /// The device is created `pending` and refused until an operator
    /// activates it.
    Pending,
    /// The device is created `active` and connects at once.
    Active,
}

impl JitMode {
    pub const ALL: [JitMode; 3] = [JitMode::Off, JitMode::Pending, JitMode::Active];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Pending => "pending",
            Self::Active => "active",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }
}

impl fmt::Display for JitMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A registered manufacturer CA (its certificate is public; see
/// `GET /v1/manufacturer-cas/{name}` for the PEM).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ManufacturerCa {
    #[schema(value_type = String)]
    pub name: ManufacturerCaName,
    /// SHA-256 (hex) of the CA certificate's DER.
    pub fingerprint_sha256: String,
    /// The CA certificate's subject (RFC 4514).
    pub subject: String,
    /// The group devices registered just in time join.
    #[schema(value_type = Option<String>)]
    pub group: Option<GroupId>,
    #[schema(value_type = String)]
    pub jit: JitMode,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub not_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Devices bound to this CA.
    pub devices: u64,
}

/// A certificate issued by a manufacturer CA, bound to a device the first
/// time the device connected with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ManufacturerCertificate {
    /// SHA-256 (hex) of the certificate's DER: the key it is recorded by.
    pub fingerprint_sha256: String,
    /// The manufacturer CA that issued it.
    #[schema(value_type = String)]
    pub manufacturer_ca: ManufacturerCaName,
    /// The serial as the manufacturer wrote it (upper-case hex).
    pub serial: String,
    /// The certificate's subject (RFC 4514).
    pub subject: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub not_after: OffsetDateTime,
    /// When the device first connected with it.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub bound_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
    #[schema(value_type = Option<String>)]
    pub revocation_reason: Option<RevocationReason>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jit_modes_round_trip() {
        for m in JitMode::ALL {
            assert_eq!(JitMode::parse(m.as_str()), Some(m));
            assert_eq!(
                serde_json::to_string(&m).unwrap(),
                format!("\"{}\"", m.as_str())
            );
        }
        assert_eq!(JitMode::parse("on"), None);
        assert_eq!(JitMode::default(), JitMode::Off);
    }
}
