//! The MQTT gateway over real sockets: mTLS admission with every refusal's
//! exact reason code, identity binding, policy on publish and subscribe,
//! takeover, live revocation, abuse limits, and the dev listener. Interop
//! with third-party clients is in `mqtt_interop.rs`.

mod common;

use std::time::{Duration, Instant};

use bulwark_api_types::{LifecycleAction, RevokeCertificate};
use bulwark_mqtt::{LastWill, Packet, ProtocolVersion, QoS, ReasonCode, TopicName};
use bulwark_types::{CertSerial, DeviceId, RevocationReason};
use common::mqtt::{connect_packet, enroll, Raw};
use common::{rt, Server};

const T: Duration = Duration::from_secs(5);

fn serial_of(der: &[u8]) -> CertSerial {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, c) = X509Certificate::from_der(der).unwrap();
    CertSerial::from_bytes(c.raw_serial()).unwrap()
}

#[test]
fn connect_refusals_carry_exact_reason_codes() {
    let server = Server::start("");
    rt().block_on(async {
        let d1 = enroll(&server, "g", "d1").await;
        let d2 = enroll(&server, "g", "d2").await;

        // No client certificate.
        let mut r = Raw::tls(&server, None).await.unwrap();
        let ack = r
            .handshake(connect_packet(ProtocolVersion::V5, "d1"))
            .await
            .unwrap();
        assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
        assert!(ack
            .properties
            .reason_string
            .unwrap()
            .contains("client certificate"));
        assert!(r.closed(T).await.0);

        // The same over MQTT 3.1.1: return code 5 (not authorized).
        let mut r = Raw::tls(&server, None).await.unwrap();
        let ack = r
            .handshake(connect_packet(ProtocolVersion::V311, "d1"))
            .await
            .unwrap();
        assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);

        // d1's certificate presenting d2's clientId.
        let mut r = Raw::tls(&server, Some(&d1)).await.unwrap();
        let ack = r
            .handshake(connect_packet(ProtocolVersion::V5, "d2"))
            .await
            .unwrap();
        assert_eq!(ack.reason_code, ReasonCode::ClientIdentifierNotValid);
        assert!(ack.properties.reason_string.unwrap().contains("must be d1"));

        // An empty clientId is assigned the device id.
        let mut r = Raw::tls(&server, Some(&d2)).await.unwrap();
        let ack = r
            .handshake(connect_packet(ProtocolVersion::V5, ""))
            .await
            .unwrap();
        assert_eq!(ack.reason_code, ReasonCode::Success);
        assert_eq!(
            ack.properties.assigned_client_identifier.as_deref(),
            Some("d2")
        );

        // A will on a topic outside the policy refuses the CONNECT.
        let mut c = connect_packet(ProtocolVersion::V5, "d1");
        c.will = Some(LastWill {
            topic: TopicName::new("devices/d2/status").unwrap(),
            payload: "gone".into(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        });
        let mut r = Raw::tls(&server, Some(&d1)).await.unwrap();
        let ack = r.handshake(c).await.unwrap();
        assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
        assert!(ack.properties.reason_string.unwrap().contains("will topic"));

        // A revoked certificate.
        server
            .client()
            .revoke_certificate(
                &serial_of(&d2.cert_der),
                &RevokeCertificate {
                    reason: Some(RevocationReason::KeyCompromise),
                },
            )
            .await
            .unwrap();
        let mut r = Raw::tls(&server, Some(&d2)).await.unwrap();
        let ack = r
            .handshake(connect_packet(ProtocolVersion::V5, "d2"))
            .await
            .unwrap();
        assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
        assert!(ack.properties.reason_string.unwrap().contains("revoked"));

        // Refusals are audited.
        let entries = server.client().list_audit(None, Some(1000)).await.unwrap();
        let refused = entries
            .iter()
            .filter(|e| e.event["type"] == "mqtt_connect_refused")
            .count();
        assert!(refused >= 4, "{refused} refusals audited");
    });
    let metrics = server.log();
    assert!(metrics.contains("MQTT CONNECT refused"), "{metrics}");
}

