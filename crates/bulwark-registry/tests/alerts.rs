//! Alerts and response actions through the registry with a real store:
//! de-duplication and suppression, each action and its reversal, the
//! approval gate for irreversible steps, resolution cancelling what is
//! left, roles, and the audit trail. The gateway's side is a recording
//! `Responder` here (the server's end-to-end tests use the real gateway).

mod common;

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bulwark_registry::{alert_filter, ActionCommand, RegistryError, Responder};
use bulwark_store::{NewAlert, NewAlertAction, RaiseOutcome};
use bulwark_types::{ActionKind, ActionState, AlertState, DeviceId, DeviceState, Role, Severity};
use common::fixture;
use time::OffsetDateTime;

#[derive(Default)]
struct Recorder(Mutex<Vec<String>>);

#[async_trait]
impl Responder for Recorder {
    async fn throttle(&self, device: &DeviceId, rate: f64, burst: f64) -> bool {
        self.0
            .lock()
            .unwrap()
            .push(format!("throttle {device} {rate} {burst}"));
        true
    }
    async fn unthrottle(&self, device: &DeviceId) -> bool {
        self.0.lock().unwrap().push(format!("unthrottle {device}"));
        true
    }
    async fn disconnect(&self, device: &DeviceId) -> bool {
        self.0.lock().unwrap().push(format!("disconnect {device}"));
        true
    }
    async fn block_source(&self, source: std::net::IpAddr, duration: Duration) -> bool {
        self.0
            .lock()
            .unwrap()
            .push(format!("block {source} {}", duration.as_secs()));
        true
    }
    async fn unblock_source(&self, source: std::net::IpAddr) -> bool {
        self.0.lock().unwrap().push(format!("unblock {source}"));
        true
    }
}

