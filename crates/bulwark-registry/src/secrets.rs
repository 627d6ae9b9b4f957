//! Bearer secrets: generated from the system CSPRNG, shown once, stored as
//! SHA-256 hashes. With 256 bits of entropy a plain hash is enough: there is
//! nothing to brute-force, so no password hash (and its CPU cost per
//! request) is needed.

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};

/// What a secret is for; visible in its prefix so a leaked secret is recognisable.
#[derive(Debug, Clone, Copy)]
pub enum SecretKind {
    /// `bwk_…`: an operator API token.
    Operator,
    /// `bwe_…`: a single-use enrollment token.
    Enrollment,
    /// `bws_…`: a service principal's password (stored as an Argon2id hash).
    Service,
}

/// A new random secret (256 bits) and a short random public id for it.
pub fn new_secret(kind: SecretKind) -> (String, String) {
    let rng = SystemRandom::new();
    let mut secret = [0u8; 32];
    let mut id = [0u8; 6];
    // The system RNG does not fail on supported platforms; if it ever did,
    // a zero secret would be catastrophic, so stop instead.
    rng.fill(&mut secret)
        .expect("system random number generator failed");
    rng.fill(&mut id)
        .expect("system random number generator failed");
    let prefix = match kind {
        SecretKind::Operator => "bwk_",
        SecretKind::Enrollment => "bwe_",
        SecretKind::Service => "bws_",
    };
    (
        format!("{prefix}{}", URL_SAFE_NO_PAD.encode(secret)),
        hex::encode(id),
    )
}

/// The stored form of a secret.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.trim().as_bytes()).into()
}

/// A random device id for enrollments that do not name one.
pub(crate) fn new_device_id() -> bulwark_types::DeviceId {
    let mut b = [0u8; 10];
    SystemRandom::new()
        .fill(&mut b)
        .expect("system random number generator failed");
    bulwark_types::DeviceId::new(format!("dev-{}", hex::encode(b)))
        .expect("generated device ids are valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_distinct_and_prefixed() {
        let (a, ia) = new_secret(SecretKind::Operator);
        let (b, ib) = new_secret(SecretKind::Operator);
        assert_ne!(a, b);
        assert_ne!(ia, ib);
        assert!(a.starts_with("bwk_"));
        assert!(a.len() >= 4 + 43);
        assert_ne!(hash_secret(&a), hash_secret(&b));
    }
}
