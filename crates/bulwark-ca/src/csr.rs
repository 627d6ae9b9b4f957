//! PKCS#10 certificate signing requests: parsing, signature check, key policy.
//!
//! A CSR is untrusted input. [`verify_csr`] parses it, checks the
//! signature over the raw `certificationRequestInfo` bytes with the CSR's
//! own key using aws-lc-rs directly (so this module, not a library default,
//! decides which algorithms are accepted), and enforces the key policy:
//!
//! | key        | signature algorithms accepted                              |
//! |------------|------------------------------------------------------------|
//! | EC P-256   | ecdsa-with-SHA256, ecdsa-with-SHA384                       |
//! | EC P-384   | ecdsa-with-SHA256, ecdsa-with-SHA384                       |
//! | Ed25519    | Ed25519                                                    |
//! | RSA ≥ 2048 | sha{256,384,512}WithRSAEncryption, RSASSA-PSS (SHA-2, salt = hash length) |
//!
//! Everything else (SHA-1, DSA, P-521, other curves, RSA < 2048 bits) is
//! refused. The only way to get a [`VerifiedCsr`] is through this check, so
//! the issuing code cannot be handed an unchecked key.

use std::fmt;

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use bulwark_types::CertSerial;
use x509_parser::asn1_rs::Any;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::oid_registry::{self as oids, Oid};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::signature_algorithm::RsaSsaPssParams;
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

use crate::{pem, CaError};

/// Largest RSA modulus accepted, in bits (aws-lc-rs's verification limit).
const MAX_RSA_BITS: u32 = 8192;
/// Smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: u32 = 2048;
/// Longest subject string kept for logging.
const MAX_SUBJECT_LOG_LEN: usize = 256;

/// The type of key a verified CSR carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// ECDSA on NIST P-256.
    EcP256,
    /// ECDSA on NIST P-384.
    EcP384,
    /// Ed25519.
    Ed25519,
    /// RSA with a modulus of `bits` bits.
    Rsa {
        /// Modulus length.
        bits: u32,
    },
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EcP256 => f.write_str("ec-p256"),
            Self::EcP384 => f.write_str("ec-p384"),
            Self::Ed25519 => f.write_str("ed25519"),
            Self::Rsa { bits } => write!(f, "rsa-{bits}"),
        }
    }
}

/// A CSR whose signature verified and whose key passed the key policy.
///
/// Only [`verify_csr`] and [`verify_csr_pem`] create one. Issuance uses
/// just the public key; the requested subject is kept for logs only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCsr {
    spki_der: Vec<u8>,
    key_kind: KeyKind,
    requested_subject: String,
}

impl VerifiedCsr {
    /// The DER SubjectPublicKeyInfo of the requester's key.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// The kind of key.
    pub fn key_kind(&self) -> KeyKind {
        self.key_kind
    }

    /// The subject the requester asked for, printable and truncated. For logs
    /// only: it never reaches an issued certificate.
    pub fn requested_subject(&self) -> &str {
        &self.requested_subject
    }
}

/// Parses a DER PKCS#10 CSR, verifies its self-signature and enforces the
/// key policy described in the module docs.
pub fn verify_csr(der: &[u8]) -> Result<VerifiedCsr, CaError> {
    let (rest, req) = X509CertificationRequest::from_der(der)
        .map_err(|e| CaError::malformed(format!("not a pkcs#10 request: {e}")))?;
    if !rest.is_empty() {
        return Err(CaError::malformed("trailing bytes after the request"));
    }
    let info = &req.certification_request_info;
    if info.version.0 != 0 {
        return Err(CaError::malformed(format!(
            "unsupported version {}",
            info.version.0
        )));
    }
    let spki = &info.subject_pki;
    let key_kind = classify_key(spki)?;
    let alg = verification_algorithm(key_kind, &req.signature_algorithm)?;
    if req.signature_value.unused_bits != 0 {
        return Err(CaError::malformed("signature bit string has unused bits"));
    }
    UnparsedPublicKey::new(alg, &spki.subject_public_key.data)
        .verify(info.raw, &req.signature_value.data)
        .map_err(|_| CaError::BadSignature)?;
    Ok(VerifiedCsr {
        spki_der: spki.raw.to_vec(),
        key_kind,
        requested_subject: printable_subject(&info.subject.to_string()),
    })
}

