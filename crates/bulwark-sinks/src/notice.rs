//! What is delivered: a [`Notice`] about an alert or about one of its
//! response actions, its stable `kind` string and its JSON envelope (the
//! body of webhooks, JSON lines and NATS messages).

use bulwark_types::{ActionState, Alert, AlertAction, AlertState, Severity};
use serde::Serialize;
use time::OffsetDateTime;

/// One thing to tell the outside world.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// An alert was opened or changed (a finding folded into it, its state
    /// changed). The alert carries its current actions.
    Alert(Alert),
    /// A response action on an alert changed state (scheduled, awaiting
    /// approval, applied, released, cancelled, failed).
    Action { alert: Alert, action: AlertAction },
}

impl Notice {
    /// A stable, machine-readable name for what happened:
    ///
    /// | notice | kind |
    /// |---|---|
    /// | alert `open` with `count <= 1` | `alert.opened` |
    /// | alert `open` with `count > 1` | `alert.updated` |
    /// | alert `acknowledged` | `alert.acknowledged` |
    /// | alert `resolved` | `alert.resolved` |
    /// | action | `action.<state>`: `action.scheduled`, `action.awaiting_approval`, `action.applied`, `action.released`, `action.cancelled`, `action.failed` |
    ///
    /// Every kind is at most 24 printable ASCII characters, so it is also a
    /// valid syslog MSGID.
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::Alert(a) => match a.state {
                AlertState::Open if a.count <= 1 => "alert.opened",
                AlertState::Open => "alert.updated",
                AlertState::Acknowledged => "alert.acknowledged",
                AlertState::Resolved => "alert.resolved",
            },
            Notice::Action { action, .. } => match action.state {
                ActionState::Scheduled => "action.scheduled",
                ActionState::AwaitingApproval => "action.awaiting_approval",
                ActionState::Applied => "action.applied",
                ActionState::Released => "action.released",
                ActionState::Cancelled => "action.cancelled",
                ActionState::Failed => "action.failed",
            },
        }
    }

    /// The alert the notice is about.
    pub fn alert(&self) -> &Alert {
        match self {
            Notice::Alert(a) | Notice::Action { alert: a, .. } => a,
        }
    }

    /// The action, for an action notice.
    pub fn action(&self) -> Option<&AlertAction> {
        match self {
            Notice::Alert(_) => None,
            Notice::Action { action, .. } => Some(action),
        }
    }

    /// The alert's severity (what `min_severity` filters on, for actions too).
    pub fn severity(&self) -> Severity {
        self.alert().severity
    }

    /// When the notified change happened: the action's or the alert's
    /// `updated_at` (the syslog TIMESTAMP and CEF `rt`).
    pub fn time(&self) -> OffsetDateTime {
        match self {
            Notice::Alert(a) => a.updated_at,
            Notice::Action { action, .. } => action.updated_at,
        }
    }

    /// A one-line human summary (syslog MSG): the title for an alert,
    /// `<action> <state>: <title>` (and `(<reason>)`) for an action.
    pub fn summary(&self) -> String {
        match self {
            Notice::Alert(a) => a.title.clone(),
            Notice::Action { alert, action } => {
                let mut s = format!(
                    "{} {}: {}",
                    action.action.as_str(),
                    action.state.as_str(),
                    alert.title
                );
                if let Some(reason) = &action.reason {
                    s.push_str(" (");
                    s.push_str(reason);
                    s.push(')');
                }
                s
            }
        }
    }
}

/// The JSON envelope: `{"kind": …, "alert": {…}}`, plus `"action": {…}`
/// for an action notice. `alert` and `action` are the API's
/// `bulwark_types::Alert` and `AlertAction` records, unchanged.
#[derive(Debug, Serialize)]
pub struct Envelope<'a> {
    pub kind: &'static str,
    pub alert: &'a Alert,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'a AlertAction>,
}

impl<'a> Envelope<'a> {
    pub fn new(notice: &'a Notice) -> Envelope<'a> {
        Envelope {
            kind: notice.kind(),
            alert: notice.alert(),
            action: notice.action(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{action_notice, alert};

    #[test]
    fn kinds() {
        let mut a = alert();
        let kind = |a: &Alert| Notice::Alert(a.clone()).kind();
        assert_eq!(kind(&a), "alert.opened");
        a.count = 3;
        assert_eq!(kind(&a), "alert.updated");
        a.state = AlertState::Acknowledged;
        assert_eq!(kind(&a), "alert.acknowledged");
        a.state = AlertState::Resolved;
        assert_eq!(kind(&a), "alert.resolved");
        let n = action_notice();
        assert_eq!(n.kind(), "action.applied");
        assert_eq!(
            n.summary(),
            "revoke applied: Repeated auth failures (approved by ops=alice)"
        );
        let Notice::Action { alert, mut action } = n else {
            unreachable!()
        };
        action.state = ActionState::AwaitingApproval;
        assert_eq!(
            Notice::Action { alert, action }.kind(),
            "action.awaiting_approval"
        );
    }

    #[test]
    fn dispatcher_is_shareable() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<crate::Dispatcher>();
        send_sync::<Notice>();
    }
}
