//! Enrollment and renewal over EST (RFC 7030) through `bulwark-client`.
//!
//! - **First enrollment** (`simpleenroll`) with an enrollment token (Bearer)
//!   or a factory claim certificate (mTLS). The CSR's common name is only a
//!   hint: the server decides the identity from the credential.
//! - **Renewal** (`simplereenroll`, mTLS with the current certificate) at two
//!   thirds of the certificate's lifetime ([`renew_due`]), **with a fresh
//!   key**: a compromised old key then stops being useful at the next
//!   renewal. The new key is written beside the current one
//!   (`device.key.next`), the new chain to `device.crt.next` (written to a
//!   temporary file, fsynced and renamed), then the key and the chain are
//!   renamed over the current ones. Until the last rename the old key and certificate stay in use,
//!   so service is never dropped; a crash anywhere in between is finished
//!   or undone at the next start ([`Enroller::load`]), by checking which
//!   certificate matches which key.
//! - The current identity is published on a `tokio::sync::watch`
//!   ([`run_renewal`]); the MQTT link builds its TLS configuration from it
//!   ([`Identity::client_config`]) at every (re)connection.
//!
//! The chain is stored as PEM, leaf first, in `<state_dir>/device.crt`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bulwark_client::Client;
use tokio::sync::watch;

use crate::config::{Config, EnrollmentConfig};
use crate::fsutil;
use crate::identity::parse_chain_pem;
pub use crate::identity::{load_roots, renew_at, renew_due, Identity};
use crate::keys::{DeviceKey, KeyStore, PLACEHOLDER_CN};
use crate::AgentError;

/// File name of the certificate chain (PEM, leaf first).
pub const CERT_FILE: &str = "device.crt";
/// File name of the chain received by a renewal not yet committed.
pub const NEXT_CERT_FILE: &str = "device.crt.next";
/// Enrolls the device and renews its certificate; owns the files in the
/// state directory.
#[derive(Debug, Clone)]
pub struct Enroller {
    api_url: String,
    ca_bundle: PathBuf,
    state_dir: PathBuf,
    keys: KeyStore,
    enrollment: EnrollmentConfig,
    device_id: Option<String>,
}

impl Enroller {
    /// An enroller for `config`, with keys from `keys`.
    pub fn new(config: &Config, keys: KeyStore) -> Result<Enroller, AgentError> {
        Ok(Enroller {
            api_url: config.server.api_url.clone(),
            ca_bundle: config.server.ca_bundle.clone(),
            state_dir: config.state_dir.clone(),
            keys,
            enrollment: config.enrollment.clone(),
            device_id: config.device_id.clone(),
        })
    }

    /// The CA bundle (PEM) the agent trusts, read from its file (it may
    /// be replaced while the agent runs).
    pub fn ca_pem(&self) -> Result<Vec<u8>, AgentError> {
        std::fs::read(&self.ca_bundle)
            .map_err(|e| AgentError::io("cannot read the CA bundle", &self.ca_bundle, e))
    }

    fn cert_path(&self) -> PathBuf {
        self.state_dir.join(CERT_FILE)
    }
    fn next_cert_path(&self) -> PathBuf {
        self.state_dir.join(NEXT_CERT_FILE)
    }

    fn client(&self) -> Result<Client, AgentError> {
        Client::new(&self.api_url, None, &self.ca_pem()?).map_err(AgentError::est("setup"))
    }

    fn check_device_id(&self, identity: &Identity) -> Result<(), AgentError> {
        match &self.device_id {
            Some(want) if want != identity.device_id() => Err(AgentError::Certificate(format!(
                "the certificate is for device {:?} but the configuration says device_id = {want:?}",
                identity.device_id()
            ))),
            _ => Ok(()),
        }
    }

