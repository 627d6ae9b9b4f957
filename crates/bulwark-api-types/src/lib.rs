//! Request and response bodies of the operator API (`/v1`).
//!
//! Records (devices, certificates, …) are re-exported from `bulwark-types`;
//! this crate adds what only crosses the wire. The CLI and the server both
//! use these types, so the two cannot drift apart.

use std::collections::BTreeMap;

use bulwark_types::{DeviceId, GroupId, RevocationReason, Role};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

pub use bulwark_types::{
    CertKind, Certificate, Claim, Device, DeviceDetail, DeviceState, EnrollToken, Group,
    OperatorToken,
};

/// Media type of RFC 9457 problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An RFC 9457 problem details object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URI naming the problem type (`about:blank` when the status says it all).
    #[serde(rename = "type")]
    pub type_: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// `POST /v1/devices`: pre-register a device (state `pending`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDevice {
    #[schema(value_type = String)]
    pub id: DeviceId,
    #[schema(value_type = String)]
    pub group: GroupId,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub hardware_model: Option<String>,
}

/// `PATCH /v1/devices/{id}`: change descriptive fields. Absent fields stay.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateDevice {
    #[serde(default)]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub hardware_model: Option<String>,
    #[serde(default)]
    pub firmware_version: Option<String>,
}

/// Body (optional) of the lifecycle actions `quarantine`, `release`, `decommission`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LifecycleAction {
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/groups`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    #[schema(value_type = String)]
    pub name: GroupId,
    #[serde(default)]
    pub description: String,
}

/// `POST /v1/enroll-tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnrollToken {
    #[schema(value_type = String)]
    pub group: GroupId,
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub device_id: Option<DeviceId>,
    /// Lifetime in seconds (default 3600, at most 30 days).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// The answer to `POST /v1/enroll-tokens`: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedEnrollToken {
    pub token: String,
    #[serde(flatten)]
    pub record: EnrollToken,
}

/// `POST /v1/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOperatorToken {
    pub name: String,
    #[schema(value_type = String)]
    pub role: Role,
    /// Lifetime in seconds (default 90 days, at most 1 year).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
}

/// The answer to `POST /v1/tokens`: the only time the secret is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedOperatorToken {
    pub token: String,
    #[serde(flatten)]
    pub record: OperatorToken,
}

/// `POST /v1/certificates/{serial}/revoke`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeCertificate {
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub reason: Option<RevocationReason>,
}

/// `POST /v1/claims`: register a claim certificate for a factory batch.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClaim {
    #[schema(value_type = String)]
    pub group: GroupId,
    /// PEM PKCS#10 request for the claim key (generated in the factory).
    pub csr_pem: String,
    /// Certificate lifetime in seconds (default 365 days).
    #[serde(default)]
    pub ttl_seconds: Option<u64>,
    /// Enrollments per minute allowed with this claim (default 60).
    #[serde(default)]
    pub rate_per_minute: Option<u32>,
}

/// The answer to `POST /v1/claims`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedClaim {
    pub certificate_pem: String,
    #[serde(flatten)]
    pub record: Claim,
}

/// One audit entry as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub seq: u64,
    pub ts: String,
    pub actor: String,
    /// The event, as the JSON object that was hashed.
    #[schema(value_type = Object)]
    pub event: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// The answer to `GET /v1/audit/verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AuditVerification {
    pub ok: bool,
    pub entries: u64,
    pub checkpoints: u64,
    pub last_checkpoint: u64,
    /// When `ok` is false: the first bad entry and what is wrong with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_bad_entry: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub version: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub now: OffsetDateTime,
}
