//! Inputs to store operations, and records only the server needs.

use std::collections::BTreeMap;

use bulwark_audit::Actor;
use bulwark_types::{
    CertKind, CertSerial, DeviceId, DeviceState, GroupId, PolicyName, PolicySummary, PolicyVersion,
    RevocationReason, Role, Service, ServiceName,
};
use time::OffsetDateTime;

/// SHA-256 of a bearer secret. Secrets themselves are never stored.
pub type TokenHash = [u8; 32];

#[derive(Debug, Clone)]
pub struct NewGroup {
    pub name: GroupId,
    pub description: String,
}

#[derive(Debug, Clone)]
pub struct NewDevice {
    pub id: DeviceId,
    pub group: GroupId,
    pub labels: BTreeMap<String, String>,
    pub hardware_model: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct DeviceUpdate {
    pub labels: Option<BTreeMap<String, String>>,
    pub hardware_model: Option<String>,
    pub firmware_version: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct DeviceFilter {
    pub group: Option<GroupId>,
    pub state: Option<DeviceState>,
    /// Only ids greater than this (keyset pagination).
    pub after: Option<DeviceId>,
    pub limit: Option<u32>,
}

/// The result of a lifecycle move.
#[derive(Debug, Clone)]
pub struct Transition {
    pub from: DeviceState,
    pub device: bulwark_types::Device,
    /// Certificates revoked by the move (decommissioning).
    pub revoked: Vec<CertSerial>,
}

/// A certificate to record.
#[derive(Debug, Clone)]
pub struct NewCert {
    pub serial: CertSerial,
    pub kind: CertKind,
    pub subject: String,
    pub der: Vec<u8>,
    pub fingerprint_sha256: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// A certificate as the store holds it, with its DER.
#[derive(Debug, Clone)]
pub struct CertRecord {
    pub info: bulwark_types::Certificate,
    pub der: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct RevokedCert {
    pub serial: CertSerial,
    pub revoked_at: OffsetDateTime,
    pub reason: RevocationReason,
}

#[derive(Debug, Clone)]
pub struct NewEnrollToken {
    pub id: String,
    pub hash: TokenHash,
    pub group: GroupId,
    pub device_id: Option<DeviceId>,
    pub expires_at: OffsetDateTime,
}

/// What authorized an enrollment.
#[derive(Debug, Clone)]
pub enum EnrollAuth {
    /// A single-use enrollment token, by hash.
    Token(TokenHash),
    /// A claim certificate, by claim id.
    Claim(String),
}

#[derive(Debug, Clone)]
pub struct Enrollment {
    pub auth: EnrollAuth,
    pub device_id: DeviceId,
    pub group: GroupId,
    pub cert: NewCert,
    pub actor: Actor,
}

#[derive(Debug, Clone)]
pub struct Reenrollment {
    pub device_id: DeviceId,
    pub old_serial: CertSerial,
    pub cert: NewCert,
}

#[derive(Debug, Clone)]
pub struct NewClaim {
    pub id: String,
    pub group: GroupId,
    pub rate_per_minute: u32,
    pub cert: NewCert,
}

#[derive(Debug, Clone)]
pub struct NewOperatorToken {
    pub id: String,
    pub hash: TokenHash,
    pub name: String,
    pub role: Role,
    pub expires_at: OffsetDateTime,
}

/// A policy document to store. The registry has validated it; the store
/// keeps the canonical JSON as given.
#[derive(Debug, Clone)]
pub struct NewPolicyVersion {
    pub name: PolicyName,
    /// Canonical JSON of the document.
    pub document: String,
    /// SHA-256 (hex) of `document`.
    pub sha256: String,
}

/// What storing a document did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PolicyWrite {
    /// The policy's current version after the write.
    pub version: u32,
    /// False when the document equals the current version: nothing was
    /// stored or audited.
    pub created: bool,
}

/// One stored version, with its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    pub name: PolicyName,
    pub version: u32,
    /// Canonical JSON.
    pub document: String,
    pub created_at: OffsetDateTime,
}

/// A stored policy: one version's document, and what is known about it.
#[derive(Debug, Clone)]
pub struct PolicyRecord {
    /// Name, current version, attachments.
    pub summary: PolicySummary,
    /// The version asked for (the current one by default).
    pub selected: StoredPolicy,
    /// Every version, oldest first.
    pub versions: Vec<PolicyVersion>,
}

#[derive(Debug, Clone)]
pub struct NewService {
    pub name: ServiceName,
    /// Argon2id PHC string, when the service may use a password.
    pub password_hash: Option<String>,
}

/// A service as the server holds it, with its password hash.
#[derive(Debug, Clone)]
pub struct ServiceRecord {
    pub service: Service,
    pub password_hash: Option<String>,
}
