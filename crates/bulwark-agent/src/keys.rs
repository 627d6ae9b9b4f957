//! The device key: generated on the device, never sent anywhere.
//!
//! Two backends:
//! - **file** (default): ECDSA P-256, PKCS#8 PEM at `<state_dir>/device.key`,
//!   created with `O_EXCL` and mode 0600 in the same `open` call, so it is
//!   never readable by anyone else, not even for an instant. An existing key
//!   file that group or others may read is refused, not repaired: it may
//!   already have leaked.
//! - **pkcs11** (cargo feature `pkcs11`): a non-extractable P-256 key pair
//!   generated on a token; the CSR and the TLS client-auth signature are made
//!   inside the token (see [`crate::pkcs11`]).
//!
//! Renewal uses a fresh key ([`KeyStore::create_next`]): it is written next
//! to the current one (`device.key.next`) and replaces it only once the new
//! certificate is stored ([`KeyStore::commit_next`]), so the old key and
//! certificate stay usable until then.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use zeroize::Zeroizing;

use crate::config::{Config, KeyStorage};
use crate::fsutil;
use crate::AgentError;

/// File name of the device key in the state directory.
pub const KEY_FILE: &str = "device.key";
/// File name of the key being introduced by a renewal.
pub const NEXT_KEY_FILE: &str = "device.key.next";
/// Common name put in a CSR when the device id is not known yet (the
/// server decides the identity from the enrollment credential anyway).
pub const PLACEHOLDER_CN: &str = "bulwark-agent";

/// A device key pair, whatever holds it.
#[derive(Clone)]
pub struct DeviceKey {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    File {
        pem: Arc<Zeroizing<String>>,
        key: Arc<rcgen::KeyPair>,
    },
    #[cfg(feature = "pkcs11")]
    Pkcs11(Arc<crate::pkcs11::TokenKey>),
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.inner {
            Inner::File { .. } => "file",
            #[cfg(feature = "pkcs11")]
            Inner::Pkcs11(_) => "pkcs11",
        };
        f.debug_struct("DeviceKey")
            .field("backend", &kind)
            .field("spki_sha256", &hex::encode(crate::sha256(&self.spki_der())))
            .finish()
    }
}

impl DeviceKey {
    /// A new file-backend key (in memory; see [`KeyStore`] for the file).
    pub fn generate_p256() -> Result<DeviceKey, AgentError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| AgentError::key_with("cannot generate a P-256 key", e))?;
        Ok(Self::from_key_pair(key))
    }

    fn from_key_pair(key: rcgen::KeyPair) -> DeviceKey {
        DeviceKey {
            inner: Inner::File {
                pem: Arc::new(Zeroizing::new(key.serialize_pem())),
                key: Arc::new(key),
            },
        }
    }

    /// Parses a PKCS#8 PEM P-256 key.
    pub fn from_pem(pem: &str) -> Result<DeviceKey, AgentError> {
        let key = rcgen::KeyPair::from_pem(pem)
            .map_err(|e| AgentError::key_with("the key file is not a PKCS#8 PEM key", e))?;
        if !key.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256) {
            return Err(AgentError::key("the key file does not hold a P-256 key"));
        }
        Ok(Self::from_key_pair(key))
    }

    #[cfg(feature = "pkcs11")]
    pub(crate) fn from_token(key: crate::pkcs11::TokenKey) -> DeviceKey {
        DeviceKey {
            inner: Inner::Pkcs11(Arc::new(key)),
        }
    }

    /// The public key as DER SubjectPublicKeyInfo.
    pub fn spki_der(&self) -> Vec<u8> {
        use rcgen::PublicKeyData as _;
        match &self.inner {
            Inner::File { key, .. } => key.subject_public_key_info(),
            #[cfg(feature = "pkcs11")]
            Inner::Pkcs11(k) => k.subject_public_key_info(),
        }
    }

    /// A DER PKCS#10 request for `common_name`, signed with this key.
    pub fn csr_der(&self, common_name: &str) -> Result<Vec<u8>, AgentError> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
            .map_err(|e| AgentError::key_with("cannot build the CSR", e))?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let csr = match &self.inner {
            Inner::File { key, .. } => params.serialize_request(key.as_ref()),
            #[cfg(feature = "pkcs11")]
            Inner::Pkcs11(k) => params.serialize_request(k.as_ref()),
        };
        csr.map(|c| c.der().to_vec())
            .map_err(|e| AgentError::key_with("cannot sign the CSR", e))
    }

    /// The key as rustls uses it for TLS client authentication; for a
    /// token key the signature is made inside the token.
    pub fn tls_signing_key(&self) -> Result<Arc<dyn rustls::sign::SigningKey>, AgentError> {
        match &self.inner {
            Inner::File { key, .. } => {
                let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
                rustls::crypto::aws_lc_rs::sign::any_ecdsa_type(&der)
                    .map_err(|e| AgentError::key_with("rustls refuses the key", e))
            }
            #[cfg(feature = "pkcs11")]
            Inner::Pkcs11(k) => Ok(Arc::new(crate::pkcs11::TlsKey::new(k.clone()))),
        }
    }

    /// The PKCS#8 PEM of a file key (for the HTTPS client's mTLS identity);
    /// `None` for a key that cannot leave its token.
    pub fn private_pem(&self) -> Option<&Zeroizing<String>> {
        match &self.inner {
            Inner::File { pem, .. } => Some(pem),
            #[cfg(feature = "pkcs11")]
            Inner::Pkcs11(_) => None,
        }
    }
}