    fn remove_if_exists(path: &std::path::Path) -> Result<(), AgentError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(AgentError::io("cannot remove", path, e)),
        }
    }

    fn read_next_cert(&self, key: &DeviceKey) -> Result<Option<Identity>, AgentError> {
        let path = self.next_cert_path();
        let Ok(bytes) = std::fs::read(&path) else {
            return Ok(None);
        };
        let Ok(certs) = parse_chain_pem(&bytes, &path) else {
            return Ok(None);
        };
        Ok(Identity::from_certs(key.clone(), certs).ok())
    }

    /// Finishes or undoes a renewal that a crash interrupted.
    fn recover(&self) -> Result<(), AgentError> {
        if let Some(next_key) = self.keys.load_next()? {
            if self.read_next_cert(&next_key)?.is_some() {
                self.keys.commit_next()?;
                fsutil::rename_durable(&self.next_cert_path(), &self.cert_path())?;
                tracing::info!("finished a renewal interrupted after the certificate was stored");
            } else {
                self.keys.discard_next()?;
                Self::remove_if_exists(&self.next_cert_path())?;
                tracing::info!("discarded an interrupted renewal");
            }
        } else if self.next_cert_path().exists() {
            let current = self.keys.load()?;
            let matches = match &current {
                Some(key) => self.read_next_cert(key)?.is_some(),
                None => false,
            };
            if matches {
                fsutil::rename_durable(&self.next_cert_path(), &self.cert_path())?;
                tracing::info!("finished a renewal interrupted after the key was swapped");
            } else {
                Self::remove_if_exists(&self.next_cert_path())?;
            }
        }
        Ok(())
    }

    /// The stored identity, if the device is enrolled. Finishes or undoes
    /// an interrupted renewal first; refuses a certificate that does not
    /// certify the device key.
    pub fn load(&self) -> Result<Option<Identity>, AgentError> {
        fsutil::ensure_private_dir(&self.state_dir)?;
        self.recover()?;
        let path = self.cert_path();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(AgentError::io("cannot read", path, e)),
        };
        let key = self.keys.load()?.ok_or_else(|| {
            AgentError::Certificate(format!(
                "{} exists but the device key does not; remove the certificate to enroll again",
                path.display()
            ))
        })?;
        let identity = Identity::from_certs(key, parse_chain_pem(&bytes, &path)?)?;
        self.check_device_id(&identity)?;
        Ok(Some(identity))
    }

    /// Stores `identity`'s chain atomically as the current certificate.
    fn store(&self, identity: &Identity) -> Result<(), AgentError> {
        fsutil::write_atomic(&self.cert_path(), identity.chain_pem().as_bytes(), 0o600)
    }

    /// First enrollment with the configured token or claim certificate.
    pub async fn enroll(&self) -> Result<Identity, AgentError> {
        let key = self.keys.load_or_create()?;
        let cn = self.device_id.as_deref().unwrap_or(PLACEHOLDER_CN);
        let csr = key.csr_der(cn)?;
        let e = &self.enrollment;
        let p7 = if let Some(token) = &e.token {
            let token = token.read("enrollment token")?;
            self.client()?
                .est_simpleenroll_bearer(&token, &csr)
                .await
                .map_err(AgentError::est("simpleenroll"))?
        } else if let (Some(cert), Some(key_path)) = (&e.claim_cert, &e.claim_key) {
            let cert_pem =
                std::fs::read(cert).map_err(|err| AgentError::io("cannot read", cert, err))?;
            let key_pem = zeroize::Zeroizing::new(fsutil::read_private(key_path, "claim key")?);
            self.client()?
                .with_identity(&cert_pem, &key_pem)
                .map_err(AgentError::est("simpleenroll"))?
                .est_simpleenroll_mtls(&csr)
                .await
                .map_err(AgentError::est("simpleenroll"))?
        } else {
            return Err(AgentError::Enrollment(
                "the device is not enrolled and no enrollment token or claim certificate is configured".into(),
            ));
        };
        let certs = bulwark_client::pkcs7_certs(&p7).map_err(AgentError::est("simpleenroll"))?;
        let identity = Identity::from_certs(key, certs)?;
        self.check_device_id(&identity)?;
        self.store(&identity)?;
        tracing::info!(device_id = identity.device_id(), "enrolled");
        Ok(identity)
    }

    /// The stored identity, or a new one from a first enrollment.
    pub async fn ensure_enrolled(&self) -> Result<Identity, AgentError> {
        match self.load()? {
            Some(identity) => Ok(identity),
            None => self.enroll().await,
        }
    }

    /// Renews `current` with a fresh key (`simplereenroll`). `current`
    /// stays valid and on disk until the new chain is stored.
    pub async fn renew(&self, current: &Identity) -> Result<Identity, AgentError> {
        let next = self.keys.create_next()?;
        let result = self.renew_with(current, next).await;
        if result.is_err() {
            // Nothing was swapped: the current key and certificate remain.
            self.keys.discard_next()?;
            Self::remove_if_exists(&self.next_cert_path())?;
        }
        result
    }

    async fn renew_with(
        &self,
        current: &Identity,
        next: DeviceKey,
    ) -> Result<Identity, AgentError> {
        let csr = next.csr_der(current.device_id())?;
        // The current key signs the TLS handshake through its backend (a
        // file key in memory, or the token for PKCS#11).
        let roots = Arc::new(load_roots(&self.ca_pem()?)?);
        let p7 = self
            .client()?
            .with_tls_config(current.client_config(roots)?)
            .map_err(AgentError::est("simplereenroll"))?
            .est_simplereenroll(&csr)
            .await
            .map_err(AgentError::est("simplereenroll"))?;
        let certs = bulwark_client::pkcs7_certs(&p7).map_err(AgentError::est("simplereenroll"))?;
        let renewed = Identity::from_certs(next, certs)?;
        if renewed.device_id() != current.device_id() {
            return Err(AgentError::Certificate(format!(
                "the renewed certificate names device {:?}, not {:?}",
                renewed.device_id(),
                current.device_id()
            )));
        }
        fsutil::write_atomic(
            &self.next_cert_path(),
            renewed.chain_pem().as_bytes(),
            0o600,
        )?;
        self.commit(renewed)
    }

    fn commit(&self, renewed: Identity) -> Result<Identity, AgentError> {
        self.keys.commit_next()?;
        fsutil::rename_durable(&self.next_cert_path(), &self.cert_path())?;
        tracing::info!(
            device_id = renewed.device_id(),
            "certificate renewed with a new key"
        );
        Ok(renewed)
    }
}

