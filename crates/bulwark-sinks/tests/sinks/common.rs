//! Shared helpers: sample notices, TOML configurations, waiting on stats.

use std::time::Duration;

use bulwark_sinks::{Dispatcher, Notice, SinkConfig, SinkStats};
use bulwark_types::{ActionKind, ActionState, Alert, AlertAction, AlertState, DeviceId, Severity};
use serde::Deserialize;
use time::macros::datetime;

pub fn alert(severity: Severity) -> Alert {
    let t = datetime!(2026-01-02 03:04:05.5 UTC);
    Alert {
        id: 42,
        device: Some(DeviceId::new("dev-1").unwrap()),
        entity: "device:dev-1".to_owned(),
        detector: "rule:auth_fail".to_owned(),
        severity,
        title: "Repeated auth failures".to_owned(),
        state: AlertState::Open,
        count: 1,
        evidence: serde_json::json!({"failures": 12, "threshold": 5}),
        bundle_sha256: Some("ab".repeat(32)),
        first_seen: t,
        last_seen: t,
        updated_at: t,
        actions: vec![],
    }
}

pub fn notice(severity: Severity) -> Notice {
    Notice::Alert(alert(severity))
}

pub fn action_notice() -> Notice {
    let action = AlertAction {
        id: 7,
        playbook: Some("contain".to_owned()),
        step: 0,
        action: ActionKind::Restrict,
        state: ActionState::Applied,
        reason: None,
        due_at: None,
        release_at: None,
        applied_at: Some(datetime!(2026-01-02 03:05:00 UTC)),
        updated_at: datetime!(2026-01-02 03:05:00 UTC),
    };
    let mut alert = alert(Severity::High);
    alert.actions.push(action.clone());
    Notice::Action { alert, action }
}

/// The `[[sinks]]` of a TOML document, as an operator writes them.
pub fn sinks(toml_text: &str) -> Vec<SinkConfig> {
    #[derive(Deserialize)]
    struct File {
        sinks: Vec<SinkConfig>,
    }
    toml::from_str::<File>(toml_text).unwrap().sinks
}

/// A `[sinks.retry]` table with short waits, for tests.
pub const FAST_RETRY: &str = "max_attempts = 4\ninitial_backoff_ms = 10\nmax_backoff_ms = 40\n";

/// Waits (up to 10 s) until `f` holds for the first sink's stats.
pub async fn eventually(d: &Dispatcher, what: &str, f: impl Fn(&SinkStats) -> bool) -> SinkStats {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = d.stats().remove(0);
        if f(&s) {
            return s;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
