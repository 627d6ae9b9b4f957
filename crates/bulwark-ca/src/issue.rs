//! Issuing end-entity certificates and CRLs from an opened [`Ca`].
//!
//! Client certificates take only the public key from the CSR. Subject,
//! SANs and extensions are always the CA's own choice:
//!
//! ```text
//! subject           CN=<id>, O=<organization>
//! subjectAltName    URI urn:bulwark:{device|claim|service}:<id>
//! basicConstraints  critical, CA:FALSE
//! keyUsage          critical, digitalSignature
//! extKeyUsage       clientAuth
//! SKI, AKI          present
//! ```

use std::net::IpAddr;

use bulwark_types::{CertSerial, DeviceId, RevocationReason};
use rcgen::{
    CertificateParams, CertificateRevocationListParams, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyUsagePurpose, RevokedCertParams, SanType,
    SerialNumber,
};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::ca::{now_utc, BACKDATE};
use crate::signer::CaKey;
use crate::{pem, random_serial, Ca, CaError, VerifiedCsr};

/// Lifetime of server certificates from [`Ca::issue_server`].
pub const SERVER_CERT_LIFETIME: Duration = Duration::days(90);

/// Who a client certificate is for. Each kind gets its own SAN URI namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// An enrolled device.
    Device(DeviceId),
    /// A device proving possession of a one-time claim during enrollment.
    /// Must be a valid identifier by [`DeviceId`]'s rules.
    Claim(String),
    /// An internal service. Must be a valid identifier by [`DeviceId`]'s rules.
    Service(String),
}

impl Subject {
    /// A claim subject, validated.
    pub fn claim(id: impl Into<String>) -> Result<Self, CaError> {
        let s = Self::Claim(id.into());
        s.validate()?;
        Ok(s)
    }

    /// A service subject, validated.
    pub fn service(name: impl Into<String>) -> Result<Self, CaError> {
        let s = Self::Service(name.into());
        s.validate()?;
        Ok(s)
    }

    /// The identifier: the certificate's CN.
    pub fn id(&self) -> &str {
        match self {
            Self::Device(id) => id.as_str(),
            Self::Claim(s) | Self::Service(s) => s,
        }
    }

    /// `device`, `claim` or `service`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Device(_) => "device",
            Self::Claim(_) => "claim",
            Self::Service(_) => "service",
        }
    }

    /// The SAN URI, e.g. `urn:bulwark:device:sensor-01`.
    pub fn san_uri(&self) -> String {
        format!("urn:bulwark:{}:{}", self.kind(), self.id())
    }

    fn validate(&self) -> Result<(), CaError> {
        match self {
            Self::Device(_) => Ok(()),
            Self::Claim(s) | Self::Service(s) => DeviceId::new(s.as_str())
                .map(drop)
                .map_err(|e| CaError::invalid_name(format!("{} subject: {e}", self.kind()))),
        }
    }
}

/// A freshly issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCert {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Its serial number.
    pub serial: CertSerial,
    /// Start of validity (whole seconds, as encoded).
    pub not_before: OffsetDateTime,
    /// End of validity (whole seconds, as encoded).
    pub not_after: OffsetDateTime,
}

impl IssuedCert {
    /// The certificate, PEM.
    pub fn pem(&self) -> String {
        pem::encode("CERTIFICATE", &self.der)
    }

    /// SHA-256 of the DER, lower-case hex without separators.
    pub fn sha256_fingerprint(&self) -> String {
        hex::encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            &self.der,
        ))
    }
}

/// One entry of a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Serial of the revoked certificate.
    pub serial: CertSerial,
    /// When the CA processed the revocation.
    pub revoked_at: OffsetDateTime,
    /// Why. `Unspecified` is encoded by omitting the reason code (RFC 5280 §5.3.1).
    pub reason: RevocationReason,
}

