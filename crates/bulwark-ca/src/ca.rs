//! The certificate authority: a two-level PKI created once and reopened on start.
//!
//! ```text
//! <data_dir>/ca/
//!   root.pem        root CA certificate (ECDSA P-256, 20 years, pathlen 1)
//!   issuing.pem     issuing CA certificate (P-256, 10 years, pathlen 0), signed by the root
//!   chain.pem       issuing then root
//!   ca-bundle.pem   root only: what clients trust
//!   audit.pub       the Ed25519 audit public key, hex, one line
//!   keys/           Keystore: root, issuing and audit keys, PKCS#8, sealed
//! ```
//!
//! [`Ca::init`] builds everything in a staging directory and renames it into
//! place, so a crash never leaves a half-initialized CA. [`Ca::open`] loads
//! only the issuing and audit keys; the root key stays sealed on disk.
//! Issuance and CRLs live in `issue.rs`.

use std::fmt;
use std::path::{Path, PathBuf};

use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyUsagePurpose,
    PublicKeyData, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use zeroize::Zeroizing;

use crate::signer::CaKey;
use crate::{fsutil, pem, random_serial, CaError, KdfParams, Keystore, Passphrase};

const ROOT_PEM: &str = "root.pem";
const ISSUING_PEM: &str = "issuing.pem";
const CHAIN_PEM: &str = "chain.pem";
const BUNDLE_PEM: &str = "ca-bundle.pem";
const AUDIT_PUB: &str = "audit.pub";
const KEYS_DIR: &str = "keys";
const ROOT_KEY: &str = "root";
const ISSUING_KEY: &str = "issuing";
const AUDIT_KEY: &str = "audit";

const ROOT_LIFETIME: Duration = Duration::days(20 * 365 + 5);
const ISSUING_LIFETIME: Duration = Duration::days(10 * 365 + 3);
/// Backdating of `notBefore`, to tolerate clients whose clocks run a little slow.
pub(crate) const BACKDATE: Duration = Duration::seconds(60);
/// X.520 upper bound for an organization name.
const MAX_ORGANIZATION_LEN: usize = 64;

/// Settings that shape the certificates the CA issues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaOptions {
    /// The `O=` of every certificate's subject. Default `"Bulwark"`.
    pub organization: String,
    /// Default lifetime of device certificates. Default 30 days.
    pub device_lifetime: Duration,
}

impl Default for CaOptions {
    fn default() -> Self {
        Self {
            organization: "Bulwark".into(),
            device_lifetime: Duration::days(30),
        }
    }
}

impl CaOptions {
    fn validate(&self) -> Result<(), CaError> {
        let org = &self.organization;
        if org.trim().is_empty() || org.chars().count() > MAX_ORGANIZATION_LEN {
            return Err(CaError::invalid_name(format!(
                "organization must be 1-{MAX_ORGANIZATION_LEN} characters"
            )));
        }
        if org.chars().any(char::is_control) {
            return Err(CaError::invalid_name(
                "organization must not contain control characters",
            ));
        }
        if !self.device_lifetime.is_positive() {
            return Err(CaError::InvalidLifetime {
                detail: "device lifetime must be positive".into(),
            });
        }
        Ok(())
    }
}

/// An opened certificate authority, ready to issue.
///
/// Holds the root and issuing certificates, the issuing signing key and the
/// audit key. Its `Debug` output never contains key material.
pub struct Ca {
    pub(crate) dir: PathBuf,
    pub(crate) opts: CaOptions,
    root_der: Vec<u8>,
    issuing_der: Vec<u8>,
    pub(crate) issuer: Issuer<'static, CaKey>,
    pub(crate) issuing_ski: Vec<u8>,
    pub(crate) issuing_not_after: OffsetDateTime,
    audit_pkcs8: Zeroizing<Vec<u8>>,
    audit_public: [u8; 32],
    keystore: Keystore,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .field("organization", &self.opts.organization)
            .field("device_lifetime", &self.opts.device_lifetime)
            .field("issuing_not_after", &self.issuing_not_after)
            .field("audit_public_key", &hex::encode(self.audit_public))
            .field("keys", &"***")
            .finish()
    }
}

