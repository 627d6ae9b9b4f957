//! The closed set of things the audit log records, and who did them.

use bulwark_types::{
    CertSerial, DeviceId, DeviceState, GroupId, JitMode, ManufacturerCaName, PolicyName,
    PolicyTarget, RevocationReason, Role, ServiceName,
};
use serde::{Deserialize, Serialize};

/// Who caused an audited event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// An operator, by token id (never the token itself).
    Operator { token_id: String, role: Role },
    /// A device, authenticated by its certificate.
    Device { device_id: DeviceId },
    /// A claim (factory batch) certificate.
    Claim { claim_id: String },
    /// An unauthenticated caller, by source address.
    Anonymous { source: String },
    /// The server itself (start-up, timers).
    System,
}

impl Actor {
    /// A compact, stable rendering stored beside the event.
    pub fn render(&self) -> String {
        match self {
            Actor::Operator { token_id, role } => format!("operator:{token_id}:{role}"),
            Actor::Device { device_id } => format!("device:{device_id}"),
            Actor::Claim { claim_id } => format!("claim:{claim_id}"),
            Actor::Anonymous { source } => format!("anonymous:{source}"),
            Actor::System => "system".to_string(),
        }
    }
}

/// How a device obtained a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnrollMethod {
    EnrollmentToken,
    ClaimCertificate,
    Reenroll,
}

