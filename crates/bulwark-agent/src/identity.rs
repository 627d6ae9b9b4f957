//! The device's identity: a certificate chain and the key it certifies,
//! with what the rest of the agent needs from it — the device id the
//! server put in the certificate, the renewal time (two thirds of the
//! lifetime, [`renew_due`]) and the rustls client configuration the MQTT
//! link presents ([`Identity::client_config`]; the signature is made by the
//! key's backend, a file key or a PKCS#11 token).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use x509_parser::prelude::{FromDer as _, GeneralName, X509Certificate};

use crate::keys::DeviceKey;
use crate::AgentError;

/// Prefix of the SAN URI naming the device in Bulwark certificates.
pub(crate) const DEVICE_URN: &str = "urn:bulwark:device:";

/// A certificate chain and the key it certifies: what the device presents.
#[derive(Clone)]
pub struct Identity {
    device_id: String,
    chain: Vec<CertificateDer<'static>>,
    chain_pem: String,
    key: DeviceKey,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("device_id", &self.device_id)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("key", &self.key)
            .finish()
    }
}

impl Identity {
    /// Builds an identity from DER certificates in any order: the leaf is
    /// the one certifying `key`.
    pub fn from_certs(key: DeviceKey, certs: Vec<Vec<u8>>) -> Result<Identity, AgentError> {
        let spki = key.spki_der();
        let mut leaf = None;
        let mut rest = Vec::new();
        for der in certs {
            let (_, cert) = X509Certificate::from_der(&der)
                .map_err(|e| AgentError::Certificate(format!("cannot parse a certificate: {e}")))?;
            if leaf.is_none() && cert.public_key().raw == spki.as_slice() {
                leaf = Some(der);
            } else {
                rest.push(der);
            }
        }
        let leaf = leaf.ok_or_else(|| {
            AgentError::Certificate("no certificate in the chain certifies the device key".into())
        })?;
        let (_, cert) = X509Certificate::from_der(&leaf)
            .map_err(|e| AgentError::Certificate(format!("cannot parse the leaf: {e}")))?;
        let device_id = device_id_of(&cert)?;
        let validity = cert.validity();
        let not_before = unix(validity.not_before.timestamp());
        let not_after = unix(validity.not_after.timestamp());
        let mut chain = vec![CertificateDer::from(leaf)];
        chain.extend(rest.into_iter().map(CertificateDer::from));
        let chain_pem = chain.iter().map(|c| pem("CERTIFICATE", c)).collect();
        Ok(Identity {
            device_id,
            chain,
            chain_pem,
            key,
            not_before,
            not_after,
        })
    }

    /// The device id the server put in the certificate.
    pub fn device_id(&self) -> &str {
        &self.device_id
    }
    /// The chain, leaf first.
    pub fn chain(&self) -> &[CertificateDer<'static>] {
        &self.chain
    }
    /// The leaf certificate (DER).
    pub fn leaf_der(&self) -> &[u8] {
        self.chain[0].as_ref()
    }
    /// The chain as PEM, leaf first.
    pub fn chain_pem(&self) -> &str {
        &self.chain_pem
    }
    /// The device key.
    pub fn key(&self) -> &DeviceKey {
        &self.key
    }
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
    /// When this certificate is due for renewal (two thirds of its lifetime).
    pub fn renew_at(&self) -> SystemTime {
        renew_at(self.not_before, self.not_after)
    }

    /// The certificate and key as rustls presents them.
    pub fn certified_key(&self) -> Result<Arc<rustls::sign::CertifiedKey>, AgentError> {
        let key = self.key.tls_signing_key()?;
        let ck = rustls::sign::CertifiedKey::new(self.chain.clone(), key);
        ck.keys_match().map_err(|source| AgentError::Tls {
            what: "the certificate does not match the key",
            source,
        })?;
        Ok(Arc::new(ck))
    }

    /// A TLS client configuration trusting only `roots` and presenting
    /// this identity (the signature is made by the key's backend).
    pub fn client_config(
        &self,
        roots: Arc<rustls::RootCertStore>,
    ) -> Result<rustls::ClientConfig, AgentError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|source| AgentError::Tls {
                what: "no usable protocol version",
                source,
            })?
            .with_root_certificates(roots)
            .with_client_cert_resolver(Arc::new(FixedClientCert(self.certified_key()?)));
        Ok(config)
    }
}

#[derive(Debug)]
struct FixedClientCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for FixedClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

/// Reads a PEM CA bundle into a root store (for the MQTT link).
pub fn load_roots(pem_bytes: &[u8]) -> Result<rustls::RootCertStore, AgentError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem_bytes) {
        let cert = cert.map_err(|e| AgentError::Certificate(format!("CA bundle: {e}")))?;
        roots.add(cert).map_err(|source| AgentError::Tls {
            what: "a CA bundle certificate is not a usable trust anchor",
            source,
        })?;
    }
    if roots.is_empty() {
        return Err(AgentError::Certificate(
            "the CA bundle holds no certificate".into(),
        ));
    }
    Ok(roots)
}

fn unix(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

fn device_id_of(cert: &X509Certificate<'_>) -> Result<String, AgentError> {
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::URI(uri) = name {
                if let Some(id) = uri.strip_prefix(DEVICE_URN) {
                    return Ok(id.to_owned());
                }
            }
        }
    }
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| AgentError::Certificate("the certificate names no device".into()))
}

pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub(crate) fn parse_chain_pem(
    pem_bytes: &[u8],
    path: &std::path::Path,
) -> Result<Vec<Vec<u8>>, AgentError> {
    let certs: Result<Vec<Vec<u8>>, _> = CertificateDer::pem_slice_iter(pem_bytes)
        .map(|c| c.map(|c| c.as_ref().to_vec()))
        .collect();
    let certs = certs.map_err(|e| {
        AgentError::Certificate(format!("{} is not a PEM chain: {e}", path.display()))
    })?;
    if certs.is_empty() {
        return Err(AgentError::Certificate(format!(
            "{} holds no certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// The moment two thirds of the validity `not_before..not_after` have passed.
pub fn renew_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    not_before + lifetime * 2 / 3
}

/// Whether the certificate `cert_der` is due for renewal at `now` (two
/// thirds of its lifetime have passed, or it has expired).
pub fn renew_due(cert_der: &[u8], now: SystemTime) -> Result<bool, AgentError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| AgentError::Certificate(format!("cannot parse the certificate: {e}")))?;
    let v = cert.validity();
    Ok(now
        >= renew_at(
            unix(v.not_before.timestamp()),
            unix(v.not_after.timestamp()),
        ))
}