impl Ca {
    /// Generates the root CA (ECDSA P-256, 20 years, pathlen 1, keyCertSign
    /// and cRLSign), the issuing CA (P-256, 10 years, pathlen 0, signed by the
    /// root) and an Ed25519 audit key, and writes them under `<data_dir>/ca/`.
    /// Refuses if the CA is already initialized.
    pub fn init(
        data_dir: &Path,
        pass: &Passphrase,
        kdf: KdfParams,
        opts: CaOptions,
    ) -> Result<Ca, CaError> {
        opts.validate()?;
        let dir = ca_dir(data_dir);
        if Self::is_initialized(data_dir) || dir_has_entries(&dir)? {
            return Err(CaError::AlreadyInitialized { path: dir });
        }
        std::fs::create_dir_all(data_dir)
            .map_err(|e| CaError::io("create directory", data_dir, e))?;

        let now = now_utc();
        let root_key = CaKey::generate()?;
        let mut root = ca_params(&format!("{} Root CA", opts.organization), &opts, 1);
        root.not_before = now - BACKDATE;
        root.not_after = now + ROOT_LIFETIME;
        let root_der = root.self_signed(&root_key)?.der().to_vec();

        let issuing_key = CaKey::generate()?;
        let mut issuing = ca_params(&format!("{} Issuing CA", opts.organization), &opts, 0);
        issuing.not_before = now - BACKDATE;
        issuing.not_after = now + ISSUING_LIFETIME;
        issuing.use_authority_key_identifier_extension = true;
        let issuing_der = issuing
            .signed_by(&issuing_key, &Issuer::from_params(&root, &root_key))?
            .der()
            .to_vec();

        let rng = aws_lc_rs::rand::SystemRandom::new();
        let audit_doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| CaError::Crypto {
            detail: "ed25519 key generation",
        })?;
        let audit_pkcs8 = Zeroizing::new(audit_doc.as_ref().to_vec());
        let audit_public = audit_public_key(&audit_pkcs8, &dir)?;

