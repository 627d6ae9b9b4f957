//! Bulwark's identity domain.
//!
//! [`Registry`] is where enrollment, renewal, lifecycle moves, revocation,
//! operator and service authentication, and stored MQTT policies are
//! decided. The HTTP layer parses requests and renders answers; it makes no
//! decision of its own.
//!
//! Proof types: an [`Operator`] is built only by
//! [`Registry::authenticate_operator`], a [`ClientIdentity`] only by
//! [`Registry::identify_client`] (certificates Bulwark issued) and
//! [`Registry::identify_mqtt_client`] (also devices whose certificate a
//! registered manufacturer CA issued). Every state-changing method takes
//! one of them, so an unauthenticated path does not compile.

mod alerts;
mod auth;
mod enroll;
mod error;
mod events;
mod manufacturer;
mod mqtt;
mod ota;
mod policy;
mod posture;
mod registry;
mod rollout;
mod secrets;
mod service;
mod summaries;

pub use alerts::{alert_filter, ActionCommand, ActionDone, Responder};
pub use auth::{
    Action, ClaimIdentity, ClientIdentity, DeviceCredential, DeviceIdentity, Operator,
    ServiceIdentity,
};
pub use enroll::Enrolled;
pub use error::RegistryError;
pub use events::{Event, EventBus};
pub use manufacturer::{ManufacturerTrust, TrustedCa};
pub use mqtt::{DeviceAccess, PolicySource, ServiceAccess};
pub use ota::{Ota, OtaConfig, OtaCreated, ReleaseRequest, RoleChange, RootChanges, OFFLINE_DIR};
pub use policy::{
    builtin_policy, statement_origin, Access, EffectivePolicy, PolicyStored, PolicySubject,
    PolicyTestOutcome, PolicyView,
};
pub use posture::{PosturePolicy, PostureStatement, MAX_POSTURE_PAGE};
pub use registry::{Registry, RegistryConfig};
pub use rollout::{rollout_spec, EngineMemory, Fleet};
pub use secrets::{hash_secret, new_secret, SecretKind};
pub use summaries::MAX_SUMMARIES;
