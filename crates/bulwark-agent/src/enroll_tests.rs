//! Tests of certificate storage, renewal timing and crash recovery, with
//! certificates from a local rcgen CA (the EST exchange itself is tested
//! end to end in `bulwark-server/tests/agent_enroll.rs`).

use super::*;
use crate::identity::{pem, DEVICE_URN};
use std::time::UNIX_EPOCH;

struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    der: Vec<u8>,
}

fn ca() -> Ca {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test ca");
    let cert = params.self_signed(&key).unwrap();
    Ca {
        der: cert.der().to_vec(),
        issuer: rcgen::Issuer::new(params, key),
    }
}

fn issue(ca: &Ca, key: &DeviceKey, id: &str, nb: i64, na: i64) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, id);
    params.subject_alt_names = vec![rcgen::SanType::URI(
        format!("{DEVICE_URN}{id}").try_into().unwrap(),
    )];
    params.not_before = time::OffsetDateTime::from_unix_timestamp(nb).unwrap();
    params.not_after = time::OffsetDateTime::from_unix_timestamp(na).unwrap();
    let spki = SpkiOnly(key.spki_der());
    params.signed_by(&spki, &ca.issuer).unwrap().der().to_vec()
}

/// A public key given by its SPKI (rcgen wants the bare point).
struct SpkiOnly(Vec<u8>);
impl rcgen::PublicKeyData for SpkiOnly {
    fn der_bytes(&self) -> &[u8] {
        // P-256 SPKI = 26-byte header + 65-byte point.
        &self.0[26..]
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn enroller(dir: &std::path::Path, ca: &Ca) -> Enroller {
    let ca_bundle = dir.join("ca.pem");
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(&ca_bundle, pem("CERTIFICATE", &ca.der)).unwrap();
    Enroller {
        api_url: "https://127.0.0.1:1".to_owned(),
        ca_bundle,
        state_dir: dir.to_owned(),
        keys: KeyStore::File {
            dir: dir.to_owned(),
        },
        enrollment: EnrollmentConfig::default(),
        device_id: None,
    }
}

#[test]
fn renewal_is_due_at_two_thirds_of_the_lifetime() {
    let ca = ca();
    let key = DeviceKey::generate_p256().unwrap();
    let nb = 1_700_000_000;
    let der = issue(&ca, &key, "d1", nb, nb + 3000);
    let at = |s: i64| UNIX_EPOCH + Duration::from_secs(s as u64);
    assert!(!renew_due(&der, at(nb)).unwrap());
    assert!(!renew_due(&der, at(nb + 1999)).unwrap());
    assert!(renew_due(&der, at(nb + 2000)).unwrap());
    assert!(renew_due(&der, at(nb + 5000)).unwrap(), "expired is due");
    assert!(renew_due(b"junk", at(nb)).is_err());
}

#[test]
fn identity_finds_the_leaf_by_key_and_the_device_by_its_urn() {
    let ca = ca();
    let key = DeviceKey::generate_p256().unwrap();
    let leaf = issue(&ca, &key, "door-17", now() - 10, now() + 3600);
    let id = Identity::from_certs(key.clone(), vec![ca.der.clone(), leaf.clone()]).unwrap();
    assert_eq!(id.device_id(), "door-17");
    assert_eq!(id.leaf_der(), leaf.as_slice());
    assert_eq!(id.chain().len(), 2);
    assert!(id.chain_pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
    let other = DeviceKey::generate_p256().unwrap();
    let err = Identity::from_certs(other, vec![leaf]).unwrap_err();
    assert!(
        err.to_string().contains("certifies the device key"),
        "{err}"
    );
}

#[test]
fn client_config_presents_the_identity() {
    let ca = ca();
    let key = DeviceKey::generate_p256().unwrap();
    let leaf = issue(&ca, &key, "d1", now() - 10, now() + 3600);
    let id = Identity::from_certs(key, vec![leaf]).unwrap();
    let roots = load_roots(pem("CERTIFICATE", &ca.der).as_bytes()).unwrap();
    let config = id.client_config(Arc::new(roots)).unwrap();
    assert!(config.client_auth_cert_resolver.has_certs());
    assert!(load_roots(b"").is_err());
}

#[test]
fn stored_identity_is_loaded_and_checked_against_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let e = enroller(dir.path(), &ca);
    assert!(e.load().unwrap().is_none());
    let key = e.keys.load_or_create().unwrap();
    let leaf = issue(&ca, &key, "d1", now() - 10, now() + 3600);
    e.store(&Identity::from_certs(key, vec![leaf]).unwrap())
        .unwrap();
    assert_eq!(e.load().unwrap().unwrap().device_id(), "d1");

    let mut wrong_id = e.clone();
    wrong_id.device_id = Some("d2".to_owned());
    assert!(wrong_id
        .load()
        .unwrap_err()
        .to_string()
        .contains("device_id"));

    // A certificate for another key is refused.
    let other = DeviceKey::generate_p256().unwrap();
    let foreign = issue(&ca, &other, "d1", now() - 10, now() + 3600);
    std::fs::write(dir.path().join(CERT_FILE), pem("CERTIFICATE", &foreign)).unwrap();
    assert!(e.load().is_err());
}

/// Sets up an enrolled device with a pending renewal: returns the old and
/// new SPKI.
fn pending_renewal(e: &Enroller, ca: &Ca, write_next_cert: bool) -> (Vec<u8>, Vec<u8>) {
    let old = e.keys.load_or_create().unwrap();
    let leaf = issue(ca, &old, "d1", now() - 10, now() + 3600);
    e.store(&Identity::from_certs(old.clone(), vec![leaf]).unwrap())
        .unwrap();
    let next = e.keys.create_next().unwrap();
    if write_next_cert {
        let renewed = issue(ca, &next, "d1", now() - 10, now() + 7200);
        std::fs::write(e.next_cert_path(), pem("CERTIFICATE", &renewed)).unwrap();
    }
    (old.spki_der(), next.spki_der())
}

#[test]
fn crash_after_the_new_certificate_was_stored_finishes_the_renewal() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let e = enroller(dir.path(), &ca);
    let (_, new) = pending_renewal(&e, &ca, true);
    let id = e.load().unwrap().unwrap();
    assert_eq!(id.key().spki_der(), new);
    assert!(!e.next_cert_path().exists());
    assert!(e.keys.load_next().unwrap().is_none());
}

#[test]
fn crash_between_the_two_renames_finishes_the_renewal() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let e = enroller(dir.path(), &ca);
    let (_, new) = pending_renewal(&e, &ca, true);
    e.keys.commit_next().unwrap(); // the key is swapped, the chain is not
    let id = e.load().unwrap().unwrap();
    assert_eq!(id.key().spki_der(), new);
    assert!(!e.next_cert_path().exists());
}

