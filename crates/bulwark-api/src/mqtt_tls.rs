//! The MQTT listener's TLS: client certificates chaining to Bulwark's CA or
//! to a manufacturer CA registered now, followed live as operators register
//! and remove them (the API listener trusts only Bulwark's CA; see `tls`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bulwark_registry::ManufacturerTrust;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::tls::{config_with, webpki_verifier};

/// The MQTT listener's TLS configuration: as the API's, but client
/// certificates are checked by `verifier` (Bulwark's CA and the registered
/// manufacturer CAs, followed live), and no ALPN is offered (MQTT clients
/// rarely send one, and one that sends "mqtt" must not be refused).
pub fn mqtt_tls_config(
    chain: Vec<Vec<u8>>,
    key_pkcs8: Vec<u8>,
    verifier: Arc<LiveClientVerifier>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let provider = Arc::new(prefer_aes128(verifier.provider.as_ref().clone()));
    let mut config = config_with(chain, key_pkcs8, verifier, provider)?;
    config.ignore_client_order = true;
    // Every connection is a full handshake that proves possession of the
    // device key: no session tickets, no session-id cache. (A resumed
    // session proves only that the client held an earlier session's
    // secret, and rustls's default cache of 256 sessions would not serve a
    // fleet anyway; it would only cost every handshake two tickets.)
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// The server's order of preference (it decides): AES-128-GCM with
/// SHA-256 first, TLS 1.3's mandatory suite, whose key schedule runs on
/// the CPU's SHA-256 instructions where SHA-384 has none; then the rest in
/// the provider's order.
fn prefer_aes128(mut provider: CryptoProvider) -> CryptoProvider {
    use rustls::CipherSuite as S;
    let rank = |s: &rustls::SupportedCipherSuite| match s.suite() {
        S::TLS13_AES_128_GCM_SHA256 => 0,
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => 1,
        _ => 2,
    };
    provider.cipher_suites.sort_by_key(rank);
    provider
}

/// The MQTT listener's client-certificate verifier: Bulwark's root and
/// issuing CA plus every manufacturer CA registered now. It follows the
/// registry's snapshot ([`bulwark_registry::Registry::manufacturer_trust`],
/// replaced after each committed registration or removal and before the
/// operator is answered): the first handshake after a change rebuilds the
/// inner webpki verifier, so additions and removals take effect without a
/// restart and without touching open connections. SIGHUP rotation builds
/// its new configuration around the same verifier.
///
/// The CertificateRequest names no CA (an empty list means "any"), so a
/// client whose TLS stack picks its certificate by issuer still offers a
/// manufacturer certificate.
pub struct LiveClientVerifier {
    bulwark: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
    trust: watch::Receiver<Arc<ManufacturerTrust>>,
    /// The verifier built from `bulwark` alone: used if a rebuild fails
    /// (trusting less, never more).
    bulwark_only: Arc<dyn ClientCertVerifier>,
    /// The snapshot, its verifier, and a generation counted up at each
    /// rebuild.
    current: RwLock<(Arc<ManufacturerTrust>, Arc<dyn ClientCertVerifier>, u64)>,
    /// Client certificates whose chain verified under `current`'s anchors.
    verified: VerifiedCache,
}

/// End-entity certificates (by SHA-256 of their DER) whose chain to a
/// trust anchor verified, with their validity. A device reconnecting with
/// the certificate it used before skips rebuilding and re-verifying the
/// chain (a quarter of a handshake's server CPU) but nothing else: the
/// validity is checked at every handshake, the handshake signature (proof
/// of possession of the key) is always verified, and revocation, device
/// state and manufacturer bindings are the registry's, at every CONNECT.
/// The cache is emptied whenever the trust anchors change, and when full.
#[derive(Default)]
struct VerifiedCache {
    /// The anchors snapshot the entries were verified under.
    entries: Mutex<(u64, HashMap<[u8; 32], Validity>)>,
}

/// A certificate's notBefore and notAfter, in seconds since the epoch.
type Validity = (u64, u64);

/// Enough for a large fleet's reconnect storm; about 4 MiB when full.
const VERIFIED_CACHE_MAX: usize = 65_536;

impl VerifiedCache {
    fn check(&self, generation: u64, key: &[u8; 32], now: UnixTime) -> bool {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.0 == generation
            && entries.1.get(key).is_some_and(|&(not_before, not_after)| {
                (not_before..=not_after).contains(&now.as_secs())
            })
    }

    fn insert(&self, generation: u64, key: [u8; 32], end_entity: &[u8]) {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let Ok((_, cert)) = X509Certificate::from_der(end_entity) else {
            return;
        };
        let validity = cert.validity();
        let (Ok(not_before), Ok(not_after)) = (
            u64::try_from(validity.not_before.timestamp()),
            u64::try_from(validity.not_after.timestamp()),
        ) else {
            return;
        };
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.0 != generation || entries.1.len() >= VERIFIED_CACHE_MAX {
            *entries = (generation, HashMap::new());
        }
        entries.1.insert(key, (not_before, not_after));
    }
}

impl std::fmt::Debug for LiveClientVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveClientVerifier")
            .field("bulwark_anchors", &self.bulwark.len())
            .finish_non_exhaustive()
    }
}