/// Like [`verify_csr`], for a PEM `CERTIFICATE REQUEST` (or `NEW CERTIFICATE REQUEST`) block.
pub fn verify_csr_pem(text: &str) -> Result<VerifiedCsr, CaError> {
    let block = pem::decode_all(text)
        .map_err(|e| CaError::malformed(e.to_string()))?
        .into_iter()
        .find(|b| b.label == "CERTIFICATE REQUEST" || b.label == "NEW CERTIFICATE REQUEST")
        .ok_or_else(|| CaError::malformed("no CERTIFICATE REQUEST pem block"))?;
    verify_csr(&block.der)
}

/// A fresh certificate serial: 16 bytes from the system CSPRNG with the top
/// bit cleared (127 bits of randomness), never zero. As a [`CertSerial`] it
/// is at most 16 octets (leading zero octets are dropped).
///
/// # Panics
/// If the operating system's random number generator fails, which aws-lc
/// treats as fatal anyway.
pub fn random_serial() -> CertSerial {
    loop {
        let mut bytes = [0u8; 16];
        aws_lc_rs::rand::fill(&mut bytes).expect("system random number generator failed");
        bytes[0] &= 0x7f;
        if let Ok(serial) = CertSerial::from_bytes(&bytes) {
            return serial;
        }
    }
}

pub(crate) fn classify_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyKind, CaError> {
    let alg = &spki.algorithm.algorithm;
    let key = &spki.subject_public_key;
    if key.unused_bits != 0 {
        return Err(CaError::malformed("public key bit string has unused bits"));
    }
    if *alg == oids::OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or_else(|| CaError::unsupported("ec key without a named curve"))?;
        let (kind, len) = if curve == oids::OID_EC_P256 {
            (KeyKind::EcP256, 65)
        } else if curve == oids::OID_NIST_EC_P384 {
            (KeyKind::EcP384, 97)
        } else if curve == oids::OID_NIST_EC_P521 {
            return Err(CaError::unsupported(
                "ec curve P-521 is not accepted; use P-256 or P-384",
            ));
        } else {
            return Err(CaError::unsupported(format!("ec curve {curve}")));
        };
        return match key.data.first() {
            Some(0x04) if key.data.len() == len => Ok(kind),
            Some(0x02 | 0x03) => Err(CaError::unsupported("compressed ec points")),
            _ => Err(CaError::malformed("bad ec public key encoding")),
        };
    }
    if *alg == oids::OID_SIG_ED25519 {
        if spki.algorithm.parameters.is_some() {
            return Err(CaError::malformed("ed25519 key with parameters"));
        }
        if key.data.len() != 32 {
            return Err(CaError::malformed("ed25519 public key is not 32 bytes"));
        }
        return Ok(KeyKind::Ed25519);
    }
    if *alg == oids::OID_PKCS1_RSAENCRYPTION {
        // RFC 3279 §2.3.1: the parameters MUST be NULL (not absent).
        if !spki.algorithm.parameters.as_ref().is_some_and(is_null) {
            return Err(CaError::malformed("rsa key parameters must be NULL"));
        }
        let bits = match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => modulus_bits(rsa.modulus),
            _ => return Err(CaError::malformed("bad rsa public key encoding")),
        };
        if bits < MIN_RSA_BITS {
            return Err(CaError::WeakKey {
                detail: format!("rsa key of {bits} bits; at least {MIN_RSA_BITS} required"),
            });
        }
        if bits > MAX_RSA_BITS {
            return Err(CaError::unsupported(format!(
                "rsa key of {bits} bits; at most {MAX_RSA_BITS} accepted"
            )));
        }
        return Ok(KeyKind::Rsa { bits });
    }
    Err(CaError::unsupported(format!(
        "{} keys",
        algorithm_name(alg)
    )))
}

