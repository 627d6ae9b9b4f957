//! The operator's view of the MQTT gateway over real sockets: the session
//! list, disconnecting a session (who may, what the client sees, what is
//! audited), a device's counters, `/metrics` and its access rule, and the
//! CLI commands over all of it.

mod common;

use std::time::Duration;

use bulwark_api_types::{CreateOperatorToken, MqttSession};
use bulwark_client::{Client, ClientError};
use bulwark_mqtt::{Packet, ProtocolVersion, QoS, ReasonCode};
use bulwark_types::{DeviceId, Role};
use common::mqtt::{connect_packet, enroll, Raw};
use common::{raw, rt, Server};
use serde_json::Value;

const T: Duration = Duration::from_secs(5);

/// Generous limits: these tests poll the API.
const NO_LIMITS: &str = "[limits]\nper_ip_per_sec = 100000\nper_ip_burst = 100000\n\
                         per_token_per_sec = 100000\nper_token_burst = 100000\n";

/// A token of `role`: its id and a client using it.
async fn token(server: &Server, role: Role) -> (String, Client) {
    let created = server
        .client()
        .create_token(&CreateOperatorToken {
            name: role.to_string(),
            role,
            ttl_seconds: None,
        })
        .await
        .unwrap();
    (
        created.record.id,
        server.client_with(Some(created.token.clone())),
    )
}

/// The session of `client_id` of `kind`, if listed.
async fn session(c: &Client, kind: &str, client_id: &str) -> Option<MqttSession> {
    c.mqtt_sessions()
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.kind == kind && s.client_id == client_id)
}