/// Every kind of audited event. Closed: adding a kind is a code change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuditEvent {
    ServerInitialized {
        root_fingerprint: String,
    },
    GroupCreated {
        group: GroupId,
    },
    DeviceRegistered {
        device_id: DeviceId,
        group: GroupId,
        /// The manufacturer CA the device was bound to, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        manufacturer_ca: Option<ManufacturerCaName>,
    },
    DeviceUpdated {
        device_id: DeviceId,
        /// Names of the fields that were set.
        fields: Vec<String>,
    },
    DeviceEnrolled {
        device_id: DeviceId,
        group: GroupId,
        serial: CertSerial,
        method: EnrollMethod,
    },
    EnrollmentRefused {
        reason: String,
        device_id: Option<DeviceId>,
    },
    EnrollmentTokenCreated {
        token_id: String,
        group: GroupId,
        device_id: Option<DeviceId>,
        expires_at: String,
    },
    EnrollmentTokenUsed {
        token_id: String,
        device_id: DeviceId,
    },
    ClaimCreated {
        claim_id: String,
        group: GroupId,
        serial: CertSerial,
    },
    CertificateRevoked {
        serial: CertSerial,
        reason: RevocationReason,
        device_id: Option<DeviceId>,
    },
    DeviceStateChanged {
        device_id: DeviceId,
        from: DeviceState,
        to: DeviceState,
    },
    OperatorTokenCreated {
        token_id: String,
        role: Role,
        name: String,
        expires_at: String,
    },
    OperatorTokenRevoked {
        token_id: String,
    },
    AuthenticationFailed {
        reason: String,
    },
    AuthorizationDenied {
        action: String,
    },
    /// The MQTT gateway refused a CONNECT from an identified principal
    /// (revoked or expired certificate, device not allowed to connect,
    /// clientId of another device, bad service password).
    MqttConnectRefused {
        client_id: String,
        source: String,
        reason: String,
    },
    /// A second connection took an MQTT session over: the signal of a cloned
    /// certificate or a device reconnecting before its old link timed out.
    MqttSessionTakenOver {
        client_id: String,
        previous_source: String,
        source: String,
    },
    /// An operator disconnected a live MQTT session.
    MqttSessionDisconnected {
        client_id: String,
    },
    /// A policy document was stored as a new version (1 for a new policy).
    PolicyVersionCreated {
        policy: PolicyName,
        version: u32,
        /// SHA-256 (hex) of the version's canonical JSON.
        sha256: String,
    },
    /// A stored policy was deleted (its versions are kept, unlisted).
    PolicyDeleted {
        policy: PolicyName,
    },
    PolicyAttached {
        policy: PolicyName,
        target: PolicyTarget,
    },
    PolicyDetached {
        policy: PolicyName,
        target: PolicyTarget,
    },
    ServiceCreated {
        service: ServiceName,
        /// Whether a password was generated for it.
        password: bool,
    },
    /// A service principal was deleted; its certificates were revoked in
    /// the same transaction (each with its own entry).
    ServiceDeleted {
        service: ServiceName,
    },
    ServiceCertificateIssued {
        service: ServiceName,
        serial: CertSerial,
        not_after: String,
    },
    /// A service's password authentication failed. `service` is absent when
    /// the offered name is not even a valid service name.
    ServiceAuthenticationFailed {
        service: Option<ServiceName>,
        reason: String,
    },
    /// An operator registered a manufacturer CA (or re-registered a removed
    /// one under its old name).
    ManufacturerCaRegistered {
        name: ManufacturerCaName,
        /// SHA-256 (hex) of the CA certificate.
        fingerprint: String,
        group: Option<GroupId>,
        jit: JitMode,
    },
    /// An operator removed a manufacturer CA: its certificates no longer
    /// authenticate anyone; `devices` were bound to it.
    ManufacturerCaRemoved {
        name: ManufacturerCaName,
        fingerprint: String,
        devices: u64,
    },
    /// A device unknown to the inventory connected with a certificate of a
    /// registered manufacturer CA and was created just in time.
    DeviceJitRegistered {
        device_id: DeviceId,
        group: GroupId,
        manufacturer_ca: ManufacturerCaName,
        /// `pending` (an operator must activate it) or `active`.
        state: DeviceState,
        /// SHA-256 (hex) of the certificate.
        fingerprint: String,
    },
    /// A new certificate of a device's manufacturer CA was bound to the
    /// device (its first, for a pre-registered device, or a re-provisioned
    /// one).
    ManufacturerCertificateBound {
        device_id: DeviceId,
        manufacturer_ca: ManufacturerCaName,
        fingerprint: String,
        /// The serial as the manufacturer wrote it (hex).
        serial: String,
    },
    /// A certificate of a registered manufacturer CA claimed a device it
    /// may not speak for (enrolled through Bulwark, or bound to another
    /// manufacturer CA).
    ManufacturerCertificateRefused {
        /// The device id the certificate's CN claims.
        device_id: DeviceId,
        manufacturer_ca: ManufacturerCaName,
        fingerprint: String,
        reason: String,
    },
    /// A manufacturer certificate was revoked (decommissioning).
    ManufacturerCertificateRevoked {
        device_id: DeviceId,
        fingerprint: String,
        reason: RevocationReason,
    },
    /// An OTA release was published: devices may now be told to install it.
    OtaReleasePublished {
        name: String,
        version: String,
        hardware: Vec<String>,
        floor: Option<String>,
        /// SHA-256 (hex) of the artifact.
        sha256: String,
        length: u64,
        targets_version: u64,
        /// Whether the targets metadata was signed offline (else with the
        /// server's online targets key, dev mode).
        offline_signed: bool,
    },
    /// The TUF repository's signing state changed (created, root rotated).
    OtaRootPublished {
        version: u64,
    },
    /// A rollout of `release` was created over `devices` devices.
    RolloutCreated {
        id: String,
        release: String,
        devices: u64,
    },
    /// A phase started: its devices are notified.
    RolloutPhaseStarted {
        id: String,
        phase: u32,
        devices: u64,
    },
    /// Paused, resumed, completed or cancelled (by an operator, or by the
    /// abort policy with the reason).
    RolloutStatusChanged {
        id: String,
        status: String,
        reason: Option<String>,
    },
    /// A device's update moved: a step it reported, a time-out, a retry
    /// (`queued` again), or a security signal against it.
    RolloutDeviceStep {
        id: String,
        device_id: DeviceId,
        step: String,
        reason: Option<String>,
        attempts: u32,
    },
    /// A detector raised an alert (its evidence bundle's SHA-256 is kept
    /// with it, so the bundle can be checked later).
    AlertOpened {
        id: i64,
        entity: String,
        device_id: Option<DeviceId>,
        detector: String,
        severity: String,
        title: String,
        bundle_sha256: Option<String>,
    },
    /// Acknowledged or resolved.
    AlertStateChanged {
        id: i64,
        state: String,
        reason: Option<String>,
    },
    /// A response action was scheduled, applied, released, approved,
    /// refused, cancelled or failed.
    AlertActionChanged {
        alert: i64,
        action_id: i64,
        action: String,
        device_id: Option<DeviceId>,
        state: String,
        reason: Option<String>,
    },
}
