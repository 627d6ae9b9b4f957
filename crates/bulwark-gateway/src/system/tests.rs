//! Server-originated messages through a real `Gateway` on `127.0.0.1:0`
//! (its plaintext dev listener, so no certificates are needed), with
//! clients built on the project's codec.

use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::signature::Ed25519KeyPair;
use bulwark_ca::{Ca, CaOptions, KdfParams, Passphrase};
use bulwark_mqtt::{
    ConnAck, Connect, Decoder, Disconnect, Encoder, Packet, PacketId, ProtocolVersion, PubResponse,
    Publish, QoS, ReasonCode, Subscribe, Subscription, SubscriptionOptions, TopicFilter, TopicName,
};
use bulwark_policy::{default_device_policy, CompiledPolicy, Principal};
use bulwark_registry::{EventBus, Registry, RegistryConfig};
use bulwark_store::{CheckpointPolicy, CheckpointSigner, MqttStore, SqliteStore};
use bulwark_types::DeviceId;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::SystemPublishError;
use crate::{Gateway, GatewayLimits, SystemPublish};

struct Signer(Ed25519KeyPair);

impl CheckpointSigner for Signer {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).as_ref().to_vec()
    }
}

#[derive(Debug)]
struct NoCert;

impl rustls::server::ResolvesServerCert for NoCert {
    fn resolve(
        &self,
        _: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        None
    }
}

/// A registry (never asked about dev clients) and a directory for
/// `mqtt.db`.
struct Env {
    dir: tempfile::TempDir,
    registry: Arc<Registry>,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let pass = Passphrase::new("correct horse battery staple".into()).unwrap();
    let ca = Ca::init(
        dir.path(),
        &pass,
        KdfParams::fast_for_tests(),
        CaOptions::default(),
    )
    .unwrap();
    let key = Ed25519KeyPair::from_pkcs8(ca.audit_key_pkcs8()).unwrap();
    let store = SqliteStore::open(
        &dir.path().join("bulwark.db"),
        Box::new(Signer(key)),
        CheckpointPolicy::default(),
    )
    .unwrap();
    let registry = Registry::new(
        Arc::new(store),
        Arc::new(ca),
        EventBus::new(64),
        RegistryConfig::default(),
    );
    Env {
        dir,
        registry: Arc::new(registry),
    }
}

/// A gateway serving its dev listener until dropped or stopped.
struct Running {
    gw: Gateway,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    async fn start(env: &Env, limits: GatewayLimits, with_store: bool) -> Running {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(NoCert));
        let store = with_store.then(|| MqttStore::open(&env.dir.path().join("mqtt.db")).unwrap());
        let gw = Gateway::new(env.registry.clone(), limits, Arc::new(tls), store);
        gw.restore().await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serving = gw.clone();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            serving.serve_dev_plain(listener, shutdown).await.unwrap();
        });
        Running {
            gw,
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Stops accepting, tells the connections to leave, commits every
    /// store write.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
        self.gw.flush().await;
    }

    fn metric(&self, name: &str) -> u64 {
        let mut out = String::new();
        self.gw.render_metrics(&mut out);
        let prefix = format!("{name} ");
        out.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no metric {name}"))
            .parse()
            .unwrap()
    }

    /// Waits until the session of dev client `id` is detached (no event
    /// says so: the connection task detaches after closing the socket).
    async fn until_offline(&self, id: &str) {
        for _ in 0..2000 {
            if self
                .gw
                .sessions()
                .iter()
                .any(|s| s.client_id == id && !s.connected)
            {
                return;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("session {id} still connected");
    }

    async fn publish(&self, topic: &str, payload: &'static str) -> SystemPublish {
        self.gw
            .publish_system(
                TopicName::new(topic).unwrap(),
                Bytes::from_static(payload.as_bytes()),
                QoS::AtLeastOnce,
            )
            .await
            .unwrap()
    }
}

struct Client {
    tcp: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

struct Opts {
    clean: bool,
    expiry: u32,
    receive_max: u16,
}

const CLEAN: Opts = Opts {
    clean: true,
    expiry: 0,
    receive_max: 10,
};

impl Client {
    async fn connect(addr: SocketAddr, id: &str, o: Opts) -> (Client, ConnAck) {
        let mut c = Client {
            tcp: TcpStream::connect(addr).await.unwrap(),
            decoder: Decoder::with_version(ProtocolVersion::V5, 1 << 20),
            buf: BytesMut::new(),
        };
        let mut connect = Connect {
            protocol_version: ProtocolVersion::V5,
            clean_start: o.clean,
            keep_alive: 60,
            client_id: id.into(),
            will: None,
            username: None,
            password: None,
            properties: Default::default(),
        };
        connect.properties.session_expiry_interval = Some(o.expiry);
        connect.properties.receive_maximum = NonZeroU16::new(o.receive_max);
        c.send(&Packet::Connect(Box::new(connect))).await;
        match c.recv().await {
            Packet::ConnAck(a) => {
                assert_eq!(a.reason_code, ReasonCode::Success);
                (c, a)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    async fn send(&mut self, p: &Packet) {
        let mut out = BytesMut::new();
        Encoder::new(ProtocolVersion::V5)
            .encode(p, &mut out)
            .unwrap();
        self.tcp.write_all(&out).await.unwrap();
    }

    async fn recv(&mut self) -> Packet {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(p) = self.decoder.decode(&mut self.buf).unwrap() {
                    return p;
                }
                self.buf.reserve(4096);
                assert!(self.tcp.read_buf(&mut self.buf).await.unwrap() > 0, "EOF");
            }
        })
        .await
        .expect("a packet within 10 s")
    }

    async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS, id: Option<u32>) {
        let mut s = Subscribe {
            packet_id: PacketId::new(1).unwrap(),
            properties: Default::default(),
            subscriptions: vec![Subscription {
                filter: TopicFilter::new(filter).unwrap(),
                options: SubscriptionOptions::new(qos),
            }],
        };
        s.properties.subscription_identifiers.extend(id);
        self.send(&Packet::Subscribe(s)).await;
        match self.recv().await {
            Packet::SubAck(a) => assert!(!a.reason_codes[0].is_error(), "{a:?}"),
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    async fn ack(&mut self, p: &Publish) {
        let id = p.packet_id.expect("a QoS 1 message has a packet id");
        self.send(&Packet::PubAck(PubResponse::new(id))).await;
    }

    /// Everything sent before is handled once PINGRESP arrives; any
    /// PUBLISH before it fails the test.
    async fn ping_expecting_nothing_else(&mut self) {
        self.send(&Packet::PingReq).await;
        match self.recv().await {
            Packet::PingResp => {}
            other => panic!("expected only PINGRESP, got {other:?}"),
        }
    }

    async fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::default())).await;
        let mut rest = Vec::new();
        let _ = self.tcp.read_to_end(&mut rest).await;
    }
}

