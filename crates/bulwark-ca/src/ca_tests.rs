//! Tests for CA initialization, the files it writes and reopening it.

use std::os::unix::fs::PermissionsExt;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};
use x509_parser::certificate::X509Certificate;

use super::*;
use crate::testutil::{openssl_ok, pass, TestCa};

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn init_writes_the_documented_layout() {
    let t = TestCa::new();
    let dir = t.tmp.path().join("ca");
    let root = pem::encode("CERTIFICATE", t.ca.root_der());
    let issuing = pem::encode("CERTIFICATE", t.ca.issuing_der());
    assert_eq!(read(&dir.join("root.pem")), root);
    assert_eq!(read(&dir.join("issuing.pem")), issuing);
    assert_eq!(read(&dir.join("chain.pem")), format!("{issuing}{root}"));
    assert_eq!(t.ca.chain_pem(), format!("{issuing}{root}"));
    assert_eq!(read(&Ca::bundle_path(t.tmp.path())), root);
    assert_eq!(t.ca.root_pem(), root);
    assert_eq!(
        read(&dir.join("audit.pub")),
        format!("{}\n", hex::encode(t.ca.audit_public_key()))
    );
    assert_eq!(mode(&dir.join("keys")), 0o700);
    for key in ["root", "issuing", "audit"] {
        assert_eq!(
            mode(&dir.join(format!("keys/{key}.key.enc"))),
            0o600,
            "{key}"
        );
    }
    assert!(Ca::is_initialized(t.tmp.path()));
    // The staging directory is gone.
    let entries: Vec<_> = std::fs::read_dir(t.tmp.path()).unwrap().collect();
    assert_eq!(entries.len(), 1);
}

#[test]
fn root_and_issuing_profiles() {
    let t = TestCa::new();
    let (_, root) = X509Certificate::from_der(t.ca.root_der()).unwrap();
    let (_, issuing) = X509Certificate::from_der(t.ca.issuing_der()).unwrap();
    for (cert, path_len, years) in [(&root, 1, 20), (&issuing, 0, 10)] {
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.critical && bc.value.ca);
        assert_eq!(bc.value.path_len_constraint, Some(path_len));
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
        let life =
            cert.validity().not_after.to_datetime() - cert.validity().not_before.to_datetime();
        assert!(life >= Duration::days(365 * years), "{life}");
        assert!(life < Duration::days(365 * years + 10), "{life}");
        assert_eq!(
            cert.public_key().algorithm.algorithm,
            x509_parser::oid_registry::OID_KEY_TYPE_EC_PUBLIC_KEY
        );
    }
    assert_eq!(issuing.issuer(), root.subject());
    assert_eq!(root.issuer(), root.subject());

    let root_pem = t.file("r.pem", t.ca.root_pem().as_bytes());
    let issuing_pem = t.file(
        "i.pem",
        pem::encode("CERTIFICATE", t.ca.issuing_der()).as_bytes(),
    );
    let out = openssl_ok(&["verify", "-CAfile", &root_pem, &issuing_pem]);
    assert!(out.contains("i.pem: OK"), "{out}");
}

#[test]
fn reopen_gives_the_same_ca() {
    let t = TestCa::new();
    let ca = Ca::open(t.tmp.path(), &pass(), CaOptions::default()).unwrap();
    assert_eq!(ca.root_der(), t.ca.root_der());
    assert_eq!(ca.issuing_der(), t.ca.issuing_der());
    assert_eq!(ca.audit_public_key(), t.ca.audit_public_key());
    assert_eq!(ca.audit_key_pkcs8(), t.ca.audit_key_pkcs8());
    assert_eq!(ca.issuing_ski, t.ca.issuing_ski);
    assert_eq!(ca.device_lifetime(), Duration::days(30));
    assert_eq!(ca.organization(), "Bulwark");

    // The audit key signs and its public key verifies.
    let pair = Ed25519KeyPair::from_pkcs8(ca.audit_key_pkcs8()).unwrap();
    assert_eq!(pair.public_key().as_ref(), ca.audit_public_key());
    let sig = pair.sign(b"audit record");
    UnparsedPublicKey::new(&ED25519, ca.audit_public_key())
        .verify(b"audit record", sig.as_ref())
        .unwrap();
}

#[test]
fn init_refuses_an_initialized_dir_and_open_needs_one() {
    let t = TestCa::new();
    let err = Ca::init(
        t.tmp.path(),
        &pass(),
        KdfParams::fast_for_tests(),
        CaOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, CaError::AlreadyInitialized { .. }), "{err:?}");

    let empty = tempfile::tempdir().unwrap();
    assert!(!Ca::is_initialized(empty.path()));
    let err = Ca::open(empty.path(), &pass(), CaOptions::default()).unwrap_err();
    assert!(matches!(err, CaError::NotInitialized { .. }), "{err:?}");

    let wrong = Passphrase::new("not the passphrase".into()).unwrap();
    let err = Ca::open(t.tmp.path(), &wrong, CaOptions::default()).unwrap_err();
    assert!(matches!(err, CaError::WrongPassphrase { .. }), "{err:?}");
}

#[test]
fn open_detects_swapped_material() {
    let t = TestCa::new();
    let dir = t.tmp.path().join("ca");
    let issuing = read(&dir.join("issuing.pem"));
    std::fs::write(dir.join("issuing.pem"), read(&dir.join("root.pem"))).unwrap();
    let err = Ca::open(t.tmp.path(), &pass(), CaOptions::default()).unwrap_err();
    assert!(
        matches!(&err, CaError::Inconsistent { detail, .. } if detail.contains("issuing key")),
        "{err:?}"
    );
    std::fs::write(dir.join("issuing.pem"), issuing).unwrap();
    std::fs::write(dir.join("audit.pub"), format!("{}\n", "00".repeat(32))).unwrap();
    let err = Ca::open(t.tmp.path(), &pass(), CaOptions::default()).unwrap_err();
    assert!(matches!(err, CaError::Inconsistent { .. }), "{err:?}");
}

#[test]
fn options_are_validated() {
    let tmp = tempfile::tempdir().unwrap();
    for opts in [
        CaOptions {
            organization: " ".into(),
            ..CaOptions::default()
        },
        CaOptions {
            organization: "a\nb".into(),
            ..CaOptions::default()
        },
        CaOptions {
            device_lifetime: Duration::ZERO,
            ..CaOptions::default()
        },
    ] {
        let res = Ca::init(
            tmp.path(),
            &pass(),
            KdfParams::fast_for_tests(),
            opts.clone(),
        );
        assert!(res.is_err(), "{opts:?}");
    }
    assert!(!Ca::is_initialized(tmp.path()));
}

#[test]
fn debug_output_hides_secrets() {
    let t = TestCa::new();
    let debug = format!("{:?}", t.ca);
    let audit_secret = hex::encode(t.ca.audit_key_pkcs8());
    // Every 8-byte window of the secret key, as hex, must be absent.
    for window in audit_secret.as_bytes().chunks(16) {
        let w = std::str::from_utf8(window).unwrap();
        if w.len() == 16 && !hex::encode(t.ca.audit_public_key()).contains(w) {
            assert!(!debug.contains(w), "{debug}");
        }
    }
    let issuing_secret = hex::encode(t.ca.issuer.key().pkcs8_der());
    assert!(!debug.contains(&issuing_secret[issuing_secret.len() - 64..]));
    assert!(!debug.contains("correct horse"));
    assert!(debug.contains("***"));
}