impl Ca {
    /// Issues a client certificate for `subject` to the public key of an
    /// already verified CSR. The CSR's own subject, SANs and extensions are
    /// ignored (see the module docs for what is issued). Validity runs from
    /// now − 60 s to now + `lifetime`, which must not outlive the issuing CA.
    pub fn issue_client(
        &self,
        csr: &VerifiedCsr,
        subject: &Subject,
        serial: &CertSerial,
        lifetime: Duration,
    ) -> Result<IssuedCert, CaError> {
        subject.validate()?;
        let (not_before, not_after) = self.validity(lifetime)?;
        let mut params = self.leaf_params(subject.id(), serial, not_before, not_after);
        params.subject_alt_names = vec![SanType::URI(subject.san_uri().try_into()?)];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = rcgen::SubjectPublicKeyInfo::from_der(csr.spki_der())?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            der: cert.der().to_vec(),
            serial: serial.clone(),
            not_before,
            not_after,
        })
    }

    /// Issues a TLS server certificate (extKeyUsage serverAuth) for a P-256
    /// key generated here. Each name becomes an IP SAN if it parses as an IP
    /// address, else a DNS SAN; the first name is also the CN. Valid for
    /// [`SERVER_CERT_LIFETIME`]. Returns the certificate DER and the PKCS#8
    /// DER of the new private key.
    pub fn issue_server(&self, names: &[String]) -> Result<(Vec<u8>, Zeroizing<Vec<u8>>), CaError> {
        let first = names
            .first()
            .ok_or_else(|| CaError::invalid_name("a server certificate needs at least one name"))?;
        let mut sans = Vec::with_capacity(names.len());
        for name in names {
            sans.push(server_san(name)?);
        }
        let (not_before, not_after) = self.validity(SERVER_CERT_LIFETIME)?;
        let serial = random_serial();
        let mut params = self.leaf_params(first, &serial, not_before, not_after);
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = CaKey::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok((
            cert.der().to_vec(),
            Zeroizing::new(key.pkcs8_der().to_vec()),
        ))
    }

    /// A CRL signed by the issuing CA with the given CRL number, thisUpdate
    /// now, nextUpdate now + `next_update`, and one entry per revoked
    /// certificate (serial, revocation date, CRLReason). DER.
    pub fn crl(
        &self,
        crl_number: u64,
        entries: &[RevokedEntry],
        next_update: Duration,
    ) -> Result<Vec<u8>, CaError> {
        if !next_update.is_positive() {
            return Err(CaError::InvalidLifetime {
                detail: "crl next update must be in the future".into(),
            });
        }
        let this_update = now_utc();
        let params = CertificateRevocationListParams {
            this_update,
            next_update: this_update + next_update,
            crl_number: SerialNumber::from_slice(&crl_number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs: entries
                .iter()
                .map(|e| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(e.serial.as_bytes()),
                    revocation_time: e.revoked_at,
                    reason_code: Some(crl_reason(e.reason)),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::PreSpecified(self.issuing_ski.clone()),
        };
        Ok(params.signed_by(&self.issuer)?.der().to_vec())
    }

    fn validity(&self, lifetime: Duration) -> Result<(OffsetDateTime, OffsetDateTime), CaError> {
        if !lifetime.is_positive() {
            return Err(CaError::InvalidLifetime {
                detail: "certificate lifetime must be positive".into(),
            });
        }
        let now = now_utc();
        let not_after = now
            .checked_add(lifetime)
            .filter(|t| *t <= self.issuing_not_after)
            .ok_or_else(|| CaError::InvalidLifetime {
                detail: format!(
                    "certificate would outlive the issuing ca, which expires {}",
                    self.issuing_not_after
                ),
            })?;
        Ok((now - BACKDATE, not_after))
    }

    fn leaf_params(
        &self,
        common_name: &str,
        serial: &CertSerial,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> CertificateParams {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, self.opts.organization.as_str());
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(SerialNumber::from_slice(serial.as_bytes()));
        params.not_before = not_before;
        params.not_after = not_after;
        params
    }
}

fn server_san(name: &str) -> Result<SanType, CaError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    let valid = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !valid {
        return Err(CaError::invalid_name(format!(
            "{name:?} is neither an ip address nor a dns name"
        )));
    }
    Ok(SanType::DnsName(name.try_into()?))
}

fn crl_reason(reason: RevocationReason) -> rcgen::RevocationReason {
    use rcgen::RevocationReason as R;
    match reason {
        RevocationReason::Unspecified => R::Unspecified,
        RevocationReason::KeyCompromise => R::KeyCompromise,
        RevocationReason::CaCompromise => R::CaCompromise,
        RevocationReason::AffiliationChanged => R::AffiliationChanged,
        RevocationReason::Superseded => R::Superseded,
        RevocationReason::CessationOfOperation => R::CessationOfOperation,
        RevocationReason::CertificateHold => R::CertificateHold,
        RevocationReason::PrivilegeWithdrawn => R::PrivilegeWithdrawn,
    }
}

#[cfg(test)]
#[path = "issue_tests.rs"]
mod tests;
