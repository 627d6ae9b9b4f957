//! The HTTPS listener: rustls with optional client certificates, one task
//! per connection, the handshake under a deadline inside that task (never
//! in the accept loop), a cap on concurrent connections, graceful drain.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tracing::Instrument;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::extract::ConnInfo;

/// Listener limits.
#[derive(Debug, Clone, Copy)]
pub struct ServeConfig {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
    /// How long in-flight requests get to finish on shutdown.
    pub drain_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_connections: 4096,
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Accepts client certificates that chain to a trust anchor; tolerates only
/// expiry, so the EST handler can refuse an expired certificate with a clear
/// problem document rather than a bare TLS alert. Everything else (unknown
/// issuer, bad signature, wrong usage) fails the handshake.
#[derive(Debug)]
struct ExpiryTolerant(Arc<dyn ClientCertVerifier>);

impl ClientCertVerifier for ExpiryTolerant {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.0.verify_client_cert(end_entity, intermediates, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::Expired | CertificateError::ExpiredContext { .. },
            )) => {
                // Check everything else as of one second before expiry.
                let (_, cert) = X509Certificate::from_der(end_entity).map_err(|_| {
                    rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
                })?;
                let not_after = cert.validity().not_after.timestamp();
                let at = UnixTime::since_unix_epoch(Duration::from_secs(
                    u64::try_from(not_after - 1).unwrap_or(0),
                ));
                self.0.verify_client_cert(end_entity, intermediates, at)
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// The API's TLS configuration: TLS 1.2/1.3 (aws-lc-rs), our server chain,
/// optional client certificates chaining to one of `client_anchors` (the
/// root and the issuing CA, so a device may present its leaf alone, as most
/// TLS clients do). Manufacturer CAs are not trusted here: their devices
/// only speak MQTT (see [`crate::mqtt_tls_config`]).
pub fn server_tls_config(
    chain: Vec<Vec<u8>>,
    key_pkcs8: Vec<u8>,
    client_anchors: &[&[u8]],
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let anchors: Vec<CertificateDer<'static>> = client_anchors
        .iter()
        .map(|d| CertificateDer::from(d.to_vec()))
        .collect();
    let inner = webpki_verifier(&anchors, &[], &provider)?;
    let mut config = config_with(chain, key_pkcs8, inner, provider)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

pub(crate) fn config_with(
    chain: Vec<Vec<u8>>,
    key_pkcs8: Vec<u8>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    provider: Arc<CryptoProvider>,
) -> Result<ServerConfig, rustls::Error> {
    ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(Arc::new(ExpiryTolerant(client_verifier)))
        .with_single_cert(
            chain.into_iter().map(CertificateDer::from).collect(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pkcs8)),
        )
}

/// A verifier of optional client certificates chaining to `anchors` or
/// to one of `extra` (manufacturer CAs; one rustls refuses is skipped,
/// trusting less).
pub(crate) fn webpki_verifier(
    anchors: &[CertificateDer<'static>],
    extra: &[(&str, CertificateDer<'static>)],
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
    let mut roots = RootCertStore::empty();
    for der in anchors {
        roots.add(der.clone())?;
    }
    for (name, der) in extra {
        if let Err(e) = roots.add(der.clone()) {
            tracing::error!(manufacturer_ca = %name, error = %e, "a manufacturer CA cannot be a TLS trust anchor; its devices are refused");
        }
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))
}

/// Serves `app` over TLS on `listener` until `shutdown` resolves, then
/// drains in-flight requests for at most `drain_timeout`.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    app: Router,
    config: ServeConfig,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%remote, "connection limit reached; dropping connection");
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        let span = tracing::info_span!("conn", %remote);
        tokio::spawn(
            async move {
                let _permit = permit;
                serve_one(tcp, remote, acceptor, app, config, watcher).await;
            }
            .instrument(span),
        );
    }
    drop(listener);
    if tokio::time::timeout(config.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out; closing remaining connections");
    }
}

async fn serve_one(
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
    acceptor: tokio_rustls::TlsAcceptor,
    app: Router,
    config: ServeConfig,
    watcher: Watcher,
) {
    let _ = tcp.set_nodelay(true);
    let tls = match tokio::time::timeout(config.handshake_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::debug!(%remote, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%remote, "TLS handshake timed out");
            return;
        }
    };
    let client_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| Arc::new(c.to_vec()));
    let info = ConnInfo {
        remote,
        client_cert,
    };
    let svc = app.map_request(move |mut req: hyper::Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(info.clone());
        req.map(axum::body::Body::new)
    });
    let builder = Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(TokioIo::new(tls), TowerToHyperService::new(svc));
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}
