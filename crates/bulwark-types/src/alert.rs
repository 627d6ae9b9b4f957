//! Alerts raised by the detection pipeline and the response actions taken
//! on them: the records the store keeps and the API and CLI show.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// How bad an alert is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Some(match s {
            "info" => Severity::Info,
            "low" => Severity::Low,
            "medium" => Severity::Medium,
            "high" => Severity::High,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an alert is in its life: `open` → `acknowledged` → `resolved`
/// (an open alert may also be resolved directly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Open,
    Acknowledged,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Open => "open",
            AlertState::Acknowledged => "acknowledged",
            AlertState::Resolved => "resolved",
        }
    }

    pub fn parse(s: &str) -> Option<AlertState> {
        Some(match s {
            "open" => AlertState::Open,
            "acknowledged" => AlertState::Acknowledged,
            "resolved" => AlertState::Resolved,
            _ => return None,
        })
    }
}

/// A response action a playbook step (or an operator) takes on an alert's
/// device, in escalating order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    /// Send the alert to the sinks (always done; a step makes it explicit).
    Notify,
    /// Tighter publish rate limits for the device's sessions (reversible).
    Throttle,
    /// Move the device to `quarantined` (the quarantine policy; reversible).
    Restrict,
    /// Cut the device's live sessions (it may reconnect).
    Disconnect,
    /// Revoke the device's certificates (irreversible).
    Revoke,
    /// Decommission the device (irreversible).
    Decommission,
    /// Refuse new connections from a source address (an alert about
    /// `source:<ip>`, such as credential stuffing; reversible, timed).
    Block,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Notify => "notify",
            ActionKind::Throttle => "throttle",
            ActionKind::Restrict => "restrict",
            ActionKind::Disconnect => "disconnect",
            ActionKind::Revoke => "revoke",
            ActionKind::Decommission => "decommission",
            ActionKind::Block => "block",
        }
    }

    pub fn parse(s: &str) -> Option<ActionKind> {
        Some(match s {
            "notify" => ActionKind::Notify,
            "throttle" => ActionKind::Throttle,
            "restrict" => ActionKind::Restrict,
            "disconnect" => ActionKind::Disconnect,
            "revoke" => ActionKind::Revoke,
            "decommission" => ActionKind::Decommission,
            "block" => ActionKind::Block,
            _ => return None,
        })
    }

    /// Whether the action can be undone (a timed release applies only to these).
    pub fn reversible(self) -> bool {
        matches!(
            self,
            ActionKind::Throttle | ActionKind::Restrict | ActionKind::Block
        )
    }

    /// Whether the action cannot be undone (these wait for approval unless
    /// a playbook says otherwise).
    pub fn irreversible(self) -> bool {
        matches!(self, ActionKind::Revoke | ActionKind::Decommission)
    }

    /// Whether the action contains the device (what "time to contain" measures).
    pub fn contains(self) -> bool {
        !matches!(self, ActionKind::Notify)
    }
}

/// Where a response action is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionState {
    /// Waiting for its delay (`after`) to pass while the alert stays open.
    Scheduled,
    /// Waiting for an operator's approval (irreversible steps).
    AwaitingApproval,
    /// Done, and in force.
    Applied,
    /// A reversible action undone, by its timer or an operator.
    Released,
    /// Not done: the alert was resolved first, or an operator refused it.
    Cancelled,
    /// Tried and failed (the reason says why).
    Failed,
}

impl ActionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionState::Scheduled => "scheduled",
            ActionState::AwaitingApproval => "awaiting_approval",
            ActionState::Applied => "applied",
            ActionState::Released => "released",
            ActionState::Cancelled => "cancelled",
            ActionState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<ActionState> {
        Some(match s {
            "scheduled" => ActionState::Scheduled,
            "awaiting_approval" => ActionState::AwaitingApproval,
            "applied" => ActionState::Applied,
            "released" => ActionState::Released,
            "cancelled" => ActionState::Cancelled,
            "failed" => ActionState::Failed,
            _ => return None,
        })
    }
}

/// One response action on an alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertAction {
    pub id: i64,
    /// The playbook that scheduled it (`None` for an operator's action).
    pub playbook: Option<String>,
    /// Its position in the playbook (0-based).
    pub step: u32,
    pub action: ActionKind,
    pub state: ActionState,
    /// Why it is in that state (a failure, who approved or released it).
    pub reason: Option<String>,
    /// When a `scheduled` action becomes due.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub due_at: Option<OffsetDateTime>,
    /// When an applied reversible action is released by its timer.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub release_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub applied_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
}

/// An alert: one detector's finding about one entity, de-duplicated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Alert {
    pub id: i64,
    /// The device it is about, when it is about a device.
    #[schema(value_type = Option<String>)]
    pub device: Option<crate::DeviceId>,
    /// What it is about: `device:<id>`, `source:<ip>`, `service:<name>`, `fleet`.
    pub entity: String,
    /// The detector that raised it (`rule:<name>`, `baseline:<metric>`,
    /// `novelty:<kind>`, `model:iforest`, `audit:<check>`).
    pub detector: String,
    pub severity: Severity,
    pub title: String,
    pub state: AlertState,
    /// How many findings were folded into it (de-duplication).
    pub count: u64,
    /// What triggered it: the values, thresholds and baselines.
    #[schema(value_type = Object)]
    pub evidence: serde_json::Value,
    /// SHA-256 (hex) of the evidence bundle captured when it opened.
    pub bundle_sha256: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub first_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub last_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    pub actions: Vec<AlertAction>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in [
            Severity::Info,
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ] {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
        }
        for s in [
            AlertState::Open,
            AlertState::Acknowledged,
            AlertState::Resolved,
        ] {
            assert_eq!(AlertState::parse(s.as_str()), Some(s));
        }
        for a in [
            ActionKind::Notify,
            ActionKind::Throttle,
            ActionKind::Restrict,
            ActionKind::Disconnect,
            ActionKind::Revoke,
            ActionKind::Decommission,
            ActionKind::Block,
        ] {
            assert_eq!(ActionKind::parse(a.as_str()), Some(a));
            assert!(!(a.reversible() && a.irreversible()));
        }
        for s in [
            ActionState::Scheduled,
            ActionState::AwaitingApproval,
            ActionState::Applied,
            ActionState::Released,
            ActionState::Cancelled,
            ActionState::Failed,
        ] {
            assert_eq!(ActionState::parse(s.as_str()), Some(s));
        }
        assert!(Severity::Critical > Severity::High && Severity::Low > Severity::Info);
        assert_eq!(Severity::parse("severe"), None);
    }
}