/// Where device keys are created, found and rotated.
#[derive(Debug, Clone)]
pub enum KeyStore {
    /// Keys in files under `dir`.
    File { dir: PathBuf },
    /// Keys on a PKCS#11 token.
    #[cfg(feature = "pkcs11")]
    Pkcs11(Arc<crate::pkcs11::Token>),
}

impl KeyStore {
    /// The key store the configuration asks for (opens the token, if any).
    pub fn from_config(config: &Config) -> Result<KeyStore, AgentError> {
        match &config.keys {
            KeyStorage::File => Ok(KeyStore::File {
                dir: config.state_dir.clone(),
            }),
            #[cfg(feature = "pkcs11")]
            KeyStorage::Pkcs11 {
                module,
                token_label,
                key_label,
                pin,
            } => {
                let pin = pin.read("PKCS#11 PIN")?;
                let token = crate::pkcs11::Token::open(module, token_label, key_label, &pin)?;
                Ok(KeyStore::Pkcs11(Arc::new(token)))
            }
            #[cfg(not(feature = "pkcs11"))]
            KeyStorage::Pkcs11 { .. } => Err(AgentError::Config(
                "keys.storage = \"pkcs11\" needs an agent built with the `pkcs11` feature"
                    .to_owned(),
            )),
        }
    }

    /// The current key, generated on first use.
    pub fn load_or_create(&self) -> Result<DeviceKey, AgentError> {
        match self {
            KeyStore::File { dir } => {
                fsutil::ensure_private_dir(dir)?;
                let path = dir.join(KEY_FILE);
                match load_file_key(&path)? {
                    Some(key) => Ok(key),
                    None => create_file_key(&path),
                }
            }
            #[cfg(feature = "pkcs11")]
            KeyStore::Pkcs11(token) => token.load_or_create(false).map(DeviceKey::from_token),
        }
    }

    /// The current key if one exists.
    pub fn load(&self) -> Result<Option<DeviceKey>, AgentError> {
        match self {
            KeyStore::File { dir } => load_file_key(&dir.join(KEY_FILE)),
            #[cfg(feature = "pkcs11")]
            KeyStore::Pkcs11(token) => Ok(token.find(false)?.map(DeviceKey::from_token)),
        }
    }

    /// A fresh key for a renewal, stored beside the current one. A
    /// leftover from an interrupted renewal is discarded first.
    pub fn create_next(&self) -> Result<DeviceKey, AgentError> {
        self.discard_next()?;
        match self {
            KeyStore::File { dir } => create_file_key(&dir.join(NEXT_KEY_FILE)),
            #[cfg(feature = "pkcs11")]
            KeyStore::Pkcs11(token) => token.load_or_create(true).map(DeviceKey::from_token),
        }
    }

    /// The renewal key, if one is waiting.
    pub fn load_next(&self) -> Result<Option<DeviceKey>, AgentError> {
        match self {
            KeyStore::File { dir } => load_file_key(&dir.join(NEXT_KEY_FILE)),
            #[cfg(feature = "pkcs11")]
            KeyStore::Pkcs11(token) => Ok(token.find(true)?.map(DeviceKey::from_token)),
        }
    }

    /// Makes the renewal key the current one (atomic rename; the old key is gone).
    pub fn commit_next(&self) -> Result<(), AgentError> {
        match self {
            KeyStore::File { dir } => {
                fsutil::rename_durable(&dir.join(NEXT_KEY_FILE), &dir.join(KEY_FILE))
            }
            #[cfg(feature = "pkcs11")]
            KeyStore::Pkcs11(token) => token.commit_next(),
        }
    }

    /// Deletes a renewal key that will not be used.
    pub fn discard_next(&self) -> Result<(), AgentError> {
        match self {
            KeyStore::File { dir } => {
                let path = dir.join(NEXT_KEY_FILE);
                match std::fs::remove_file(&path) {
                    Ok(()) => fsutil::sync_dir(dir),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(AgentError::io("cannot remove", path, e)),
                }
            }
            #[cfg(feature = "pkcs11")]
            KeyStore::Pkcs11(token) => token.discard_next(),
        }
    }
}

