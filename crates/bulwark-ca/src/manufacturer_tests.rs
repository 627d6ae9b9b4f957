//! Tests for manufacturer CA validation and for the check that a device
//! certificate was issued by one, with real certificates from rcgen and
//! the `openssl` command-line tool.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

use super::*;
use crate::testutil::{openssl_ok, TestCa};

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name
        .push(DnType::OrganizationName, "Acme Devices");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = now() - Duration::days(1);
    p.not_after = now() + Duration::days(365);
    p
}

/// A self-signed CA: its PEM, params and key.
fn make_ca(params: CertificateParams) -> (String, CertificateParams, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let pem = params.self_signed(&key).unwrap().pem();
    (pem, params, key)
}

fn leaf(cn: &str, issuer: &(String, CertificateParams, KeyPair)) -> Vec<u8> {
    leaf_with(cn, issuer, |_| {})
}

fn leaf_with(
    cn: &str,
    (_, params, key): &(String, CertificateParams, KeyPair),
    tweak: impl FnOnce(&mut CertificateParams),
) -> Vec<u8> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.not_before = now() - Duration::hours(1);
    p.not_after = now() + Duration::days(30);
    tweak(&mut p);
    let leaf_key = KeyPair::generate().unwrap();
    p.signed_by(&leaf_key, &Issuer::from_params(params, key))
        .unwrap()
        .der()
        .to_vec()
}

fn refused(pem: &str, own: &[&[u8]], expect: &str) {
    match ManufacturerCaCert::validate_pem(pem, now(), own) {
        Ok(_) => panic!("accepted, expected a refusal containing {expect:?}"),
        Err(e) => {
            assert!(matches!(e, CaError::ManufacturerCa { .. }), "{e:?}");
            let msg = e.to_string();
            assert!(msg.contains(expect), "{msg:?} does not contain {expect:?}");
        }
    }
}

#[test]
fn accepts_a_self_signed_ca_and_describes_it() {
    let (pem, _, _) = make_ca(ca_params("Acme Root"));
    let ca = ManufacturerCaCert::validate_pem(&pem, now(), &[]).unwrap();
    assert_eq!(ca.fingerprint().len(), 64);
    assert!(ca.subject().contains("CN=Acme Root"), "{}", ca.subject());
    assert_eq!(ca.pem(), pem.replace("\r\n", "\n"));
    assert_eq!(ManufacturerCaCert::from_der(ca.der()).unwrap(), ca);
}

#[test]
fn accepts_an_intermediate_ca_it_cannot_check_the_signature_of() {
    let root = make_ca(ca_params("Acme Root"));
    let mut p = ca_params("Acme Devices CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let key = KeyPair::generate().unwrap();
    let pem = p
        .signed_by(&key, &Issuer::from_params(&root.1, &root.2))
        .unwrap()
        .pem();
    ManufacturerCaCert::validate_pem(&pem, now(), &[]).unwrap();
}

#[test]
fn refuses_what_is_not_a_usable_ca() {
    // Garbage, nothing, too much.
    refused("hello", &[], "no PEM CERTIFICATE block");
    refused(
        "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        &[],
        "not valid PEM",
    );
    refused(
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        &[],
        "does not parse",
    );
    let (pem, _, key) = make_ca(ca_params("Acme Root"));
    refused(&"x".repeat(MAX_MANUFACTURER_CA_PEM + 1), &[], "at most");
    refused(
        &format!("{pem}{pem}"),
        &[],
        "exactly one certificate, found 2",
    );
    refused(&format!("{pem}{}", key.serialize_pem()), &[], "private key");

    // A leaf, explicitly or by omission.
    let ca = make_ca(ca_params("Acme Root"));
    let device = leaf("sensor-1", &ca);
    refused(
        &pem::encode("CERTIFICATE", &device),
        &[],
        "no basicConstraints",
    );
    let mut p = ca_params("not a ca");
    p.is_ca = IsCa::ExplicitNoCa;
    refused(&make_ca(p).0, &[], "CA:FALSE");

    // keyUsage without keyCertSign.
    let mut p = ca_params("signs nothing");
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    refused(&make_ca(p).0, &[], "keyCertSign");

    // Outside its validity.
    let mut p = ca_params("old");
    p.not_before = now() - Duration::days(10);
    p.not_after = now() - Duration::days(1);
    refused(&make_ca(p).0, &[], "expired");
    let mut p = ca_params("future");
    p.not_before = now() + Duration::days(1);
    refused(&make_ca(p).0, &[], "not valid yet");
}

#[test]
fn refuses_bulwarks_own_ca_and_its_key() {
    let t = TestCa::new();
    let own: [&[u8]; 2] = [t.ca.root_der(), t.ca.issuing_der()];
    refused(&t.ca.root_pem(), &own, "Bulwark's own CA");
    refused(
        &pem::encode("CERTIFICATE", t.ca.issuing_der()),
        &own,
        "Bulwark's own CA",
    );
    // Someone else's CA is fine beside ours.
    let (pem, _, _) = make_ca(ca_params("Acme Root"));
    ManufacturerCaCert::validate_pem(&pem, now(), &own).unwrap();
}

#[test]
fn refuses_a_key_it_shares_with_bulwarks_ca() {
    let key = KeyPair::generate().unwrap();
    let ours = ca_params("Bulwark Root").self_signed(&key).unwrap();
    let theirs = ca_params("Copy").self_signed(&key).unwrap().pem();
    refused(&theirs, &[ours.der().as_ref()], "key of Bulwark's own CA");
}

#[test]
fn refuses_weak_or_unsupported_algorithms() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    // SHA-1.
    openssl_ok(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-sha1",
        "-days",
        "10",
        "-subj",
        "/CN=old ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-keyout",
        &d("k1"),
        "-out",
        &d("c1"),
    ]);
    let sha1 = std::fs::read_to_string(d("c1")).unwrap();
    refused(&sha1, &[], "sha-1");
    // RSA 1024.
    openssl_ok(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:1024",
        "-nodes",
        "-sha256",
        "-days",
        "10",
        "-subj",
        "/CN=weak ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-keyout",
        &d("k2"),
        "-out",
        &d("c2"),
    ]);
    refused(&std::fs::read_to_string(d("c2")).unwrap(), &[], "1024 bits");
    // P-521.
    openssl_ok(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-521",
        "-nodes",
        "-sha512",
        "-days",
        "10",
        "-subj",
        "/CN=p521 ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-keyout",
        &d("k3"),
        "-out",
        &d("c3"),
    ]);
    refused(&std::fs::read_to_string(d("c3")).unwrap(), &[], "P-521");
    // An openssl RSA CA with SHA-256 is fine.
    openssl_ok(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-sha256",
        "-days",
        "10",
        "-subj",
        "/CN=rsa ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        &d("k4"),
        "-out",
        &d("c4"),
    ]);
    ManufacturerCaCert::validate_pem(&std::fs::read_to_string(d("c4")).unwrap(), now(), &[])
        .unwrap();
}

