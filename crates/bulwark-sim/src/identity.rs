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
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use bulwark_types::DeviceId;
use rustls::client::Resumption;
use rustls::crypto::aws_lc_rs;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

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
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_root_certificates(self.roots.clone())
            .with_client_auth_cert(chain, key)
            .context("the certificate and key do not go together")?;
        config.resumption = Resumption::disabled();
        Ok(Arc::new(config))
    }

    /// A client configuration presenting no certificate.
    pub(crate) fn client_config_anonymous(&self) -> Result<Arc<ClientConfig>> {
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        config.resumption = Resumption::disabled();
        Ok(Arc::new(config))
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
