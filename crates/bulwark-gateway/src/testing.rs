//! Test harness shared by the gateway's tests: a real registry (SQLite
//! store, CA), a `Gateway` serving on `127.0.0.1:0` (the plaintext dev
//! listener, or the mTLS listener with a server certificate from the test
//! CA), enrolled devices with their certificates, and a raw MQTT 5 client
//! built on the project's codec, over TCP or TLS.

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
use bulwark_registry::{EventBus, Operator, Registry, RegistryConfig};
use bulwark_store::{CheckpointPolicy, CheckpointSigner, MqttStore, SqliteStore};
use bulwark_types::{DeviceId, GroupId};
use bytes::{Bytes, BytesMut};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Gateway, GatewayEvent, GatewayLimits};

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

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A registry with its CA, and a directory for `mqtt.db`.
pub(crate) struct Env {
    pub dir: tempfile::TempDir,
    pub registry: Arc<Registry>,
    pub ca: Arc<Ca>,
    admin: std::sync::Mutex<Option<String>>,
}

pub(crate) fn env() -> Env {
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
    let ca = Arc::new(ca);
    let registry = Registry::new(
        Arc::new(store),
        ca.clone(),
        EventBus::new(64),
        RegistryConfig::default(),
    );
    Env {
        dir,
        registry: Arc::new(registry),
        ca,
        admin: std::sync::Mutex::default(),
    }
}

/// A device's certificate and PKCS#8 key (DER).
#[derive(Clone)]
pub(crate) struct Creds {
    pub id: DeviceId,
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
}

impl Env {
    /// An admin operator (the store's bootstrap token, made once).
    async fn admin(&self) -> Operator {
        let known = self.admin.lock().unwrap().clone();
        let token = match known {
            Some(t) => t,
            None => {
                let t = self.registry.bootstrap_admin_token("test").await.unwrap();
                *self.admin.lock().unwrap() = Some(t.clone());
                t
            }
        };
        self.registry
            .authenticate_operator(&token, "test")
            .await
            .unwrap()
    }

    /// Enrolls device `id` (group `g`) with a fresh P-256 key.
    pub async fn enroll(&self, id: &str) -> Creds {
        let admin = self.admin().await;
        let r = &self.registry;
        let _ = r
            .create_group(&admin, GroupId::new("g").unwrap(), String::new())
            .await;
        let device = DeviceId::new(id).unwrap();
        let (token, _) = r
            .create_enroll_token(
                &admin,
                GroupId::new("g").unwrap(),
                Some(device.clone()),
                None,
            )
            .await
            .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let csr = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .serialize_request(&key)
            .unwrap();
        let enrolled = r
            .enroll_with_token(&token, csr.der(), "test")
            .await
            .unwrap();
        Creds {
            id: device,
            cert_der: enrolled.cert.der,
            key_der: key.serialize_der(),
        }
    }

    /// The mTLS listener's configuration: a server certificate for
    /// `localhost` from the test CA; client certificates chaining to the
    /// CA requested, not required (as `bulwark_api::mqtt_tls_config`).
    fn server_tls(&self) -> rustls::ServerConfig {
        let (cert, key) = self.ca.issue_server(&["localhost".to_owned()]).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.ca.root_der().to_vec()))
            .unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .allow_unauthenticated()
        .build()
        .unwrap();
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![
                    CertificateDer::from(cert),
                    CertificateDer::from(self.ca.issuing_der().to_vec()),
                ],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.to_vec())),
            )
            .unwrap()
    }

    /// A client configuration trusting the test CA, presenting `creds`
    /// (with the issuing CA) if given.
    pub fn client_tls(&self, creds: Option<&Creds>) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.ca.root_der().to_vec()))
            .unwrap();
        let b = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let cfg = match creds {
            Some(c) => b
                .with_client_auth_cert(
                    vec![
                        CertificateDer::from(c.cert_der.clone()),
                        CertificateDer::from(self.ca.issuing_der().to_vec()),
                    ],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key_der.clone())),
                )
                .unwrap(),
            None => b.with_no_client_auth(),
        };
        Arc::new(cfg)
    }
}