#[test]
fn verifies_what_it_issued() {
    let ca = make_ca(ca_params("Acme Root"));
    let mca = ManufacturerCaCert::validate_pem(&ca.0, now(), &[]).unwrap();
    let der = leaf("sensor-1", &ca);
    assert!(mca.names_as_issuer(&der));
    let l = mca.verify_issued(&der, now()).unwrap();
    assert_eq!(l.common_name.as_deref(), Some("sensor-1"));
    assert_eq!(l.fingerprint.len(), 64);
    assert!(!l.serial_hex.is_empty());
    assert!(l.subject.contains("CN=sensor-1"));
    // No CN at all is reported as such (the caller refuses it).
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::OrganizationName, "no cn");
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let no_cn = p
        .signed_by(&key, &Issuer::from_params(&ca.1, &ca.2))
        .unwrap();
    assert_eq!(
        mca.verify_issued(no_cn.der(), now()).unwrap().common_name,
        None
    );
}

fn leaf_refused(mca: &ManufacturerCaCert, der: &[u8], at: OffsetDateTime, expect: &str) {
    match mca.verify_issued(der, at) {
        Ok(l) => panic!("accepted {l:?}, expected {expect:?}"),
        Err(e) => {
            assert!(matches!(e, CaError::ForeignCertificate { .. }), "{e:?}");
            assert!(e.to_string().contains(expect), "{e} lacks {expect:?}");
        }
    }
}

#[test]
fn never_trusts_the_issuer_name_alone() {
    let ca = make_ca(ca_params("Acme Root"));
    let mca = ManufacturerCaCert::validate_pem(&ca.0, now(), &[]).unwrap();
    // Same subject, different key: an impostor CA.
    let impostor = make_ca(ca_params("Acme Root"));
    let forged = leaf("sensor-1", &impostor);
    assert!(mca.names_as_issuer(&forged), "the names are the same");
    leaf_refused(&mca, &forged, now(), "does not verify");
    // Issued by someone else entirely.
    let other = make_ca(ca_params("Other Root"));
    leaf_refused(&mca, &leaf("sensor-1", &other), now(), "another issuer");
    leaf_refused(&mca, b"garbage", now(), "does not parse");
}

#[test]
fn refuses_leaves_that_cannot_authenticate_a_device() {
    let ca = make_ca(ca_params("Acme Root"));
    let mca = ManufacturerCaCert::validate_pem(&ca.0, now(), &[]).unwrap();
    let server_only = leaf_with("sensor-1", &ca, |p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    });
    leaf_refused(&mca, &server_only, now(), "client authentication");
    let sub_ca = leaf_with("sensor-1", &ca, |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    });
    leaf_refused(&mca, &sub_ca, now(), "CA certificate");
    let der = leaf("sensor-1", &ca);
    leaf_refused(&mca, &der, now() + Duration::days(31), "has expired");
    leaf_refused(&mca, &der, now() - Duration::days(1), "not valid before");
    leaf_refused(
        &mca,
        &der,
        now() + Duration::days(400),
        "CA certificate expired",
    );
}

#[test]
fn refuses_a_subject_with_two_cns() {
    let dir = tempfile::tempdir().unwrap();
    let d = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();
    openssl_ok(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "10",
        "-subj",
        "/CN=openssl ca",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-keyout",
        &d("ca.key"),
        "-out",
        &d("ca.pem"),
    ]);
    openssl_ok(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-subj",
        "/CN=sensor-1/CN=sensor-2",
        "-keyout",
        &d("leaf.key"),
        "-out",
        &d("leaf.csr"),
    ]);
    openssl_ok(&[
        "x509",
        "-req",
        "-in",
        &d("leaf.csr"),
        "-CA",
        &d("ca.pem"),
        "-CAkey",
        &d("ca.key"),
        "-set_serial",
        "7",
        "-days",
        "1",
        "-out",
        &d("leaf.pem"),
    ]);
    let ca_pem = std::fs::read_to_string(d("ca.pem")).unwrap();
    let mca = ManufacturerCaCert::validate_pem(&ca_pem, now(), &[]).unwrap();
    let leaf_pem = std::fs::read_to_string(d("leaf.pem")).unwrap();
    let der = pem::decode_all(&leaf_pem).unwrap().remove(0).der;
    leaf_refused(&mca, &der, now(), "more than one CN");
}
