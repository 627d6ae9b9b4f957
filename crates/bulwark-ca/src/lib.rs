//! Bulwark's certificate authority.
//!
//! - [`keystore`]: secrets at rest, sealed with AES-256-GCM under an
//!   Argon2id-derived key.
//! - [`Ca`]: a two-level PKI (root, issuing) plus an Ed25519 audit key;
//!   issues device, claim and service client certificates, server
//!   certificates and CRLs.
//! - [`verify_csr`]: PKCS#10 parsing, signature check and key policy. Its
//!   [`VerifiedCsr`] is the only input issuance accepts.
//! - [`est`]: RFC 7030 encodings (certs-only PKCS#7, base64 bodies).
//! - [`ManufacturerCaCert`]: strict validation of a manufacturer CA an
//!   operator registers, and the check that it issued a device certificate
//!   (signature verified with its key, never the issuer name alone).
//!
//! aws-lc-rs is the only crypto provider. This crate never opens a socket
//! and has no async; it does file I/O only under the CA's data directory.

mod ca;
mod csr;
mod error;
pub mod est;
mod fsutil;
mod issue;
pub mod keystore;
mod manufacturer;
mod pem;
mod signer;
#[cfg(test)]
mod testutil;

pub use ca::{Ca, CaOptions};
pub use csr::{random_serial, verify_csr, verify_csr_pem, KeyKind, VerifiedCsr};
pub use error::CaError;
pub use est::{certs_only_pkcs7, decode_base64_body, encode_base64_body};
pub use issue::{IssuedCert, RevokedEntry, Subject, SERVER_CERT_LIFETIME};
pub use keystore::{KdfParams, Keystore, Passphrase};
pub use manufacturer::{ManufacturerCaCert, ManufacturerLeaf, MAX_MANUFACTURER_CA_PEM};
pub use zeroize::Zeroizing;
