//! Issuance hot path: CSR verification, client certificate issuance, both,
//! and the EST answer's certs-only PKCS#7, next to same-run baselines of the
//! raw crypto they cannot avoid.
//!
//! Run with `cargo bench -p bulwark-ca --bench issuance`. Uses a throwaway CA
//! in a temporary directory (fast KDF parameters; the KDF is not measured).
//!
//! The baselines call aws-lc-rs directly, the way any P-256 CA would:
//!
//! - `baseline_ecdsa_p256_sign`: one ECDSA P-256/SHA-256 signature over a
//!   real to-be-signed certificate's worth of bytes, the least that signing
//!   a certificate can cost;
//! - `baseline_ecdsa_p256_verify`: one ECDSA P-256/SHA-256 verification of
//!   the benchmark CSR's own signature, the least that checking a CSR can
//!   cost.
//!
//! `issue_client` / `baseline_ecdsa_p256_sign` and `verify_csr_p256` /
//! `baseline_ecdsa_p256_verify` are the fractions `docs/benchmarks.md` reports.

use std::hint::black_box;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING,
};
use bulwark_ca::{
    certs_only_pkcs7, random_serial, verify_csr, Ca, CaOptions, KdfParams, Passphrase, Subject,
};
use bulwark_types::DeviceId;
use criterion::{criterion_group, criterion_main, Criterion};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::FromDer;

fn p256_csr() -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("keygen");
    rcgen::CertificateParams::default()
        .serialize_request(&key)
        .expect("csr")
        .der()
        .to_vec()
}

/// The parts of a CSR a bare signature check needs: public key point,
/// signed bytes, signature.
fn csr_signature_parts(der: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let (_, req) = X509CertificationRequest::from_der(der).expect("csr parses");
    let info = &req.certification_request_info;
    (
        info.subject_pki.subject_public_key.data.to_vec(),
        info.raw.to_vec(),
        req.signature_value.data.to_vec(),
    )
}

fn issuance(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let pass = Passphrase::new("bench passphrase".into()).expect("passphrase");
    let ca = Ca::init(
        tmp.path(),
        &pass,
        KdfParams::fast_for_tests(),
        CaOptions::default(),
    )
    .expect("ca init");
    let csr_der = p256_csr();
    let csr = verify_csr(&csr_der).expect("verify");
    let subject = Subject::Device(DeviceId::new("bench-device-0001").expect("device id"));
    let lifetime = ca.device_lifetime();

    // Baseline inputs: a P-256 key of our own, a message as long as an
    // issued certificate (a little longer than its to-be-signed part), and
    // the CSR's own signature parts.
    let rng = SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).expect("keygen");
    let sign_key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).expect("key");
    let issued_der = ca
        .issue_client(&csr, &subject, &random_serial(), lifetime)
        .expect("issue")
        .der;
    let (csr_point, csr_signed, csr_sig) = csr_signature_parts(&csr_der);

    let mut group = c.benchmark_group("issuance");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group.bench_function("baseline_ecdsa_p256_sign", |b| {
        b.iter(|| sign_key.sign(&rng, black_box(&issued_der)).expect("sign"))
    });
    group.bench_function("baseline_ecdsa_p256_verify", |b| {
        b.iter(|| {
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, black_box(&csr_point))
                .verify(black_box(&csr_signed), black_box(&csr_sig))
                .expect("verify")
        })
    });
    group.bench_function("verify_csr_p256", |b| {
        b.iter(|| verify_csr(black_box(&csr_der)).expect("verify"))
    });
    group.bench_function("issue_client", |b| {
        b.iter(|| {
            ca.issue_client(black_box(&csr), &subject, &random_serial(), lifetime)
                .expect("issue")
        })
    });
    group.bench_function("csr_verify_and_issue", |b| {
        b.iter(|| {
            let csr = verify_csr(black_box(&csr_der)).expect("verify");
            ca.issue_client(&csr, &subject, &random_serial(), lifetime)
                .expect("issue")
        })
    });
    // Every EST enrollment answers with its certificate wrapped like this.
    group.bench_function("est_certs_only_pkcs7", |b| {
        b.iter(|| certs_only_pkcs7(&[black_box(&issued_der)]).expect("pkcs7"))
    });
    group.finish();
}

criterion_group!(benches, issuance);
criterion_main!(benches);
