//! Inputs to store operations, and records only the server needs.

use std::collections::BTreeMap;

use bulwark_audit::Actor;
use bulwark_types::{
    CertKind, CertSerial, DeviceId, DeviceState, GroupId, JitMode, ManufacturerCa,
    ManufacturerCaName, ManufacturerCertificate, PolicyName, PolicySummary, PolicyVersion,
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
    /// Bind the device to this registered manufacturer CA: it will
    /// authenticate with that CA's certificates (and becomes active with
    /// the first one).
    pub manufacturer_ca: Option<ManufacturerCaName>,
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

/// A manufacturer CA to register. The registry has validated the
/// certificate.
#[derive(Debug, Clone)]
pub struct NewManufacturerCa {
    pub name: ManufacturerCaName,
    /// SHA-256 (hex) of `der`.
    pub fingerprint: String,
    /// RFC 4514 rendering of the subject.
    pub subject: String,
    pub der: Vec<u8>,
    pub group: Option<GroupId>,
    pub jit: JitMode,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// A registered manufacturer CA with its certificate.
#[derive(Debug, Clone)]
pub struct ManufacturerCaRecord {
    pub ca: ManufacturerCa,
    pub der: Vec<u8>,
}

/// A manufacturer certificate as recorded, with the device it is bound to.
#[derive(Debug, Clone)]
pub struct ManufacturerCertRecord {
    pub cert: ManufacturerCertificate,
    pub device_id: DeviceId,
}

/// A manufacturer certificate to bind to the device its CN names, checked
/// by the registry (signature, validity, CN).
#[derive(Debug, Clone)]
pub struct ManufacturerBinding {
    pub device_id: DeviceId,
    pub manufacturer_ca: ManufacturerCaName,
    /// The CA the registry verified the certificate with: the binding is
    /// refused if the name now stands for another certificate (or none).
    pub ca_fingerprint: String,
    /// SHA-256 (hex) of the device certificate.
    pub fingerprint: String,
    pub serial: String,
    pub subject: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// Create an unknown device just in time, in this group and state;
    /// `None` refuses an unknown device.
    pub jit: Option<(GroupId, DeviceState)>,
}

/// What binding a manufacturer certificate did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindKind {
    /// The certificate was bound already; nothing was written.
    Known,
    /// A new certificate for a device bound to the CA (its first, for a
    /// pre-registered device, which this activates; or a re-provisioned one).
    Added { activated: bool },
    /// The device was created just in time.
    Registered,
}

#[derive(Debug, Clone)]
pub struct Bound {
    pub device: bulwark_types::Device,
    pub kind: BindKind,
}

/// A rollout to create: its devices are already selected and assigned to
/// phases (0-based).
#[derive(Debug, Clone)]
pub struct NewRollout {
    pub id: String,
    pub release: String,
    pub plan: bulwark_types::RolloutPlan,
    pub selector: bulwark_types::RolloutSelector,
    pub devices: Vec<(DeviceId, u32)>,
}

/// One device's step change, applied only if the device is still at
/// `from` (compare-and-set).
#[derive(Debug, Clone)]
pub struct DeviceStepChange {
    pub rollout: String,
    pub device: DeviceId,
    pub from: String,
    pub to: String,
    pub reason: Option<String>,
    /// Counts a new attempt (a retry).
    pub new_attempt: bool,
    /// Sets `notified_at` to now.
    pub notify: bool,
    /// Records a security signal against the device.
    pub flag: Option<String>,
    /// Writes an audit entry (the end of its update, or a retry).
    pub audit: bool,
}

/// A detector's finding to record as an alert (or fold into the open one
/// with the same `dedup` key).
#[derive(Debug, Clone)]
pub struct NewAlert {
    /// Alerts with the same key are one alert while it is not resolved.
    pub dedup: String,
    pub device: Option<DeviceId>,
    pub entity: String,
    pub detector: String,
    pub severity: bulwark_types::Severity,
    pub title: String,
    pub evidence: serde_json::Value,
    /// A resolved alert with the same key suppresses new ones this long
    /// after it was resolved.
    pub suppress_for: std::time::Duration,
    /// The evidence bundle (JSON), stored with the alert when it opens.
    pub bundle: Option<Vec<u8>>,
    /// The playbook's steps, scheduled when the alert opens.
    pub actions: Vec<NewAlertAction>,
}

/// A response action to schedule on an alert.
#[derive(Debug, Clone)]
pub struct NewAlertAction {
    pub playbook: Option<String>,
    pub step: u32,
    pub action: bulwark_types::ActionKind,
    /// `Scheduled` (runs at `due_at`) or `AwaitingApproval`.
    pub state: bulwark_types::ActionState,
    pub due_at: Option<time::OffsetDateTime>,
    /// What the executor needs (a throttle's rate, a release delay).
    pub params: serde_json::Value,
}

/// What recording a finding did.
#[derive(Debug, Clone)]
pub enum RaiseOutcome {
    /// A new alert, with its scheduled actions.
    Opened(bulwark_types::Alert),
    /// Folded into the alert that was already open.
    Updated(bulwark_types::Alert),
    /// Within the suppression window of a resolved alert: nothing stored.
    Suppressed,
}

/// A compare-and-set change of one response action.
#[derive(Debug, Clone)]
pub struct AlertActionChange {
    pub action_id: i64,
    /// Applied only if the action is in one of these states.
    pub from: Vec<bulwark_types::ActionState>,
    pub to: bulwark_types::ActionState,
    pub reason: Option<String>,
    /// For `Applied`: when a reversible action is released by its timer.
    pub release_at: Option<time::OffsetDateTime>,
}

/// Which alerts to list (ascending by id).
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// Only alerts with a larger id.
    pub after: Option<i64>,
    pub device: Option<DeviceId>,
    pub state: Option<bulwark_types::AlertState>,
    pub limit: u32,
}

/// An action whose time has come: a scheduled one now due, or an applied
/// reversible one whose release time passed.
#[derive(Debug, Clone)]
pub struct DueAlertAction {
    pub alert: bulwark_types::Alert,
    pub action: bulwark_types::AlertAction,
    pub params: serde_json::Value,
}

/// One entity's detection metrics over one summary period (its 1 s window
/// metrics aggregated), as written by the detection pipeline and read back
/// newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSummary {
    /// `device:<id>`, `source:<ip>` or `service:<name>`.
    pub entity: String,
    /// The device it is about, when it is about a device.
    pub device: Option<DeviceId>,
    /// Start of the entity's first active window in the period.
    pub period_start: OffsetDateTime,
    /// End of its last active window in the period.
    pub period_end: OffsetDateTime,
    /// Windows in which it was active.
    pub active_windows: u32,
    /// Metric name to value; stored as a JSON object (values that are not
    /// finite numbers are left out: JSON has no NaN or infinity).
    pub metrics: BTreeMap<String, f64>,
}

/// What recording a batch of summaries did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SummariesWritten {
    pub inserted: u64,
    /// Rows past their retention deleted in the same transaction.
    pub pruned: u64,
}