        let staging = data_dir.join(format!(".ca-init-{}", random_serial().to_hex()));
        let written = write_ca_dir(
            &staging,
            pass,
            kdf,
            &root_der,
            &issuing_der,
            &[
                (ROOT_KEY, root_key.pkcs8_der()),
                (ISSUING_KEY, issuing_key.pkcs8_der()),
                (AUDIT_KEY, &audit_pkcs8),
            ],
            &audit_public,
        )
        .and_then(|keystore| {
            std::fs::rename(&staging, &dir).map_err(|e| {
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::DirectoryNotEmpty | std::io::ErrorKind::AlreadyExists
                ) {
                    // Someone initialized the CA concurrently.
                    CaError::AlreadyInitialized { path: dir.clone() }
                } else {
                    CaError::io("move into place", &dir, e)
                }
            })?;
            Ok(keystore.moved_to(dir.join(KEYS_DIR)))
        });
        let keystore = match written {
            Ok(k) => k,
            Err(e) => {
                // Best effort; the staging directory holds nothing usable.
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        fsutil::sync_dir(data_dir)?;
        Self::assemble(
            dir,
            opts,
            root_der,
            issuing_der,
            issuing_key,
            audit_pkcs8,
            keystore,
        )
    }

    /// Opens an initialized CA: loads the issuing and audit keys and checks
    /// that they match `issuing.pem` and `audit.pub`, and that `issuing.pem`
    /// is signed by `root.pem`.
    pub fn open(data_dir: &Path, pass: &Passphrase, opts: CaOptions) -> Result<Ca, CaError> {
        opts.validate()?;
        let dir = ca_dir(data_dir);
        if !Self::is_initialized(data_dir) {
            return Err(CaError::NotInitialized { path: dir });
        }
        let root_der = read_cert_pem(&dir.join(ROOT_PEM))?;
        let issuing_der = read_cert_pem(&dir.join(ISSUING_PEM))?;
        let keystore = Keystore::open(&dir.join(KEYS_DIR), pass)?;
        let issuing_key = CaKey::from_pkcs8(&keystore.load(ISSUING_KEY)?)?;
        let audit_pkcs8 = keystore.load(AUDIT_KEY)?;
        let audit_public = audit_public_key(&audit_pkcs8, &dir)?;
        let on_disk = String::from_utf8_lossy(&fsutil::read(&dir.join(AUDIT_PUB))?)
            .trim()
            .to_owned();
        if on_disk != hex::encode(audit_public) {
            return Err(inconsistent(&dir, "audit key does not match audit.pub"));
        }
        Self::assemble(
            dir,
            opts,
            root_der,
            issuing_der,
            issuing_key,
            audit_pkcs8,
            keystore,
        )
    }

    /// Whether `<data_dir>/ca` holds an initialized CA.
    pub fn is_initialized(data_dir: &Path) -> bool {
        let dir = ca_dir(data_dir);
        dir.join(ISSUING_PEM).is_file() && dir.join(KEYS_DIR).is_dir()
    }

    /// Where the trust bundle (root certificate only) lives.
    pub fn bundle_path(data_dir: &Path) -> PathBuf {
        ca_dir(data_dir).join(BUNDLE_PEM)
    }

    /// The root CA certificate, DER.
    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// The issuing CA certificate, DER.
    pub fn issuing_der(&self) -> &[u8] {
        &self.issuing_der
    }

    /// The root CA certificate, PEM.
    pub fn root_pem(&self) -> String {
        pem::encode("CERTIFICATE", &self.root_der)
    }

    /// The issuing then the root certificate, PEM.
    pub fn chain_pem(&self) -> String {
        chain_pem(&self.issuing_der, &self.root_der)
    }

    /// The default lifetime for device certificates.
    pub fn device_lifetime(&self) -> Duration {
        self.opts.device_lifetime
    }

    /// The organization written into issued subjects.
    pub fn organization(&self) -> &str {
        &self.opts.organization
    }

    /// PKCS#8 DER of the Ed25519 audit signing key; build an
    /// `aws_lc_rs::signature::Ed25519KeyPair` from it.
    /// The CA's key store, unlocked: other components seal their own
    /// secrets in it under their own names (the OTA repository's online
    /// signing keys), encrypted at rest like the CA keys.
    pub fn keystore(&self) -> &Keystore {
        &self.keystore
    }

    pub fn audit_key_pkcs8(&self) -> &[u8] {
        &self.audit_pkcs8
    }

    /// The raw 32-byte Ed25519 audit public key.
    pub fn audit_public_key(&self) -> [u8; 32] {
        self.audit_public
    }

    fn assemble(
        dir: PathBuf,
        opts: CaOptions,
        root_der: Vec<u8>,
        issuing_der: Vec<u8>,
        issuing_key: CaKey,
        audit_pkcs8: Zeroizing<Vec<u8>>,
        keystore: Keystore,
    ) -> Result<Ca, CaError> {
        let audit_public = audit_public_key(&audit_pkcs8, &dir)?;
        let (issuing_ski, issuing_not_after) = {
            let root = parse_cert(&root_der, &dir, ROOT_PEM)?;
            let issuing = parse_cert(&issuing_der, &dir, ISSUING_PEM)?;
            if issuing.public_key().raw != issuing_key.subject_public_key_info().as_slice() {
                return Err(inconsistent(&dir, "issuing key does not match issuing.pem"));
            }
            if !issuing.is_ca() {
                return Err(inconsistent(&dir, "issuing.pem is not a ca certificate"));
            }
            UnparsedPublicKey::new(
                &signature::ECDSA_P256_SHA256_ASN1,
                &root.public_key().subject_public_key.data,
            )
            .verify(
                issuing.tbs_certificate.as_ref(),
                &issuing.signature_value.data,
            )
            .map_err(|_| inconsistent(&dir, "issuing.pem is not signed by root.pem"))?;
            let ski = issuing
                .extensions()
                .iter()
                .find_map(|ext| match ext.parsed_extension() {
                    ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                    _ => None,
                })
                .ok_or_else(|| inconsistent(&dir, "issuing.pem has no subject key identifier"))?;
            (ski, issuing.validity().not_after.to_datetime())
        };
        let issuer =
            Issuer::from_ca_cert_der(&CertificateDer::from(issuing_der.as_slice()), issuing_key)?;
        Ok(Ca {
            dir,
            opts,
            root_der,
            issuing_der,
            issuer,
            issuing_ski,
            issuing_not_after,
            audit_pkcs8,
            audit_public,
            keystore,
        })
    }
}

