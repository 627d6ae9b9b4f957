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

/// One role's keys in `POST /v1/ota/root/prepare` (and, dev mode,
/// `POST /v1/ota/root`). Omitted fields keep what the current root says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RootRoleChange {
    /// Ed25519 public keys, each a PEM `PUBLIC KEY` block (the `NAME.pub`
    /// file `bulwark ota keygen` writes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
    /// How many of the keys must sign (at least 1, at most the keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u64>,
}

/// `POST /v1/ota/root/prepare`: the roles to change in the next root;
/// `POST /v1/ota/root`: the signed root, or (dev mode, where the server
/// holds the root key) the roles to change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRoot {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<RootRoleChange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<RootRoleChange>,
    /// Snapshot and timestamp keys are the server's online keys: only keys
    /// it holds are accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<RootRoleChange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<RootRoleChange>,
    /// `POST /v1/ota/root` only: the next root as prepared, signed by a
    /// threshold of the current root keys and of the new ones (JSON text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_root: Option<String>,
}

/// The answer to `POST /v1/ota/root/prepare`: the next root, unsigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreparedRoot {
    /// Canonical JSON text of the unsigned root metadata.
    pub unsigned_root: String,
}

/// The answer to `POST /v1/ota/root`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RootPublished {
    /// The version of the new root (`GET /v1/ota/tuf/{version}.root.json`).
    pub version: u64,
}

/// `GET /v1/ota/root`: the newest root of the update repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OtaRoot {
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub expires: time::OffsetDateTime,
    /// Root, targets, snapshot and timestamp.
    pub roles: Vec<OtaRootRole>,
}

/// One role of an [`OtaRoot`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct OtaRootRole {
    /// `root`, `targets`, `snapshot` or `timestamp`.
    pub role: String,
    pub threshold: u64,
    /// TUF key ids (hex SHA-256 of the key), sorted.
    pub key_ids: Vec<String>,
}