/// Waits until the list shows `client_id` of `kind` as `connected`.
async fn wait_connected(c: &Client, kind: &str, client_id: &str, connected: bool) {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let now = session(c, kind, client_id).await.map(|s| s.connected);
        if now.unwrap_or(false) == connected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{kind} {client_id} never became connected={connected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads until a DISCONNECT arrives; panics on EOF or timeout first.
async fn expect_disconnect(r: &mut Raw) -> bulwark_mqtt::Disconnect {
    loop {
        match r.recv(T).await {
            Some(Packet::Disconnect(d)) => return d,
            Some(_) => continue,
            None => panic!("the connection ended without a DISCONNECT"),
        }
    }
}

/// Audit entries of `type`.
async fn audited(server: &Server, kind: &str) -> Vec<Value> {
    let log: Value = raw(server)
        .get(format!("{}/v1/audit?limit=10000", server.addr))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    log.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["type"] == kind)
        .cloned()
        .collect()
}

fn api_error(e: ClientError) -> (u16, String, String) {
    match e {
        ClientError::Api { status, problem } => {
            (status, problem.type_, problem.detail.unwrap_or_default())
        }
        other => panic!("expected an API error, got {other}"),
    }
}

#[test]
fn sessions_are_listed_and_only_operators_disconnect_them() {
    let server = Server::start(NO_LIMITS);
    rt().block_on(async {
        let admin = server.client();
        let creds = enroll(&server, "g", "d1").await;
        let (auditor_id, auditor) = token(&server, Role::Auditor).await;
        let (operator_id, operator) = token(&server, Role::Operator).await;
        let (_, enroller) = token(&server, Role::Enroller).await;

        let mut dev = Raw::device(&server, &creds).await;
        let granted = dev
            .subscribe(1, &[("devices/d1/commands/#", QoS::AtLeastOnce)])
            .await;
        assert_eq!(granted, [ReasonCode::GrantedQoS1]);
        dev.publish("devices/d1/state", "hello", QoS::AtLeastOnce, 2)
            .await;
        match dev.recv(T).await {
            Some(Packet::PubAck(_)) => {}
            other => panic!("expected PUBACK, got {other:?}"),
        }

        // Listed, with its subscription, for every role that reads the inventory.
        for c in [&admin, &auditor, &operator] {
            let s = session(c, "device", "d1").await.expect("d1 is listed");
            assert_eq!(s.principal, "d1");
            assert!(s.connected);
            assert!(
                s.remote.as_deref().unwrap().starts_with("127.0.0.1:"),
                "{s:?}"
            );
            assert_eq!(s.subscriptions, ["devices/d1/commands/#"]);
        }
        let (status, _, detail) = api_error(enroller.mqtt_sessions().await.unwrap_err());
        assert_eq!(
            (status, detail.as_str()),
            (403, "role enroller may not read the inventory")
        );

        // Its counters on the device record; the existing fields unchanged.
        let d1 = DeviceId::new("d1").unwrap();
        let view = admin.get_device(&d1).await.unwrap();
        let mqtt = view.mqtt.expect("mqtt counters");
        assert_eq!((mqtt.messages_in, mqtt.bytes_in, mqtt.connects), (1, 5, 1));
        assert_eq!(view.device.id, d1);
        assert_eq!(view.certificates.len(), 1);
        let json: Value = raw(&server)
            .get(format!("{}/v1/devices/d1", server.addr))
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(json["id"], "d1");
        assert_eq!(json["state"], "active");
        assert_eq!(json["mqtt"]["messages_in"], 1);
        // A device that never connected shows zeros.
        enroll(&server, "g", "d2").await;
        let d2 = admin.get_device(&DeviceId::new("d2").unwrap()).await;
        assert_eq!(d2.unwrap().mqtt, Some(Default::default()));

        // An auditor may not disconnect it: 403, audited, nothing changes.
        let (status, kind, detail) = api_error(
            auditor
                .disconnect_mqtt_session("d1", None)
                .await
                .unwrap_err(),
        );
        assert_eq!(status, 403);
        assert_eq!(kind, "urn:bulwark:problem:forbidden");
        assert_eq!(detail, "role auditor may not manage MQTT sessions");
        let (still_open, _) = dev.closed(Duration::from_millis(300)).await;
        assert!(!still_open, "the refused call closed the connection");
        assert!(session(&admin, "device", "d1").await.unwrap().connected);
        let denied: Vec<Value> = audited(&server, "authorization_denied")
            .await
            .into_iter()
            .filter(|e| e["actor"] == format!("operator:{auditor_id}:auditor"))
            .collect();
        assert_eq!(denied.len(), 1, "{denied:?}");
        assert_eq!(denied[0]["event"]["action"], "manage MQTT sessions");
        assert!(audited(&server, "mqtt_session_disconnected")
            .await
            .is_empty());

        // An unknown kind is the caller's mistake.
        let (status, _, detail) = api_error(
            operator
                .disconnect_mqtt_session("d1", Some("robot"))
                .await
                .unwrap_err(),
        );
        assert_eq!(status, 400, "{detail}");
        assert!(
            detail.contains("expected device, service or dev"),
            "{detail}"
        );

        // An operator disconnects it: DISCONNECT 0x98, then EOF; audited.
        operator.disconnect_mqtt_session("d1", None).await.unwrap();
        let d = expect_disconnect(&mut dev).await;
        assert_eq!(d.reason_code, ReasonCode::AdministrativeAction);
        assert_eq!(d.reason_code as u8, 0x98);
        assert!(dev.closed(T).await.0, "no EOF after the DISCONNECT");
        let gone = audited(&server, "mqtt_session_disconnected").await;
        assert_eq!(gone.len(), 1, "{gone:?}");
        assert_eq!(gone[0]["actor"], format!("operator:{operator_id}:operator"));
        assert_eq!(gone[0]["event"]["client_id"], "d1");
        wait_connected(&admin, "device", "d1", false).await;

        // No live session any more: 404, not audited again.
        let (status, kind, detail) = api_error(
            operator
                .disconnect_mqtt_session("d1", None)
                .await
                .unwrap_err(),
        );
        assert_eq!(
            (status, kind.as_str()),
            (404, "urn:bulwark:problem:not-found")
        );
        assert_eq!(detail, "no live MQTT session has the client id \"d1\"");
        assert_eq!(audited(&server, "mqtt_session_disconnected").await.len(), 1);

        // The device may connect again: a disconnect is not a ban.
        let _again = Raw::device(&server, &creds).await;
        wait_connected(&admin, "device", "d1", true).await;
    });
}

#[test]
fn a_client_id_shared_by_two_kinds_needs_the_kind() {
    let server = Server::start(NO_LIMITS);
    rt().block_on(async {
        let admin = server.client();
        let creds = enroll(&server, "g", "x1").await;
        let mut device = Raw::device(&server, &creds).await;
        let mut dev = Raw::plain(&server).await;
        let ack = dev
            .handshake(connect_packet(ProtocolVersion::V5, "x1"))
            .await
            .unwrap();
        assert_eq!(ack.reason_code, ReasonCode::Success);
        wait_connected(&admin, "dev", "x1", true).await;

        let (status, kind, detail) =
            api_error(admin.disconnect_mqtt_session("x1", None).await.unwrap_err());
        assert_eq!(
            (status, kind.as_str()),
            (409, "urn:bulwark:problem:ambiguous-client-id")
        );
        assert!(detail.contains("(dev, device)"), "{detail}");

        admin
            .disconnect_mqtt_session("x1", Some("dev"))
            .await
            .unwrap();
        let d = expect_disconnect(&mut dev).await;
        assert_eq!(d.reason_code, ReasonCode::AdministrativeAction);
        assert!(!device.closed(Duration::from_millis(300)).await.0);
        assert!(session(&admin, "device", "x1").await.unwrap().connected);
    });
}

#[test]
fn metrics_need_a_token_of_a_reading_role() {
    let server = Server::start(NO_LIMITS);
    rt().block_on(async {
        let creds = enroll(&server, "g", "m1").await;
        let mut dev = Raw::device(&server, &creds).await;
        dev.publish("devices/m1/state", "x", QoS::AtLeastOnce, 1)
            .await;
        assert!(matches!(dev.recv(T).await, Some(Packet::PubAck(_))));

        let url = format!("{}/metrics", server.addr);
        let resp = raw(&server).get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        assert!(resp.headers().contains_key("www-authenticate"));

        let (_, enroller) = token(&server, Role::Enroller).await;
        let (status, _, detail) = api_error(enroller.metrics().await.unwrap_err());
        assert_eq!(
            (status, detail.as_str()),
            (403, "role enroller may not read metrics")
        );

        let (_, auditor) = token(&server, Role::Auditor).await;
        let resp = raw(&server)
            .get(&url)
            .bearer_auth(&server.token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        for text in [resp.text().await.unwrap(), auditor.metrics().await.unwrap()] {
            let lines: Vec<&str> = text.lines().collect();
            for want in [
                "# TYPE bulwark_mqtt_connections_active gauge",
                "bulwark_mqtt_connections_active 1",
                "# TYPE bulwark_mqtt_messages_received_total counter",
                "bulwark_mqtt_messages_received_total 1",
                "bulwark_mqtt_sessions 1",
                "# TYPE bulwark_api_responses_total counter",
            ] {
                assert!(lines.contains(&want), "{want:?} missing from\n{text}");
            }
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with("bulwark_api_responses_total{class=\"4xx\"} ")),
                "{text}"
            );
        }
    });
}