/// `<data_dir>/ca`.
fn ca_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("ca")
}

fn dir_has_entries(dir: &Path) -> Result<bool, CaError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(CaError::io("read directory", dir, e)),
    }
}

/// The current time, truncated to whole seconds as certificates encode it.
pub(crate) fn now_utc() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now - Duration::nanoseconds(i64::from(now.nanosecond()))
}

fn ca_params(common_name: &str, opts: &CaOptions, path_len: u8) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, opts.organization.as_str());
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(SerialNumber::from_slice(random_serial().as_bytes()));
    params
}

#[allow(clippy::too_many_arguments)]
fn write_ca_dir(
    dir: &Path,
    pass: &Passphrase,
    kdf: KdfParams,
    root_der: &[u8],
    issuing_der: &[u8],
    keys: &[(&str, &[u8])],
    audit_public: &[u8; 32],
) -> Result<Keystore, CaError> {
    fsutil::create_dir(dir, 0o755)?;
    let keystore = Keystore::create(&dir.join(KEYS_DIR), pass, kdf)?;
    for (name, der) in keys {
        keystore.store(name, der)?;
    }
    let root_pem = pem::encode("CERTIFICATE", root_der);
    let files = [
        (ROOT_PEM, root_pem.clone()),
        (ISSUING_PEM, pem::encode("CERTIFICATE", issuing_der)),
        (CHAIN_PEM, chain_pem(issuing_der, root_der)),
        (BUNDLE_PEM, root_pem),
        (AUDIT_PUB, format!("{}\n", hex::encode(audit_public))),
    ];
    for (name, contents) in files {
        fsutil::write_atomic(&dir.join(name), contents.as_bytes(), fsutil::PUBLIC_FILE)?;
    }
    Ok(keystore)
}

fn chain_pem(issuing_der: &[u8], root_der: &[u8]) -> String {
    let mut out = pem::encode("CERTIFICATE", issuing_der);
    out.push_str(&pem::encode("CERTIFICATE", root_der));
    out
}

fn read_cert_pem(path: &Path) -> Result<Vec<u8>, CaError> {
    let text = fsutil::read(path)?;
    let text = String::from_utf8_lossy(&text);
    let mut blocks = pem::decode_all(&text)?
        .into_iter()
        .filter(|b| b.label == "CERTIFICATE");
    match (blocks.next(), blocks.next()) {
        (Some(block), None) => Ok(block.der),
        _ => Err(CaError::Inconsistent {
            path: path.into(),
            detail: "expected exactly one CERTIFICATE block".into(),
        }),
    }
}

fn parse_cert<'a>(der: &'a [u8], dir: &Path, name: &str) -> Result<X509Certificate<'a>, CaError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        _ => Err(inconsistent(
            dir,
            &format!("{name} is not a valid certificate"),
        )),
    }
}

fn audit_public_key(pkcs8: &[u8], dir: &Path) -> Result<[u8; 32], CaError> {
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8)
        .map_err(|_| inconsistent(dir, "audit key is not an ed25519 pkcs#8 key"))?;
    pair.public_key()
        .as_ref()
        .try_into()
        .map_err(|_| inconsistent(dir, "audit public key is not 32 bytes"))
}

fn inconsistent(dir: &Path, detail: &str) -> CaError {
    CaError::Inconsistent {
        path: dir.into(),
        detail: detail.into(),
    }
}

#[cfg(test)]
#[path = "ca_tests.rs"]
mod tests;
