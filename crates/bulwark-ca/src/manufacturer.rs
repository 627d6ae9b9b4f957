//! Manufacturer ("bring your own") CAs: the strict check of a CA
//! certificate an operator registers, and the check that a device
//! certificate was really issued by one.
//!
//! A registered CA is trusted to vouch for device ids, so registration is
//! strict: one PEM certificate, X.509 v3, `basicConstraints` CA, `keyCertSign`
//! if `keyUsage` is present, valid now, not Bulwark's own root or issuing CA
//! (nor their key), and a key and signature algorithm of the CSR key policy
//! ([`crate::verify_csr`]): EC P-256/P-384, Ed25519 or RSA 2048–8192 with
//! SHA-2. A self-signed CA's own signature must verify.
//!
//! [`ManufacturerCaCert::verify_issued`] never trusts the issuer name
//! alone: the device certificate's signature over its `tbsCertificate` is
//! verified with the CA's public key (aws-lc-rs, the same algorithm table
//! as CSRs), and the certificate must be a client certificate within its
//! validity. The registered CA must issue device certificates directly.

use aws_lc_rs::signature::UnparsedPublicKey;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate, X509Version};
use x509_parser::time::ASN1Time;

use crate::csr::{algorithm_name, classify_key, printable_subject, verification_algorithm};
use crate::{pem, CaError, KeyKind};

/// Largest PEM text accepted for a manufacturer CA certificate.
pub const MAX_MANUFACTURER_CA_PEM: usize = 16 * 1024;

fn ca_err(detail: impl Into<String>) -> CaError {
    CaError::ManufacturerCa {
        detail: detail.into(),
    }
}

fn leaf_err(detail: impl Into<String>) -> CaError {
    CaError::ForeignCertificate {
        detail: detail.into(),
    }
}

fn sha256_hex(der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der))
}

fn to_time(t: ASN1Time) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t.timestamp()).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// A manufacturer CA certificate, parsed: what identifying a device
/// certificate it issued needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManufacturerCaCert {
    der: Vec<u8>,
    fingerprint: String,
    subject: String,
    subject_raw: Vec<u8>,
    public_key: Vec<u8>,
    key_kind: KeyKind,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

