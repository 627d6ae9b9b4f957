//! Request and response bodies of the operator API (`/v1`).
//!
//! Records (devices, certificates, …) are re-exported from `bulwark-types`;
//! this crate adds what only crosses the wire. The CLI and the server both
//! use these types, so the two cannot drift apart.

mod alerts;
mod manufacturer;
mod metrics;
mod mqtt;
mod ota;

use std::collections::BTreeMap;

use bulwark_types::{
    CertSerial, DeviceId, GroupId, ManufacturerCaName, PolicyName, RevocationReason, Role,
    ServiceName,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

pub use alerts::{AlertList, AlertNote, AlertQuery, Escalate};
pub use manufacturer::{CreateManufacturerCa, DeletedManufacturerCa, ManufacturerCaDetail};
pub use metrics::{DeviceMetrics, MetricPeriod, MetricsQuery};
pub use mqtt::{DeviceView, MqttCounters, MqttSession};
pub use ota::{
    ArtifactStored, CreateRelease, CreateRollout, DeviceReport, OtaRoot, OtaRootRole,
    PreparedRelease, PreparedRoot, RolloutCommand, RootPublished, RootRoleChange, RotateRoot,
};

pub use bulwark_types::{
    ActionKind, ActionState, Alert, AlertAction, AlertState, CertKind, Certificate, Claim, Device,
    DeviceDetail, DeviceState, EnrollToken, Group, JitMode, ManufacturerCa,
    ManufacturerCertificate, OperatorToken, OtaRelease, PolicySummary, PolicyTarget, PolicyVersion,
    Rollout, RolloutDevice, RolloutPlan, RolloutSelector, Service, Severity,
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
    /// Bind the device to this registered manufacturer CA: it will
    /// authenticate with that CA's certificates (CN = the device id) and
    /// becomes active with the first one, even when the CA's just-in-time
    /// registration is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub manufacturer_ca: Option<ManufacturerCaName>,
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

/// Body (optional) of the lifecycle actions `activate`, `quarantine`,
/// `release`, `decommission`.
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

/// `GET /v1/policies/{name}`: a policy's document (the current version, or
/// the one asked for with `?version=N`) and its version list. Built-in
/// policies are shown too, with `builtin: true` and no versions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyDetail {
    /// Name, `builtin`, current `version`, timestamps, attachments.
    #[serde(flatten)]
    pub summary: PolicySummary,
    /// The version `document` is; absent for a built-in policy.
    pub document_version: Option<u32>,
    /// The policy document (`{"version": 1, "name": …, "statements": […]}`).
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
    /// Every stored version, oldest first.
    pub versions: Vec<PolicyVersion>,
}

/// The answer to `POST /v1/policies`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PolicyWritten {
    /// False when the document equals the current version: nothing was
    /// stored (the answer is then 200 rather than 201).
    pub created: bool,
    #[serde(flatten)]
    pub policy: PolicyDetail,
}

/// `POST /v1/services`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateService {
    #[schema(value_type = String)]
    pub name: ServiceName,
    /// Generate a password for MQTT username/password authentication
    /// (shown once, in the answer).
    #[serde(default)]
    pub password: bool,
}

/// The answer to `POST /v1/services`: the only time the password is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedService {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub generated_password: Option<String>,
    #[serde(flatten)]
    pub record: Service,
}

/// The answer to `DELETE /v1/services/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeletedService {
    #[schema(value_type = String)]
    pub name: ServiceName,
    /// The service's certificates revoked by the deletion.
    #[schema(value_type = Vec<String>)]
    pub revoked_certificates: Vec<CertSerial>,
}

/// An MQTT action a policy decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MqttAction {
    /// The resource is the MQTT client identifier.
    Connect,
    /// The resource is a topic name.
    Publish,
    /// The resource is a topic filter (`$share/NAME/` allowed).
    Subscribe,
    /// The resource is the topic name of a message about to be delivered.
    Receive,
}

impl MqttAction {
    pub const ALL: [MqttAction; 4] = [
        MqttAction::Connect,
        MqttAction::Publish,
        MqttAction::Subscribe,
        MqttAction::Receive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Publish => "publish",
            Self::Subscribe => "subscribe",
            Self::Receive => "receive",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// `POST /v1/policies/test`: exactly one of `device` and `service`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyTest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub device: Option<DeviceId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub service: Option<ServiceName>,
    pub action: MqttAction,
    /// Topic name (publish, receive), topic filter (subscribe) or client
    /// identifier (connect).
    pub topic: String,
}

/// Whose policy: `{"device": ID}` or `{"service": NAME}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicySubject {
    Device(DeviceId),
    Service(ServiceName),
}

/// `allow` or `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyDecision {
    Allow,
    Deny,
}

/// A policy a decision was compiled from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyRef {
    #[schema(value_type = String)]
    pub name: PolicyName,
    /// The stored version; absent for a built-in policy.
    pub version: Option<u32>,
    pub builtin: bool,
}

/// The statement that decided, as written in its policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DecidingStatement {
    #[serde(flatten)]
    pub policy: PolicyRef,
    /// Index of the statement in the policy (0-based).
    pub index: u32,
    pub effect: String,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
}

/// The answer to `POST /v1/policies/test`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyTestResult {
    pub decision: PolicyDecision,
    /// Why, in a sentence.
    pub reason: String,
    /// The statement that decided, when one statement did (absent for a
    /// default deny, an invalid topic, a device that may not connect, or a
    /// subscription granted only by several statements together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<DecidingStatement>,
    /// The policies evaluated, in order.
    pub policies: Vec<PolicyRef>,
}

/// One policy as it applies to a principal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AppliedPolicy {
    #[serde(flatten)]
    pub policy: PolicyRef,
    #[schema(value_type = Object)]
    pub document: serde_json::Value,
}

/// A resource that could not be substituted safely for this principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyNote {
    #[serde(flatten)]
    pub policy: PolicyRef,
    pub statement: u32,
    /// Index of the resource within the statement.
    pub resource: u32,
    /// The resource template as written.
    pub template: String,
    /// `allow_dropped` (the allow grants nothing) or `deny_widened` (the
    /// deny matches everything below its unresolved level).
    pub kind: String,
}

/// `GET /v1/devices/{id}/effective-policy` and
/// `GET /v1/services/{name}/effective-policy`: what the gateway compiles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EffectivePolicy {
    /// `{"device": ID}` or `{"service": NAME}`.
    #[schema(value_type = Object)]
    pub subject: PolicySubject,
    /// The device's state (devices only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub state: Option<DeviceState>,
    /// The device's group (devices only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub group: Option<GroupId>,
    /// Whether the gateway lets it hold a session at all.
    pub may_connect: bool,
    pub documents: Vec<AppliedPolicy>,
    pub notes: Vec<PolicyNote>,
    /// Rules compiled from the documents (all actions).
    pub rule_count: u64,
}