pub(crate) fn verification_algorithm(
    key: KeyKind,
    sig: &AlgorithmIdentifier<'_>,
) -> Result<&'static dyn VerificationAlgorithm, CaError> {
    let oid = &sig.algorithm;
    let mismatch = || {
        CaError::unsupported(format!(
            "signature algorithm {} with a {key} key",
            algorithm_name(oid)
        ))
    };
    let alg: &'static dyn VerificationAlgorithm = match key {
        KeyKind::EcP256 | KeyKind::EcP384 => {
            if sig.parameters.is_some() {
                return Err(CaError::malformed(
                    "ecdsa signature algorithm with parameters",
                ));
            }
            let sha384 = if *oid == oids::OID_SIG_ECDSA_WITH_SHA256 {
                false
            } else if *oid == oids::OID_SIG_ECDSA_WITH_SHA384 {
                true
            } else {
                return Err(mismatch());
            };
            match (key, sha384) {
                (KeyKind::EcP256, false) => &signature::ECDSA_P256_SHA256_ASN1,
                (KeyKind::EcP256, true) => &signature::ECDSA_P256_SHA384_ASN1,
                (_, false) => &signature::ECDSA_P384_SHA256_ASN1,
                (_, true) => &signature::ECDSA_P384_SHA384_ASN1,
            }
        }
        KeyKind::Ed25519 => {
            if *oid != oids::OID_SIG_ED25519 {
                return Err(mismatch());
            }
            if sig.parameters.is_some() {
                return Err(CaError::malformed(
                    "ed25519 signature algorithm with parameters",
                ));
            }
            &signature::ED25519
        }
        KeyKind::Rsa { .. } => {
            if *oid == oids::OID_PKCS1_RSASSAPSS {
                return rsa_pss_algorithm(sig.parameters.as_ref());
            }
            if !params_absent_or_null(sig.parameters.as_ref()) {
                return Err(CaError::malformed("rsa signature parameters must be NULL"));
            }
            if *oid == oids::OID_PKCS1_SHA256WITHRSA {
                &signature::RSA_PKCS1_2048_8192_SHA256
            } else if *oid == oids::OID_PKCS1_SHA384WITHRSA {
                &signature::RSA_PKCS1_2048_8192_SHA384
            } else if *oid == oids::OID_PKCS1_SHA512WITHRSA {
                &signature::RSA_PKCS1_2048_8192_SHA512
            } else {
                return Err(mismatch());
            }
        }
    };
    Ok(alg)
}

/// RSASSA-PSS with SHA-256/384/512, MGF1 over the same hash and a salt as
/// long as the hash: the combinations aws-lc-rs verifies.
fn rsa_pss_algorithm(
    params: Option<&Any<'_>>,
) -> Result<&'static dyn VerificationAlgorithm, CaError> {
    let params =
        params.ok_or_else(|| CaError::unsupported("rsassa-pss with default (sha-1) parameters"))?;
    let params = RsaSsaPssParams::try_from(params)
        .map_err(|_| CaError::malformed("bad rsassa-pss parameters"))?;
    let hash = params.hash_algorithm_oid();
    let (alg, hash_len): (&'static dyn VerificationAlgorithm, u32) =
        if *hash == oids::OID_NIST_HASH_SHA256 {
            (&signature::RSA_PSS_2048_8192_SHA256, 32)
        } else if *hash == oids::OID_NIST_HASH_SHA384 {
            (&signature::RSA_PSS_2048_8192_SHA384, 48)
        } else if *hash == oids::OID_NIST_HASH_SHA512 {
            (&signature::RSA_PSS_2048_8192_SHA512, 64)
        } else {
            return Err(CaError::unsupported(format!(
                "rsassa-pss with hash {}",
                algorithm_name(hash)
            )));
        };
    let mgf = params
        .mask_gen_algorithm()
        .map_err(|_| CaError::malformed("bad rsassa-pss mask generation parameters"))?;
    if mgf.mgf != MGF1 || mgf.hash != *hash {
        return Err(CaError::unsupported(
            "rsassa-pss mask generation must be mgf1 with the signature hash",
        ));
    }
    if params.salt_length() != hash_len || params.trailer_field() != 1 {
        return Err(CaError::unsupported(
            "rsassa-pss salt length must equal the hash length",
        ));
    }
    Ok(alg)
}

