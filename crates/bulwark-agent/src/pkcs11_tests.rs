//! The PKCS#11 backend against a real SoftHSM2 token in a temporary
//! directory (Debian package `softhsm2`).

use super::*;
use crate::keys::{DeviceKey, KeyStore};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// Creates a SoftHSM2 configuration and token under `dir`; points
/// `SOFTHSM2_CONF` at it (one token per test process: the only test that
/// loads the module).
fn softhsm(dir: &Path, label: &str, pin: &str) {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let out = std::process::Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", label])
        .args(["--pin", pin, "--so-pin", "5678"])
        .env("SOFTHSM2_CONF", &conf)
        .output()
        .expect("softhsm2-util (apt-get install softhsm2)");
    assert!(
        out.status.success(),
        "softhsm2-util: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn der_encoding_of_raw_signatures() {
    let mut raw = [0u8; 64];
    raw[31] = 1; // r = 1
    raw[32] = 0x80; // s has its high bit set: needs a 0x00 prefix
    let der = ecdsa_raw_to_der(&raw).unwrap();
    assert_eq!(&der[..5], &[0x30, 38, 0x02, 0x01, 0x01]);
    assert_eq!(der.len(), 40);
    assert_eq!(&der[5..8], &[0x02, 33, 0x00]);
    assert!(ecdsa_raw_to_der(&raw[..63]).is_err());
}

#[test]
fn softhsm_key_is_generated_on_the_token_and_signs_csr_and_tls() {
    let dir = tempfile::tempdir().unwrap();
    softhsm(dir.path(), "bulwark-test", "1234");

    let err = Token::open(Path::new(MODULE), "bulwark-test", "dev", "0000").unwrap_err();
    assert!(err.to_string().contains("login refused"), "{err}");
    assert!(Token::open(Path::new(MODULE), "nope", "dev", "1234")
        .unwrap_err()
        .to_string()
        .contains("no token labelled"));

    let token = Arc::new(Token::open(Path::new(MODULE), "bulwark-test", "dev", "1234").unwrap());
    let store = KeyStore::Pkcs11(token.clone());
    let key = store.load_or_create().unwrap();
    // The same key is found again, not regenerated.
    assert_eq!(store.load_or_create().unwrap().spki_der(), key.spki_der());
    assert!(key.private_pem().is_none(), "a token key has no PEM");
    let tk = token.find(false).unwrap().unwrap();
    assert!(!token.is_extractable(&tk).unwrap());

    // CSR signed inside the token, verifiable with the public key.
    use x509_parser::prelude::FromDer as _;
    let der = key.csr_der("door-17").unwrap();
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&der).unwrap();
    let info = &csr.certification_request_info;
    assert_eq!(info.subject_pki.raw, key.spki_der().as_slice());
    crate::verify_p256(&key.spki_der(), info.raw, &csr.signature_value.data).unwrap();

    // TLS client-auth signature made by the token.
    let tls = key.tls_signing_key().unwrap();
    assert!(tls
        .choose_scheme(&[rustls::SignatureScheme::ED25519])
        .is_none());
    let signer = tls
        .choose_scheme(&[rustls::SignatureScheme::ECDSA_NISTP256_SHA256])
        .unwrap();
    let sig = signer.sign(b"transcript").unwrap();
    crate::verify_p256(&key.spki_der(), b"transcript", &sig).unwrap();
    assert_eq!(
        tls.public_key().unwrap().as_ref(),
        key.spki_der().as_slice()
    );

    // Renewal key: separate until committed, then it is the current key.
    let next: DeviceKey = store.create_next().unwrap();
    assert_ne!(next.spki_der(), key.spki_der());
    assert_eq!(store.load().unwrap().unwrap().spki_der(), key.spki_der());
    store.commit_next().unwrap();
    assert_eq!(store.load().unwrap().unwrap().spki_der(), next.spki_der());
    assert!(store.load_next().unwrap().is_none());
    store.create_next().unwrap();
    store.discard_next().unwrap();
    assert!(store.load_next().unwrap().is_none());
    assert_eq!(store.load().unwrap().unwrap().spki_der(), next.spki_der());
}
