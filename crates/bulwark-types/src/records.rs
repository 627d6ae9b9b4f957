//! The registry's records as the store keeps them and the API shows them.
//!
//! Plain data, shared by the store, the API and the CLI so a field is
//! defined once. Timestamps are UTC and serialize as RFC 3339.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{
    CertSerial, DeviceId, DeviceState, GroupId, ManufacturerCaName, ManufacturerCertificate,
    PolicyName, RevocationReason, Role, ServiceName,
};

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
    /// The manufacturer CA the device is bound to: it authenticates with
    /// certificates that CA issued, never with one of Bulwark's. Absent for
    /// a device enrolled through Bulwark's own CA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub manufacturer_ca: Option<ManufacturerCaName>,
}

/// A device with its certificate history, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceDetail {
    #[serde(flatten)]
    pub device: Device,
    pub certificates: Vec<Certificate>,
    /// Certificates of its manufacturer CA it connected with, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manufacturer_certificates: Vec<ManufacturerCertificate>,
}

/// What a certificate identifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertKind {
    Device,
    Claim,
    Server,
    /// A service principal's client certificate.
    Service,
}

impl CertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Device => "device",
            Self::Claim => "claim",
            Self::Server => "server",
            Self::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "device" => Self::Device,
            "claim" => Self::Claim,
            "server" => Self::Server,
            "service" => Self::Service,
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
    /// Device id, claim id, service name or server name the certificate was issued to.
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

/// What a stored policy can be attached to. Serializes as
/// `{"group": "floor-3"}` or `{"service": "billing"}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyTarget {
    /// Every device of the group.
    Group(GroupId),
    /// A service principal.
    Service(ServiceName),
}

impl PolicyTarget {
    /// `group` or `service`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Group(_) => "group",
            Self::Service(_) => "service",
        }
    }

    /// The group or service name.
    pub fn name(&self) -> &str {
        match self {
            Self::Group(g) => g.as_str(),
            Self::Service(s) => s.as_str(),
        }
    }
}

impl std::fmt::Display for PolicyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.kind(), self.name())
    }
}

/// A policy as listed: stored ones with their current version, built-in
/// ones (read-only, never stored) flagged `builtin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicySummary {
    #[schema(value_type = String)]
    pub name: PolicyName,
    /// Built in: defined in code, read-only, never attached.
    pub builtin: bool,
    /// The current (newest) version; absent for built-in policies.
    pub version: Option<u32>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<OffsetDateTime>,
    /// When the current version was stored.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub updated_at: Option<OffsetDateTime>,
    /// Groups and services the policy is attached to, each as
    /// `{"group": NAME}` or `{"service": NAME}`.
    #[schema(value_type = Vec<Object>)]
    pub attachments: Vec<PolicyTarget>,
}

/// One immutable version of a stored policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyVersion {
    pub version: u32,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Who stored it, as the audit log names actors (`operator:<token id>:<role>`).
    pub created_by: String,
    /// SHA-256 (hex) of the version's canonical JSON.
    pub sha256: String,
}

/// A service principal: a backend application with its own credentials
/// (client certificates, optionally a password) and only the policies
/// attached to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Service {
    #[schema(value_type = String)]
    pub name: ServiceName,
    /// Whether it may authenticate with a password (MQTT username = its name).
    pub password: bool,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Policies attached to it, by name.
    #[schema(value_type = Vec<String>)]
    pub policies: Vec<PolicyName>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_targets_serialize_as_one_key_objects() {
        let g = PolicyTarget::Group(GroupId::new("floor-3").unwrap());
        let s = PolicyTarget::Service(ServiceName::new("billing").unwrap());
        assert_eq!(serde_json::to_string(&g).unwrap(), r#"{"group":"floor-3"}"#);
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            r#"{"service":"billing"}"#
        );
        assert_eq!(g.to_string(), "group floor-3");
        let bad: Result<PolicyTarget, _> = serde_json::from_str(r#"{"service":"a/b"}"#);
        assert!(bad.is_err());
    }

    #[test]
    fn cert_kinds_round_trip() {
        for k in [
            CertKind::Device,
            CertKind::Claim,
            CertKind::Server,
            CertKind::Service,
        ] {
            assert_eq!(CertKind::parse(k.as_str()), Some(k));
        }
    }
}