#[test]
fn certificate_of_another_ca_fails_the_handshake() {
    let server = Server::start("");
    rt().block_on(async {
        // A self-signed certificate claiming to be d1.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "d1");
        let cert = params.self_signed(&key).unwrap();
        let forged = common::mqtt::Creds {
            id: "d1".into(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            cert: Default::default(),
            key: Default::default(),
        };
        // TLS 1.3: the client may learn of the refusal only on its first
        // read, so a handshake that "succeeds" must still get no CONNACK.
        if let Ok(mut r) = Raw::tls(&server, Some(&forged)).await {
            let ack = r.handshake(connect_packet(ProtocolVersion::V5, "d1")).await;
            assert!(
                ack.is_none(),
                "a foreign certificate got a CONNACK: {ack:?}"
            );
        }
    });
}

/// The gateway remembers client certificates whose chain verified; a
/// certificate it has seen must still come with its private key.
#[test]
fn a_known_certificate_without_its_key_fails_the_handshake() {
    let server = Server::start("");
    rt().block_on(async {
        let d1 = enroll(&server, "lab", "d1").await;
        let d2 = enroll(&server, "lab", "d2").await;
        // d1's certificate verifies (and is remembered).
        let mut r = Raw::device(&server, &d1).await;
        r.send(&Packet::Disconnect(Default::default())).await;
        // d1's certificate with d2's key: CertificateVerify fails.
        let stolen = common::mqtt::Creds {
            key_der: d2.key_der.clone(),
            ..d1.clone()
        };
        for _ in 0..2 {
            if let Ok(mut r) = Raw::tls(&server, Some(&stolen)).await {
                let ack = r.handshake(connect_packet(ProtocolVersion::V5, "d1")).await;
                assert!(
                    ack.is_none(),
                    "a certificate without its key got a CONNACK: {ack:?}"
                );
            }
        }
        // The rightful owner still connects.
        let _ = Raw::device(&server, &d1).await;
    });
}

#[test]
fn policy_is_enforced_on_subscribe_and_publish() {
    let server = Server::start("");
    rt().block_on(async {
        let d1 = enroll(&server, "g", "d1").await;
        let _d2 = enroll(&server, "g", "d2").await;
        let id = DeviceId::new("d1").unwrap();
        assert!(server
            .client()
            .get_device(&id)
            .await
            .unwrap()
            .device
            .last_seen_at
            .is_none());
        let mut r = Raw::device(&server, &d1).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        let seen = server
            .client()
            .get_device(&id)
            .await
            .unwrap()
            .device
            .last_seen_at;
        assert!(
            seen.is_some(),
            "a connection updates the device's last_seen_at"
        );
        let codes = r
            .subscribe(
                1,
                &[
                    ("devices/d1/commands/#", QoS::AtLeastOnce),
                    ("#", QoS::AtMostOnce),
                    ("+/#", QoS::AtMostOnce),
                    ("$share/g/devices/#", QoS::AtMostOnce),
                    ("devices/d2/commands/#", QoS::AtMostOnce),
                    ("devices/+/commands/#", QoS::AtMostOnce),
                ],
            )
            .await;
        use ReasonCode::*;
        assert_eq!(
            codes,
            [
                GrantedQoS1,
                NotAuthorized,
                NotAuthorized,
                NotAuthorized,
                NotAuthorized,
                NotAuthorized
            ]
        );
        // Publishing outside its space: QoS 1 gets PUBACK "not authorized".
        r.publish("devices/d2/telemetry", "x", QoS::AtLeastOnce, 7)
            .await;
        match r.recv(T).await {
            Some(Packet::PubAck(a)) => {
                assert_eq!(a.packet_id.get(), 7);
                assert_eq!(a.reason_code, NotAuthorized);
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
        // Its own space is fine.
        r.publish("devices/d1/telemetry", "x", QoS::AtLeastOnce, 8)
            .await;
        match r.recv(T).await {
            Some(Packet::PubAck(a)) => assert_eq!(a.reason_code, Success),
            other => panic!("expected PUBACK, got {other:?}"),
        }
        // '$' topics are the server's.
        r.publish("$SYS/x", "x", QoS::AtLeastOnce, 9).await;
        match r.recv(T).await {
            Some(Packet::PubAck(a)) => assert_eq!(a.reason_code, TopicNameInvalid),
            other => panic!("expected PUBACK, got {other:?}"),
        }

        // MQTT 3.1.1 cannot be told: the connection is closed instead.
        let mut r3 = Raw::tls(&server, Some(&d1)).await.unwrap();
        let ack = r3
            .handshake(connect_packet(ProtocolVersion::V311, "d1"))
            .await
            .unwrap();
        assert_eq!(ack.reason_code, Success);
        r3.publish("devices/d2/telemetry", "x", QoS::AtLeastOnce, 1)
            .await;
        assert!(
            r3.closed(T).await.0,
            "3.1.1 client kept its connection after a refused publish"
        );
    });
}

#[test]
fn device_to_device_is_denied_and_commands_reach_the_device() {
    let server = Server::start("");
    rt().block_on(async {
        let d1 = enroll(&server, "g", "d1").await;
        let d2 = enroll(&server, "g", "d2").await;
        let mut r1 = Raw::device(&server, &d1).await;
        assert_eq!(
            r1.subscribe(1, &[("devices/d1/commands/#", QoS::AtLeastOnce)])
                .await,
            [ReasonCode::GrantedQoS1]
        );
        // d2 cannot command d1.
        let mut r2 = Raw::device(&server, &d2).await;
        r2.publish("devices/d1/commands/reboot", "now", QoS::AtMostOnce, 0)
            .await;
        assert!(r1.next_publish(Duration::from_millis(500)).await.is_none());
        // A dev-listener client (dev mode only) can, and the device gets it.
        let mut dev = Raw::plain(&server).await;
        let ack = dev
            .handshake(connect_packet(ProtocolVersion::V5, "operator-console"))
            .await
            .unwrap();
        assert_eq!(ack.reason_code, ReasonCode::Success);
        dev.publish("devices/d1/commands/reboot", "now", QoS::AtLeastOnce, 3)
            .await;
        let p = r1.next_publish(T).await.expect("command delivered");
        assert_eq!(p.topic.unwrap().as_str(), "devices/d1/commands/reboot");
        assert_eq!(&p.payload[..], b"now");
        assert_eq!(p.qos, QoS::AtLeastOnce);
    });
}

#[test]
fn revoked_device_session_is_cut_within_one_second() {
    let server = Server::start("");
    rt().block_on(async {
        let d1 = enroll(&server, "g", "d1").await;
        let mut r = Raw::device(&server, &d1).await;
        let started = Instant::now();
        server
            .client()
            .revoke_certificate(
                &serial_of(&d1.cert_der),
                &RevokeCertificate {
                    reason: Some(RevocationReason::KeyCompromise),
                },
            )
            .await
            .unwrap();
        let (closed, disconnect) = r.closed(Duration::from_secs(1)).await;
        let took = started.elapsed();
        assert!(closed, "session still open {took:?} after revocation");
        assert_eq!(disconnect.unwrap().reason_code, ReasonCode::NotAuthorized);
        eprintln!("revocation to disconnect: {took:?}");
        // And it cannot come back.
        let mut again = Raw::tls(&server, Some(&d1)).await.unwrap();
        let ack = again
            .handshake(connect_packet(ProtocolVersion::V5, "d1"))
            .await
            .unwrap();
        assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    });
}

#[test]
fn quarantine_rescopes_and_decommission_disconnects_live_sessions() {
    let server = Server::start("");
    rt().block_on(async {
        let d1 = enroll(&server, "g", "d1").await;
        let mut r = Raw::device(&server, &d1).await;
        assert_eq!(
            r.subscribe(1, &[("devices/d1/commands/#", QoS::AtMostOnce)])
                .await,
            [ReasonCode::Success]
        );
        let id = DeviceId::new("d1").unwrap();
        server
            .client()
            .quarantine_device(&id, &LifecycleAction::default())
            .await
            .unwrap();
        // Still connected, but its commands subscription was dropped: a
        // command no longer arrives, and publishing telemetry is refused.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut dev = Raw::plain(&server).await;
        dev.handshake(connect_packet(ProtocolVersion::V5, "console"))
            .await
            .unwrap();
        dev.publish("devices/d1/commands/x", "1", QoS::AtMostOnce, 0)
            .await;
        assert!(r.next_publish(Duration::from_millis(500)).await.is_none());
        r.publish("devices/d1/telemetry", "x", QoS::AtLeastOnce, 2)
            .await;
        match r.recv(T).await {
            Some(Packet::PubAck(a)) => assert_eq!(a.reason_code, ReasonCode::NotAuthorized),
            other => panic!("expected PUBACK, got {other:?}"),
        }
        // Remediation topics work.
        assert_eq!(
            r.subscribe(3, &[("remediation/d1/#", QoS::AtMostOnce)])
                .await,
            [ReasonCode::Success]
        );
        // Decommission: disconnected with "not authorized".
        let started = Instant::now();
        server
            .client()
            .decommission_device(&id, &LifecycleAction::default())
            .await
            .unwrap();
        let (closed, d) = r.closed(Duration::from_secs(1)).await;
        assert!(
            closed,
            "still connected {:?} after decommission",
            started.elapsed()
        );
        assert_eq!(d.unwrap().reason_code, ReasonCode::NotAuthorized);
    });
}

#[test]
fn second_connection_takes_the_session_over_and_is_audited() {
    let server = Server::start("");
    rt().block_on(async {
        let d1 = enroll(&server, "g", "d1").await;
        let mut first = Raw::device(&server, &d1).await;
        let _second = Raw::device(&server, &d1).await;
        let (closed, d) = first.closed(T).await;
        assert!(closed);
        assert_eq!(d.unwrap().reason_code, ReasonCode::SessionTakenOver);
        let entries = server.client().list_audit(None, Some(1000)).await.unwrap();
        let takeover = entries
            .iter()
            .find(|e| e.event["type"] == "mqtt_session_taken_over")
            .expect("takeover audited");
        assert_eq!(takeover.event["client_id"], "d1");
    });
}

#[test]
fn protocol_violations_close_with_the_right_reason() {
    let server = Server::start("");
    rt().block_on(async {
        let d1 = enroll(&server, "g", "d1").await;
        // A second CONNECT.
        let mut r = Raw::device(&server, &d1).await;
        r.send(&Packet::Connect(Box::new(connect_packet(
            ProtocolVersion::V5,
            "d1",
        ))))
        .await;
        let (closed, d) = r.closed(T).await;
        assert!(closed);
        assert_eq!(d.unwrap().reason_code, ReasonCode::ProtocolError);

        // A declared 256 MB packet: refused from its header alone.
        let mut r = Raw::device(&server, &d1).await;
        r.send_bytes(&[0x30, 0xff, 0xff, 0xff, 0x7f]).await.unwrap();
        let (closed, d) = r.closed(T).await;
        assert!(closed);
        assert_eq!(d.unwrap().reason_code, ReasonCode::PacketTooLarge);

        // Garbage: an invalid packet type.
        let mut r = Raw::device(&server, &d1).await;
        r.send_bytes(&[0x00, 0x00]).await.unwrap();
        let (closed, d) = r.closed(T).await;
        assert!(closed);
        assert_eq!(d.unwrap().reason_code, ReasonCode::MalformedPacket);

        // Before authentication the limit is much smaller: a large CONNECT
        // is refused without being read.
        let mut r = Raw::tls(&server, Some(&d1)).await.unwrap();
        r.send_bytes(&[0x10, 0xff, 0xff, 0x03]).await.unwrap();
        assert!(r.closed(T).await.0);
    });
}

#[test]
fn slow_clients_are_cut_at_the_deadlines() {
    let server = Server::start("[mqtt]\nconnect_timeout_secs = 1\nhandshake_timeout_secs = 1\n");
    rt().block_on(async {
        let d1 = enroll(&server, "g", "d1").await;
        // TLS done, no CONNECT.
        let started = Instant::now();
        let mut r = Raw::tls(&server, Some(&d1)).await.unwrap();
        assert!(r.closed(Duration::from_secs(4)).await.0);
        assert!(started.elapsed() < Duration::from_secs(3));
        // TCP only, no TLS ClientHello.
        use tokio::io::AsyncReadExt;
        let mut tcp = tokio::net::TcpStream::connect(&server.mqtt_addr)
            .await
            .unwrap();
        let started = Instant::now();
        let mut b = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(4), tcp.read(&mut b)).await;
        assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
    });
}

#[test]
fn publish_rate_limit_answers_quota_exceeded() {
    let server = Server::start("[mqtt]\npublish_rate = 2.0\npublish_burst = 5.0\n");
    rt().block_on(async {
        let d1 = enroll(&server, "g", "d1").await;
        let mut r = Raw::device(&server, &d1).await;
        for i in 1..=10u16 {
            r.publish("devices/d1/telemetry", "x", QoS::AtLeastOnce, i)
                .await;
        }
        let mut codes = Vec::new();
        while codes.len() < 10 {
            match r.recv(T).await {
                Some(Packet::PubAck(a)) => codes.push(a.reason_code),
                other => panic!("expected PUBACK, got {other:?}"),
            }
        }
        let ok = codes.iter().filter(|c| **c == ReasonCode::Success).count();
        let quota = codes
            .iter()
            .filter(|c| **c == ReasonCode::QuotaExceeded)
            .count();
        assert!((5..=6).contains(&ok), "{codes:?}");
        assert_eq!(ok + quota, 10, "{codes:?}");
    });
}

#[test]
fn keepalive_timeout_publishes_the_will() {
    let server = Server::start("");
    rt().block_on(async {
        let d1 = enroll(&server, "g", "d1").await;
        let mut watcher = Raw::plain(&server).await;
        watcher
            .handshake(connect_packet(ProtocolVersion::V5, "watcher"))
            .await
            .unwrap();
        watcher
            .subscribe(1, &[("devices/d1/status", QoS::AtMostOnce)])
            .await;
        let mut c = connect_packet(ProtocolVersion::V5, "d1");
        c.keep_alive = 1;
        c.will = Some(LastWill {
            topic: TopicName::new("devices/d1/status").unwrap(),
            payload: "offline".into(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Default::default(),
        });
        let mut r = Raw::tls(&server, Some(&d1)).await.unwrap();
        assert_eq!(
            r.handshake(c).await.unwrap().reason_code,
            ReasonCode::Success
        );
        // Silent for more than 1.5 x 1 s.
        let (closed, d) = r.closed(Duration::from_secs(4)).await;
        assert!(closed);
        assert_eq!(d.unwrap().reason_code, ReasonCode::KeepAliveTimeout);
        let will = watcher.next_publish(T).await.expect("will published");
        assert_eq!(&will.payload[..], b"offline");
    });
}

#[test]
fn server_certificate_rotates_on_sighup_without_dropping_sessions() {
    let server = Server::start("");
    rt().block_on(async {
        let d1 = enroll(&server, "g", "d1").await;
        let mut before = Raw::device(&server, &d1).await;
        let old_cert = before.server_cert.clone().unwrap();
        std::process::Command::new("kill")
            .args(["-HUP", &server.pid().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + T;
        while !server.log().contains("MQTT server certificate rotated") {
            assert!(Instant::now() < deadline, "no rotation: {}", server.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let after = Raw::device(&server, &enroll(&server, "g", "d2").await).await;
        assert_ne!(
            after.server_cert.unwrap(),
            old_cert,
            "new connections get the new certificate"
        );
        // The session opened before the rotation still works.
        before
            .publish("devices/d1/telemetry", "x", QoS::AtLeastOnce, 1)
            .await;
        match before.recv(T).await {
            Some(Packet::PubAck(a)) => assert_eq!(a.reason_code, ReasonCode::Success),
            other => panic!("old session broken after rotation: {other:?}"),
        }
    });
}

#[test]
fn abuse_limits_per_address_backoff_and_flapping() {
    let server = Server::start(
        "[mqtt]\nmax_connections_per_ip = 3\nauth_failures_before_backoff = 2\nflap_max_connects = 4\nflap_window_secs = 60\n",
    );
    rt().block_on(async {
        let d1 = enroll(&server, "g", "d1").await;
        // Connect/disconnect flapping: the fifth CONNECT within the window
        // is refused with "connection rate exceeded".
        for i in 0..5 {
            let mut r = Raw::tls(&server, Some(&d1)).await.unwrap();
            let ack = r
                .handshake(connect_packet(ProtocolVersion::V5, "d1"))
                .await
                .unwrap();
            let want = if i < 4 {
                ReasonCode::Success
            } else {
                ReasonCode::ConnectionRateExceeded
            };
            assert_eq!(ack.reason_code, want, "connect {i}");
            r.send(&Packet::Disconnect(Default::default())).await;
        }
        // Connections per source address: the fourth is closed at once.
        // (First let the server finish closing the connections above, or
        // their slots would still count.)
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(
                tokio::net::TcpStream::connect(&server.mqtt_addr)
                    .await
                    .unwrap(),
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let refused = Raw::tls(&server, Some(&d1)).await;
        assert!(
            refused.is_err(),
            "a fourth connection from one address got through"
        );
        drop(held);
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Failed authentications: after two, the address must wait.
        for _ in 0..3 {
            let mut r = Raw::tls(&server, None).await.unwrap();
            let ack = r.handshake(connect_packet(ProtocolVersion::V5, "x")).await;
            assert_eq!(ack.map(|a| a.reason_code), Some(ReasonCode::NotAuthorized));
        }
        let blocked = Raw::tls(&server, Some(&d1)).await;
        let got_in = match blocked {
            Err(_) => false,
            Ok(mut r) => r
                .handshake(connect_packet(ProtocolVersion::V5, "d1"))
                .await
                .is_some(),
        };
        assert!(!got_in, "an address in back-off was served");
    });
}

#[test]
fn policy_change_rescopes_live_sessions_within_one_second() {
    use common::mqtt::{attach_lab_policy, detach_lab_policy};
    let server = Server::start("");
    rt().block_on(async {
        let d1 = enroll(&server, "g", "d1").await;
        let d2 = enroll(&server, "g", "d2").await;
        attach_lab_policy(&server, "g").await;
        let mut r1 = Raw::device(&server, &d1).await;
        let mut r2 = Raw::device(&server, &d2).await;
        assert_eq!(
            r2.subscribe(1, &[("lab/#", QoS::AtMostOnce)]).await,
            [ReasonCode::Success]
        );
        // d1 leaves a retained message d2 can read today.
        let mut p = bulwark_mqtt::Publish::new(TopicName::new("lab/state").unwrap(), &b"v1"[..]);
        p.retain = true;
        r1.send(&Packet::Publish(p)).await;
        assert_eq!(&r2.next_publish(T).await.unwrap().payload[..], b"v1");

        // A console keeps publishing on lab/tick while the policy goes.
        let mut console = Raw::plain(&server).await;
        console
            .handshake(connect_packet(ProtocolVersion::V5, "console"))
            .await
            .unwrap();
        let ticker = tokio::spawn(async move {
            for i in 0..60u32 {
                console
                    .publish("lab/tick", &i.to_string(), QoS::AtMostOnce, 0)
                    .await;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        detach_lab_policy(&server, "g").await;
        let detached = Instant::now();
        let mut last = None;
        while let Some(p) = r2.next_publish(Duration::from_millis(400)).await {
            assert!(p.topic.unwrap().as_str().starts_with("lab/"));
            last = Some(detached.elapsed());
        }
        ticker.await.unwrap();
        let last = last.unwrap_or_default();
        eprintln!("last delivery {last:?} after the policy was detached");
        assert!(
            last < Duration::from_secs(1),
            "deliveries continued {last:?} after detach"
        );

        // The retained message is no longer readable, by a new subscription
        // either: the filter is refused.
        assert_eq!(
            r2.subscribe(2, &[("lab/state", QoS::AtMostOnce)]).await,
            [ReasonCode::NotAuthorized]
        );
        assert!(r2.next_publish(Duration::from_millis(300)).await.is_none());
    });
}

/// Backend applications: a service principal connects with its password
/// (no client certificate) or with a service certificate, only under the
/// policies attached to it; deleting it cuts its live sessions.
#[test]
fn service_principals_connect_with_password_or_certificate() {
    let server = Server::start("");
    rt().block_on(async {
        let http = common::raw(&server);
        let api = |path: &str| format!("{}{path}", server.addr);
        let d1 = enroll(&server, "g", "d1").await;
        let created: serde_json::Value = http
            .post(api("/v1/services"))
            .bearer_auth(&server.token)
            .json(&serde_json::json!({"name": "backend", "password": true}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let password = created["generated_password"].as_str().unwrap().to_string();
        let login = |user: &str, pass: &str| {
            let mut c = connect_packet(ProtocolVersion::V5, "backend");
            c.username = Some(user.into());
            c.password = Some(pass.as_bytes().to_vec().into());
            c
        };

        // No policy attached yet: even the right password may not connect.
        let mut r = Raw::tls(&server, None).await.unwrap();
        let ack = r.handshake(login("backend", &password)).await.unwrap();
        assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);

        let policy = serde_json::json!({"version": 1, "name": "reader", "statements": [
            {"effect": "allow", "actions": ["connect"], "resources": ["#"]},
            {"effect": "allow", "actions": ["subscribe", "receive"], "resources": ["devices/+/telemetry"]}
        ]});
        let r = http.post(api("/v1/policies")).bearer_auth(&server.token).json(&policy).send().await.unwrap();
        assert!(r.status().is_success());
        let r = http.put(api("/v1/services/backend/policies/reader")).bearer_auth(&server.token).send().await.unwrap();
        assert!(r.status().is_success());

        // Wrong password, unknown service: the same answer.
        for (u, p) in [("backend", "wrong"), ("nobody", password.as_str())] {
            let mut r = Raw::tls(&server, None).await.unwrap();
            let ack = r.handshake(login(u, p)).await.unwrap();
            assert_eq!(ack.reason_code, ReasonCode::BadUserNameOrPassword, "{u}");
        }

        let mut svc = Raw::tls(&server, None).await.unwrap();
        let ack = svc.handshake(login("backend", &password)).await.unwrap();
        assert_eq!(ack.reason_code, ReasonCode::Success);
        assert_eq!(
            svc.subscribe(1, &[("devices/+/telemetry", QoS::AtLeastOnce), ("devices/+/commands/#", QoS::AtMostOnce)]).await,
            [ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized]
        );
        let mut dev = Raw::device(&server, &d1).await;
        dev.publish("devices/d1/telemetry", "21.5", QoS::AtLeastOnce, 1).await;
        let got = svc.next_publish(T).await.expect("telemetry reaches the service");
        assert_eq!(&got.payload[..], b"21.5");

        // A service certificate from a CSR; its clientId must be its name
        // or name-<instance>.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "backend");
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let pem = http
            .post(api("/v1/services/backend/certificate"))
            .bearer_auth(&server.token)
            .header("content-type", "application/pkcs10")
            .body(csr)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        use base64::Engine;
        let creds = common::mqtt::Creds {
            id: "backend".into(),
            cert_der: base64::engine::general_purpose::STANDARD.decode(b64).unwrap(),
            key_der: key.serialize_der(),
            cert: Default::default(),
            key: Default::default(),
        };
        let mut other = Raw::tls(&server, Some(&creds)).await.unwrap();
        let ack = other.handshake(connect_packet(ProtocolVersion::V5, "d1")).await.unwrap();
        assert_eq!(ack.reason_code, ReasonCode::ClientIdentifierNotValid);
        let mut by_cert = Raw::tls(&server, Some(&creds)).await.unwrap();
        let ack = by_cert.handshake(connect_packet(ProtocolVersion::V5, "backend-2")).await.unwrap();
        assert_eq!(ack.reason_code, ReasonCode::Success);

        // Deleting the service cuts both sessions.
        let r = http.delete(api("/v1/services/backend")).bearer_auth(&server.token).send().await.unwrap();
        assert!(r.status().is_success());
        for s in [&mut svc, &mut by_cert] {
            let (closed, d) = s.closed(Duration::from_secs(2)).await;
            assert!(closed);
            assert_eq!(d.unwrap().reason_code, ReasonCode::NotAuthorized);
        }
    });
}

#[test]
fn expired_certificate_gets_a_clear_refusal() {
    let server = Server::start("[ca]\ndevice_cert_secs = 5\n");
    rt().block_on(async {
        let d1 = enroll(&server, "g", "d1").await;
        // Valid now...
        let mut r = Raw::device(&server, &d1).await;
        r.send(&Packet::Disconnect(Default::default())).await;
        // ...and refused once it has expired: a CONNACK with the reason,
        // not a bare TLS alert.
        tokio::time::sleep(Duration::from_secs(6)).await;
        let mut r = Raw::tls(&server, Some(&d1)).await.unwrap();
        let ack = r
            .handshake(connect_packet(ProtocolVersion::V5, "d1"))
            .await
            .unwrap();
        assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
        let reason = ack.properties.reason_string.unwrap();
        assert!(reason.contains("expired"), "{reason}");
    });
}

/// A subscriber that falls behind holds its publishers back instead of
/// losing QoS 1 messages that were acknowledged to them.
#[test]
fn full_subscriber_queue_holds_publishers_back_without_loss() {
    let server = Server::start("[mqtt]\nmax_queued = 10\nmax_inflight = 4\n");
    rt().block_on(async {
        let d1 = enroll(&server, "g", "d1").await;
        let mut sub = Raw::device(&server, &d1).await;
        assert_eq!(
            sub.subscribe(1, &[("devices/d1/commands/#", QoS::AtLeastOnce)])
                .await,
            [ReasonCode::GrantedQoS1]
        );
        let mut publisher = Raw::plain(&server).await;
        publisher
            .handshake(connect_packet(ProtocolVersion::V5, "console"))
            .await
            .unwrap();
        let n = 60u16;
        for i in 1..=n {
            publisher
                .publish(
                    "devices/d1/commands/seq",
                    &i.to_string(),
                    QoS::AtLeastOnce,
                    i,
                )
                .await;
        }
        // The subscriber reads nothing for a while: the publisher gets at
        // most window + queue acknowledgements.
        let mut acked = 0;
        while let Some(p) = publisher.recv(Duration::from_millis(700)).await {
            if matches!(p, Packet::PubAck(_)) {
                acked += 1;
            }
        }
        assert!(
            acked <= 4 + 10 + 1,
            "{acked} acknowledged while the subscriber was stuck"
        );
        // Now it reads: every message arrives, in order, none lost.
        let mut got = Vec::new();
        while got.len() < usize::from(n) {
            let p = sub.next_publish(T).await.expect("message lost");
            got.push(String::from_utf8(p.payload.to_vec()).unwrap());
        }
        let want: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
        assert_eq!(got, want);
        while acked < n {
            match publisher.recv(T).await {
                Some(Packet::PubAck(a)) => {
                    assert_eq!(a.reason_code, ReasonCode::Success);
                    acked += 1;
                }
                Some(_) => {}
                None => panic!("only {acked} of {n} acknowledged"),
            }
        }
    });
}