impl Recorder {
    fn calls(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn step(
    step: u32,
    action: ActionKind,
    state: ActionState,
    params: serde_json::Value,
) -> NewAlertAction {
    NewAlertAction {
        playbook: Some("contain".into()),
        step,
        action,
        state,
        due_at: Some(OffsetDateTime::now_utc()),
        params,
    }
}

fn finding(device: &DeviceId, detector: &str, actions: Vec<NewAlertAction>) -> NewAlert {
    NewAlert {
        dedup: format!("{detector}:device:{device}"),
        device: Some(device.clone()),
        entity: format!("device:{device}"),
        detector: detector.into(),
        severity: Severity::High,
        title: format!("{detector} on {device}"),
        evidence: serde_json::json!({ "value": 500, "threshold": 200 }),
        suppress_for: Duration::from_secs(300),
        bundle: Some(br#"{"events":[]}"#.to_vec()),
        actions,
    }
}

fn is_conflict(e: &RegistryError) -> bool {
    matches!(
        e,
        RegistryError::Conflict(_) | RegistryError::Store(bulwark_store::StoreError::Conflict(_))
    )
}

async fn live_certs(f: &common::Fixture, d: &DeviceId) -> usize {
    let detail = f.registry.get_device(&f.admin, d).await.unwrap();
    detail
        .certificates
        .iter()
        .filter(|c| c.revoked_at.is_none())
        .count()
}

async fn state_of(f: &common::Fixture, d: &DeviceId) -> DeviceState {
    f.registry
        .get_device(&f.admin, d)
        .await
        .unwrap()
        .device
        .state
}

#[tokio::test]
async fn findings_fold_into_one_alert_and_a_resolved_one_suppresses_repeats() {
    let f = fixture().await;
    let d = f.enrolled("g", "d1").await;
    let r = &f.registry;
    let RaiseOutcome::Opened(a) = r
        .alerts_raise(finding(&d, "rule:flood", vec![]))
        .await
        .unwrap()
    else {
        panic!("a first finding opens an alert");
    };
    assert_eq!((a.state, a.count), (AlertState::Open, 1));
    assert_eq!(a.evidence["value"], 500);
    let sha = a.bundle_sha256.clone().expect("bundle hashed");
    assert_eq!(sha.len(), 64);
    for n in 2..=4 {
        let RaiseOutcome::Updated(u) = r
            .alerts_raise(finding(&d, "rule:flood", vec![]))
            .await
            .unwrap()
        else {
            panic!("a repeat folds into the open alert");
        };
        assert_eq!((u.id, u.count), (a.id, n));
    }
    // Another detector is another alert.
    assert!(matches!(
        r.alerts_raise(finding(&d, "rule:exfiltration", vec![]))
            .await
            .unwrap(),
        RaiseOutcome::Opened(_)
    ));
    let listed = r
        .alerts_list(&f.admin, alert_filter(None, Some(d.clone()), None, None))
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    let bundle = r.alert_bundle(&f.admin, a.id).await.unwrap();
    assert_eq!(bundle, br#"{"events":[]}"#);

    // Acknowledge, resolve; then the same finding is suppressed.
    let acked = r
        .alert_set_state(&f.admin, a.id, AlertState::Acknowledged, None)
        .await
        .unwrap();
    assert_eq!(acked.state, AlertState::Acknowledged);
    let resolved = r
        .alert_set_state(
            &f.admin,
            a.id,
            AlertState::Resolved,
            Some("false alarm".into()),
        )
        .await
        .unwrap();
    assert_eq!(resolved.state, AlertState::Resolved);
    assert!(matches!(
        r.alerts_raise(finding(&d, "rule:flood", vec![]))
            .await
            .unwrap(),
        RaiseOutcome::Suppressed
    ));
    // A resolved alert does not move again.
    let err = r
        .alert_set_state(&f.admin, a.id, AlertState::Acknowledged, None)
        .await
        .unwrap_err();
    assert!(is_conflict(&err), "{err}");
    let err = r
        .alert_set_state(&f.admin, a.id, AlertState::Open, None)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Invalid(_)), "{err}");

    // Without suppression a new alert opens after resolution.
    let mut again = finding(&d, "rule:exfiltration", vec![]);
    again.suppress_for = Duration::ZERO;
    let id = listed[1].id;
    r.alert_set_state(&f.admin, id, AlertState::Resolved, None)
        .await
        .unwrap();
    let RaiseOutcome::Opened(b) = r.alerts_raise(again).await.unwrap() else {
        panic!("no suppression window");
    };
    assert_ne!(b.id, id);

    // The audit log has the opening and the state changes.
    let log = r.audit_entries(&f.admin, 0, 1000).await.unwrap();
    let events: Vec<&str> = log.iter().map(|e| e.event.as_str()).collect();
    let has = |kind: &str| events.iter().filter(|e| e.contains(kind)).count();
    assert_eq!(has("\"alert_opened\""), 3);
    assert!(
        events.iter().any(|e| e.contains(&sha)),
        "the bundle's hash is in the audit log"
    );
    assert_eq!(has("\"alert_state_changed\""), 3);
}

#[tokio::test]
async fn reversible_steps_apply_at_once_and_are_released_by_their_timer() {
    let f = fixture().await;
    let d = f.enrolled("g", "d1").await;
    let r = &f.registry;
    let gw = Recorder::default();
    let actions = vec![
        step(
            0,
            ActionKind::Notify,
            ActionState::Scheduled,
            serde_json::json!({}),
        ),
        step(
            1,
            ActionKind::Throttle,
            ActionState::Scheduled,
            serde_json::json!({ "rate_per_sec": 2.0, "burst": 4.0, "release_after_secs": 1 }),
        ),
        step(
            2,
            ActionKind::Restrict,
            ActionState::Scheduled,
            serde_json::json!({ "release_after_secs": 1 }),
        ),
        step(
            3,
            ActionKind::Disconnect,
            ActionState::Scheduled,
            serde_json::json!({}),
        ),
    ];
    let RaiseOutcome::Opened(a) = r
        .alerts_raise(finding(&d, "rule:flood", actions))
        .await
        .unwrap()
    else {
        panic!()
    };
    assert!(a.actions.iter().all(|x| x.state == ActionState::Scheduled));
    let done = r
        .alerts_run_due(&gw, OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert_eq!(done.len(), 4);
    assert_eq!(gw.calls(), ["throttle d1 2 4", "disconnect d1"]);
    assert_eq!(state_of(&f, &d).await, DeviceState::Quarantined);
    let a = r.alert_get(&f.admin, a.id).await.unwrap();
    assert!(
        a.actions.iter().all(|x| x.state == ActionState::Applied),
        "{:?}",
        a.actions
    );
    assert!(a.actions[1].release_at.is_some() && a.actions[2].release_at.is_some());
    assert!(
        a.actions[3].release_at.is_none(),
        "a disconnect has nothing to release"
    );

    // Nothing more is due until the release time.
    assert!(r
        .alerts_run_due(&gw, OffsetDateTime::now_utc())
        .await
        .unwrap()
        .is_empty());
    let later = OffsetDateTime::now_utc() + Duration::from_secs(2);
    let released = r.alerts_run_due(&gw, later).await.unwrap();
    assert_eq!(released.len(), 2);
    assert_eq!(gw.calls().last().unwrap(), "unthrottle d1");
    assert_eq!(
        state_of(&f, &d).await,
        DeviceState::Active,
        "quarantine lifted"
    );
    let a = r.alert_get(&f.admin, a.id).await.unwrap();
    assert_eq!(a.actions[1].state, ActionState::Released);
    assert_eq!(a.actions[2].state, ActionState::Released);
}

#[tokio::test]
async fn irreversible_steps_wait_for_approval_and_a_refusal_or_resolution_stops_them() {
    let f = fixture().await;
    let d = f.enrolled("g", "d1").await;
    let r = &f.registry;
    let gw = Recorder::default();
    let actions = vec![step(
        0,
        ActionKind::Revoke,
        ActionState::AwaitingApproval,
        serde_json::json!({}),
    )];
    let RaiseOutcome::Opened(a) = r
        .alerts_raise(finding(&d, "novelty:concurrent-source", actions))
        .await
        .unwrap()
    else {
        panic!()
    };
    // The engine does not touch an action awaiting approval.
    assert!(r
        .alerts_run_due(&gw, OffsetDateTime::now_utc() + Duration::from_secs(3600))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(live_certs(&f, &d).await, 1);

    // Approval needs the right role.
    let auditor = f.operator(Role::Auditor).await;
    let action = a.actions[0].id;
    let err = r
        .alert_action_command(&auditor, a.id, action, ActionCommand::Approve, &gw)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Forbidden { .. }), "{err}");
    assert!(
        r.alerts_list(&auditor, alert_filter(None, None, None, None))
            .await
            .is_ok(),
        "auditors read alerts"
    );
    let enroller = f.operator(Role::Enroller).await;
    assert!(r
        .alerts_list(&enroller, alert_filter(None, None, None, None))
        .await
        .is_err());

    let operator = f.operator(Role::Operator).await;
    let a = r
        .alert_action_command(&operator, a.id, action, ActionCommand::Approve, &gw)
        .await
        .unwrap();
    assert_eq!(a.actions[0].state, ActionState::Applied);
    assert_eq!(live_certs(&f, &d).await, 0, "the certificate is revoked");
    // An applied irreversible action cannot be released, nor approved twice.
    let err = r
        .alert_action_command(&operator, a.id, action, ActionCommand::Release, &gw)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Invalid(_)), "{err}");
    let err = r
        .alert_action_command(&operator, a.id, action, ActionCommand::Approve, &gw)
        .await
        .unwrap_err();
    assert!(is_conflict(&err), "{err}");

