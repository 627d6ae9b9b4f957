//! Persistence for Bulwark.
//!
//! [`Store`] is the contract the rest of the server programs against; the
//! embedded SQLite implementation is [`SqliteStore`], and a PostgreSQL one
//! can satisfy the same trait later. Operations are coarse on purpose: each
//! state change and its audit entries commit in one transaction, so the
//! registry and the audit log can never disagree.
//!
//! Invariant: a method that changes state returns only after its
//! transaction is durably committed (SQLite WAL, `synchronous=FULL`).

mod error;
mod model;
pub mod sqlite;

use async_trait::async_trait;
use bulwark_audit::{Actor, AuditEvent, Checkpoint, Entry};
use bulwark_types::{
    CertSerial, Certificate, Claim, Device, DeviceDetail, DeviceId, DeviceState, EnrollToken,
    Group, OperatorToken, RevocationReason,
};

pub use error::StoreError;
pub use model::{
    CertRecord, DeviceFilter, DeviceUpdate, EnrollAuth, Enrollment, NewCert, NewClaim, NewDevice,
    NewEnrollToken, NewGroup, NewOperatorToken, Reenrollment, RevokedCert, TokenHash, Transition,
};
pub use sqlite::{CheckpointPolicy, CheckpointSigner, SqliteStore};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

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
    async fn list_devices(&self, filter: DeviceFilter) -> Result<Vec<Device>>;
    /// Moves a device through its lifecycle at an operator's request (never
    /// `pending -> active`: only enrollment does that); decommissioning
    /// revokes every certificate of the device in the same transaction.
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

    // --- audit ------------------------------------------------------------
    /// Appends a security event that changes no other state.
    async fn append_audit(&self, actor: Actor, event: AuditEvent) -> Result<u64>;
    async fn audit_entries(&self, after: u64, limit: u32) -> Result<Vec<Entry>>;
    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>>;
    /// Signs a checkpoint over the current head now (if anything is unsigned).
    async fn checkpoint_now(&self) -> Result<()>;
}
