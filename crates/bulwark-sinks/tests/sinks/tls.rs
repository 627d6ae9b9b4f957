//! Syslog over TLS against a real tokio-rustls collector with a CA and
//! server certificate made here.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bulwark_sinks::Dispatcher;
use bulwark_types::Severity;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use crate::common::{eventually, notice, sinks};
use crate::syslog::{parse_5424, read_frame};

pub struct Ca {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

pub fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    }
}

pub fn server_config(ca: &Ca, dns_name: &str) -> Arc<ServerConfig> {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![dns_name.to_owned()])
        .unwrap()
        .signed_by(&key, &ca.issuer)
        .unwrap();
    let chain = vec![CertificateDer::from(cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Arc::new(
        ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    )
}

/// A TLS collector: frames of every connection whose handshake succeeds,
/// and a count of failed handshakes.
async fn collector(
    config: Arc<ServerConfig>,
) -> (String, mpsc::UnboundedReceiver<Result<Vec<u8>, String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let acceptor = TlsAcceptor::from(config);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(mut s) => {
                        while let Some(f) = read_frame(&mut s).await {
                            let _ = tx.send(Ok(f));
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn tls_sink(addr: &str, ca_file: &Path, extra: &str) -> Dispatcher {
    Dispatcher::start(sinks(&format!(
        "[[sinks]]\ntype = \"syslog\"\naddress = \"{addr}\"\nca_file = \"{}\"\n{extra}\n\
         [sinks.retry]\nmax_attempts = 2\ninitial_backoff_ms = 10\nmax_backoff_ms = 20\n",
        ca_file.display()
    )))
    .unwrap()
}

#[tokio::test]
async fn delivers_over_tls_verified_against_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ours = ca("Collector CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ours.pem).unwrap();
    let (addr, mut rx) = collector(server_config(&ours, "logs.test")).await;
    // transport = "tls" is the default.
    let d = tls_sink(&addr, &ca_file, "server_name = \"logs.test\"");
    d.dispatch(notice(Severity::High));
    let f = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let p = parse_5424(&f);
    assert_eq!(p.pri, 4 * 8 + 3, "auth.err");
    assert_eq!(p.param("alert"), "42");
    let s = eventually(&d, "delivery", |s| s.delivered == 1).await;
    assert_eq!(s.failed_attempts, 0);
    let s = d.shutdown(Duration::from_secs(5)).await;
    assert_eq!(s[0].delivered, 1);
}

#[tokio::test]
async fn refuses_a_collector_from_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ours = ca("Collector CA");
    let theirs = ca("Some other CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ours.pem).unwrap();
    let (addr, mut rx) = collector(server_config(&theirs, "logs.test")).await;
    let d = tls_sink(&addr, &ca_file, "server_name = \"logs.test\"");
    d.dispatch(notice(Severity::High));
    let s = eventually(&d, "giving up", |s| s.gave_up == 1).await;
    assert_eq!((s.delivered, s.failed_attempts), (0, 2));
    let err = s.last_error.unwrap();
    assert!(err.contains("tls handshake"), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    // The collector saw only failed handshakes, never a frame.
    while let Ok(Some(got)) = tokio::time::timeout(Duration::from_millis(200), rx.recv()).await {
        assert!(got.is_err(), "a frame was delivered: {got:?}");
    }
}

#[tokio::test]
async fn refuses_a_collector_with_another_name() {
    let dir = tempfile::tempdir().unwrap();
    let ours = ca("Collector CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ours.pem).unwrap();
    let (addr, _rx) = collector(server_config(&ours, "other.test")).await;
    let d = tls_sink(&addr, &ca_file, "server_name = \"logs.test\"");
    d.dispatch(notice(Severity::High));
    let s = eventually(&d, "giving up", |s| s.gave_up == 1).await;
    assert_eq!(s.delivered, 0);
    let err = s.last_error.unwrap();
    assert!(err.contains("not valid for name"), "{err}");
}
