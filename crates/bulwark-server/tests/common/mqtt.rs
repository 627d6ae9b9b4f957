//! MQTT test helpers: enrolled device credentials on disk (for mosquitto
//! clients and paho), and a raw client built on the project's codec for
//! asserting exact reason codes and sending what well-behaved clients
//! never send.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bulwark_api_types::{CreateEnrollToken, CreateGroup};
use bulwark_mqtt::{
    ConnAck, Connect, Decoder, Encoder, Packet, PacketId, ProtocolVersion, Publish, QoS, Subscribe,
    Subscription, SubscriptionOptions, TopicFilter, TopicName,
};
use bulwark_types::{DeviceId, GroupId};
use bytes::BytesMut;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{csr, leaf_pem, raw, Server};

/// A device's credentials, in memory and as PEM files.
#[derive(Clone)]
pub struct Creds {
    pub id: String,
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Creates `group` if needed and enrolls `id` into it over EST.
pub async fn enroll(server: &Server, group: &str, id: &str) -> Creds {
    let c = server.client();
    let _ = c
        .create_group(&CreateGroup {
            name: GroupId::new(group).unwrap(),
            description: String::new(),
        })
        .await;
    let token = c
        .create_enroll_token(&CreateEnrollToken {
            group: GroupId::new(group).unwrap(),
            device_id: Some(DeviceId::new(id).unwrap()),
            ttl_seconds: None,
        })
        .await
        .unwrap()
        .token;
    let (key, csr) = csr(id);
    let p7 = server
        .client_with(None)
        .est_simpleenroll_bearer(&token, &csr)
        .await
        .unwrap();
    let (cert_der, cert_pem) = leaf_pem(&p7);
    let dir = server.dir.path().join("creds");
    std::fs::create_dir_all(&dir).unwrap();
    let cert = dir.join(format!("{id}.crt"));
    let keyp = dir.join(format!("{id}.key"));
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&keyp, key.serialize_pem()).unwrap();
    Creds {
        id: id.to_string(),
        cert_der,
        key_der: key.serialize_der(),
        cert,
        key: keyp,
    }
}

impl Creds {
    /// An HTTPS client presenting this device's certificate (mTLS).
    pub fn https_client(&self, server: &Server) -> reqwest::Client {
        let pem = std::fs::read(&server.cacert).unwrap();
        let mut identity = std::fs::read(&self.cert).unwrap();
        identity.extend_from_slice(&std::fs::read(&self.key).unwrap());
        reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&pem).unwrap()])
            .identity(reqwest::Identity::from_pem(&identity).unwrap())
            .build()
            .unwrap()
    }
}

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A raw MQTT connection.
pub struct Raw {
    io: Box<dyn Io>,
    pub version: ProtocolVersion,
    decoder: Decoder,
    buf: BytesMut,
    /// The server's certificate (TLS connections).
    pub server_cert: Option<Vec<u8>>,
}

fn tls_config(ca: &Path, creds: Option<&Creds>) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read_to_string(ca).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for block in pem.split("-----END CERTIFICATE-----") {
        let Some(start) = block.find("-----BEGIN CERTIFICATE-----") else {
            continue;
        };
        let b64: String = block[start + 27..].lines().collect();
        use base64::Engine;
        let der = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .unwrap();
        roots.add(CertificateDer::from(der)).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let b = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match creds {
        // No check that the key goes with the certificate: a test may
        // present someone else's certificate with its own key.
        Some(c) => {
            let key = provider
                .key_provider
                .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
                    c.key_der.clone(),
                )))
                .unwrap();
            let certified = rustls::sign::CertifiedKey::new(
                vec![CertificateDer::from(c.cert_der.clone())],
                key,
            );
            b.with_client_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)))
        }
        None => b.with_no_client_auth(),
    };
    Arc::new(cfg)
}

/// A CONNECT for `client_id`.
pub fn connect_packet(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect {
        protocol_version: version,
        clean_start: true,
        keep_alive: 30,
        client_id: client_id.to_string(),
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    }
}

impl Raw {
    /// A TLS connection (with `creds` as client certificate, if any),
    /// nothing sent yet.
    pub async fn tls(server: &Server, creds: Option<&Creds>) -> std::io::Result<Raw> {
        Raw::tls_from(server, creds, None).await
    }