    // Refused: never carried out.
    let d2 = f.enrolled("g", "d2").await;
    let actions = vec![step(
        0,
        ActionKind::Decommission,
        ActionState::AwaitingApproval,
        serde_json::json!({}),
    )];
    let RaiseOutcome::Opened(b) = r
        .alerts_raise(finding(&d2, "rule:flood", actions))
        .await
        .unwrap()
    else {
        panic!()
    };
    let b = r
        .alert_action_command(&operator, b.id, b.actions[0].id, ActionCommand::Reject, &gw)
        .await
        .unwrap();
    assert_eq!(b.actions[0].state, ActionState::Cancelled);
    assert_eq!(state_of(&f, &d2).await, DeviceState::Active);

    // Resolving an alert cancels what is still waiting.
    let actions = vec![
        step(
            0,
            ActionKind::Decommission,
            ActionState::AwaitingApproval,
            serde_json::json!({}),
        ),
        NewAlertAction {
            due_at: Some(OffsetDateTime::now_utc() + Duration::from_secs(600)),
            ..step(
                1,
                ActionKind::Restrict,
                ActionState::Scheduled,
                serde_json::json!({}),
            )
        },
    ];
    let RaiseOutcome::Opened(c) = r
        .alerts_raise(finding(&d2, "rule:exfiltration", actions))
        .await
        .unwrap()
    else {
        panic!()
    };
    let c = r
        .alert_set_state(&operator, c.id, AlertState::Resolved, None)
        .await
        .unwrap();
    assert!(
        c.actions.iter().all(|x| x.state == ActionState::Cancelled),
        "{:?}",
        c.actions
    );
    assert!(r
        .alerts_run_due(&gw, OffsetDateTime::now_utc() + Duration::from_secs(3600))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(state_of(&f, &d2).await, DeviceState::Active);

    let log = r.audit_entries(&f.admin, 0, 1000).await.unwrap();
    let actions: Vec<&str> = log
        .iter()
        .map(|e| e.event.as_str())
        .filter(|e| e.contains("\"alert_action_changed\""))
        .collect();
    assert!(
        actions
            .iter()
            .any(|e| e.contains("\"applied\"") && e.contains("\"revoke\"")),
        "{actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|e| e.contains("\"cancelled\"") && e.contains("refused by operator")),
        "{actions:?}"
    );
}

