//! The link over mTLS: a TLS-terminating proxy in front of Mosquitto
//! (127.0.0.1:1883) requires a client certificate from a test CA and
//! records each one presented. The link connects with certificate A; after
//! `set_tls_config` with certificate B the current connection stays up,
//! and the next one presents B. A certificate from another CA is refused
//! at the handshake and the link keeps retrying.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bulwark_agent::link::{Link, LinkConfig, LinkHandle, LinkStatus, Message};
use bulwark_mqtt::{QoS, TopicFilter, TopicName};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

const BROKER: &str = "127.0.0.1:1883";
const WAIT: Duration = Duration::from_secs(10);

fn unique(what: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("bw-link-{what}-{}-{nanos}-{n}", std::process::id())
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

struct Ca {
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec![]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let der = params.self_signed(&key).unwrap().der().clone();
        Ca {
            der,
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate and key for `cn`: a server one for `dns`, else a client one.
    fn leaf(
        &self,
        cn: &str,
        dns: Option<&str>,
    ) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            CertificateParams::new(dns.map(str::to_owned).into_iter().collect::<Vec<_>>()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![match dns {
            Some(_) => ExtendedKeyUsagePurpose::ServerAuth,
            None => ExtendedKeyUsagePurpose::ClientAuth,
        }];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    }
}

fn client_config(
    ca: &Ca,
    (cert, key): (CertificateDer<'static>, PrivateKeyDer<'static>),
) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(vec![cert], key)
        .unwrap();
    Arc::new(config)
}

/// Terminates mTLS and forwards to the broker; records each client
/// certificate that completed a handshake.
struct TlsProxy {
    addr: String,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    presented: Arc<Mutex<Vec<CertificateDer<'static>>>>,
    accept: JoinHandle<()>,
}

impl TlsProxy {
    async fn start(ca: &Ca) -> TlsProxy {
        let mut roots = RootCertStore::empty();
        roots.add(ca.der.clone()).unwrap();
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap();
        let (cert, key) = ca.leaf("gateway", Some("gateway.test"));
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![cert], key)
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let conns = Arc::new(Mutex::new(Vec::new()));
        let presented = Arc::new(Mutex::new(Vec::new()));
        let (k, p) = (conns.clone(), presented.clone());
        let accept = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, p) = (acceptor.clone(), p.clone());
                k.lock().unwrap().push(tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    if let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first())
                    {
                        p.lock().unwrap().push(cert.clone().into_owned());
                    }
                    if let Ok(mut upstream) = TcpStream::connect(BROKER).await {
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                    }
                }));
            }
        });
        TlsProxy {
            addr,
            conns,
            presented,
            accept,
        }
    }

    /// Closes every current connection (new ones are accepted).
    fn drop_connections(&self) {
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    fn presented(&self) -> Vec<CertificateDer<'static>> {
        self.presented.lock().unwrap().clone()
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.drop_connections();
    }
}

async fn roundtrip(
    link: &LinkHandle,
    inbox: &mut mpsc::Receiver<Message>,
    topic: &str,
    payload: &str,
) {
    let m = Message::new(
        TopicName::new(topic).unwrap(),
        payload.to_owned(),
        QoS::AtLeastOnce,
    );
    timeout(WAIT, link.publish(m).await.unwrap().wait())
        .await
        .unwrap()
        .unwrap();
    let got = timeout(WAIT, inbox.recv()).await.unwrap().unwrap();
    assert_eq!(&got.payload[..], payload.as_bytes());
}

async fn reconnected(link: &LinkHandle) -> bool {
    let mut status = link.watch_status();
    timeout(
        WAIT,
        status.wait_for(|s| !matches!(s, LinkStatus::Connected { .. })),
    )
    .await
    .unwrap()
    .unwrap();
    timeout(WAIT, link.wait_connected()).await.unwrap().unwrap()
}

#[tokio::test]
async fn mtls_and_certificate_renewal_without_dropping_the_connection() {
    let ca = Ca::new("test device ca");
    let proxy = TlsProxy::start(&ca).await;
    let id = unique("tls");
    let topic = format!("{id}/t");
    let (cert_a, cert_b) = (ca.leaf(&id, None), ca.leaf(&id, None));
    let (der_a, der_b) = (cert_a.0.clone(), cert_b.0.clone());

    let mut config = LinkConfig::new(
        &proxy.addr,
        ServerName::try_from("gateway.test").unwrap(),
        &id,
    );
    config.backoff.base = Duration::from_millis(50);
    let (link, mut inbox) = Link::spawn(config, client_config(&ca, cert_a));
    timeout(WAIT, link.wait_connected()).await.unwrap().unwrap();
    link.subscribe(TopicFilter::new(topic.as_str()).unwrap(), QoS::AtLeastOnce)
        .await
        .unwrap();
    roundtrip(&link, &mut inbox, &topic, "with A").await;
    assert_eq!(proxy.presented(), std::slice::from_ref(&der_a));

    // Renewal: the new configuration waits for the next connection.
    link.set_tls_config(client_config(&ca, cert_b));
    roundtrip(&link, &mut inbox, &topic, "still A").await;
    assert_eq!(
        proxy.presented(),
        std::slice::from_ref(&der_a),
        "no new handshake"
    );
    assert!(matches!(link.status(), LinkStatus::Connected { .. }));

    proxy.drop_connections();
    assert!(reconnected(&link).await, "session kept across the renewal");
    assert_eq!(proxy.presented(), [der_a.clone(), der_b.clone()]);
    roundtrip(&link, &mut inbox, &topic, "with B").await;

    // A certificate the gateway does not trust: refused at the handshake,
    // retried with back-off, the reason visible in the status.
    let other = Ca::new("someone else");
    link.set_tls_config(client_config(&ca, other.leaf(&id, None)));
    proxy.drop_connections();
    let mut status = link.watch_status();
    let waiting = |s: &LinkStatus| match s {
        LinkStatus::Waiting { attempt, .. } => Some(*attempt),
        _ => None,
    };
    let first = {
        let seen = timeout(WAIT, status.wait_for(|s| waiting(s).is_some()))
            .await
            .unwrap()
            .unwrap();
        waiting(&seen).unwrap()
    };
    let seen = timeout(
        WAIT,
        status.wait_for(|s| waiting(s).is_some_and(|a| a > first)),
    )
    .await
    .unwrap()
    .unwrap()
    .clone();
    let LinkStatus::Waiting { last_error, .. } = seen else {
        unreachable!()
    };
    assert!(last_error.contains("UnknownCA"), "{last_error}");
    assert_eq!(
        proxy.presented().len(),
        2,
        "no handshake completed: {last_error}"
    );
    link.shutdown().await;
}