fn ota() -> &'static str {
    r#"{"release":"fw-2.1.0","rollout":"r-1a2b"}"#
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_receive_it_at_their_qos_with_their_ids_and_dollar_topics_are_refused() {
    let env = env();
    let gw = Running::start(&env, GatewayLimits::default(), false).await;
    let (mut d1, _) = Client::connect(gw.addr, "d1", CLEAN).await;
    d1.subscribe("devices/d1/commands/#", QoS::AtLeastOnce, Some(7))
        .await;
    let (mut q0, _) = Client::connect(gw.addr, "q0", CLEAN).await;
    q0.subscribe("devices/+/commands/ota", QoS::AtMostOnce, None)
        .await;

    let r = gw.publish("devices/d1/commands/ota", ota()).await;
    assert_eq!(
        r,
        SystemPublish {
            queued: 2,
            dropped: 0
        }
    );
    // Nothing sent by the clients: their connections were woken.
    let p = d1.recv_publish().await;
    assert_eq!(
        p.topic.as_ref().unwrap().as_str(),
        "devices/d1/commands/ota"
    );
    assert_eq!(p.payload, ota().as_bytes());
    assert_eq!((p.qos, p.retain), (QoS::AtLeastOnce, false));
    assert_eq!(p.properties.subscription_identifiers, vec![7]);
    d1.ack(&p).await;
    d1.ping_expecting_nothing_else().await;
    let s = gw.gw.sessions();
    let d1_session = s.iter().find(|s| s.client_id == "d1").unwrap();
    assert_eq!((d1_session.inflight, d1_session.queued), (0, 0));
    let p = q0.recv_publish().await;
    assert_eq!((p.qos, p.packet_id), (QoS::AtMostOnce, None));

    for topic in ["$SYS/bulwark/x", "$share/g/devices/d1/commands/ota"] {
        let e = gw
            .gw
            .publish_system(
                TopicName::new(topic).unwrap(),
                Bytes::new(),
                QoS::AtLeastOnce,
            )
            .await;
        assert!(matches!(e, Err(SystemPublishError::Topic { .. })), "{e:?}");
    }
    assert_eq!(gw.metric("bulwark_mqtt_system_publishes_total"), 1);
    assert_eq!(gw.metric("bulwark_mqtt_retained_messages"), 0);
    d1.ping_expecting_nothing_else().await;
    q0.ping_expecting_nothing_else().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receive_policy_is_checked_when_queued_and_when_sent() {
    let env = env();
    let gw = Running::start(&env, GatewayLimits::default(), false).await;
    let (mut c, _) = Client::connect(
        gw.addr,
        "d1",
        Opts {
            receive_max: 1,
            ..CLEAN
        },
    )
    .await;
    c.subscribe("devices/+/commands/ota", QoS::AtLeastOnce, None)
        .await;
    // The session now runs under device d1's policy (as after live
    // enforcement), which keeps the subscription but lets it receive
    // only its own commands.
    let device_policy = |id: &str| {
        let p = Principal::new(DeviceId::new(id).unwrap());
        Arc::new(CompiledPolicy::compile(&[default_device_policy()], &p).unwrap())
    };
    let session = gw.gw.shared.broker.session("dev:d1").unwrap();
    session.set_policy(device_policy("d1"));

    let r = gw.publish("devices/d2/commands/ota", "not yours").await;
    assert_eq!(r.queued, 0);
    assert_eq!(gw.metric("bulwark_mqtt_receive_denied_total"), 1);
    gw.publish("devices/d1/commands/ota", "first").await;
    let first = c.recv_publish().await;
    assert_eq!(first.payload, "first".as_bytes());

    // Queued while the window is full, then no longer allowed: not sent.
    assert_eq!(
        gw.publish("devices/d1/commands/ota", "second").await.queued,
        1
    );
    session.set_policy(device_policy("d2"));
    c.ack(&first).await;
    c.ping_expecting_nothing_else().await;
    assert_eq!(gw.metric("bulwark_mqtt_receive_denied_total"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_persistent_session_gets_it_on_reconnect_and_after_a_restart() {
    let env = env();
    let persistent = |clean| Opts {
        clean,
        expiry: 3600,
        receive_max: 10,
    };
    let gw = Running::start(&env, GatewayLimits::default(), true).await;
    let (mut c, _) = Client::connect(gw.addr, "p1", persistent(true)).await;
    c.subscribe("devices/p1/commands/#", QoS::AtLeastOnce, None)
        .await;
    c.disconnect().await;
    gw.until_offline("p1").await;

    assert_eq!(gw.publish("devices/p1/commands/ota", "a").await.queued, 1);
    let (mut c, ack) = Client::connect(gw.addr, "p1", persistent(false)).await;
    assert!(ack.session_present);
    let p = c.recv_publish().await;
    assert_eq!(
        (p.payload.as_ref(), p.qos),
        ("a".as_bytes(), QoS::AtLeastOnce)
    );
    c.ack(&p).await;
    c.ping_expecting_nothing_else().await;
    c.disconnect().await;
    gw.until_offline("p1").await;

    // Returned Ok: durable. The gateway restarts from the store.
    assert_eq!(gw.publish("devices/p1/commands/ota", "b").await.queued, 1);
    gw.stop().await;
    let gw = Running::start(&env, GatewayLimits::default(), true).await;
    let (mut c, ack) = Client::connect(gw.addr, "p1", persistent(false)).await;
    assert!(ack.session_present);
    let p = c.recv_publish().await;
    assert_eq!(p.payload, "b".as_bytes(), "only the unacknowledged one");
    c.ack(&p).await;
    c.ping_expecting_nothing_else().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let env = env();
    let limits = GatewayLimits {
        max_queued: 2,
        ..GatewayLimits::default()
    };
    let gw = Running::start(&env, limits, false).await;
    let (mut c, _) = Client::connect(
        gw.addr,
        "slow",
        Opts {
            receive_max: 1,
            ..CLEAN
        },
    )
    .await;
    c.subscribe("devices/slow/commands/#", QoS::AtLeastOnce, None)
        .await;
    let topic = "devices/slow/commands/ota";
    gw.publish(topic, "1").await;
    let one = c.recv_publish().await; // in flight, not acknowledged
    assert_eq!(gw.publish(topic, "2").await.queued, 1);
    assert_eq!(gw.publish(topic, "3").await.queued, 1);
    // A client publisher would wait for room here; the server does not.
    let r = tokio::time::timeout(Duration::from_secs(1), gw.publish(topic, "4"))
        .await
        .expect("does not block");
    assert_eq!(
        r,
        SystemPublish {
            queued: 0,
            dropped: 1
        }
    );
    assert_eq!(gw.metric("bulwark_mqtt_system_publish_dropped_total"), 1);
    // The queue kept what fit, in order.
    c.ack(&one).await;
    for want in ["2", "3"] {
        let p = c.recv_publish().await;
        assert_eq!(p.payload, want.as_bytes());
        c.ack(&p).await;
    }
    c.ping_expecting_nothing_else().await;
}