/// A gateway serving one listener until dropped or stopped.
pub(crate) struct Running {
    pub gw: Gateway,
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// The plaintext dev listener (anonymous clients, dev policy).
    pub async fn start(env: &Env, limits: GatewayLimits, with_store: bool) -> Running {
        let tls = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(NoCert));
        Self::serve(env, limits, with_store, tls, false).await
    }

    /// The mTLS listener (enrolled devices).
    pub async fn start_tls(env: &Env, limits: GatewayLimits) -> Running {
        Self::serve(env, limits, false, env.server_tls(), true).await
    }

    async fn serve(
        env: &Env,
        limits: GatewayLimits,
        with_store: bool,
        tls: rustls::ServerConfig,
        mtls: bool,
    ) -> Running {
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
            if mtls {
                serving.serve_tls(listener, shutdown).await;
            } else {
                serving.serve_dev_plain(listener, shutdown).await.unwrap();
            }
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
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
        self.gw.flush().await;
    }

    pub fn metric(&self, name: &str) -> u64 {
        let mut out = String::new();
        self.gw.render_metrics(&mut out);
        let prefix = format!("{name} ");
        out.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no metric {name}"))
            .parse()
            .unwrap()
    }

    /// Waits until client `id` has no connected session (the connection
    /// task detaches after closing the socket; a persistent session stays,
    /// offline).
    pub async fn until_offline(&self, id: &str) {
        for _ in 0..2000 {
            if !self
                .gw
                .sessions()
                .iter()
                .any(|s| s.client_id == id && s.connected)
            {
                return;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("session {id} still connected");
    }
}

pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A raw MQTT 5 client.
pub(crate) struct Client {
    io: Box<dyn Io>,
    decoder: Decoder,
    buf: BytesMut,
    /// The local address of its TCP connection.
    pub local: SocketAddr,
}

pub(crate) struct Opts {
    pub clean: bool,
    pub expiry: u32,
    pub receive_max: u16,
}

pub(crate) const CLEAN: Opts = Opts {
    clean: true,
    expiry: 0,
    receive_max: 10,
};

impl Client {
    /// Over plain TCP (the dev listener), CONNACK success expected.
    pub async fn connect(addr: SocketAddr, id: &str, o: Opts) -> (Client, ConnAck) {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let local = tcp.local_addr().unwrap();
        Self::handshake(Box::new(tcp), local, id, o).await
    }

    /// Over TLS with `creds`' certificate, its id as client id.
    pub async fn connect_tls(env: &Env, addr: SocketAddr, creds: &Creds, o: Opts) -> Client {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let local = tcp.local_addr().unwrap();
        let tls = tokio_rustls::TlsConnector::from(env.client_tls(Some(creds)))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        Self::handshake(Box::new(tls), local, creds.id.as_str(), o)
            .await
            .0
    }

    async fn handshake(io: Box<dyn Io>, local: SocketAddr, id: &str, o: Opts) -> (Client, ConnAck) {
        let mut c = Client {
            io,
            decoder: Decoder::with_version(ProtocolVersion::V5, 1 << 20),
            buf: BytesMut::new(),
            local,
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
                assert_eq!(a.reason_code, ReasonCode::Success, "{a:?}");
                (c, a)
            }
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    pub async fn send(&mut self, p: &Packet) {
        let mut out = BytesMut::new();
        Encoder::new(ProtocolVersion::V5)
            .encode(p, &mut out)
            .unwrap();
        self.io.write_all(&out).await.unwrap();
    }

    pub async fn recv(&mut self) -> Packet {
        tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let Some(p) = self.decoder.decode(&mut self.buf).unwrap() {
                    return p;
                }
                self.buf.reserve(4096);
                assert!(self.io.read_buf(&mut self.buf).await.unwrap() > 0, "EOF");
            }
        })
        .await
        .expect("a packet within 10 s")
    }

    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    pub async fn subscribe(&mut self, filter: &str, qos: QoS, id: Option<u32>) {
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

    pub async fn ack(&mut self, p: &Publish) {
        let id = p.packet_id.expect("a QoS 1 message has a packet id");
        self.send(&Packet::PubAck(PubResponse::new(id))).await;
    }

    /// Everything sent before is handled once PINGRESP arrives; any
    /// PUBLISH before it fails the test.
    pub async fn ping_expecting_nothing_else(&mut self) {
        self.send(&Packet::PingReq).await;
        match self.recv().await {
            Packet::PingResp => {}
            other => panic!("expected only PINGRESP, got {other:?}"),
        }
    }

    /// Publishes at QoS 1 with packet id `id` and returns the PUBACK's
    /// reason code.
    pub async fn publish_qos1(&mut self, topic: &str, payload: Bytes, id: u16) -> ReasonCode {
        let mut p = Publish::new(TopicName::new(topic).unwrap(), payload);
        p.qos = QoS::AtLeastOnce;
        p.packet_id = PacketId::new(id);
        self.send(&Packet::Publish(p)).await;
        match self.recv().await {
            Packet::PubAck(a) => {
                assert_eq!(a.packet_id.get(), id);
                a.reason_code
            }
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    pub async fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect::default())).await;
        let mut rest = Vec::new();
        let _ = self.io.read_to_end(&mut rest).await;
    }
}

/// The next event `pick` maps to `Some`, skipping others (10 s at most).
pub(crate) async fn next_event<T>(
    rx: &mut tokio::sync::mpsc::Receiver<GatewayEvent>,
    mut pick: impl FnMut(GatewayEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let e = rx.recv().await.expect("the event channel is open");
            if let Some(t) = pick(e) {
                return t;
            }
        }
    })
    .await
    .expect("the event within 10 s")
}

/// Every event already sent (waiting `settle` for stragglers).
pub(crate) async fn drain_events(
    rx: &mut tokio::sync::mpsc::Receiver<GatewayEvent>,
    settle: Duration,
) -> Vec<GatewayEvent> {
    let mut out = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(settle, rx.recv()).await {
        out.push(e);
    }
    out
}