const MGF1: Oid<'static> = x509_parser::der_parser::oid!(1.2.840 .113549 .1 .1 .8);

fn params_absent_or_null(params: Option<&Any<'_>>) -> bool {
    params.is_none_or(is_null)
}

fn is_null(any: &Any<'_>) -> bool {
    any.tag() == x509_parser::asn1_rs::Tag::Null && any.data.is_empty()
}

/// Bit length of a big-endian unsigned integer.
fn modulus_bits(modulus: &[u8]) -> u32 {
    let start = modulus
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(modulus.len());
    let m = &modulus[start..];
    match m.first() {
        None => 0,
        Some(first) => {
            let len = u32::try_from(m.len()).unwrap_or(u32::MAX / 8);
            len.saturating_mul(8) - first.leading_zeros()
        }
    }
}

/// A readable name for the algorithm OIDs a client is likely to send.
pub(crate) fn algorithm_name(oid: &Oid<'_>) -> String {
    let known: &[(&Oid<'_>, &str)] = &[
        (
            &oids::OID_PKCS1_SHA1WITHRSA,
            "sha1WithRSAEncryption (sha-1)",
        ),
        (&oids::OID_SHA1_WITH_RSA, "sha1WithRSA (sha-1)"),
        (&oids::OID_PKCS1_SHA224WITHRSA, "sha224WithRSAEncryption"),
        (&oids::OID_PKCS1_SHA256WITHRSA, "sha256WithRSAEncryption"),
        (&oids::OID_PKCS1_SHA384WITHRSA, "sha384WithRSAEncryption"),
        (&oids::OID_PKCS1_SHA512WITHRSA, "sha512WithRSAEncryption"),
        (&oids::OID_PKCS1_RSASSAPSS, "rsassa-pss"),
        (&oids::OID_PKCS1_RSAENCRYPTION, "rsa"),
        (&oids::OID_SIG_ECDSA_WITH_SHA224, "ecdsa-with-SHA224"),
        (&oids::OID_SIG_ECDSA_WITH_SHA256, "ecdsa-with-SHA256"),
        (&oids::OID_SIG_ECDSA_WITH_SHA384, "ecdsa-with-SHA384"),
        (&oids::OID_SIG_ECDSA_WITH_SHA512, "ecdsa-with-SHA512"),
        (&oids::OID_SIG_ED25519, "ed25519"),
        (&oids::OID_SIG_ED448, "ed448"),
        (&oids::OID_KEY_TYPE_DSA, "dsa"),
        (&oids::OID_SIG_DSA_WITH_SHA1, "dsa-with-sha1"),
        (&oids::OID_HASH_SHA1, "sha-1"),
    ];
    if *oid == ECDSA_WITH_SHA1 {
        return "ecdsa-with-SHA1 (sha-1)".into();
    }
    known
        .iter()
        .find(|(o, _)| *o == oid)
        .map(|(_, name)| (*name).to_owned())
        .unwrap_or_else(|| oid.to_id_string())
}

const ECDSA_WITH_SHA1: Oid<'static> = x509_parser::der_parser::oid!(1.2.840 .10045 .4 .1);

/// Printable ASCII only, truncated, so a hostile subject cannot forge log lines.
pub(crate) fn printable_subject(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(MAX_SUBJECT_LOG_LEN)
        .collect()
}

#[cfg(test)]
#[path = "csr_tests.rs"]
mod tests;
