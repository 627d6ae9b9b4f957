//! The Bulwark device agent: runs on Linux-class devices and gateways.
//!
//! - [`config`]: the TOML configuration, validated before anything starts;
//! - [`keys`]: the device key, generated on the device (a 0600 file, or a
//!   PKCS#11 token with the `pkcs11` feature), and its CSRs;
//! - [`enroll`]: EST enrollment and renewal at two thirds of the
//!   certificate's lifetime with a fresh key, the current [`identity::Identity`]
//!   published on a `watch` for the MQTT link;
//! - [`posture`]: inventory and posture (sockets, connections, processes
//!   from `/proc`) as JSON-serializable reports;
//! - [`slots`]: A/B slots behind the [`slots::Slots`] trait (a directory
//!   implementation and a command-hook one for real bootloaders);
//! - [`update`]: the device-side install state machine for an artifact the
//!   verifier has already checked, with health check, confirm or rollback,
//!   and the anti-rollback floor;
//! - [`link`]: the mTLS MQTT link (reconnection, bounded queue);
//! - [`report`]: the topics and JSON the agent publishes, the
//!   [`update::Reporter`] over MQTT and [`report::FanOut`] (every step to
//!   several reporters);
//! - [`https_report`]: the step reports for the server's rollout engine,
//!   over mTLS HTTPS, queued ([`report_queue`]), ordered, retried and
//!   persisted in the state directory;
//! - [`ota`]: update instructions, the TUF check and verified download;
//! - [`agent`]: `bulwark-agent run` with an identity: link, reports,
//!   instructions, the boot path and the (in-process, for directory slots)
//!   reboot.
//!
//! One error type, [`AgentError`], for the whole library.

pub mod agent;
mod command;
pub mod config;
pub mod enroll;
mod error;
mod fsutil;
pub mod https_report;
pub mod identity;
pub mod keys;
pub mod link;
pub mod ota;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
pub mod posture;
pub mod report;
pub mod report_queue;
pub mod slots;
pub mod update;

pub use error::AgentError;

/// SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(data).into()
}

/// `err` and its sources, joined with ": " (for logs and the CLI).
pub fn report_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Verifies an ECDSA P-256 SHA-256 DER signature with a DER SPKI (tests).
#[cfg(test)]
pub(crate) fn verify_p256(spki_der: &[u8], msg: &[u8], sig: &[u8]) -> Result<(), String> {
    use x509_parser::prelude::FromDer as _;
    let (_, spki) =
        x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| e.to_string())?;
    aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1,
        &spki.subject_public_key.data[..],
    )
    .verify(msg, sig)
    .map_err(|_| "signature does not verify".to_owned())
}
