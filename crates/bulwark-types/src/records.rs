//! The registry's records as the store keeps them and the API shows them.
//!
//! Plain data, shared by the store, the API and the CLI so a field is
//! defined once. Timestamps are UTC and serialize as RFC 3339.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{CertSerial, DeviceId, DeviceState, GroupId, RevocationReason, Role};

/// A device in the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Device {
    #[schema(value_type = String)]
    pub id: DeviceId,
    #[schema(value_type = String)]
    pub group: GroupId,
    #[schema(value_type = String)]
    pub state: DeviceState,
    pub labels: BTreeMap<String, String>,
    pub hardware_model: Option<String>,
    pub firmware_version: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub enrolled_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_seen_at: Option<OffsetDateTime>,
}

/// A device with its certificate history, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceDetail {
    #[serde(flatten)]
    pub device: Device,
    pub certificates: Vec<Certificate>,
}

/// What a certificate identifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertKind {
    Device,
    Claim,
    Server,
}

impl CertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Device => "device",
            Self::Claim => "claim",
            Self::Server => "server",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "device" => Self::Device,
            "claim" => Self::Claim,
            "server" => Self::Server,
            _ => return None,
        })
    }
}

/// An issued certificate (without its DER; see the chain endpoints).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Certificate {
    #[schema(value_type = String, example = "5F3A9C0D1E2B3A4C5D6E7F8091A2B3C4")]
    pub serial: CertSerial,
    pub kind: CertKind,
    /// Device id, claim id or server name the certificate was issued to.
    pub subject: String,
    pub fingerprint_sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub not_after: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
    #[schema(value_type = Option<String>)]
    pub revocation_reason: Option<RevocationReason>,
}

/// A device group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Group {
    #[schema(value_type = String)]
    pub name: GroupId,
    pub description: String,
    pub device_count: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}

/// An enrollment token as listed (the secret is shown only at creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EnrollToken {
    pub id: String,
    #[schema(value_type = String)]
    pub group: GroupId,
    #[schema(value_type = Option<String>)]
    pub device_id: Option<DeviceId>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub used_at: Option<OffsetDateTime>,
    #[schema(value_type = Option<String>)]
    pub used_by: Option<DeviceId>,
}

/// An operator API token as listed (the secret is shown only at creation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OperatorToken {
    pub id: String,
    pub name: String,
    #[schema(value_type = String)]
    pub role: Role,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<OffsetDateTime>,
}

/// A claim (factory batch) certificate's registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Claim {
    pub id: String,
    #[schema(value_type = String)]
    pub group: GroupId,
    #[schema(value_type = String)]
    pub serial: CertSerial,
    /// Enrollments allowed per minute with this claim.
    pub rate_per_minute: u32,
    pub enrollments: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
}
