//! Issuance hot path: CSR verification, client certificate issuance, and both.
//!
//! Run with `cargo bench -p bulwark-ca --bench issuance`. Uses a throwaway CA
//! in a temporary directory (fast KDF parameters; the KDF is not measured).

use std::hint::black_box;
use std::time::Duration;

use bulwark_ca::{random_serial, verify_csr, Ca, CaOptions, KdfParams, Passphrase, Subject};
use bulwark_types::DeviceId;
use criterion::{criterion_group, criterion_main, Criterion};

fn p256_csr() -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("keygen");
    rcgen::CertificateParams::default()
        .serialize_request(&key)
        .expect("csr")
        .der()
        .to_vec()
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

    let mut group = c.benchmark_group("issuance");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
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
    group.finish();
}

criterion_group!(benches, issuance);
criterion_main!(benches);