    /// As [`Raw::tls`], from the local address `source` (another loopback
    /// address: a second place the same certificate is used from).
    pub async fn tls_from(
        server: &Server,
        creds: Option<&Creds>,
        source: Option<std::net::IpAddr>,
    ) -> std::io::Result<Raw> {
        let tcp = match source {
            None => tokio::net::TcpStream::connect(&server.mqtt_addr).await?,
            Some(ip) => {
                let socket = tokio::net::TcpSocket::new_v4()?;
                socket.bind(std::net::SocketAddr::new(ip, 0))?;
                socket.connect(server.mqtt_addr.parse().unwrap()).await?
            }
        };
        let connector = tokio_rustls::TlsConnector::from(tls_config(&server.cacert, creds));
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        let server_cert = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec());
        let mut raw = Raw::over(Box::new(tls));
        raw.server_cert = server_cert;
        Ok(raw)
    }

    /// A plaintext connection to the dev listener.
    pub async fn plain(server: &Server) -> Raw {
        let tcp = tokio::net::TcpStream::connect(&server.mqtt_dev_addr)
            .await
            .unwrap();
        Raw::over(Box::new(tcp))
    }

    fn over(io: Box<dyn Io>) -> Raw {
        Raw {
            io,
            version: ProtocolVersion::V5,
            decoder: Decoder::with_version(ProtocolVersion::V5, 1 << 20),
            buf: BytesMut::new(),
            server_cert: None,
        }
    }

    /// Connects with `connect` and returns the CONNACK.
    pub async fn handshake(&mut self, connect: Connect) -> Option<ConnAck> {
        self.version = connect.protocol_version;
        self.decoder = Decoder::with_version(self.version, 1 << 20);
        self.send(&Packet::Connect(Box::new(connect))).await;
        match self.recv(Duration::from_secs(10)).await {
            Some(Packet::ConnAck(a)) => Some(a),
            other => {
                assert!(other.is_none(), "expected CONNACK, got {other:?}");
                None
            }
        }
    }

    /// Device `creds` connected over mTLS with MQTT 5; panics unless accepted.
    pub async fn device(server: &Server, creds: &Creds) -> Raw {
        let mut r = Raw::tls(server, Some(creds)).await.unwrap();
        let ack = r
            .handshake(connect_packet(ProtocolVersion::V5, &creds.id))
            .await
            .expect("CONNACK");
        assert_eq!(
            ack.reason_code,
            bulwark_mqtt::ReasonCode::Success,
            "{ack:?}"
        );
        r
    }

    pub async fn send(&mut self, p: &Packet) {
        let mut out = BytesMut::new();
        Encoder::new(self.version).encode(p, &mut out).unwrap();
        let _ = self.io.write_all(&out).await;
    }

    pub async fn send_bytes(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.io.write_all(b).await?;
        self.io.flush().await
    }

    /// The next packet, or `None` on EOF, error or timeout.
    pub async fn recv(&mut self, timeout: Duration) -> Option<Packet> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(p)) => return Some(p),
                Ok(None) => {}
                Err(e) => panic!("server sent a malformed packet: {e}"),
            }
            self.buf.reserve(4096);
            match tokio::time::timeout_at(deadline, self.io.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    /// Whether the server closed the connection (EOF) within `timeout`,
    /// skipping any packets before it; returns the last DISCONNECT seen.
    pub async fn closed(&mut self, timeout: Duration) -> (bool, Option<bulwark_mqtt::Disconnect>) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = None;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return (false, last);
            }
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(Packet::Disconnect(d))) => {
                    last = Some(d);
                    continue;
                }
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(_) => return (true, last),
            }
            self.buf.reserve(4096);
            match tokio::time::timeout(left, self.io.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return (true, last),
                Ok(Ok(_)) => {}
                Err(_) => return (false, last),
            }
        }
    }

    pub async fn subscribe(
        &mut self,
        id: u16,
        filters: &[(&str, QoS)],
    ) -> Vec<bulwark_mqtt::ReasonCode> {
        let sub = Subscribe {
            packet_id: PacketId::new(id).unwrap(),
            properties: Default::default(),
            subscriptions: filters
                .iter()
                .map(|(f, q)| Subscription {
                    filter: TopicFilter::new(*f).unwrap(),
                    options: SubscriptionOptions::new(*q),
                })
                .collect(),
        };
        self.send(&Packet::Subscribe(sub)).await;
        loop {
            match self.recv(Duration::from_secs(10)).await {
                Some(Packet::SubAck(a)) => return a.reason_codes,
                Some(_) => continue,
                None => panic!("no SUBACK"),
            }
        }
    }

    pub async fn publish(&mut self, topic: &str, payload: &str, qos: QoS, id: u16) {
        let mut p = Publish::new(TopicName::new(topic).unwrap(), payload.as_bytes().to_vec());
        p.qos = qos;
        p.packet_id = PacketId::new(id).filter(|_| qos != QoS::AtMostOnce);
        self.send(&Packet::Publish(p)).await;
    }

    /// The next PUBLISH within `timeout` (answering QoS 1 with PUBACK).
    pub async fn next_publish(&mut self, timeout: Duration) -> Option<Publish> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await? {
                Packet::Publish(p) => {
                    if let (QoS::AtLeastOnce, Some(id)) = (p.qos, p.packet_id) {
                        self.send(&Packet::PubAck(bulwark_mqtt::PubResponse::new(id)))
                            .await;
                    }
                    return Some(p);
                }
                _ => continue,
            }
        }
    }
}

/// Creates the policy `lab` (publish/subscribe/receive on `lab/#`,
/// subscribe/receive on `devices/+/telemetry`) and attaches it to `group`.
pub async fn attach_lab_policy(server: &Server, group: &str) {
    let http = raw(server);
    let policy = serde_json::json!({
        "version": 1,
        "name": "lab",
        "statements": [
            {"effect": "allow", "actions": ["publish", "subscribe", "receive"], "resources": ["lab/#"]},
            {"effect": "allow", "actions": ["subscribe", "receive"], "resources": ["devices/+/telemetry"]}
        ]
    });
    let r = http
        .post(format!("{}/v1/policies", server.addr))
        .bearer_auth(&server.token)
        .json(&policy)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let r = http
        .put(format!("{}/v1/groups/{group}/policies/lab", server.addr))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
}

/// Detaches `lab` from `group`.
pub async fn detach_lab_policy(server: &Server, group: &str) {
    let r = raw(server)
        .delete(format!("{}/v1/groups/{group}/policies/lab", server.addr))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
}
