//! Tests for client/server issuance and CRLs: the issued bytes are parsed
//! with x509-parser and checked against the `openssl` command-line tool.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, KeyPair, PublicKeyData, PKCS_ECDSA_P256_SHA256,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

use super::*;
use crate::testutil::{openssl, openssl_csr, openssl_ok, rcgen_csr, TestCa};
use crate::verify_csr;

fn device(id: &str) -> Subject {
    Subject::Device(DeviceId::new(id).unwrap())
}

/// A CSR that asks for much more than it should get.
fn greedy_csr() -> Vec<u8> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
    params.distinguished_name.remove(DnType::CommonName);
    params.distinguished_name.push(DnType::CommonName, "other");
    params
        .subject_alt_names
        .push(SanType::URI("urn:bulwark:device:other".try_into().unwrap()));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.serialize_request(&key).unwrap().der().to_vec()
}

fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
    let san = cert
        .subject_alternative_name()
        .unwrap()
        .expect("san present");
    san.value
        .general_names
        .iter()
        .map(|n| match n {
            GeneralName::URI(u) => format!("URI:{u}"),
            GeneralName::DNSName(d) => format!("DNS:{d}"),
            GeneralName::IPAddress(ip) => format!("IP:{}", hex::encode(ip)),
            other => format!("{other:?}"),
        })
        .collect()
}

/// `openssl verify` of `leaf_der` against root + issuing, with extra args.
fn verify_leaf(t: &TestCa, leaf_der: &[u8], extra: &[&str]) -> (bool, String) {
    let root = t.file("root.pem", t.ca.root_pem().as_bytes());
    let issuing = t.file(
        "issuing.pem",
        pem::encode("CERTIFICATE", t.ca.issuing_der()).as_bytes(),
    );
    let leaf = t.file("leaf.pem", pem::encode("CERTIFICATE", leaf_der).as_bytes());
    let mut args = vec!["verify", "-CAfile", &root, "-untrusted", &issuing];
    args.extend_from_slice(extra);
    args.push(&leaf);
    openssl(&args)
}

#[test]
fn client_cert_ignores_everything_the_csr_asks_for() {
    let t = TestCa::new();
    let csr = verify_csr(&greedy_csr()).unwrap();
    assert_eq!(csr.requested_subject(), "CN=other");
    let serial = random_serial();
    let lifetime = Duration::days(7);
    let issued =
        t.ca.issue_client(&csr, &device("sensor-01"), &serial, lifetime)
            .unwrap();
    assert_eq!(issued.serial, serial);
    assert_eq!(issued.not_after - issued.not_before, lifetime + BACKDATE);

    let (rest, cert) = X509Certificate::from_der(&issued.der).unwrap();
    assert!(rest.is_empty());
    let cn: Vec<_> = cert
        .subject()
        .iter_common_name()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(cn, ["sensor-01"]);
    let org: Vec<_> = cert
        .subject()
        .iter_organization()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(org, ["Bulwark"]);
    assert_eq!(sans(&cert), ["URI:urn:bulwark:device:sensor-01"]);
    let bc = cert.basic_constraints().unwrap().expect("basicConstraints");
    assert!(bc.critical);
    assert!(!bc.value.ca);
    let ku = cert.key_usage().unwrap().expect("keyUsage");
    assert!(ku.critical);
    assert!(ku.value.digital_signature());
    assert_eq!(ku.value.flags, 1, "only digitalSignature");
    let eku = cert
        .extended_key_usage()
        .unwrap()
        .expect("extKeyUsage")
        .value;
    assert!(eku.client_auth);
    assert!(!eku.server_auth && !eku.any && !eku.code_signing && !eku.ocsp_signing);
    assert!(eku.other.is_empty());
    assert_eq!(cert.raw_serial(), serial.as_bytes());
    assert_eq!(cert.validity().not_before.to_datetime(), issued.not_before);
    assert_eq!(cert.validity().not_after.to_datetime(), issued.not_after);
    assert_eq!(cert.public_key().raw, csr.spki_der());
    let mut aki = None;
    let mut ski = false;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| k.0.to_vec());
            }
            ParsedExtension::SubjectKeyIdentifier(_) => ski = true,
            _ => {}
        }
    }
    assert_eq!(aki.as_deref(), Some(t.ca.issuing_ski.as_slice()));
    assert!(ski);

    let (ok, out) = verify_leaf(&t, &issued.der, &["-purpose", "sslclient"]);
    assert!(ok && out.contains("leaf.pem: OK"), "{out}");
    let (ok, out) = verify_leaf(&t, &issued.der, &["-purpose", "sslserver"]);
    assert!(!ok, "client cert must not pass as a server cert: {out}");

    assert_eq!(issued.sha256_fingerprint().len(), 64);
    assert!(issued.pem().starts_with("-----BEGIN CERTIFICATE-----\n"));
}

#[test]
fn every_accepted_key_kind_chains() {
    let t = TestCa::new();
    let rsa = openssl_csr(t.tmp.path(), &["-newkey", "rsa:2048"]);
    let csrs = [
        rcgen_csr(&rcgen::PKCS_ECDSA_P384_SHA384),
        rcgen_csr(&rcgen::PKCS_ED25519),
        rsa,
    ];
    for der in csrs {
        let csr = verify_csr(&der).unwrap();
        let issued =
            t.ca.issue_client(
                &csr,
                &device("d1"),
                &random_serial(),
                t.ca.device_lifetime(),
            )
            .unwrap();
        let (ok, out) = verify_leaf(&t, &issued.der, &[]);
        assert!(ok, "{}: {out}", csr.key_kind());
        let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
        assert_eq!(cert.public_key().raw, csr.spki_der(), "{}", csr.key_kind());
    }
}

