//! Scheduled posture audits end to end: a real `bulwark server --dev`
//! auditing every second, with a warning window wide enough that a fresh
//! 30-day device certificate counts as expiring, and a stored policy that
//! lets a group's devices publish to every device's command topics.
//!
//! Both problems become alerts through `GET /v1/alerts`; later runs fold
//! into the same alerts (their count grows) rather than opening new ones,
//! and what is fine (a policy scoped with `${device.id}`, a device enrolled
//! a moment ago, the audit log) raises nothing.

mod common;

use std::time::{Duration, Instant};

use bulwark_api_types::{Alert, AlertQuery, Severity};
use common::mqtt::enroll;
use common::{rt, write, Server};

const CONFIG: &str = "[response]\naudit_interval_secs = 1\ncert_expiry_warn_days = 400\n";

fn cli_ok(server: &Server, args: &[&str]) {
    let out = server.cli(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn audit_alerts(server: &Server) -> Vec<Alert> {
    let mut all = server
        .client()
        .list_alerts(&AlertQuery {
            limit: Some(1000),
            ..AlertQuery::default()
        })
        .await
        .unwrap();
    all.retain(|a| a.detector.starts_with("audit:"));
    all
}

/// Waits until `ok` holds of the audit alerts.
async fn wait_for(server: &Server, what: &str, ok: impl Fn(&[Alert]) -> bool) -> Vec<Alert> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let alerts = audit_alerts(server).await;
        if ok(&alerts) {
            return alerts;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {alerts:#?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn find<'a>(alerts: &'a [Alert], detector: &str, entity: &str) -> Vec<&'a Alert> {
    alerts
        .iter()
        .filter(|a| a.detector == detector && a.entity == entity)
        .collect()
}

#[test]
fn standing_posture_problems_become_one_alert_each() {
    rt().block_on(async {
        let server = Server::start(CONFIG);
        enroll(&server, "meters", "m-1").await;
        let dir = server.dir.path();
        let broad = write(
            dir,
            "cross-talk.json",
            r#"{"version": 1, "name": "cross-talk", "statements": [
                {"effect": "allow", "actions": ["publish"], "resources": ["devices/+/commands/#"]}
            ]}"#,
        );
        let scoped = write(
            dir,
            "own-status.json",
            r#"{"version": 1, "name": "own-status", "statements": [
                {"effect": "allow", "actions": ["publish", "subscribe"],
                 "resources": ["status/${device.id}/#"]}
            ]}"#,
        );
        for file in [&broad, &scoped] {
            cli_ok(
                &server,
                &["policy", "create", "--file", file.to_str().unwrap()],
            );
        }
        cli_ok(
            &server,
            &["policy", "attach", "cross-talk", "--group", "meters"],
        );
        cli_ok(
            &server,
            &["policy", "attach", "own-status", "--group", "meters"],
        );

        let both = |alerts: &[Alert]| {
            find(alerts, "audit:cert-expiring", "device:m-1").len() == 1
                && find(alerts, "audit:over-broad-policy", "policy:cross-talk").len() == 1
        };
        let first = wait_for(&server, "both audit alerts", both).await;
        let expiring = find(&first, "audit:cert-expiring", "device:m-1")[0].clone();
        assert_eq!(expiring.severity, Severity::Medium);
        assert_eq!(expiring.device.as_ref().map(|d| d.as_str()), Some("m-1"));
        assert!(expiring.title.contains("expires in"), "{}", expiring.title);
        let policy = find(&first, "audit:over-broad-policy", "policy:cross-talk")[0].clone();
        assert_eq!(policy.severity, Severity::High);
        assert_eq!(policy.device, None);
        assert_eq!(
            policy.evidence["statements"][0]["resources"],
            serde_json::json!(["devices/+/commands/#"]),
            "{}",
            policy.evidence
        );

        // Later runs fold into the same alerts.
        let later = wait_for(&server, "a second run counted", |alerts| {
            both(alerts)
                && find(alerts, "audit:cert-expiring", "device:m-1")[0].count >= 2
                && find(alerts, "audit:over-broad-policy", "policy:cross-talk")[0].count >= 2
        })
        .await;
        let again = find(&later, "audit:cert-expiring", "device:m-1")[0];
        assert_eq!(again.id, expiring.id);
        assert_eq!(
            find(&later, "audit:over-broad-policy", "policy:cross-talk")[0].id,
            policy.id
        );

        // Nothing about what is fine.
        for a in &later {
            assert!(
                matches!(
                    (a.detector.as_str(), a.entity.as_str()),
                    ("audit:cert-expiring", "device:m-1")
                        | ("audit:over-broad-policy", "policy:cross-talk")
                ),
                "unexpected audit alert: {a:#?}"
            );
        }
    });
}
