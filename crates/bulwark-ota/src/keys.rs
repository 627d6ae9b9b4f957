//! Ed25519 signing keys for TUF roles: PKCS#8, PEM, and key ids as TUF
//! computes them (SHA-256 of the canonical JSON of the public key).
//!
//! The server hands decrypted PKCS#8 bytes from its own encrypted key store;
//! this crate never persists a private key except through
//! [`SigningKey::write_file`], which the offline CLI (`bulwark ota keygen`)
//! uses to create a key file readable by its owner only.

use std::fmt;
use std::io::Write;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use base64::Engine;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use serde::{Deserialize, Serialize};
use tough::schema::key::Key;
use zeroize::Zeroizing;

use crate::error::OtaError;

fn invalid(reason: &'static str) -> OtaError {
    OtaError::InvalidKey { reason }
}

/// An Ed25519 private key (PKCS#8). Its `Debug` shows only the key id.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    pkcs8: Zeroizing<Vec<u8>>,
}

impl SigningKey {
    /// A new random key.
    pub fn generate() -> Result<Self, OtaError> {
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| invalid("key generation failed"))?;
        SigningKey::from_pkcs8_der(doc.as_ref())
    }

    /// A key from PKCS#8 DER (v1 or v2).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, OtaError> {
        let pair = Ed25519KeyPair::from_pkcs8(der)
            .map_err(|_| invalid("not an Ed25519 PKCS#8 private key"))?;
        Ok(SigningKey {
            pair,
            pkcs8: Zeroizing::new(der.to_vec()),
        })
    }

    /// A key from a PEM `PRIVATE KEY` block.
    pub fn from_pem(pem: &[u8]) -> Result<Self, OtaError> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem)
            .map_err(|_| invalid("no PEM PRIVATE KEY block"))?;
        SigningKey::from_pkcs8_der(der.secret_pkcs8_der())
    }

    /// The PKCS#8 DER bytes (for the server's encrypted key store).
    pub fn pkcs8_der(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The key as a PEM `PRIVATE KEY` block.
    pub fn to_pem(&self) -> Zeroizing<String> {
        let b64 = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&*self.pkcs8));
        let mut out = Zeroizing::new(String::from("-----BEGIN PRIVATE KEY-----\n"));
        for line in b64.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END PRIVATE KEY-----\n");
        out
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey(tough::sign::Sign::tuf_key(&self.pair))
    }

    pub fn key_id(&self) -> KeyId {
        self.public_key().key_id()
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.pair.sign(msg).as_ref().to_vec()
    }

    /// Reads a PEM key file.
    pub fn read_file(path: &Path) -> Result<Self, OtaError> {
        let pem = Zeroizing::new(std::fs::read(path).map_err(OtaError::io(path))?);
        SigningKey::from_pem(&pem)
    }

    /// Writes the key as PEM to a new file with mode 0600 (never replaces
    /// an existing file).
    pub fn write_file(&self, path: &Path) -> Result<(), OtaError> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(path).map_err(OtaError::io(path))?;
        file.write_all(self.to_pem().as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(OtaError::io(path))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("key_id", &self.key_id().as_str())
            .finish_non_exhaustive()
    }
}

/// A public key as it appears in root metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PublicKey(pub(crate) Key);

impl PublicKey {
    pub fn key_id(&self) -> KeyId {
        // Serializing a parsed key to canonical JSON cannot fail.
        let id = self
            .0
            .key_id()
            .map(|d| hex::encode(&*d))
            .unwrap_or_default();
        KeyId(id)
    }

    pub fn as_tough(&self) -> &Key {
        &self.0
    }

    /// An Ed25519 public key from its 32 raw bytes.
    pub fn ed25519(raw: &[u8]) -> Result<Self, OtaError> {
        if raw.len() != 32 {
            return Err(invalid("an Ed25519 public key is 32 bytes"));
        }
        let key: Key = hex::encode(raw)
            .parse()
            .map_err(|_| invalid("not an Ed25519 public key"))?;
        Ok(PublicKey(key))
    }

    /// The raw Ed25519 public key bytes.
    pub fn raw(&self) -> Option<&[u8]> {
        match &self.0 {
            Key::Ed25519 { keyval, .. } => Some(&keyval.public),
            _ => None,
        }
    }

    /// An Ed25519 public key from a PEM `PUBLIC KEY` block (SPKI, what
    /// `bulwark ota keygen` writes next to the private key and what
    /// `openssl pkey -pubout` prints).
    pub fn from_pem(pem: &[u8]) -> Result<Self, OtaError> {
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(pem)
            .map_err(|_| invalid("no PEM PUBLIC KEY block"))?;
        let raw = spki
            .as_ref()
            .strip_prefix(ED25519_SPKI_PREFIX.as_slice())
            .ok_or_else(|| invalid("not an Ed25519 public key"))?;
        PublicKey::ed25519(raw)
    }

    /// The key as a PEM `PUBLIC KEY` block (SPKI). `None` for a key that is
    /// not Ed25519 (this crate never creates one).
    pub fn to_pem(&self) -> Option<String> {
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(self.raw()?);
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        Some(format!(
            "-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n"
        ))
    }
}

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE,
/// AlgorithmIdentifier { id-Ed25519 }, BIT STRING of 32 bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// A TUF key id: lower-case hex of SHA-256 over the key's canonical JSON.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(String);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_and_key_id() {
        let key = SigningKey::generate().unwrap();
        let pem = key.to_pem();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let back = SigningKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        assert_eq!(key.key_id().as_str().len(), 64);
        // The key id is what tough computes for the same public key.
        let tough_id = hex::encode(&*key.public_key().as_tough().key_id().unwrap());
        assert_eq!(key.key_id().as_str(), tough_id);
        let raw = key.public_key().raw().unwrap().to_vec();
        assert_eq!(PublicKey::ed25519(&raw).unwrap(), key.public_key());
        assert!(!format!("{key:?}").contains(&pem[30..60]));
    }

    #[test]
    fn key_file_is_private_and_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("targets.pem");
        let key = SigningKey::generate().unwrap();
        key.write_file(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(SigningKey::read_file(&path).unwrap().key_id(), key.key_id());
        assert!(matches!(key.write_file(&path), Err(OtaError::Io { .. })));
    }

    #[test]
    fn garbage_is_not_a_key() {
        assert!(SigningKey::from_pkcs8_der(b"nope").is_err());
        assert!(SigningKey::from_pem(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
        .is_err());
        assert!(PublicKey::ed25519(&[0u8; 31]).is_err());
        // A private key is not a public key, and neither is another algorithm.
        let key = SigningKey::generate().unwrap();
        assert!(PublicKey::from_pem(key.to_pem().as_bytes()).is_err());
        // A well-formed SPKI of a P-256 key (uncompressed point).
        let mut p256 = hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap();
        p256.push(4);
        p256.extend_from_slice(&[7u8; 64]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(p256);
        let p256 = format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n");
        assert!(PublicKey::from_pem(p256.as_bytes()).is_err());
    }

    #[test]
    fn public_key_pem_round_trip() {
        let key = SigningKey::generate().unwrap();
        let pem = key.public_key().to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        assert_eq!(
            PublicKey::from_pem(pem.as_bytes()).unwrap(),
            key.public_key()
        );
    }
}
