//! `/v1/alerts`: alerts, their response actions and evidence bundles.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The answer to `GET /v1/alerts`: ascending by id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertList {
    pub alerts: Vec<bulwark_types::Alert>,
}

/// The query of `GET /v1/alerts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AlertQuery {
    /// Only alerts with a larger id (to follow new ones).
    pub after: Option<i64>,
    /// Only alerts about this device.
    pub device: Option<String>,
    /// `open`, `acknowledged` or `resolved`.
    pub state: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// `POST /v1/alerts/{id}/acknowledge|resolve` and the action commands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertNote {
    pub reason: Option<String>,
}

/// `POST /v1/alerts/{id}/escalate`: carry out an action on the alert's
/// device now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Escalate {
    pub action: bulwark_types::ActionKind,
    /// Release a reversible action (throttle, restrict) after this long.
    #[serde(default)]
    pub release_after_secs: Option<u64>,
}