/// A jitter factor in `0.8..1.2`.
pub(crate) fn jitter() -> f64 {
    let mut b = [0u8; 2];
    let _ = aws_lc_rs::rand::fill(&mut b);
    0.8 + f64::from(u16::from_le_bytes(b)) / f64::from(u16::MAX) * 0.4
}

/// Renews the identity published on `tx` whenever it is due, forever;
/// the caller spawns it and aborts the task to stop it. A failed renewal
/// is retried with jittered exponential back-off (30 s doubling up to
/// 1 h) while the current certificate keeps being used.
pub async fn run_renewal(enroller: Enroller, tx: watch::Sender<Arc<Identity>>) {
    let mut backoff = Duration::from_secs(30);
    loop {
        let current = tx.borrow().clone();
        let wait = current
            .renew_at()
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        tokio::time::sleep(wait).await;
        match enroller.renew(&current).await {
            Ok(renewed) => {
                backoff = Duration::from_secs(30);
                tx.send_replace(Arc::new(renewed));
            }
            Err(e) => {
                tracing::warn!(error = %crate::report_chain(&e), retry_in = ?backoff, "certificate renewal failed");
                tokio::time::sleep(backoff.mul_f64(jitter())).await;
                backoff = (backoff * 2).min(Duration::from_secs(3600));
            }
        }
    }
}

#[cfg(test)]
#[path = "enroll_tests.rs"]
mod tests;
