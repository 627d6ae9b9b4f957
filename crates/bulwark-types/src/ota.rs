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
