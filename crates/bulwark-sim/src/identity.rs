//! The device directory shared by `enroll` and `load`, and the TLS client
//! configuration built from it.
//!
//! ```text
//! DIR/devices.txt   one device id a line, in enrollment order
//! DIR/<id>.key      the device's private key, PKCS#8 PEM, mode 0600
//! DIR/<id>.crt      its certificate, PEM
//! ```
//!
//! The device id is also the MQTT client id, and the subject CN of the
//! certificate (Bulwark's CA puts it there).

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use bulwark_types::DeviceId;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WantsClientCert;
use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::crypto::aws_lc_rs;
use rustls::{ClientConfig, ConfigBuilder, DigitallySignedStruct, RootCertStore};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::Kx;

/// The list of enrolled devices in a directory.
pub(crate) const DEVICES_FILE: &str = "devices.txt";

pub(crate) fn key_path(dir: &Path, id: &DeviceId) -> PathBuf {
    dir.join(format!("{id}.key"))
}

pub(crate) fn cert_path(dir: &Path, id: &DeviceId) -> PathBuf {
    dir.join(format!("{id}.crt"))
}

/// PEM text of one DER object.
pub(crate) fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Writes a device's key (0600, created fresh) and certificate.
pub(crate) fn write_device(
    dir: &Path,
    id: &DeviceId,
    key_pem: &str,
    cert_der: &[u8],
) -> Result<()> {
    let key = key_path(dir, id);
    let _ = fs::remove_file(&key);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key)
        .with_context(|| format!("cannot create {}", key.display()))?;
    f.write_all(key_pem.as_bytes())
        .with_context(|| format!("cannot write {}", key.display()))?;
    let cert = cert_path(dir, id);
    fs::write(&cert, pem("CERTIFICATE", cert_der))
        .with_context(|| format!("cannot write {}", cert.display()))
}

/// Writes `devices.txt` (through a temporary file, then a rename).
pub(crate) fn write_list(dir: &Path, ids: &[DeviceId]) -> Result<()> {
    let mut text = String::with_capacity(ids.len() * 32);
    for id in ids {
        text.push_str(id.as_str());
        text.push('\n');
    }
    let tmp = dir.join(format!(".{DEVICES_FILE}.tmp"));
    fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, dir.join(DEVICES_FILE)).context("cannot rename devices.txt into place")
}

/// Device ids `first..first + count` of `dir/devices.txt`.
pub(crate) fn read_list(dir: &Path, first: usize, count: usize) -> Result<Vec<DeviceId>> {
    let path = dir.join(DEVICES_FILE);
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let all: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if first + count > all.len() {
        bail!(
            "{} lists {} devices; this run needs devices {first}..{} (enroll more with `bulwark-sim enroll`)",
            path.display(),
            all.len(),
            first + count
        );
    }
    all[first..first + count]
        .iter()
        .map(|s| DeviceId::new(*s).with_context(|| format!("{s:?} in {}", path.display())))
        .collect()
}

/// What every device's TLS client configuration shares.
pub(crate) struct TlsSettings {
    roots: Arc<RootCertStore>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    pub(crate) server_name: ServerName<'static>,
    /// Set by [`TlsSettings::remember_server_chains`].
    remembered: Option<Arc<RememberedChains>>,
}

impl TlsSettings {
    pub(crate) fn new(cafile: &Path, server_name: &str, kx: Kx) -> Result<Self> {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(cafile)
            .with_context(|| format!("cannot read {}", cafile.display()))?
        {
            let cert = cert.with_context(|| format!("bad PEM in {}", cafile.display()))?;
            roots
                .add(cert)
                .with_context(|| format!("unusable CA certificate in {}", cafile.display()))?;
        }
        if roots.is_empty() {
            bail!("{} holds no certificate", cafile.display());
        }
        let mut provider = aws_lc_rs::default_provider();
        if kx == Kx::X25519 {
            provider.kx_groups = vec![aws_lc_rs::kx_group::X25519];
        }
        let server_name = ServerName::try_from(server_name.to_owned())
            .with_context(|| format!("--server-name {server_name:?}"))?;
        Ok(TlsSettings {
            roots: Arc::new(roots),
            provider: Arc::new(provider),
            server_name,
            remembered: None,
        })
    }

    /// From now on, configurations built here check the server's
    /// certificate chain once per minute instead of at every handshake
    /// (see [`RememberedChains`]); the handshake stays a full one.
    pub(crate) fn remember_server_chains(&mut self) -> Result<Arc<RememberedChains>> {
        let inner =
            WebPkiServerVerifier::builder_with_provider(self.roots.clone(), self.provider.clone())
                .build()
                .context("server certificate verifier")?;
        let remembered = Arc::new(RememberedChains {
            inner,
            seen: Mutex::new(Vec::new()),
            signatures: AtomicU64::new(0),
        });
        self.remembered = Some(remembered.clone());
        Ok(remembered)
    }

    fn builder(&self) -> Result<ConfigBuilder<ClientConfig, WantsClientCert>> {
        let builder = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS versions")?;
        Ok(match &self.remembered {
            Some(v) => builder
                .dangerous()
                .with_custom_certificate_verifier(v.clone()),
            None => builder.with_root_certificates(self.roots.clone()),
        })
    }

