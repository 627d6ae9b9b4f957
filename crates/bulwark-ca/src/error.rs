//! The one error type of this crate.
//!
//! Messages are lower-case and never contain secret material: no
//! passphrases, no key bytes, no plaintext. Paths and key names are fine.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the CA, its key store and its encoders.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// A file system operation failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done ("read", "write", "create directory", ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// `Ca::init` or `Keystore::create` found existing material.
    #[error("{} is already initialized; refusing to overwrite it", path.display())]
    AlreadyInitialized {
        /// The directory that already holds CA or key store material.
        path: PathBuf,
    },

    /// `Ca::open` or `Keystore::open` found nothing to open.
    #[error("{} is not initialized", path.display())]
    NotInitialized {
        /// The directory that was expected to hold CA or key store material.
        path: PathBuf,
    },

    /// The passphrase does not unlock the key store.
    #[error("wrong passphrase for key store at {}", path.display())]
    WrongPassphrase {
        /// The key store directory.
        path: PathBuf,
    },

    /// The passphrase is empty.
    #[error("passphrase must not be empty")]
    EmptyPassphrase,

    /// Key derivation parameters are out of range.
    #[error("invalid key derivation parameters: {detail}")]
    KdfParams {
        /// Which parameter and why.
        detail: String,
    },

    /// A key store file is unreadable or of an unknown format.
    #[error("key store file {} is corrupt: {detail}", path.display())]
    CorruptKeystore {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// The key store holds no key of that name.
    #[error("no key named {name:?} in the key store at {}", dir.display())]
    KeyNotFound {
        /// The key name asked for.
        name: String,
        /// The key store directory.
        dir: PathBuf,
    },

    /// A sealed key failed authentication: it was modified or corrupted.
    #[error("sealed key {name:?} failed authentication (corrupted or tampered with)")]
    KeyTampered {
        /// The key name.
        name: String,
    },

    /// A key name contains characters that are not allowed.
    #[error("invalid key name {name:?}: use 1-64 characters from [a-z0-9_-]")]
    InvalidKeyName {
        /// The rejected name.
        name: String,
    },

    /// The CA material on disk does not fit together.
    #[error("ca material at {} is inconsistent: {detail}", path.display())]
    Inconsistent {
        /// The CA directory.
        path: PathBuf,
        /// What does not match.
        detail: String,
    },

    /// The CSR is not valid DER/PEM PKCS#10.
    #[error("malformed certificate signing request: {detail}")]
    Malformed {
        /// Which part failed to parse.
        detail: String,
    },

    /// The CSR's signature does not verify with its own public key.
    #[error("certificate signing request signature does not verify")]
    BadSignature,

    /// The CSR's key is of an accepted type but too weak.
    #[error("weak key: {detail}")]
    WeakKey {
        /// Why the key is too weak.
        detail: String,
    },

    /// The CSR's key or signature algorithm is not accepted.
    #[error("unsupported algorithm: {detail}")]
    UnsupportedAlgorithm {
        /// The algorithm that was refused.
        detail: String,
    },

    /// A certificate subject, organization or server name is invalid.
    #[error("invalid name: {detail}")]
    InvalidName {
        /// What is wrong with it.
        detail: String,
    },

    /// A requested lifetime is zero, negative or outlives the issuing CA.
    #[error("invalid lifetime: {detail}")]
    InvalidLifetime {
        /// What is wrong with it.
        detail: String,
    },

    /// rcgen refused to build a certificate or CRL.
    #[error("certificate generation failed")]
    Generate(#[source] rcgen::Error),

    /// A low-level cryptographic operation failed.
    #[error("cryptographic operation failed: {detail}")]
    Crypto {
        /// The operation that failed.
        detail: &'static str,
    },

    /// DER encoding or decoding of a certificate or PKCS#7 structure failed.
    #[error("der encoding failed")]
    Der(#[source] der::Error),

    /// A manufacturer CA certificate an operator asked to register is not
    /// usable as one (the detail says why, for the operator).
    #[error("invalid manufacturer CA certificate: {detail}")]
    ManufacturerCa {
        /// What is wrong with it.
        detail: String,
    },

    /// A client certificate was not issued by the manufacturer CA it
    /// names, or cannot authenticate a device (the detail says why).
    #[error("{detail}")]
    ForeignCertificate {
        /// What is wrong with it.
        detail: String,
    },

    /// A base64 (or PEM) body could not be decoded.
    #[error("invalid base64 body: {detail}")]
    Base64 {
        /// What is wrong with it.
        detail: String,
    },
}

impl CaError {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn malformed(detail: impl Into<String>) -> Self {
        Self::Malformed {
            detail: detail.into(),
        }
    }

    pub(crate) fn unsupported(detail: impl Into<String>) -> Self {
        Self::UnsupportedAlgorithm {
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid_name(detail: impl Into<String>) -> Self {
        Self::InvalidName {
            detail: detail.into(),
        }
    }
}

impl From<rcgen::Error> for CaError {
    fn from(e: rcgen::Error) -> Self {
        Self::Generate(e)
    }
}

impl From<der::Error> for CaError {
    fn from(e: der::Error) -> Self {
        Self::Der(e)
    }
}
