//! Persistence for Bulwark.
//!
//! [`Store`] is the contract the rest of the server programs against; the
//! embedded SQLite implementation is [`SqliteStore`], and a PostgreSQL one
//! can satisfy the same trait later. Operations are coarse on purpose: each
//! state change and its audit entries commit in one transaction, so the
//! registry and the audit log can never disagree.
//!
//! [`MqttStore`] keeps the MQTT gateway's sessions, retained messages and
//! wills in a file of their own, with the same commit discipline.
//!
//! Invariant: a method that changes state returns only after its
//! transaction is durably committed (SQLite WAL, `synchronous=FULL`).

mod error;
mod model;
pub mod mqtt;
pub mod sqlite;

use async_trait::async_trait;
use bulwark_audit::{Actor, AuditEvent, Checkpoint, Entry, VerifyError, VerifyReport};
use bulwark_types::{
    CertSerial, Certificate, Claim, Device, DeviceDetail, DeviceId, DeviceState, EnrollToken,
    Group, ManufacturerCaName, ManufacturerCertificate, OperatorToken, OtaRelease, PolicyName,
    PolicySummary, PolicyTarget, RevocationReason, Service, ServiceName,
};

pub use error::StoreError;
pub use model::{
    AlertActionChange, AlertFilter, BindKind, Bound, CertRecord, DeviceFilter, DeviceStepChange,
    DeviceUpdate, DueAlertAction, EnrollAuth, Enrollment, ManufacturerBinding,
    ManufacturerCaRecord, ManufacturerCertRecord, MetricSummary, NewAlert, NewAlertAction, NewCert,
    NewClaim, NewDevice, NewEnrollToken, NewGroup, NewManufacturerCa, NewOperatorToken,
    NewPolicyVersion, NewRollout, NewService, PolicyRecord, PolicyWrite, RaiseOutcome,
    Reenrollment, RevokedCert, ServiceRecord, StoredPolicy, SummariesWritten, TokenHash,
    Transition,
};
pub use mqtt::{
    MqttOp, MqttSnapshot, MqttStore, MqttStoreStats, StoredMessage, StoredRetained, StoredSession,
    StoredSubscription, StoredWill,
};
pub use sqlite::{CheckpointPolicy, CheckpointSigner, SqliteStore};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A device and every certificate it holds or held, read together for the
/// scheduled posture audits ([`Store::posture_devices`]).
#[derive(Debug, Clone)]
pub struct DevicePosture {
    pub device: Device,
    /// Certificates Bulwark issued to it, newest first; `der` is empty for
    /// revoked ones (nothing to audit in them).
    pub certificates: Vec<CertRecord>,
    /// Manufacturer certificates bound to it, newest first (their DER is
    /// not kept).
    pub manufacturer_certificates: Vec<ManufacturerCertificate>,
}