    /// A client configuration presenting the device's certificate. Session
    /// resumption is off: every connection is a full handshake.
    pub(crate) fn client_config(&self, dir: &Path, id: &DeviceId) -> Result<Arc<ClientConfig>> {
        let cert_file = cert_path(dir, id);
        let chain = CertificateDer::pem_file_iter(&cert_file)
            .with_context(|| format!("cannot read {}", cert_file.display()))?
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("bad PEM in {}", cert_file.display()))?;
        let key_file = key_path(dir, id);
        let key = PrivateKeyDer::from_pem_file(&key_file)
            .with_context(|| format!("cannot read the key {}", key_file.display()))?;
        self.client_config_with(chain, key)
            .with_context(|| format!("certificate and key of {id} do not go together"))
    }

    /// A client configuration presenting `chain` (any certificate, trusted
    /// by the server or not). No session resumption.
    pub(crate) fn client_config_with(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Arc<ClientConfig>> {
        let mut config = self
            .builder()?
            .with_client_auth_cert(chain, key)
            .context("the certificate and key do not go together")?;
        config.resumption = Resumption::disabled();
        Ok(Arc::new(config))
    }

    /// A client configuration presenting no certificate.
    pub(crate) fn client_config_anonymous(&self) -> Result<Arc<ClientConfig>> {
        let mut config = self.builder()?.with_no_client_auth();
        config.resumption = Resumption::disabled();
        Ok(Arc::new(config))
    }
}

/// The server certificate verifier of load runs: webpki's, but a chain
/// (server name, end-entity and intermediate certificates, byte for byte)
/// that verified in the last minute is not rebuilt and re-verified. The
/// load generator shares the cores with the broker it measures, and
/// re-verifying the same server chain at every connection (two ECDSA
/// verifications) was a fifth of its CPU. The broker does the same for
/// device certificates (`LiveClientVerifier`).
///
/// Nothing else is skipped: every handshake is a full one (resumption is
/// off), and the server's CertificateVerify signature — which a resumed
/// handshake would not have — is verified each time and counted, so a
/// scenario can prove that every setup it counts was a full handshake.
#[derive(Debug)]
pub(crate) struct RememberedChains {
    inner: Arc<WebPkiServerVerifier>,
    /// Chains that verified, with when (seconds since the epoch).
    seen: Mutex<Vec<(Vec<u8>, u64)>>,
    /// Server handshake signatures verified.
    signatures: AtomicU64,
}

/// How long a verified chain is remembered.
const REMEMBER_SECS: u64 = 60;
/// Chains remembered at most (a load run talks to one server).
const REMEMBER_MAX: usize = 16;

impl RememberedChains {
    /// Server handshake signatures (TLS 1.2 or 1.3) verified so far.
    pub(crate) fn signatures_verified(&self) -> u64 {
        self.signatures.load(Ordering::Relaxed)
    }

    fn key(
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
    ) -> Vec<u8> {
        let name = server_name.to_str();
        let mut key = Vec::with_capacity(
            name.len()
                + end_entity.len()
                + intermediates.iter().map(|c| c.len() + 4).sum::<usize>()
                + 8,
        );
        for part in std::iter::once(name.as_bytes())
            .chain(std::iter::once(end_entity.as_ref()))
            .chain(intermediates.iter().map(|c| c.as_ref()))
        {
            key.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            key.extend_from_slice(part);
        }
        key
    }
}

impl ServerCertVerifier for RememberedChains {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = Self::key(end_entity, intermediates, server_name);
        let fresh = |at: u64| now.as_secs().saturating_sub(at) < REMEMBER_SECS;
        {
            let seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
            if seen.iter().any(|(k, at)| *k == key && fresh(*at)) {
                return Ok(ServerCertVerified::assertion());
            }
        }
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        seen.retain(|(k, at)| *k != key && fresh(*at));
        if seen.len() >= REMEMBER_MAX {
            seen.clear();
        }
        seen.push((key, now.as_secs()));
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let valid = self.inner.verify_tls12_signature(message, cert, dss)?;
        self.signatures.fetch_add(1, Ordering::Relaxed);
        Ok(valid)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let valid = self.inner.verify_tls13_signature(message, cert, dss)?;
        self.signatures.fetch_add(1, Ordering::Relaxed);
        Ok(valid)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A device ready to connect.
pub(crate) struct Device {
    pub(crate) id: DeviceId,
    pub(crate) tls: Arc<ClientConfig>,
}

/// Loads `count` devices from `dir`, starting at index `first`.
pub(crate) fn load(
    dir: &Path,
    first: usize,
    count: usize,
    tls: &TlsSettings,
) -> Result<Vec<Device>> {
    let ids = read_list(dir, first, count)?;
    if count >= 5000 {
        eprintln!("  loading {count} device identities from {}", dir.display());
    }
    ids.into_iter()
        .map(|id| {
            let tls = tls.client_config(dir, &id)?;
            Ok(Device { id, tls })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_and_list() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["d-1".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let id = DeviceId::new("d-1").unwrap();
        write_device(dir.path(), &id, &key.serialize_pem(), cert.der()).unwrap();
        // Writing again replaces the key instead of failing.
        write_device(dir.path(), &id, &key.serialize_pem(), cert.der()).unwrap();
        let mode = fs::metadata(key_path(dir.path(), &id)).unwrap();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
            0o600
        );
        let back = CertificateDer::from_pem_file(cert_path(dir.path(), &id)).unwrap();
        assert_eq!(back.as_ref(), cert.der().as_ref());

        write_list(dir.path(), &[id.clone(), DeviceId::new("d-2").unwrap()]).unwrap();
        assert_eq!(read_list(dir.path(), 1, 1).unwrap()[0].as_str(), "d-2");
        assert!(read_list(dir.path(), 1, 2).is_err());

        let ca = dir.path().join("ca.pem");
        fs::write(&ca, pem("CERTIFICATE", cert.der())).unwrap();
        let tls = TlsSettings::new(&ca, "localhost", Kx::X25519).unwrap();
        assert_eq!(load(dir.path(), 0, 1, &tls).unwrap()[0].id, id);
    }
}