#[tokio::test]
async fn an_operator_escalates_and_releases_by_hand() {
    let f = fixture().await;
    let d = f.enrolled("g", "d1").await;
    let r = &f.registry;
    let gw = Recorder::default();
    let RaiseOutcome::Opened(a) = r
        .alerts_raise(finding(&d, "model:iforest", vec![]))
        .await
        .unwrap()
    else {
        panic!()
    };
    let a = r
        .alert_escalate(&f.admin, a.id, ActionKind::Restrict, Some(3600), &gw)
        .await
        .unwrap();
    assert_eq!(a.actions.len(), 1);
    assert_eq!(a.actions[0].state, ActionState::Applied);
    assert!(a.actions[0].playbook.is_none());
    assert_eq!(state_of(&f, &d).await, DeviceState::Quarantined);
    let a = r
        .alert_action_command(&f.admin, a.id, a.actions[0].id, ActionCommand::Release, &gw)
        .await
        .unwrap();
    assert_eq!(a.actions[0].state, ActionState::Released);
    assert_eq!(state_of(&f, &d).await, DeviceState::Active);
    // A timer on an irreversible action is refused; so is a device action
    // on an alert about a source address.
    let err = r
        .alert_escalate(&f.admin, a.id, ActionKind::Revoke, Some(60), &gw)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Invalid(_)), "{err}");
    let mut src = finding(&d, "rule:credential-stuffing", vec![]);
    src.device = None;
    src.entity = "source:127.0.0.77".into();
    src.dedup = "rule:credential-stuffing:source:127.0.0.77".into();
    let RaiseOutcome::Opened(s) = r.alerts_raise(src).await.unwrap() else {
        panic!()
    };
    let err = r
        .alert_escalate(&f.admin, s.id, ActionKind::Restrict, None, &gw)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("source:127.0.0.77"), "{err}");
}