#[test]
fn subject_kinds_and_validation() {
    let t = TestCa::new();
    let csr = verify_csr(&rcgen_csr(&PKCS_ECDSA_P256_SHA256)).unwrap();
    let cases = [
        (
            Subject::claim("claim-7f3a").unwrap(),
            "URI:urn:bulwark:claim:claim-7f3a",
        ),
        (
            Subject::service("gateway").unwrap(),
            "URI:urn:bulwark:service:gateway",
        ),
    ];
    for (subject, san) in cases {
        let issued =
            t.ca.issue_client(&csr, &subject, &random_serial(), Duration::hours(1))
                .unwrap();
        let (_, cert) = X509Certificate::from_der(&issued.der).unwrap();
        assert_eq!(sans(&cert), [san]);
    }
    assert!(matches!(
        Subject::claim("a/b"),
        Err(CaError::InvalidName { .. })
    ));
    assert!(matches!(
        Subject::service(""),
        Err(CaError::InvalidName { .. })
    ));
    // A hand-built variant is validated at issuance too.
    let err =
        t.ca.issue_client(
            &csr,
            &Subject::Claim("x,O=evil".into()),
            &random_serial(),
            Duration::hours(1),
        )
        .unwrap_err();
    assert!(matches!(err, CaError::InvalidName { .. }), "{err:?}");
}

#[test]
fn lifetimes_are_bounded() {
    let t = TestCa::new();
    let csr = verify_csr(&rcgen_csr(&PKCS_ECDSA_P256_SHA256)).unwrap();
    for lifetime in [
        Duration::ZERO,
        Duration::seconds(-5),
        Duration::days(365 * 11),
    ] {
        let err =
            t.ca.issue_client(&csr, &device("d"), &random_serial(), lifetime)
                .unwrap_err();
        assert!(
            matches!(err, CaError::InvalidLifetime { .. }),
            "{lifetime}: {err:?}"
        );
    }
}

#[test]
fn server_cert() {
    let t = TestCa::new();
    let names = ["bulwark.local", "127.0.0.1", "::1"].map(String::from);
    let (der, key) = t.ca.issue_server(&names).unwrap();
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert_eq!(
        sans(&cert),
        [
            "DNS:bulwark.local".to_string(),
            "IP:7f000001".into(),
            format!("IP:{}", hex::encode(std::net::Ipv6Addr::LOCALHOST.octets())),
        ]
    );
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && !eku.client_auth);
    assert!(!cert.is_ca());
    let lifetime =
        cert.validity().not_after.to_datetime() - cert.validity().not_before.to_datetime();
    assert_eq!(lifetime, SERVER_CERT_LIFETIME + BACKDATE);
    let pair = KeyPair::try_from(key.as_slice()).unwrap();
    assert_eq!(
        cert.public_key().raw,
        pair.subject_public_key_info().as_slice()
    );
    let (ok, out) = verify_leaf(&t, &der, &["-purpose", "sslserver"]);
    assert!(ok, "{out}");

    for bad in [
        vec![],
        vec!["".to_string()],
        vec!["has space".into()],
        vec!["-x.com".into()],
    ] {
        let err = t.ca.issue_server(&bad).unwrap_err();
        assert!(
            matches!(err, CaError::InvalidName { .. }),
            "{bad:?}: {err:?}"
        );
    }
}

#[test]
fn crl_revokes_exactly_the_listed_certificate() {
    let t = TestCa::new();
    let csr = verify_csr(&rcgen_csr(&PKCS_ECDSA_P256_SHA256)).unwrap();
    let revoked =
        t.ca.issue_client(
            &csr,
            &device("lost-device"),
            &random_serial(),
            Duration::days(1),
        )
        .unwrap();
    let kept =
        t.ca.issue_client(
            &csr,
            &device("good-device"),
            &random_serial(),
            Duration::days(1),
        )
        .unwrap();
    let entry = RevokedEntry {
        serial: revoked.serial.clone(),
        revoked_at: now_utc(),
        reason: RevocationReason::KeyCompromise,
    };
    let crl = t.ca.crl(7, &[entry], Duration::hours(24)).unwrap();

    let crl_der = t.file("crl.der", &crl);
    let text = openssl_ok(&["crl", "-inform", "DER", "-noout", "-text", "-in", &crl_der]);
    assert!(
        text.contains(&format!("Serial Number: {}", revoked.serial.to_hex())),
        "{text}"
    );
    assert!(!text.contains(&kept.serial.to_hex()), "{text}");
    assert!(text.contains("Key Compromise"), "{text}");
    assert!(
        text.contains("X509v3 CRL Number: \n                7"),
        "{text}"
    );
    assert!(
        text.contains("Issuer: CN = Bulwark Issuing CA, O = Bulwark"),
        "{text}"
    );

    let chain = t.file("chain.pem", t.ca.chain_pem().as_bytes());
    let crl_pem = t.file("crl.pem", pem::encode("X509 CRL", &crl).as_bytes());
    let check = |cert: &IssuedCert, name: &str| {
        let leaf = t.file(name, cert.pem().as_bytes());
        openssl(&[
            "verify",
            "-crl_check",
            "-CAfile",
            &chain,
            "-CRLfile",
            &crl_pem,
            &leaf,
        ])
    };
    let (ok, out) = check(&revoked, "revoked.pem");
    assert!(!ok && out.contains("certificate revoked"), "{out}");
    let (ok, out) = check(&kept, "kept.pem");
    assert!(ok && out.contains("kept.pem: OK"), "{out}");

    let err = t.ca.crl(8, &[], Duration::ZERO).unwrap_err();
    assert!(matches!(err, CaError::InvalidLifetime { .. }), "{err:?}");
    assert!(t.ca.crl(8, &[], Duration::hours(1)).is_ok(), "empty crl");
}
