//! Detection and response end to end: a real `bulwark server --dev`, real
//! mTLS MQTT devices, the built-in rules and playbooks, a real webhook
//! receiver checking the HMAC, and the operator CLI.
//!
//! - a flooding device raises `rule:flood`, is throttled within seconds
//!   (its QoS 1 publishes get QuotaExceeded), the webhook receives the
//!   signed alert, the evidence bundle's hash matches the audit log, and
//!   an operator's release lifts the throttle;
//! - a certificate used from a second address raises a takeover alert, the
//!   device is quarantined and cut off at once, and revocation waits for
//!   an operator's approval;
//! - a device's window metrics are summarised to the store and read back
//!   through the API and the CLI, by roles that may read alerts only.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulwark_api_types::{
    ActionKind, ActionState, Alert, AlertQuery, AlertState, DeviceMetrics, DeviceState,
    MetricsQuery,
};
use bulwark_mqtt::{Packet, QoS, ReasonCode};
use bulwark_types::DeviceId;
use common::mqtt::{enroll, Raw};
use common::{rt, Server};
use sha2::Digest as _;

const SECRET: &str = "webhook-secret-for-the-test-0123456789";

type Deliveries = Arc<Mutex<Vec<(bool, serde_json::Value)>>>;

/// A webhook receiver on loopback: records each delivery with whether its
/// HMAC signature verified.
async fn receiver() -> (String, Deliveries) {
    let got: Deliveries = Arc::default();
    let state = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let h = |n: &str| {
                        headers
                            .get(n)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    let now = time::OffsetDateTime::now_utc().unix_timestamp();
                    let ok = bulwark_sinks::signature::verify(
                        SECRET.as_bytes(),
                        &h("x-bulwark-timestamp"),
                        &body,
                        &h("x-bulwark-signature"),
                        now,
                        300,
                    )
                    .is_ok();
                    let json = serde_json::from_slice(&body).unwrap_or_default();
                    state.lock().unwrap().push((ok, json));
                    axum::http::StatusCode::NO_CONTENT
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), got)
}

/// Whether `creds` connects over mTLS MQTT 5 from `source` (default
/// 127.0.0.1) and is accepted; the connection, if it was.
async fn admitted(
    server: &Server,
    creds: &common::mqtt::Creds,
    source: Option<std::net::IpAddr>,
) -> Option<Raw> {
    let mut r = Raw::tls_from(server, Some(creds), source).await.ok()?;
    let ack = r
        .handshake(common::mqtt::connect_packet(
            bulwark_mqtt::ProtocolVersion::V5,
            &creds.id,
        ))
        .await?;
    (ack.reason_code == ReasonCode::Success).then_some(r)
}