#[tokio::test]
async fn a_source_address_is_blocked_for_its_time_and_device_actions_do_not_apply_to_it() {
    let f = fixture().await;
    let r = &f.registry;
    let gw = Recorder::default();
    let d = f.enrolled("g", "d1").await;
    let mut src = finding(&d, "rule:credential-stuffing", vec![]);
    src.device = None;
    src.entity = "source:127.0.0.77".into();
    src.dedup = "rule:credential-stuffing:source:127.0.0.77".into();
    src.actions = vec![
        step(
            0,
            ActionKind::Block,
            ActionState::Scheduled,
            serde_json::json!({ "release_after_secs": 5 }),
        ),
        step(
            1,
            ActionKind::Restrict,
            ActionState::Scheduled,
            serde_json::json!({}),
        ),
    ];
    let RaiseOutcome::Opened(a) = r.alerts_raise(src).await.unwrap() else {
        panic!()
    };
    r.alerts_run_due(&gw, OffsetDateTime::now_utc())
        .await
        .unwrap();
    let a = r.alert_get(&f.admin, a.id).await.unwrap();
    assert_eq!(a.actions[0].state, ActionState::Applied);
    assert!(a.actions[0].release_at.is_some());
    assert_eq!(
        a.actions[1].state,
        ActionState::Failed,
        "restrict needs a device"
    );
    assert_eq!(gw.calls(), ["block 127.0.0.77 5"]);
    r.alerts_run_due(&gw, OffsetDateTime::now_utc() + Duration::from_secs(6))
        .await
        .unwrap();
    assert_eq!(gw.calls().last().unwrap(), "unblock 127.0.0.77");
    let a = r.alert_get(&f.admin, a.id).await.unwrap();
    assert_eq!(a.actions[0].state, ActionState::Released);
    // Block is for addresses: refused on a device's alert.
    let RaiseOutcome::Opened(b) = r
        .alerts_raise(finding(&d, "rule:flood", vec![]))
        .await
        .unwrap()
    else {
        panic!()
    };
    let err = r
        .alert_escalate(&f.admin, b.id, ActionKind::Block, None, &gw)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("source addresses"), "{err}");
}

/// After a restart the gateway has forgotten its throttles and blocks: the
/// applied ones are enforced again (blocks for the rest of their time),
/// released ones and other kinds are not.
#[tokio::test]
async fn applied_throttles_and_blocks_are_enforced_again_after_a_restart() {
    let f = fixture().await;
    let r = &f.registry;
    let before = Recorder::default();
    let d1 = f.enrolled("g", "d1").await;
    let d2 = f.enrolled("g", "d2").await;
    let throttle = |rate: f64| {
        step(
            0,
            ActionKind::Throttle,
            ActionState::Scheduled,
            serde_json::json!({ "rate_per_sec": rate, "burst": 3.0, "release_after_secs": 600 }),
        )
    };
    let mut both = vec![throttle(2.0)];
    both.push(step(
        1,
        ActionKind::Restrict,
        ActionState::Scheduled,
        serde_json::json!({ "release_after_secs": 600 }),
    ));
    r.alerts_raise(finding(&d1, "rule:flood", both))
        .await
        .unwrap();
    let RaiseOutcome::Opened(released) = r
        .alerts_raise(finding(&d2, "rule:flood", vec![throttle(5.0)]))
        .await
        .unwrap()
    else {
        panic!()
    };
    let mut src = finding(&d1, "rule:credential-stuffing", vec![]);
    src.device = None;
    src.entity = "source:127.0.0.77".into();
    src.dedup = "rule:credential-stuffing:source:127.0.0.77".into();
    src.actions = vec![step(
        0,
        ActionKind::Block,
        ActionState::Scheduled,
        serde_json::json!({ "release_after_secs": 300 }),
    )];
    r.alerts_raise(src).await.unwrap();
    r.alerts_run_due(&before, OffsetDateTime::now_utc())
        .await
        .unwrap();
    // d2's throttle is released by an operator before the restart.
    let id = released.actions[0].id;
    r.alert_action_command(&f.admin, released.id, id, ActionCommand::Release, &before)
        .await
        .unwrap();

    let after = Recorder::default();
    let n = r.alerts_reapply(&after).await.unwrap();
    assert_eq!(n, 2);
    let mut calls = after.calls();
    calls.sort();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[1], "throttle d1 2 3");
    // The block keeps (about) the rest of its 300 s, not a fresh term.
    let secs: u64 = calls[0]
        .strip_prefix("block 127.0.0.77 ")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{calls:?}"));
    assert!((290..300).contains(&secs), "{secs}");
    // Quarantine is device state: it needs no re-applying.
    assert_eq!(state_of(&f, &d1).await, DeviceState::Quarantined);
}