#[test]
fn cli_lists_disconnects_and_prints_metrics() {
    let server = Server::start(NO_LIMITS);
    let rt = rt();
    let creds = rt.block_on(enroll(&server, "g", "c1"));
    let mut dev = rt.block_on(Raw::device(&server, &creds));
    rt.block_on(async {
        dev.subscribe(1, &[("devices/c1/commands/#", QoS::AtMostOnce)])
            .await
    });
    let run = |args: &[&str]| {
        let out = server.cli(args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, out, err) = run(&["mqtt", "sessions"]);
    assert_eq!(code, Some(0), "{err}");
    let mut lines = out.lines();
    assert!(
        lines.next().unwrap().starts_with("CLIENT ID  KIND"),
        "{out}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..4], ["c1", "device", "c1", "yes"], "{out}");
    assert_eq!(row.last(), Some(&"devices/c1/commands/#"), "{out}");

    let (code, out, err) = run(&["mqtt", "sessions", "--output", "json"]);
    assert_eq!(code, Some(0), "{err}");
    let listed: Vec<MqttSession> = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.len(), 1, "{out}");
    assert_eq!(listed[0].subscriptions, ["devices/c1/commands/#"]);

    let (code, out, err) = run(&["device", "show", "c1"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("mqtt (since the server started):"), "{out}");

    let (code, out, err) = run(&["metrics"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        out.lines()
            .any(|l| l == "bulwark_mqtt_connections_active 1"),
        "{out}"
    );

    let (code, out, err) = run(&["mqtt", "disconnect", "c1"]);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "disconnected MQTT session c1\n"),
        "{err}"
    );
    let d = rt.block_on(expect_disconnect(&mut dev));
    assert_eq!(d.reason_code, ReasonCode::AdministrativeAction);
    assert!(rt.block_on(dev.closed(T)).0);

    let (code, _, err) = run(&["mqtt", "disconnect", "c1"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("no live MQTT session has the client id"),
        "{err}"
    );

    let (code, _, err) = run(&["mqtt", "disconnect", "c1", "--kind", "robot"]);
    assert_eq!(code, Some(2), "clap refuses an unknown kind: {err}");

    let (code, out, _) = run(&["mqtt", "disconnect", "--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("administrative action"), "{out}");
    let (code, out, _) = run(&["metrics", "--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("auditor"), "{out}");
}