/// Loads a key file after checking its mode; `None` if it does not exist.
pub fn load_file_key(path: &Path) -> Result<Option<DeviceKey>, AgentError> {
    if !path.exists() {
        return Ok(None);
    }
    let bytes = Zeroizing::new(fsutil::read_private(path, "private key")?);
    let pem = std::str::from_utf8(&bytes)
        .map_err(|_| AgentError::key(format!("{} is not PEM text", path.display())))?;
    DeviceKey::from_pem(pem).map(Some)
}

/// Generates a P-256 key and writes it to `path`, which must not exist,
/// with mode 0600 from the moment the file is created.
pub fn create_file_key(path: &Path) -> Result<DeviceKey, AgentError> {
    let key = DeviceKey::generate_p256()?;
    let pem = key.private_pem().map(|p| p.as_bytes()).unwrap_or_default();
    fsutil::write_new(path, pem, 0o600)?;
    if let Some(dir) = path.parent() {
        fsutil::sync_dir(dir)?;
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    fn store() -> (tempfile::TempDir, KeyStore) {
        let dir = tempfile::tempdir().unwrap();
        let ks = KeyStore::File {
            dir: dir.path().join("state"),
        };
        (dir, ks)
    }

    #[test]
    fn first_start_generates_a_private_p256_key_and_reuses_it() {
        let (dir, ks) = store();
        let k1 = ks.load_or_create().unwrap();
        let path = dir.path().join("state").join(KEY_FILE);
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(dir.path().join("state")).unwrap().mode() & 0o777,
            0o700
        );
        let k2 = ks.load_or_create().unwrap();
        assert_eq!(k1.spki_der(), k2.spki_der());
        // P-256 SPKI: id-ecPublicKey + prime256v1, 65-byte point.
        assert_eq!(k1.spki_der().len(), 91);
    }

    #[test]
    fn a_readable_key_file_is_refused_with_a_clear_error() {
        let (dir, ks) = store();
        ks.load_or_create().unwrap();
        let path = dir.path().join("state").join(KEY_FILE);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = ks.load_or_create().unwrap_err();
        assert!(
            matches!(err, AgentError::InsecurePermissions { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err
            .to_string()
            .contains("must not be readable by group or others"));
    }

    #[test]
    fn a_corrupt_key_file_is_not_replaced() {
        let (dir, ks) = store();
        let state = dir.path().join("state");
        fsutil::ensure_private_dir(&state).unwrap();
        fsutil::write_new(&state.join(KEY_FILE), b"garbage", 0o600).unwrap();
        let err = ks.load_or_create().unwrap_err();
        assert!(err.to_string().contains("not PEM text") || err.to_string().contains("PKCS#8"));
        assert_eq!(std::fs::read(state.join(KEY_FILE)).unwrap(), b"garbage");
    }

    #[test]
    fn csr_is_signed_by_the_key_and_names_the_device() {
        use x509_parser::prelude::FromDer as _;
        let key = DeviceKey::generate_p256().unwrap();
        let der = key.csr_der("door-17").unwrap();
        let (_, csr) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
        let info = &csr.certification_request_info;
        assert_eq!(info.subject_pki.raw, key.spki_der().as_slice());
        let cn = info.subject.iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "door-17");
        crate::verify_p256(&key.spki_der(), info.raw, &csr.signature_value.data).unwrap();
    }

    #[test]
    fn tls_key_signs_verifiably() {
        let key = DeviceKey::generate_p256().unwrap();
        let tls = key.tls_signing_key().unwrap();
        let signer = tls
            .choose_scheme(&[rustls::SignatureScheme::ECDSA_NISTP256_SHA256])
            .unwrap();
        let sig = signer.sign(b"hello").unwrap();
        crate::verify_p256(&key.spki_der(), b"hello", &sig).unwrap();
    }

    #[test]
    fn next_key_replaces_the_current_one_only_on_commit() {
        let (dir, ks) = store();
        let old = ks.load_or_create().unwrap();
        let next = ks.create_next().unwrap();
        assert_ne!(old.spki_der(), next.spki_der());
        let state = dir.path().join("state");
        assert_eq!(
            std::fs::metadata(state.join(NEXT_KEY_FILE)).unwrap().mode() & 0o777,
            0o600
        );
        assert_eq!(ks.load().unwrap().unwrap().spki_der(), old.spki_der());
        ks.commit_next().unwrap();
        assert_eq!(ks.load().unwrap().unwrap().spki_der(), next.spki_der());
        assert!(ks.load_next().unwrap().is_none());
        // A leftover next key is discarded by the next renewal.
        let stale = ks.create_next().unwrap();
        let fresh = ks.create_next().unwrap();
        assert_ne!(stale.spki_der(), fresh.spki_der());
        ks.discard_next().unwrap();
        assert!(!state.join(NEXT_KEY_FILE).exists());
    }

    #[test]
    fn debug_does_not_show_the_key() {
        let key = DeviceKey::generate_p256().unwrap();
        let pem = key.private_pem().unwrap().to_string();
        let body: String = pem.lines().nth(1).unwrap().to_owned();
        assert!(!format!("{key:?}").contains(&body));
    }
}
