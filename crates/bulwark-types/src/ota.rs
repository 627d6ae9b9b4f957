//! OTA releases as the store keeps them and the API shows them.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// A published release: one TUF target and its Bulwark fields. Immutable
/// once published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OtaRelease {
    /// The TUF target name (validated: no path, no traversal).
    pub name: String,
    /// Semantic version of the firmware it carries.
    pub version: String,
    /// Hardware models it may be installed on.
    pub hardware: Vec<String>,
    /// Devices that installed it refuse any later release below this.
    pub floor: Option<String>,
    /// SHA-256 of the artifact, hex.
    pub sha256: String,
    pub length: u64,
    /// The version of the targets metadata that first listed it.
    pub targets_version: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub published_at: OffsetDateTime,
}

/// Which devices a rollout updates: all conditions must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub group: Option<crate::GroupId>,
    /// Every label must be present with this value.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hardware_model: Option<String>,
}

/// One phase of a rollout plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutPhase {
    /// A device count (`"10"`) or a share of the selected devices (`"25%"`).
    pub size: String,
    /// Seconds the phase's devices are watched, once it succeeded, before
    /// the next phase starts.
    #[serde(default)]
    pub min_soak_secs: u64,
}

/// How a rollout proceeds and when it stops.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutPlan {
    pub phases: Vec<RolloutPhase>,
    /// Share (percent) of a phase's devices that must end healthy.
    pub min_healthy_percent: u8,
    /// Failures (install failures, rollbacks, timeouts, security signals)
    /// as a share of finished devices at which the rollout is aborted...
    pub max_failure_percent: u8,
    /// ...once at least this many failed.
    pub min_failures: u32,
    /// `pause` or `cancel`.
    pub abort_action: String,
    /// A notified device must finish within this.
    pub device_timeout_secs: u64,
    /// Times a failed device is notified again before its failure counts.
    pub max_retries: u32,
    /// An updated (healthy) device with no MQTT session for this long is
    /// flagged silent, a failure of the rollout.
    #[serde(default = "default_silence_secs")]
    pub silence_secs: u64,
}

fn default_silence_secs() -> u64 {
    300
}

/// Device counts of one phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PhaseProgress {
    pub total: u32,
    /// Not notified yet.
    pub queued: u32,
    /// Notified, not finished.
    pub in_progress: u32,
    pub healthy: u32,
    /// Failed or rolled back for good.
    pub failed: u32,
    /// Healthy but raised a security signal since updating.
    pub flagged: u32,
}

/// What an operator's resume accepted (see [`Rollout::accepted`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AcceptedFailures {
    /// Failed or flagged devices at the resume.
    pub failures: u32,
    /// Finished devices (healthy, failed or flagged) at the resume.
    pub finished: u32,
    /// The phase that was current then: it is no longer held to the
    /// success criterion.
    pub phase: Option<u32>,
}

/// A rollout with its progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Rollout {
    pub id: String,
    pub release: String,
    /// `running`, `paused`, `completed` or `cancelled`.
    pub status: String,
    /// Why it was paused or cancelled.
    pub reason: Option<String>,
    /// The current phase (0-based); `None` before the first starts.
    pub phase: Option<u32>,
    pub phases: Vec<PhaseProgress>,
    pub plan: RolloutPlan,
    pub selector: RolloutSelector,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub soak_started_at: Option<OffsetDateTime>,
    /// Failures an operator accepted by resuming after the abort policy
    /// stopped the rollout: only later failures count against it.
    #[serde(default)]
    pub accepted: Option<AcceptedFailures>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// One device of a rollout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RolloutDevice {
    #[schema(value_type = String)]
    pub device: crate::DeviceId,
    pub phase: u32,
    /// `queued`, `notified`, `downloading`, `verifying`, `installing`,
    /// `rebooting`, `healthy`, `failed` or `rolled_back`.
    pub step: String,
    pub attempts: u32,
    pub reason: Option<String>,
    /// The security signal it raised after updating, if any.
    pub flagged: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub notified_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}
