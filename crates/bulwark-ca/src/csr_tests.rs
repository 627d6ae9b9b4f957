//! Tests for CSR verification and serial generation, with real keys from
//! rcgen and from the `openssl` command-line tool.

use std::collections::HashSet;

use rcgen::{PublicKeyData, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519};

use super::*;
use crate::testutil::{openssl_csr, openssl_ok, rcgen_csr};

fn check_kind(der: &[u8], expect: KeyKind) {
    let csr = verify_csr(der).unwrap_or_else(|e| panic!("{expect} csr refused: {e}"));
    assert_eq!(csr.key_kind(), expect);
    assert_eq!(csr.requested_subject(), "CN=x");
}

fn check_err(der: &[u8], expect: fn(&CaError) -> bool, what: &str) {
    match verify_csr(der) {
        Ok(csr) => panic!("{what}: accepted as {}", csr.key_kind()),
        Err(e) => assert!(expect(&e), "{what}: wrong error {e:?}"),
    }
}

#[test]
fn accepts_ec_and_ed25519_from_rcgen() {
    check_kind(&rcgen_csr(&PKCS_ECDSA_P256_SHA256), KeyKind::EcP256);
    check_kind(&rcgen_csr(&PKCS_ECDSA_P384_SHA384), KeyKind::EcP384);
    check_kind(&rcgen_csr(&PKCS_ED25519), KeyKind::Ed25519);
}

#[test]
fn spki_is_the_requesters_key() {
    let key = rcgen::KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let der = rcgen::CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec();
    let csr = verify_csr(&der).unwrap();
    assert_eq!(csr.spki_der(), key.subject_public_key_info().as_slice());
}

#[test]
fn rsa_2048_accepted_1024_weak() {
    let tmp = tempfile::tempdir().unwrap();
    check_kind(
        &openssl_csr(tmp.path(), &["-newkey", "rsa:2048"]),
        KeyKind::Rsa { bits: 2048 },
    );
    let weak = openssl_csr(tmp.path(), &["-newkey", "rsa:1024"]);
    let err = verify_csr(&weak).unwrap_err();
    assert!(
        matches!(&err, CaError::WeakKey { detail } if detail.contains("1024")),
        "{err:?}"
    );
}

#[test]
fn rsa_pss_accepted_sha1_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pss = openssl_csr(
        tmp.path(),
        &[
            "-newkey",
            "rsa:2048",
            "-sha256",
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:digest",
        ],
    );
    check_kind(&pss, KeyKind::Rsa { bits: 2048 });
    let sha1 = openssl_csr(tmp.path(), &["-newkey", "rsa:2048", "-sha1"]);
    check_err(
        &sha1,
        |e| matches!(e, CaError::UnsupportedAlgorithm { detail } if detail.contains("sha-1")),
        "sha1WithRSAEncryption",
    );
}

#[test]
fn p521_and_dsa_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let p521 = openssl_csr(
        tmp.path(),
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-521"],
    );
    check_err(
        &p521,
        |e| matches!(e, CaError::UnsupportedAlgorithm { detail } if detail.contains("P-521")),
        "P-521",
    );
    let secp256k1 = openssl_csr(
        tmp.path(),
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp256k1"],
    );
    check_err(
        &secp256k1,
        |e| matches!(e, CaError::UnsupportedAlgorithm { .. }),
        "secp256k1",
    );
    let params = tmp.path().join("dsa.params");
    openssl_ok(&["dsaparam", "-out", params.to_str().unwrap(), "1024"]);
    let dsa = openssl_csr(
        tmp.path(),
        &["-newkey", &format!("dsa:{}", params.display())],
    );
    check_err(
        &dsa,
        |e| matches!(e, CaError::UnsupportedAlgorithm { detail } if detail.contains("dsa")),
        "DSA",
    );
}

#[test]
fn flipped_signature_bit_is_bad_signature() {
    for alg in [&PKCS_ECDSA_P256_SHA256, &PKCS_ED25519] {
        let mut der = rcgen_csr(alg);
        let last = der.len() - 1;
        der[last] ^= 0x01;
        check_err(
            &der,
            |e| matches!(e, CaError::BadSignature),
            "flipped signature bit",
        );
    }
}

#[test]
fn flipped_subject_bit_is_bad_signature() {
    let mut der = rcgen_csr(&PKCS_ECDSA_P256_SHA256);
    // CN attribute: OID 2.5.4.3 (55 04 03), then UTF8String tag, length 1, 'x'.
    let at = der
        .windows(3)
        .position(|w| w == [0x55, 0x04, 0x03])
        .expect("cn oid")
        + 5;
    assert_eq!(der[at], b'x');
    der[at] ^= 0x01;
    check_err(
        &der,
        |e| matches!(e, CaError::BadSignature),
        "flipped subject bit",
    );
}

#[test]
fn garbage_is_malformed() {
    let good = rcgen_csr(&PKCS_ECDSA_P256_SHA256);
    let mut trailing = good.clone();
    trailing.push(0);
    let cases: [(&str, &[u8]); 5] = [
        ("empty", b""),
        ("text", b"hello, I am a certificate request"),
        ("truncated", &good[..good.len() / 2]),
        ("trailing bytes", &trailing),
        ("zeros", &[0u8; 64]),
    ];
    for (what, der) in cases {
        check_err(der, |e| matches!(e, CaError::Malformed { .. }), what);
    }
}

#[test]
fn pem_csr() {
    let der = rcgen_csr(&PKCS_ED25519);
    let text = pem::encode("CERTIFICATE REQUEST", &der);
    assert_eq!(verify_csr_pem(&text).unwrap().key_kind(), KeyKind::Ed25519);
    let new_label = pem::encode("NEW CERTIFICATE REQUEST", &der);
    assert_eq!(
        verify_csr_pem(&new_label).unwrap().key_kind(),
        KeyKind::Ed25519
    );
    let cert_label = pem::encode("CERTIFICATE", &der);
    assert!(matches!(
        verify_csr_pem(&cert_label),
        Err(CaError::Malformed { .. })
    ));
}

#[test]
fn hostile_subject_is_sanitized_for_logs() {
    assert_eq!(printable_subject("CN=a\nINFO forged"), "CN=a?INFO forged");
    assert_eq!(
        printable_subject(&"A".repeat(1000)).len(),
        MAX_SUBJECT_LOG_LEN
    );
}

#[test]
fn modulus_bit_length() {
    assert_eq!(modulus_bits(&[0x00, 0x80, 0x00]), 16);
    assert_eq!(modulus_bits(&[0x01, 0xff]), 9);
    assert_eq!(modulus_bits(&[0x00]), 0);
    assert_eq!(modulus_bits(&[]), 0);
}

#[test]
fn serials_are_unique_positive_and_short() {
    let mut seen = HashSet::new();
    for _ in 0..1000 {
        let s = random_serial();
        let b = s.as_bytes();
        assert!(b.len() <= 16, "{s}");
        assert!(!b.is_empty() && b[0] != 0, "{s}");
        if b.len() == 16 {
            assert_eq!(b[0] & 0x80, 0, "top bit set: {s}");
        }
        assert!(seen.insert(s));
    }
}