#[test]
fn crash_before_the_new_certificate_keeps_the_old_identity() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let e = enroller(dir.path(), &ca);
    let (old, _) = pending_renewal(&e, &ca, false);
    let id = e.load().unwrap().unwrap();
    assert_eq!(id.key().spki_der(), old);
    assert!(e.keys.load_next().unwrap().is_none());
}

#[tokio::test]
async fn failed_renewal_keeps_the_current_identity_and_cleans_up() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let e = enroller(dir.path(), &ca); // the server at 127.0.0.1:1 does not answer
    let key = e.keys.load_or_create().unwrap();
    let leaf = issue(&ca, &key, "d1", now() - 10, now() + 3600);
    let current = Identity::from_certs(key.clone(), vec![leaf]).unwrap();
    e.store(&current).unwrap();
    let err = e.renew(&current).await.unwrap_err();
    assert!(
        matches!(
            err,
            AgentError::Est {
                op: "simplereenroll",
                ..
            }
        ),
        "{err}"
    );
    assert!(e.keys.load_next().unwrap().is_none());
    assert_eq!(e.load().unwrap().unwrap().key().spki_der(), key.spki_der());
}

#[tokio::test]
async fn enrolling_without_a_credential_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let ca = ca();
    let e = enroller(dir.path(), &ca);
    let err = e.ensure_enrolled().await.unwrap_err();
    assert!(
        err.to_string()
            .contains("no enrollment token or claim certificate"),
        "{err}"
    );
}

#[test]
fn jitter_stays_in_range() {
    for _ in 0..100 {
        let j = jitter();
        assert!((0.8..=1.2).contains(&j), "{j}");
    }
}
