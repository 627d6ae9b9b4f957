//! The CA's own ECDSA P-256 signing keys.
//!
//! A thin wrapper over [`rcgen::KeyPair`] that zeroizes the PKCS#8 copy
//! rcgen keeps when the key is dropped and never prints it. aws-lc frees
//! (and cleanses) its own copy of the key.

use std::fmt;

use rcgen::{KeyPair, PublicKeyData, SignatureAlgorithm, SigningKey, PKCS_ECDSA_P256_SHA256};
use rustls_pki_types::PrivatePkcs8KeyDer;
use zeroize::Zeroize;

use crate::CaError;

/// An ECDSA P-256 private key used to sign certificates and CRLs.
pub(crate) struct CaKey(KeyPair);

impl CaKey {
    /// Generates a fresh P-256 key.
    pub(crate) fn generate() -> Result<Self, CaError> {
        Ok(Self(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?))
    }

    /// Loads a P-256 key from PKCS#8 DER.
    pub(crate) fn from_pkcs8(der: &[u8]) -> Result<Self, CaError> {
        let der = PrivatePkcs8KeyDer::from(der);
        Ok(Self(KeyPair::from_pkcs8_der_and_sign_algo(
            &der,
            &PKCS_ECDSA_P256_SHA256,
        )?))
    }

    /// The private key as PKCS#8 DER.
    pub(crate) fn pkcs8_der(&self) -> &[u8] {
        self.0.serialized_der()
    }
}

impl Drop for CaKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for CaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CaKey(***)")
    }
}

impl PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.0.algorithm()
    }
}

impl SigningKey for CaKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.0.sign(msg)
    }
}