/// Everything the server persists.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    // --- groups -----------------------------------------------------------
    async fn create_group(&self, group: NewGroup, actor: Actor) -> Result<Group>;
    async fn list_groups(&self) -> Result<Vec<Group>>;

    // --- devices ----------------------------------------------------------
    /// Pre-registers a device in state `pending`.
    async fn create_device(&self, device: NewDevice, actor: Actor) -> Result<Device>;
    async fn update_device(
        &self,
        id: DeviceId,
        update: DeviceUpdate,
        actor: Actor,
    ) -> Result<Device>;
    async fn get_device(&self, id: &DeviceId) -> Result<Option<DeviceDetail>>;
    /// A device's record (without its certificate history) and the current
    /// version of every policy attached to its group, read together: what
    /// the MQTT gateway needs at every CONNECT, in one reader job.
    async fn get_device_with_group_policies(
        &self,
        id: &DeviceId,
    ) -> Result<Option<(Device, Vec<StoredPolicy>)>>;
    /// Records that the device was seen (an MQTT connection); not audited,
    /// a no-op for an unknown device.
    async fn record_seen(&self, id: &DeviceId, at: time::OffsetDateTime) -> Result<()>;
    async fn list_devices(&self, filter: DeviceFilter) -> Result<Vec<Device>>;
    /// Moves a device through its lifecycle at an operator's request
    /// (`pending -> active` only for a device that holds a live
    /// manufacturer certificate: otherwise enrollment does that);
    /// decommissioning revokes every certificate of the device (its
    /// manufacturer certificates included) in the same transaction.
    async fn transition_device(
        &self,
        id: DeviceId,
        to: DeviceState,
        actor: Actor,
    ) -> Result<Transition>;

    // --- certificates -----------------------------------------------------
    async fn get_certificate(&self, serial: &CertSerial) -> Result<Option<CertRecord>>;
    async fn revoke_certificate(
        &self,
        serial: CertSerial,
        reason: RevocationReason,
        actor: Actor,
    ) -> Result<Certificate>;
    async fn revoked_certificates(&self) -> Result<Vec<RevokedCert>>;
    /// Records a certificate the server issued for itself.
    async fn record_server_certificate(&self, cert: NewCert) -> Result<()>;
    /// Allocates the next CRL number (durably, so numbers never repeat).
    async fn next_crl_number(&self) -> Result<u64>;

    // --- enrollment -------------------------------------------------------
    async fn create_enroll_token(&self, token: NewEnrollToken, actor: Actor)
        -> Result<EnrollToken>;
    async fn list_enroll_tokens(&self) -> Result<Vec<EnrollToken>>;
    /// Looks a token up by hash without consuming it.
    async fn find_enroll_token(&self, hash: &TokenHash) -> Result<Option<EnrollToken>>;
    /// Consumes the credential, activates the device and records its
    /// certificate, atomically. Refuses a used or expired token.
    async fn commit_enrollment(&self, enrollment: Enrollment) -> Result<Device>;
    /// Records a renewed certificate for a device authenticated by `old_serial`.
    async fn commit_reenrollment(&self, renewal: Reenrollment) -> Result<Device>;
    async fn create_claim(&self, claim: NewClaim, actor: Actor) -> Result<Claim>;
    async fn get_claim(&self, id: &str) -> Result<Option<Claim>>;
    async fn list_claims(&self) -> Result<Vec<Claim>>;

    // --- operator tokens --------------------------------------------------
    async fn create_operator_token(
        &self,
        token: NewOperatorToken,
        actor: Actor,
    ) -> Result<OperatorToken>;
    async fn find_operator_token(&self, hash: &TokenHash) -> Result<Option<OperatorToken>>;
    async fn list_operator_tokens(&self) -> Result<Vec<OperatorToken>>;
    async fn revoke_operator_token(&self, id: String, actor: Actor) -> Result<OperatorToken>;

    // --- policies ---------------------------------------------------------
    /// Stores `policy` as its name's next version (1 for a new or deleted
    /// name); a document equal to the current version stores nothing.
    async fn put_policy(&self, policy: NewPolicyVersion, actor: Actor) -> Result<PolicyWrite>;
    /// Live (not deleted) policies, by name, with their attachments.
    async fn list_policies(&self) -> Result<Vec<PolicySummary>>;
    /// A live policy with `version` (default: the current one) and its
    /// version list; `None` if there is no such live policy,
    /// `NotFound { what: "policy version" }` if there is no such version.
    async fn get_policy(
        &self,
        name: &PolicyName,
        version: Option<u32>,
    ) -> Result<Option<PolicyRecord>>;
    /// Deletes a policy; refused with `PolicyInUse` while it is attached.
    async fn delete_policy(&self, name: PolicyName, actor: Actor) -> Result<()>;
    /// Attaches a live policy to a group or service; `false` when it
    /// already was (nothing written).
    async fn attach_policy(
        &self,
        name: PolicyName,
        target: PolicyTarget,
        actor: Actor,
    ) -> Result<bool>;
    async fn detach_policy(
        &self,
        name: PolicyName,
        target: PolicyTarget,
        actor: Actor,
    ) -> Result<()>;
    /// The current version of every policy attached to `target`, by name.
    async fn attached_policies(&self, target: &PolicyTarget) -> Result<Vec<StoredPolicy>>;

    // --- OTA -----------------------------------------------------------------
    /// Records a published release with its audit entry. A taken name is
    /// `AlreadyExists`.
    async fn publish_ota_release(
        &self,
        release: OtaRelease,
        offline_signed: bool,
        actor: Actor,
    ) -> Result<OtaRelease>;
    /// Audits a new root of the OTA repository (created or rotated).
    async fn ota_root_published(&self, version: u64, actor: Actor) -> Result<()>;
    async fn list_ota_releases(&self) -> Result<Vec<OtaRelease>>;
    /// Creates a rollout (status `running`, no phase started) with its
    /// devices `queued`; audited. The release must exist.
    async fn create_rollout(
        &self,
        rollout: NewRollout,
        actor: Actor,
    ) -> Result<bulwark_types::Rollout>;
    async fn get_rollout(&self, id: &str) -> Result<Option<bulwark_types::Rollout>>;
    async fn list_rollouts(&self) -> Result<Vec<bulwark_types::Rollout>>;
    async fn rollout_devices(&self, id: &str) -> Result<Vec<bulwark_types::RolloutDevice>>;
    async fn rollout_device(
        &self,
        id: &str,
        device: &DeviceId,
    ) -> Result<Option<bulwark_types::RolloutDevice>>;
    /// A device's steps with their times and reasons, oldest first.
    async fn rollout_device_history(
        &self,
        id: &str,
        device: &DeviceId,
    ) -> Result<Vec<(String, Option<String>, time::OffsetDateTime)>>;
    /// Sets the status (and reason); audited.
    async fn set_rollout_status(
        &self,
        id: &str,
        status: &str,
        reason: Option<String>,
        accept_failures: bool,
        actor: Actor,
    ) -> Result<bulwark_types::Rollout>;
    /// Starts `phase` of a running rollout: its queued devices become
    /// `notified` (returned, to be told); audited.
    async fn start_rollout_phase(
        &self,
        id: &str,
        phase: u32,
        actor: Actor,
    ) -> Result<Vec<DeviceId>>;
    /// When the current phase's soak started (`None` clears it).
    async fn set_rollout_soak(&self, id: &str, at: Option<time::OffsetDateTime>) -> Result<()>;
    /// Applies a device's step change if it is still at `change.from`;
    /// returns whether it applied.
    async fn set_rollout_device_step(&self, change: DeviceStepChange, actor: Actor)
        -> Result<bool>;
    async fn get_ota_release(&self, name: &str) -> Result<Option<OtaRelease>>;

    // --- service principals -------------------------------------------------
    async fn create_service(&self, service: NewService, actor: Actor) -> Result<Service>;
    async fn list_services(&self) -> Result<Vec<Service>>;
    async fn get_service(&self, name: &ServiceName) -> Result<Option<ServiceRecord>>;
    /// Deletes a service, detaches its policies and revokes its live
    /// certificates, atomically; returns the revoked serials.
    async fn delete_service(&self, name: ServiceName, actor: Actor) -> Result<Vec<CertSerial>>;
    /// Records a certificate issued to an existing service.
    async fn record_service_certificate(
        &self,
        name: ServiceName,
        cert: NewCert,
        actor: Actor,
    ) -> Result<()>;

    // --- manufacturer CAs ---------------------------------------------------
    /// Registers a manufacturer CA (or re-registers a removed one under its
    /// old name); a name or certificate already in use is a `Conflict`.
    async fn create_manufacturer_ca(
        &self,
        ca: NewManufacturerCa,
        actor: Actor,
    ) -> Result<ManufacturerCaRecord>;
    /// Registered (not removed) manufacturer CAs, by name.
    async fn list_manufacturer_cas(&self) -> Result<Vec<ManufacturerCaRecord>>;
    async fn get_manufacturer_ca(
        &self,
        name: &ManufacturerCaName,
    ) -> Result<Option<ManufacturerCaRecord>>;
    /// Removes a manufacturer CA (its name stays reserved for its
    /// certificate); returns it and the devices bound to it.
    async fn delete_manufacturer_ca(
        &self,
        name: ManufacturerCaName,
        actor: Actor,
    ) -> Result<(ManufacturerCaRecord, Vec<DeviceId>)>;
    /// A recorded manufacturer certificate, by SHA-256 fingerprint (hex).
    async fn get_manufacturer_certificate(
        &self,
        fingerprint: &str,
    ) -> Result<Option<ManufacturerCertRecord>>;
    /// Binds a manufacturer certificate to the device its CN names,
    /// creating the device just in time if asked, atomically: refused with
    /// `ManufacturerBinding` if the device is not bound to that CA,
    /// `NotFound` if the CA is no longer registered (or the device is
    /// unknown and no JIT was asked), `CertificateRevoked`, `DeviceState`
    /// for a decommissioned device.
    async fn bind_manufacturer_certificate(
        &self,
        binding: ManufacturerBinding,
        actor: Actor,
    ) -> Result<Bound>;

    // --- audit ------------------------------------------------------------
    /// Appends a security event that changes no other state.
    async fn append_audit(&self, actor: Actor, event: AuditEvent) -> Result<u64>;
    async fn audit_entries(&self, after: u64, limit: u32) -> Result<Vec<Entry>>;
    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>>;
    /// Signs a checkpoint over the current head now (if anything is unsigned).
    async fn checkpoint_now(&self) -> Result<()>;

    // --- alerts and response actions ----------------------------------------
    /// Records a finding: opens an alert (with its bundle and scheduled
    /// actions, audited), folds it into the open alert with the same
    /// `dedup` key, or drops it inside a resolved alert's suppression window.
    async fn raise_alert(&self, alert: NewAlert, actor: Actor) -> Result<RaiseOutcome>;
    async fn get_alert(&self, id: i64) -> Result<Option<bulwark_types::Alert>>;
    async fn list_alerts(&self, filter: AlertFilter) -> Result<Vec<bulwark_types::Alert>>;
    /// Acknowledges or resolves an alert (`Conflict` if it cannot move so);
    /// resolving cancels the actions still scheduled or awaiting approval.
    async fn set_alert_state(
        &self,
        id: i64,
        to: bulwark_types::AlertState,
        reason: Option<String>,
        actor: Actor,
    ) -> Result<bulwark_types::Alert>;
    /// Moves one action if it is still in one of `from` (`Conflict` if not).
    async fn change_alert_action(
        &self,
        change: AlertActionChange,
        actor: Actor,
    ) -> Result<(bulwark_types::Alert, bulwark_types::AlertAction)>;
    /// Adds an action to an unresolved alert (an operator's escalation).
    async fn add_alert_action(
        &self,
        alert: i64,
        action: NewAlertAction,
        actor: Actor,
    ) -> Result<(bulwark_types::Alert, bulwark_types::AlertAction)>;
    /// Scheduled actions due by `now` on unresolved alerts, and applied
    /// reversible actions whose release time passed.
    async fn due_alert_actions(&self, now: time::OffsetDateTime) -> Result<Vec<DueAlertAction>>;
    /// Applied actions of these kinds (not released, cancelled or failed),
    /// oldest first, at most `limit`: what the gateway must enforce again
    /// after a restart (its throttles and address blocks live in memory).
    async fn applied_alert_actions(
        &self,
        kinds: Vec<bulwark_types::ActionKind>,
        limit: u32,
    ) -> Result<Vec<DueAlertAction>>;
    /// The evidence bundle stored when the alert opened.
    async fn alert_bundle(&self, id: i64) -> Result<Option<Vec<u8>>>;
    /// Alerts about `device` of at least `min` severity first seen at or
    /// after `since` (the rollout engine's security signal).
    async fn device_alerts_since(
        &self,
        device: &DeviceId,
        since: time::OffsetDateTime,
        min: bulwark_types::Severity,
    ) -> Result<u64>;

    // --- detection metric summaries -----------------------------------------
    /// Inserts `batch` in one transaction and, in the same transaction,
    /// deletes summaries whose period ended before `prune_before`
    /// (retention; at most a bounded number of rows per call, so a
    /// shortened retention catches up over several calls rather than
    /// stalling the writer).
    async fn record_metric_summaries(
        &self,
        batch: Vec<MetricSummary>,
        prune_before: time::OffsetDateTime,
    ) -> Result<SummariesWritten>;
    /// The summaries of `entity` (`device:<id>`, …) whose period started at
    /// or after `since`, newest first, at most `limit` (1 to 1000).
    async fn metric_summaries(
        &self,
        entity: &str,
        since: time::OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<MetricSummary>>;

    // --- posture audits -----------------------------------------------------
    /// Devices with ids greater than `after`, by id, at most `limit`, with
    /// their certificates, in one read (not audited).
    async fn posture_devices(
        &self,
        after: Option<DeviceId>,
        limit: u32,
    ) -> Result<Vec<DevicePosture>>;
    /// Verifies the whole audit log against its signed checkpoints in one
    /// streaming read, signing nothing. The outer `Result` is about reading
    /// the log; the inner one is the verdict.
    async fn verify_audit(
        &self,
        public_key: [u8; 32],
    ) -> Result<std::result::Result<VerifyReport, VerifyError>>;
}
