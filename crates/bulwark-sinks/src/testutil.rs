//! Sample notices for the unit tests.

use bulwark_types::{ActionKind, ActionState, Alert, AlertAction, AlertState, DeviceId, Severity};
use time::macros::datetime;

use crate::Notice;

pub fn alert() -> Alert {
    let t = datetime!(2026-01-02 03:04:05.123456789 UTC);
    Alert {
        id: 42,
        device: Some(DeviceId::new("dev-1").unwrap()),
        entity: "device:dev-1".to_owned(),
        detector: "rule:auth_fail".to_owned(),
        severity: Severity::High,
        title: "Repeated auth failures".to_owned(),
        state: AlertState::Open,
        count: 1,
        evidence: serde_json::json!({"failures": 12, "threshold": 5}),
        bundle_sha256: None,
        first_seen: t,
        last_seen: t,
        updated_at: t,
        actions: vec![],
    }
}

pub fn action_notice() -> Notice {
    let action = AlertAction {
        id: 7,
        playbook: Some("contain".to_owned()),
        step: 1,
        action: ActionKind::Revoke,
        state: ActionState::Applied,
        reason: Some("approved by ops=alice".to_owned()),
        due_at: None,
        release_at: None,
        applied_at: Some(datetime!(2026-01-02 03:05:00 UTC)),
        updated_at: datetime!(2026-01-02 03:05:00 UTC),
    };
    let mut alert = alert();
    alert.actions.push(action.clone());
    Notice::Action { alert, action }
}