/// A device certificate a manufacturer CA verifiably issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManufacturerLeaf {
    /// SHA-256 (hex) of its DER.
    pub fingerprint: String,
    /// Its serial as written, upper-case hex.
    pub serial_hex: String,
    /// Its subject (RFC 4514, printable, truncated).
    pub subject: String,
    /// Its subject's single common name, if it has one.
    pub common_name: Option<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl ManufacturerCaCert {
    /// Parses a CA certificate registered earlier (it passed
    /// [`Self::validate_pem`] then; only parsing and the key are checked
    /// again, so a CA that has since expired still loads — and vouches for
    /// nothing, see [`Self::verify_issued`]).
    pub fn from_der(der: &[u8]) -> Result<Self, CaError> {
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| ca_err(format!("the certificate does not parse: {e}")))?;
        if !rest.is_empty() {
            return Err(ca_err("trailing bytes after the certificate"));
        }
        let key_kind = classify_key(cert.public_key())
            .map_err(|e| ca_err(format!("the CA's public key is not accepted: {e}")))?;
        Ok(Self {
            der: der.to_vec(),
            fingerprint: sha256_hex(der),
            subject: printable_subject(&cert.subject().to_string()),
            subject_raw: cert.subject().as_raw().to_vec(),
            public_key: cert.public_key().subject_public_key.data.to_vec(),
            key_kind,
            not_before: to_time(cert.validity().not_before),
            not_after: to_time(cert.validity().not_after),
        })
    }

    /// The strict check of a CA certificate an operator registers (see the
    /// module docs). `own` are Bulwark's own CA certificates (DER), which
    /// cannot be registered. Every refusal is a
    /// [`CaError::ManufacturerCa`] whose message says what to fix.
    pub fn validate_pem(text: &str, now: OffsetDateTime, own: &[&[u8]]) -> Result<Self, CaError> {
        if text.len() > MAX_MANUFACTURER_CA_PEM {
            return Err(ca_err(format!(
                "the PEM text is {} bytes; at most {MAX_MANUFACTURER_CA_PEM} are accepted",
                text.len()
            )));
        }
        let blocks = pem::decode_all(text).map_err(|e| ca_err(format!("not valid PEM: {e}")))?;
        if blocks.iter().any(|b| b.label.contains("PRIVATE KEY")) {
            return Err(ca_err(
                "the PEM text holds a private key; send only the CA certificate (and keep its key secret)",
            ));
        }
        if let Some(other) = blocks.iter().find(|b| b.label != "CERTIFICATE") {
            return Err(ca_err(format!(
                "unexpected PEM block {:?}; expected one CERTIFICATE",
                other.label
            )));
        }
        let der = match blocks.as_slice() {
            [] => {
                return Err(ca_err(
                    "no PEM CERTIFICATE block found; expected the CA certificate in PEM (-----BEGIN CERTIFICATE-----)",
                ))
            }
            [one] => &one.der,
            more => {
                return Err(ca_err(format!(
                    "expected exactly one certificate, found {}; register each CA on its own",
                    more.len()
                )))
            }
        };
        let (rest, cert) = X509Certificate::from_der(der)
            .map_err(|e| ca_err(format!("the certificate does not parse: {e}")))?;
        if !rest.is_empty() {
            return Err(ca_err("trailing bytes after the certificate"));
        }
        if cert.version() != X509Version::V3 {
            return Err(ca_err("not an X.509 v3 certificate"));
        }
        let bc = cert
            .basic_constraints()
            .map_err(|e| ca_err(format!("bad basicConstraints extension: {e}")))?;
        match bc {
            None => {
                return Err(ca_err(
                    "not a CA certificate: it has no basicConstraints extension (is it a device certificate?)",
                ))
            }
            Some(bc) if !bc.value.ca => {
                return Err(ca_err(
                    "not a CA certificate: basicConstraints says CA:FALSE (is it a device certificate?)",
                ))
            }
            Some(_) => {}
        }
        let ku = cert
            .key_usage()
            .map_err(|e| ca_err(format!("bad keyUsage extension: {e}")))?;
        if ku.is_some_and(|ku| !ku.value.key_cert_sign()) {
            return Err(ca_err(
                "the keyUsage extension does not allow keyCertSign, so it cannot issue certificates",
            ));
        }
        let parsed = Self::from_der(der)?;
        if now < parsed.not_before {
            return Err(ca_err(format!(
                "not valid yet (notBefore {})",
                rfc3339(parsed.not_before)
            )));
        }
        if now >= parsed.not_after {
            return Err(ca_err(format!(
                "expired (notAfter {})",
                rfc3339(parsed.not_after)
            )));
        }
        for ours in own {
            if *ours == der.as_slice() {
                return Err(ca_err(
                    "this is Bulwark's own CA certificate; devices it issued are trusted already",
                ));
            }
            let same_key = X509Certificate::from_der(ours).is_ok_and(|(_, o)| {
                o.public_key().subject_public_key.data == cert.public_key().subject_public_key.data
            });
            if same_key {
                return Err(ca_err(
                    "the certificate carries the key of Bulwark's own CA; it cannot be registered as a manufacturer CA",
                ));
            }
        }
        let sig = &cert.signature_algorithm;
        if cert.tbs_certificate.signature != *sig {
            return Err(ca_err(
                "the signature algorithm inside the certificate differs from the outer one",
            ));
        }
        if !supported_signature(&sig.algorithm) {
            return Err(ca_err(format!(
                "signature algorithm {} is not supported; use ECDSA (P-256/P-384) with SHA-256/384, Ed25519, or RSA (2048-8192 bits) with SHA-2",
                algorithm_name(&sig.algorithm)
            )));
        }
        if cert.issuer().as_raw() == cert.subject().as_raw() {
            let alg = verification_algorithm(parsed.key_kind, sig)
                .map_err(|e| ca_err(format!("self-signature: {e}")))?;
            UnparsedPublicKey::new(alg, &parsed.public_key)
                .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
                .map_err(|_| ca_err("the self-signed certificate's signature does not verify"))?;
        }
        Ok(parsed)
    }

    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The certificate, PEM.
    pub fn pem(&self) -> String {
        pem::encode("CERTIFICATE", &self.der)
    }

    /// SHA-256 (hex) of the DER.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The subject, RFC 4514 (printable, truncated).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The subject's DER encoding: a certificate it issued carries the same
    /// bytes as its issuer.
    pub fn subject_raw(&self) -> &[u8] {
        &self.subject_raw
    }

    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Whether `leaf_der` names this CA as its issuer (a hint only: see
    /// [`Self::verify_issued`]).
    pub fn names_as_issuer(&self, leaf_der: &[u8]) -> bool {
        X509Certificate::from_der(leaf_der)
            .is_ok_and(|(_, c)| c.issuer().as_raw() == self.subject_raw.as_slice())
    }

    /// Checks that this CA issued `leaf_der` and that it can authenticate a
    /// device at `now`: its signature verifies with this CA's key, it is
    /// not a CA, its extended key usage (if any) allows client
    /// authentication, and it and this CA are within their validity.
    /// Every refusal is a [`CaError::ForeignCertificate`] with a reason.
    pub fn verify_issued(
        &self,
        leaf_der: &[u8],
        now: OffsetDateTime,
    ) -> Result<ManufacturerLeaf, CaError> {
        let (rest, cert) = X509Certificate::from_der(leaf_der)
            .map_err(|_| leaf_err("the client certificate does not parse"))?;
        if !rest.is_empty() {
            return Err(leaf_err("trailing bytes after the client certificate"));
        }
        if cert.issuer().as_raw() != self.subject_raw.as_slice() {
            return Err(leaf_err("the client certificate names another issuer"));
        }
        let sig = &cert.signature_algorithm;
        if cert.tbs_certificate.signature != *sig {
            return Err(leaf_err(
                "the client certificate's inner and outer signature algorithms differ",
            ));
        }
        let alg = verification_algorithm(self.key_kind, sig)
            .map_err(|e| leaf_err(format!("the client certificate's signature: {e}")))?;
        UnparsedPublicKey::new(alg, &self.public_key)
            .verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data)
            .map_err(|_| {
                leaf_err("the client certificate's signature does not verify with the manufacturer CA's key")
            })?;
        if cert.is_ca() {
            return Err(leaf_err(
                "the client certificate is a CA certificate, not a device certificate",
            ));
        }
        let eku = cert
            .extended_key_usage()
            .map_err(|_| leaf_err("the client certificate has a bad extendedKeyUsage extension"))?;
        if eku.is_some_and(|e| !(e.value.client_auth || e.value.any)) {
            return Err(leaf_err(
                "the client certificate's extended key usage does not allow client authentication",
            ));
        }
        if now >= self.not_after {
            return Err(leaf_err(format!(
                "the manufacturer CA certificate expired at {}",
                rfc3339(self.not_after)
            )));
        }
        let not_before = to_time(cert.validity().not_before);
        let not_after = to_time(cert.validity().not_after);
        if now < not_before {
            return Err(leaf_err(format!(
                "the client certificate is not valid before {}",
                rfc3339(not_before)
            )));
        }
        if now >= not_after {
            return Err(leaf_err(format!(
                "the client certificate has expired (notAfter {})",
                rfc3339(not_after)
            )));
        }
        let mut names = cert.subject().iter_common_name();
        let common_name = match (names.next(), names.next()) {
            (None, _) => None,
            (Some(cn), None) => Some(
                cn.as_str()
                    .map_err(|_| leaf_err("the client certificate's CN is not a text string"))?
                    .to_owned(),
            ),
            (Some(_), Some(_)) => {
                return Err(leaf_err(
                    "the client certificate's subject has more than one CN",
                ))
            }
        };
        let serial = cert.raw_serial();
        let start = serial
            .iter()
            .position(|b| *b != 0)
            .unwrap_or(serial.len().saturating_sub(1));
        Ok(ManufacturerLeaf {
            fingerprint: sha256_hex(leaf_der),
            serial_hex: hex::encode_upper(&serial[start..]),
            subject: printable_subject(&cert.subject().to_string()),
            common_name,
            not_before,
            not_after,
        })
    }
}

/// The signature algorithms of the CSR key policy.
fn supported_signature(oid: &x509_parser::oid_registry::Oid<'_>) -> bool {
    use x509_parser::oid_registry as oids;
    [
        oids::OID_SIG_ECDSA_WITH_SHA256,
        oids::OID_SIG_ECDSA_WITH_SHA384,
        oids::OID_SIG_ED25519,
        oids::OID_PKCS1_SHA256WITHRSA,
        oids::OID_PKCS1_SHA384WITHRSA,
        oids::OID_PKCS1_SHA512WITHRSA,
        oids::OID_PKCS1_RSASSAPSS,
    ]
    .iter()
    .any(|o| o == oid)
}

#[cfg(test)]
#[path = "manufacturer_tests.rs"]
mod tests;
