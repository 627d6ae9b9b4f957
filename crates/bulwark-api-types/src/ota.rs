//! `/v1/ota`: artifacts, releases and the TUF repository devices verify.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The answer to `POST /v1/ota/artifacts`: where the upload landed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ArtifactStored {
    /// SHA-256 of the artifact, hex: its address in the store.
    pub sha256: String,
    pub length: u64,
}

/// `POST /v1/ota/releases/prepare` and `POST /v1/ota/releases`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRelease {
    /// The target name devices fetch it by: letters, digits, `.`, `_`, `-`
    /// (no paths), at most 128 bytes.
    pub name: String,
    /// Semantic version of what it installs.
    pub version: String,
    /// Hardware models it may be installed on (at least one).
    pub hardware: Vec<String>,
    /// A device that installs it refuses every later release below this.
    #[serde(default)]
    pub floor: Option<String>,
    /// The uploaded artifact (from `POST /v1/ota/artifacts`).
    pub sha256: String,
    pub length: u64,
    /// The targets metadata signed offline (`bulwark ota sign`), as JSON
    /// text. Without it the server signs with its own targets key, which
    /// only a dev-mode server holds.
    #[serde(default)]
    pub signed_targets: Option<String>,
}

/// The answer to `POST /v1/ota/releases/prepare`: the next targets
/// metadata, unsigned, to sign offline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreparedRelease {
    /// Canonical JSON text of the unsigned targets metadata.
    pub unsigned_targets: String,
}

/// `POST /v1/ota/rollouts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRollout {
    /// The published release to install.
    pub release: String,
    /// Which active devices (all conditions); empty selects every active device.
    #[serde(default)]
    pub selector: bulwark_types::RolloutSelector,
    pub plan: bulwark_types::RolloutPlan,
}

/// `POST /v1/ota/rollouts/{id}/{pause|resume|cancel}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutCommand {
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/ota/reports`: a device's step in a rollout (mTLS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceReport {
    pub rollout: String,
    pub release: String,
    /// `downloading`, `verifying`, `installing`, `rebooting`, `healthy`,
    /// `failed` or `rolled_back`.
    pub step: String,
    pub reason: Option<String>,
}