async fn wait_alert(server: &Server, what: &str, ok: impl Fn(&Alert) -> bool) -> Alert {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let alerts = server
            .client()
            .list_alerts(&AlertQuery::default())
            .await
            .unwrap();
        if let Some(a) = alerts.into_iter().find(&ok) {
            return a;
        }
        assert!(
            Instant::now() < deadline,
            "no alert: {what}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cli_json(server: &Server, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--output", "json"];
    all.extend_from_slice(args);
    let out = server.cli(&all);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_flooding_device_is_detected_throttled_and_reported_to_the_webhook() {
    rt().block_on(async {
        let (url, deliveries) = receiver().await;
        let server = Server::start(&format!(
            "[[sinks]]\ntype = \"webhook\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\n"
        ));
        let creds = enroll(&server, "meters", "m-1").await;
        let quiet = enroll(&server, "meters", "m-2").await;
        let mut quiet_conn = Raw::device(&server, &quiet).await;
        let mut dev = Raw::device(&server, &creds).await;
        let started = Instant::now();
        // ~1,000 messages/s for up to 10 s (the gateway lets 100/s through;
        // the attempts are what detection counts).
        let mut throttled_at = None;
        for i in 0..10_000u32 {
            dev.publish("devices/m-1/telemetry", "x", QoS::AtMostOnce, 0)
                .await;
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if i % 500 == 0 && i > 0 {
                    let alerts = server
                        .client()
                        .list_alerts(&AlertQuery::default())
                        .await
                        .unwrap();
                    if alerts.iter().any(|a| {
                        a.detector == "rule:flood"
                            && a.actions.iter().any(|x| x.state == ActionState::Applied)
                    }) {
                        throttled_at = Some(started.elapsed());
                        break;
                    }
                }
            }
        }
        let contained = throttled_at.expect("throttled while flooding");
        assert!(contained < Duration::from_secs(10), "{contained:?}");
        quiet_conn
            .publish("devices/m-2/telemetry", "ok", QoS::AtMostOnce, 0)
            .await;

        let alert = wait_alert(&server, "flood", |a| a.detector == "rule:flood").await;
        assert_eq!(alert.device, Some(DeviceId::new("m-1").unwrap()));
        assert_eq!(alert.entity, "device:m-1");
        assert_eq!(alert.state, AlertState::Open);
        assert!(
            alert.evidence["value"].as_f64().unwrap() > 200.0,
            "{}",
            alert.evidence
        );
        let throttle = alert
            .actions
            .iter()
            .find(|x| x.action == ActionKind::Throttle)
            .expect("the built-in playbook throttles");
        assert_eq!(throttle.state, ActionState::Applied);
        assert_eq!(throttle.playbook.as_deref(), Some("throttle-abuse"));
        assert!(
            throttle.release_at.is_some(),
            "a throttle is released by its timer"
        );

        // The throttle bites: QoS 1 publishes beyond the burst are refused.
        let mut refused = 0;
        for id in 1..=20u16 {
            dev.publish("devices/m-1/telemetry", "x", QoS::AtLeastOnce, id)
                .await;
        }
        for _ in 0..20 {
            match dev.recv(Duration::from_secs(2)).await {
                Some(Packet::PubAck(ack)) if ack.reason_code == ReasonCode::QuotaExceeded => {
                    refused += 1
                }
                Some(_) => {}
                None => break,
            }
        }
        assert!(refused >= 10, "only {refused} of 20 refused");
        // The quiet device raised nothing.
        let all = server
            .client()
            .list_alerts(&AlertQuery::default())
            .await
            .unwrap();
        assert!(
            all.iter()
                .all(|a| a.device.as_ref().map(|d| d.as_str()) != Some("m-2")),
            "{all:?}"
        );

        // The webhook got the alert, signed.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = deliveries.lock().unwrap().clone();
            if got
                .iter()
                .any(|(ok, j)| *ok && j["alert"]["detector"] == "rule:flood")
            {
                assert!(got.iter().all(|(ok, _)| *ok), "every delivery verifies");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no signed webhook delivery: {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // The pipeline's counters are at /metrics.
        let text = server.client().metrics().await.unwrap();
        let counter = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /metrics"))
        };
        assert!(counter("bulwark_detect_alerts_opened_total") >= 1.0);
        assert!(counter("bulwark_detect_events_total") > 1000.0);
        assert_eq!(counter("bulwark_detect_findings_dropped_total"), 0.0);

        // The evidence bundle: its hash is the alert's and the audit log's.
        let out = server.cli(&["alert", "bundle", &alert.id.to_string()]);
        assert!(out.status.success());
        let body = String::from_utf8(out.stdout).unwrap();
        let body = body.trim_end().as_bytes();
        let sha = hex::encode(sha2::Sha256::digest(body));
        assert_eq!(Some(&sha), alert.bundle_sha256.as_ref());
        let bundle: serde_json::Value = serde_json::from_slice(body).unwrap();
        assert_eq!(bundle["finding"]["detector"], "rule:flood");
        assert!(bundle["recent_events"]
            .as_array()
            .is_some_and(|e| !e.is_empty()));
        let audit =
            String::from_utf8(server.cli(&["audit", "ls", "--output", "json"]).stdout).unwrap();
        assert!(
            audit.contains("alert_opened") && audit.contains(&sha),
            "audit log"
        );
        assert!(audit.contains("alert_action_changed"));

        // The CLI lists it; an operator releases the throttle.
        let listed = cli_json(&server, &["alert", "ls", "--device", "m-1"]);
        assert!(listed
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == alert.id));
        let released = cli_json(
            &server,
            &[
                "alert",
                "release",
                &alert.id.to_string(),
                &throttle.id.to_string(),
            ],
        );
        let t = released["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == throttle.id)
            .unwrap();
        assert_eq!(t["state"], "released");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        dev.publish("devices/m-1/telemetry", "x", QoS::AtLeastOnce, 100)
            .await;
        loop {
            match dev.recv(Duration::from_secs(5)).await {
                Some(Packet::PubAck(ack))
                    if ack.packet_id == bulwark_mqtt::PacketId::new(100).unwrap() =>
                {
                    assert_eq!(ack.reason_code, ReasonCode::Success, "throttle lifted");
                    break;
                }
                Some(_) => {}
                None => panic!("no PUBACK"),
            }
        }
        // Acknowledge, then resolve.
        let acked = cli_json(&server, &["alert", "ack", &alert.id.to_string()]);
        assert_eq!(acked["state"], "acknowledged");
        let resolved = cli_json(&server, &["alert", "resolve", &alert.id.to_string()]);
        assert_eq!(resolved["state"], "resolved");
        // What the operator did reached the webhook too, signed.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = deliveries.lock().unwrap().clone();
            let kinds: Vec<&str> = got
                .iter()
                .filter(|(_, j)| j["alert"]["id"] == alert.id)
                .filter_map(|(_, j)| j["kind"].as_str())
                .collect();
            let released = got
                .iter()
                .any(|(_, j)| j["kind"] == "action.released" && j["action"]["id"] == throttle.id);
            if released
                && kinds.contains(&"alert.acknowledged")
                && kinds.contains(&"alert.resolved")
            {
                assert!(got.iter().all(|(ok, _)| *ok), "every delivery verifies");
                break;
            }
            assert!(
                Instant::now() < deadline,
                "operator changes not delivered: {kinds:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

#[test]
fn a_certificate_used_from_a_second_address_is_quarantined_and_revocation_awaits_approval() {
    let server = Server::start("");
    rt().block_on(async {
        let creds = enroll(&server, "doors", "door-1").await;
        let mut original = Raw::device(&server, &creds).await;
        // The clone, from another address.
        let mut clone = admitted(&server, &creds, Some("127.0.0.9".parse().unwrap()))
            .await
            .expect("the clone connects");
        let (closed, _) = original.closed(Duration::from_secs(5)).await;
        assert!(closed, "the first session was taken over");

        let alert = wait_alert(&server, "takeover", |a| {
            a.detector == "rule:session-takeover"
                && a.actions
                    .iter()
                    .any(|x| x.action == ActionKind::Restrict && x.state == ActionState::Applied)
        })
        .await;
        assert_eq!(alert.device, Some(DeviceId::new("door-1").unwrap()));
        assert!(alert.evidence["new_source"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.9:"));
        let device = server
            .client()
            .get_device(&DeviceId::new("door-1").unwrap())
            .await
            .unwrap();
        assert_eq!(device.device.state, DeviceState::Quarantined);
        let (closed, _) = clone.closed(Duration::from_secs(5)).await;
        assert!(closed, "the session was cut");
        let revoke = alert
            .actions
            .iter()
            .find(|x| x.action == ActionKind::Revoke)
            .unwrap();
        assert_eq!(revoke.state, ActionState::AwaitingApproval);
        assert!(device.certificates.iter().all(|c| c.revoked_at.is_none()));

        // An auditor may look but not approve.
        let out = server.cli(&[
            "token", "create", "--name", "aud", "--role", "auditor", "--output", "json",
        ]);
        let token: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let token = token["token"].as_str().unwrap().to_owned();
        let out = server.cli_with_token(&token, &["alert", "ls"]);
        assert!(out.status.success());
        let out = server.cli_with_token(
            &token,
            &[
                "alert",
                "approve",
                &alert.id.to_string(),
                &revoke.id.to_string(),
            ],
        );
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("403")
                || String::from_utf8_lossy(&out.stderr)
                    .to_lowercase()
                    .contains("forbidden")
        );

        let approved = cli_json(
            &server,
            &[
                "alert",
                "approve",
                &alert.id.to_string(),
                &revoke.id.to_string(),
            ],
        );
        let r = approved["actions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["id"] == revoke.id)
            .unwrap();
        assert_eq!(r["state"], "applied", "{r}");
        let device = server
            .client()
            .get_device(&DeviceId::new("door-1").unwrap())
            .await
            .unwrap();
        assert!(device.certificates.iter().all(|c| c.revoked_at.is_some()));
        // The revoked certificate no longer connects.
        let refused = admitted(&server, &creds, None).await.is_none();
        assert!(refused);
    });
}

/// A TLS client certificate from a CA the server does not trust.
fn rogue_creds(dir: &std::path::Path) -> common::mqtt::Creds {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "door-1");
    let leaf = leaf
        .signed_by(
            &key,
            &rcgen::Issuer::from_ca_cert_der(ca.der(), &ca_key).unwrap(),
        )
        .unwrap();
    let cert = common::write(dir, "rogue.crt", leaf.pem());
    let key_path = common::write(dir, "rogue.key", key.serialize_pem());
    common::mqtt::Creds {
        id: "door-1".into(),
        cert_der: leaf.der().to_vec(),
        key_der: key.serialize_der(),
        cert,
        key: key_path,
    }
}

#[test]
fn credential_stuffing_from_an_address_gets_it_blocked_until_released() {
    // No authentication back-off: the block is the only thing that refuses.
    let mut server = Server::start("[mqtt]\nauth_failures_before_backoff = 100000\n");
    rt().block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let rogue = rogue_creds(dir.path());
        let good = enroll(&server, "doors", "door-1").await;
        let attacker: std::net::IpAddr = "127.0.0.77".parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let alert = loop {
            for _ in 0..10 {
                let _ = Raw::tls_from(&server, Some(&rogue), Some(attacker)).await;
            }
            let alerts = server
                .client()
                .list_alerts(&AlertQuery::default())
                .await
                .unwrap();
            if let Some(a) = alerts.into_iter().find(|a| {
                a.entity == "source:127.0.0.77"
                    && a.actions.iter().any(|x| x.state == ActionState::Applied)
            }) {
                break a;
            }
            assert!(Instant::now() < deadline, "no block\n{}", server.log());
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(alert.detector, "rule:credential-stuffing");
        assert_eq!(alert.device, None);
        let block = &alert.actions[0];
        assert_eq!(block.action, ActionKind::Block);
        assert!(block.release_at.is_some());

        // Even a valid certificate cannot connect from the blocked address;
        // from another address it can.
        let from_attacker = admitted(&server, &good, Some(attacker)).await.is_some();
        assert!(!from_attacker, "the blocked address got in");
        let _ok = Raw::device(&server, &good).await;

        // A crash and restart does not lift the block (the gateway's blocks
        // live in memory; the server enforces the applied ones again).
        drop(_ok);
        server.restart();
        let from_attacker = admitted(&server, &good, Some(attacker)).await.is_some();
        assert!(
            !from_attacker,
            "the blocked address got in after a restart\n{}",
            server.log()
        );
        let _ok = Raw::device(&server, &good).await;

        // Released by an operator: the address may connect again.
        let released = cli_json(
            &server,
            &[
                "alert",
                "release",
                &alert.id.to_string(),
                &block.id.to_string(),
            ],
        );
        assert_eq!(released["actions"][0]["state"], "released");
        assert!(admitted(&server, &good, Some(attacker)).await.is_some());
    });
}

fn msgs_in(m: &DeviceMetrics) -> f64 {
    m.summaries
        .iter()
        .map(|p| p.metrics.get("msgs_in").copied().unwrap_or(0.0))
        .sum()
}

#[test]
fn window_metrics_are_summarised_to_the_store_and_read_by_device() {
    let server = Server::start("[response]\nsummary_interval_secs = 1\n");
    rt().block_on(async {
        const N: u32 = 30;
        let creds = enroll(&server, "meters", "s-1").await;
        let mut dev = Raw::device(&server, &creds).await;
        for _ in 0..N {
            dev.publish("devices/s-1/telemetry", "hello", QoS::AtMostOnce, 0)
                .await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let id = DeviceId::new("s-1").unwrap();
        let all = MetricsQuery::default();
        let deadline = Instant::now() + Duration::from_secs(10);
        let m = loop {
            let m = server.client().device_metrics(&id, &all).await.unwrap();
            let got = msgs_in(&m);
            assert!(got <= f64::from(N), "more than published: {m:?}");
            if got == f64::from(N) {
                break m;
            }
            assert!(
                Instant::now() < deadline,
                "summaries count {got} of {N} messages: {m:?}\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(m.device, id);
        let bytes: f64 = m
            .summaries
            .iter()
            .map(|p| p.metrics.get("bytes_in").copied().unwrap_or(0.0))
            .sum();
        assert_eq!(bytes, f64::from(N * 5), "5-byte payloads");
        assert!(
            m.summaries.windows(2).all(|w| w[0].start >= w[1].start),
            "newest first"
        );
        assert!(m
            .summaries
            .iter()
            .all(|p| p.end > p.start && p.active_windows >= 1));

        // A limit, and the CLI (JSON and table).
        let one = MetricsQuery {
            limit: Some(1),
            ..MetricsQuery::default()
        };
        let newest = server.client().device_metrics(&id, &one).await.unwrap();
        assert_eq!(newest.summaries, m.summaries[..1]);
        let json = cli_json(&server, &["device", "metrics", "s-1", "--since", "1h"]);
        assert_eq!(json["device"], "s-1");
        let cli_sum: f64 = json["summaries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["metrics"]["msgs_in"].as_f64().unwrap_or(0.0))
            .sum();
        assert_eq!(cli_sum, f64::from(N));
        let out = server.cli(&["device", "metrics", "s-1"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).starts_with("START"));

        // Unknown device, bad query.
        let ghost = DeviceId::new("ghost").unwrap();
        let e = server
            .client()
            .device_metrics(&ghost, &all)
            .await
            .unwrap_err();
        assert_eq!(common::problem(e).0, 404);
        let bad = MetricsQuery {
            since: Some("yesterday".into()),
            ..MetricsQuery::default()
        };
        let (status, detail) =
            common::problem(server.client().device_metrics(&id, &bad).await.unwrap_err());
        assert_eq!(status, 400);
        assert!(detail.contains("RFC 3339"), "{detail}");
        let too_many = MetricsQuery {
            limit: Some(1001),
            ..MetricsQuery::default()
        };
        let e = server
            .client()
            .device_metrics(&id, &too_many)
            .await
            .unwrap_err();
        assert_eq!(common::problem(e).0, 400);

        // A release manager reads the inventory but not alerts, nor these.
        let out = server.cli(&[
            "token",
            "create",
            "--name",
            "rel",
            "--role",
            "release_manager",
            "--output",
            "json",
        ]);
        let token: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let token = token["token"].as_str().unwrap().to_owned();
        let e = server
            .client_with(Some(token))
            .device_metrics(&id, &all)
            .await
            .unwrap_err();
        assert_eq!(common::problem(e).0, 403);
    });
}
