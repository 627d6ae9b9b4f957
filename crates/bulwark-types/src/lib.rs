//! Newtypes shared by every Bulwark crate.
//!
//! Identities, serials and states are never plain strings: each type here
//! validates on construction, so a value that exists is a value that is
//! well-formed. This crate does no I/O and has no async.

mod ids;
mod lifecycle;
mod role;
mod serial;

pub use ids::{DeviceId, GroupId, IdError, Label, ManufacturerCaName, PolicyName, ServiceName};
pub use lifecycle::{DeviceState, RevocationReason, TransitionError};
pub use role::Role;
pub use serial::{CertSerial, SerialError};
mod alert;
mod manufacturer;
mod ota;
mod records;

pub use alert::{ActionKind, ActionState, Alert, AlertAction, AlertState, Severity};
pub use manufacturer::{JitMode, ManufacturerCa, ManufacturerCertificate};
pub use ota::{
    AcceptedFailures, OtaRelease, PhaseProgress, Rollout, RolloutDevice, RolloutPhase, RolloutPlan,
    RolloutSelector,
};
pub use records::{
    CertKind, Certificate, Claim, Device, DeviceDetail, EnrollToken, Group, OperatorToken,
    PolicySummary, PolicyTarget, PolicyVersion, Service,
};
