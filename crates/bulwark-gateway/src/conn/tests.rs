//! The detection hooks of the connection path, through a real `Gateway` on
//! its mTLS listener with enrolled devices: each `GatewayEvent` with its
//! fields, handshake failures and back-off refusals, device reports, and
//! deliveries aggregated per write.

use std::sync::Arc;
use std::time::Duration;

use bulwark_mqtt::{
    Packet, PacketId, QoS, ReasonCode, Subscribe, Subscription, SubscriptionOptions,
};
use bulwark_mqtt::{TopicFilter, TopicName};
use bytes::Bytes;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::testing::{drain_events, env, next_event, Client, Opts, Running, CLEAN};
use crate::{GatewayEvent, GatewayLimits, ReportKind, MAX_DEVICE_REPORT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_session_emits_its_events_with_the_device() {
    let env = env();
    let d1 = env.enroll("d1").await;
    let gw = Running::start_tls(&env, GatewayLimits::default()).await;
    let mut rx = gw.gw.subscribe_events(1024).unwrap();
    let dev = Some(d1.id.clone());

    let mut c = Client::connect_tls(&env, gw.addr, &d1, CLEAN).await;
    let e = next_event(&mut rx, |e| {
        matches!(e, GatewayEvent::Connected { .. }).then_some(e)
    })
    .await;
    assert_eq!(
        e,
        GatewayEvent::Connected {
            client_id: "d1".into(),
            principal: "d1".into(),
            device: dev.clone(),
            source: c.local,
        }
    );

    c.subscribe("devices/d1/commands/#", QoS::AtLeastOnce, None)
        .await;
    // One SUBSCRIBE, one filter granted and one denied.
    c.send(&Packet::Subscribe(Subscribe {
        packet_id: PacketId::new(2).unwrap(),
        properties: Default::default(),
        subscriptions: ["devices/d1/commands/ota", "devices/d2/#"]
            .map(|f| Subscription {
                filter: TopicFilter::new(f).unwrap(),
                options: SubscriptionOptions::new(QoS::AtMostOnce),
            })
            .into(),
    }))
    .await;
    match c.recv().await {
        Packet::SubAck(a) => assert_eq!(
            a.reason_codes,
            [ReasonCode::Success, ReasonCode::NotAuthorized]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }

    let inventory = Bytes::from_static(br#"{"os":"linux","packages":[]}"#);
    assert_eq!(
        c.publish_qos1("devices/d1/inventory", inventory.clone(), 1)
            .await,
        ReasonCode::Success
    );
    let posture = Bytes::from_static(br#"{"ports":[22]}"#);
    assert_eq!(
        c.publish_qos1("devices/d1/posture", posture.clone(), 2)
            .await,
        ReasonCode::Success
    );
    let huge = Bytes::from(vec![b' '; MAX_DEVICE_REPORT + 1]);
    assert_eq!(
        c.publish_qos1("devices/d1/posture", huge, 3).await,
        ReasonCode::Success
    );
    assert_eq!(
        c.publish_qos1("devices/d2/inventory", inventory.clone(), 4)
            .await,
        ReasonCode::NotAuthorized
    );
    let local = c.local;
    c.disconnect().await;
    gw.until_offline("d1").await;

    let events = drain_events(&mut rx, Duration::from_millis(200)).await;
    let p = "d1".to_owned();
    let expected = vec![
        GatewayEvent::Subscribed {
            principal: p.clone(),
            device: dev.clone(),
            filter: "devices/d1/commands/#".into(),
        },
        GatewayEvent::Subscribed {
            principal: p.clone(),
            device: dev.clone(),
            filter: "devices/d1/commands/ota".into(),
        },
        GatewayEvent::Denied {
            principal: p.clone(),
            device: dev.clone(),
            action: "subscribe",
            topic: "devices/d2/#".into(),
        },
        GatewayEvent::DeviceReport {
            device: d1.id.clone(),
            kind: ReportKind::Inventory,
            payload: inventory.clone(),
        },
        GatewayEvent::Published {
            principal: p.clone(),
            device: dev.clone(),
            topic: "devices/d1/inventory".into(),
            bytes: inventory.len(),
            qos: 1,
            retain: false,
        },
        GatewayEvent::DeviceReport {
            device: d1.id.clone(),
            kind: ReportKind::Posture,
            payload: posture.clone(),
        },
        GatewayEvent::Published {
            principal: p.clone(),
            device: dev.clone(),
            topic: "devices/d1/posture".into(),
            bytes: posture.len(),
            qos: 1,
            retain: false,
        },
        // Too large to pass on as a report: routed, counted, no report.
        GatewayEvent::Published {
            principal: p.clone(),
            device: dev.clone(),
            topic: "devices/d1/posture".into(),
            bytes: MAX_DEVICE_REPORT + 1,
            qos: 1,
            retain: false,
        },
        // Another device's report topic: a policy denial, no report.
        GatewayEvent::Denied {
            principal: p.clone(),
            device: dev.clone(),
            action: "publish",
            topic: "devices/d2/inventory".into(),
        },
        GatewayEvent::Disconnected {
            client_id: "d1".into(),
            principal: p.clone(),
            device: dev.clone(),
            source: local,
            normal: true,
        },
    ];
    assert_eq!(events, expected);
    assert_eq!(gw.metric("bulwark_mqtt_device_reports_oversized_total"), 1);
}

/// A client certificate the CA never issued (self-signed).
fn stranger_tls() -> Arc<rustls::ClientConfig> {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["d1".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    // The client does not check the server here: only the server's view
    // of the client certificate matters.
    #[derive(Debug)]
    struct AnyServer(Arc<rustls::crypto::CryptoProvider>);
    impl rustls::client::danger::ServerCertVerifier for AnyServer {
        fn verify_server_cert(
            &self,
            _: &CertificateDer<'_>,
            _: &[CertificateDer<'_>],
            _: &ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                m,
                c,
                d,
                &self.0.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_client_auth_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    Arc::new(cfg)
}

fn handshake_failed(e: GatewayEvent) -> Option<(std::net::SocketAddr, String)> {
    match e {
        GatewayEvent::HandshakeFailed { source, reason } => Some((source, reason)),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_handshakes_and_backoff_refusals_are_events() {
    let env = env();
    let limits = GatewayLimits {
        handshake_timeout: Duration::from_millis(300),
        auth_failures_before_backoff: 1,
        ..GatewayLimits::default()
    };
    let gw = Running::start_tls(&env, limits).await;
    let mut rx = gw.gw.subscribe_events(1024).unwrap();

    // Garbage instead of a ClientHello.
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (source, reason) = next_event(&mut rx, handshake_failed).await;
    assert_eq!(source, local);
    assert!(!reason.is_empty() && reason != "timeout", "{reason}");
    drop(tcp);

    // A certificate the CA never issued.
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let tls = tokio_rustls::TlsConnector::from(stranger_tls())
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await;
    if let Ok(mut tls) = tls {
        // TLS 1.3: the client finishes first and learns of the refusal
        // when it reads.
        let _ = tls.read(&mut [0u8; 64]).await;
    }
    let (source, reason) = next_event(&mut rx, handshake_failed).await;
    assert_eq!(source, local);
    assert!(reason.contains("certificate"), "{reason}");

    // Silence until the deadline.
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let (source, reason) = next_event(&mut rx, handshake_failed).await;
    assert_eq!((source, reason.as_str()), (local, "timeout"));
    drop(tcp);
    assert_eq!(gw.metric("bulwark_mqtt_tls_handshake_failures_total"), 3);

    // No certificate at all: the handshake succeeds (certificates are
    // requested, not required, so that the client gets a CONNACK with a
    // reason); the CONNECT is refused, a failed authentication. Twice
    // puts the address in back-off.
    for _ in 0..2 {
        let tcp = TcpStream::connect(gw.addr).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(env.client_tls(None))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let mut out = bytes::BytesMut::new();
        let connect = bulwark_mqtt::Connect {
            protocol_version: bulwark_mqtt::ProtocolVersion::V5,
            clean_start: true,
            keep_alive: 30,
            client_id: "d1".into(),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        };
        bulwark_mqtt::Encoder::new(bulwark_mqtt::ProtocolVersion::V5)
            .encode(&Packet::Connect(Box::new(connect)), &mut out)
            .unwrap();
        tls.write_all(&out).await.unwrap();
        let mut rest = Vec::new();
        let _ = tls.read_to_end(&mut rest).await;
        next_event(&mut rx, |e| {
            matches!(e, GatewayEvent::ConnectRefused { device: None, .. }).then_some(())
        })
        .await;
    }

    // Shed at accept, before any TLS: still visible.
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    let (source, reason) = next_event(&mut rx, handshake_failed).await;
    assert_eq!((source, reason.as_str()), (local, "backoff"));
    let _ = tcp.read(&mut [0u8; 8]).await;
    assert_eq!(gw.metric("bulwark_mqtt_auth_backoff_refusals_total"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_reported_per_write_not_per_message() {
    let env = env();
    let d1 = env.enroll("d1").await;
    let limits = GatewayLimits {
        max_inflight: 64,
        ..GatewayLimits::default()
    };
    let gw = Running::start_tls(&env, limits).await;
    let mut rx = gw.gw.subscribe_events(1024).unwrap();
    let persistent = |clean| Opts {
        clean,
        expiry: 3600,
        receive_max: 64,
    };

    // 50 messages wait for the offline session, then go out at once.
    let mut c = Client::connect_tls(&env, gw.addr, &d1, persistent(true)).await;
    c.subscribe("devices/d1/commands/#", QoS::AtLeastOnce, None)
        .await;
    c.disconnect().await;
    gw.until_offline("d1").await;
    for n in 0..50u32 {
        gw.gw
            .publish_system(
                TopicName::new("devices/d1/commands/ota").unwrap(),
                Bytes::from(format!("{n:04}")),
                QoS::AtLeastOnce,
            )
            .await
            .unwrap();
    }
    let mut c = Client::connect_tls(&env, gw.addr, &d1, persistent(false)).await;
    for _ in 0..50 {
        let p = c.recv_publish().await;
        c.ack(&p).await;
    }
    c.ping_expecting_nothing_else().await;
    c.disconnect().await;
    gw.until_offline("d1").await;

    let delivered: Vec<(u32, u64)> = drain_events(&mut rx, Duration::from_millis(200))
        .await
        .into_iter()
        .filter_map(|e| match e {
            GatewayEvent::Delivered {
                principal,
                device,
                messages,
                bytes,
            } => {
                assert_eq!((principal.as_str(), device.as_ref()), ("d1", Some(&d1.id)));
                Some((messages, bytes))
            }
            _ => None,
        })
        .collect();
    let messages: u32 = delivered.iter().map(|d| d.0).sum();
    let bytes: u64 = delivered.iter().map(|d| d.1).sum();
    assert_eq!((messages, bytes), (50, 200));
    assert!(delivered.len() < 5, "{delivered:?}");
}
