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
//!   an operator's approval.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulwark_api_types::{ActionKind, ActionState, Alert, AlertQuery, AlertState, DeviceState};
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
    let server = Server::start("[mqtt]\nauth_failures_before_backoff = 100000\n");
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