impl LiveClientVerifier {
    /// A verifier trusting `bulwark_anchors` (DER) and whatever `trust`
    /// holds at each handshake.
    pub fn new(
        bulwark_anchors: &[&[u8]],
        trust: watch::Receiver<Arc<ManufacturerTrust>>,
    ) -> Result<Arc<Self>, rustls::Error> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let bulwark: Vec<CertificateDer<'static>> = bulwark_anchors
            .iter()
            .map(|d| CertificateDer::from(d.to_vec()))
            .collect();
        let bulwark_only = webpki_verifier(&bulwark, &[], &provider)?;
        let snapshot = trust.borrow().clone();
        let first = Self::build(&bulwark, &snapshot, &provider)?;
        Ok(Arc::new(Self {
            bulwark,
            provider,
            trust,
            bulwark_only,
            current: RwLock::new((snapshot, first, 0)),
            verified: VerifiedCache::default(),
        }))
    }

    fn build(
        bulwark: &[CertificateDer<'static>],
        trust: &ManufacturerTrust,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        let extra: Vec<(&str, CertificateDer<'static>)> = trust
            .cas()
            .iter()
            .map(|c| {
                (
                    c.record.name.as_str(),
                    CertificateDer::from(c.cert.der().to_vec()),
                )
            })
            .collect();
        webpki_verifier(bulwark, &extra, provider)
    }

    /// The verifier for the current snapshot, rebuilt if it changed, and
    /// the snapshot's identity (for [`VerifiedCache`]).
    fn inner(&self) -> (Arc<dyn ClientCertVerifier>, u64) {
        let latest = self.trust.borrow().clone();
        {
            let cur = self.current.read().unwrap_or_else(PoisonError::into_inner);
            if Arc::ptr_eq(&cur.0, &latest) {
                return (cur.1.clone(), cur.2);
            }
        }
        let verifier = match Self::build(&self.bulwark, &latest, &self.provider) {
            Ok(v) => {
                tracing::info!(
                    manufacturer_cas = latest.cas().len(),
                    "MQTT client-certificate trust anchors rebuilt"
                );
                v
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot rebuild the MQTT client-certificate verifier; trusting only Bulwark's CA");
                self.bulwark_only.clone()
            }
        };
        let mut cur = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let generation = cur.2 + 1;
        *cur = (latest, verifier.clone(), generation);
        (verifier, generation)
    }
}

impl ClientCertVerifier for LiveClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let (inner, generation) = self.inner();
        let key: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if self.verified.check(generation, &key, now) {
            return Ok(ClientCertVerified::assertion());
        }
        let verified = inner.verify_client_cert(end_entity, intermediates, now)?;
        self.verified.insert(generation, key, end_entity.as_ref());
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.bulwark_only.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.bulwark_only.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.bulwark_only.supported_verify_schemes()
    }
}
