//! Enrollment and renewal over real HTTPS, including every refusal the
//! foundation issue names, each asserting the exact answer.

mod common;

use bulwark_api_types::{
    CreateClaim, CreateDevice, CreateEnrollToken, CreateGroup, RevokeCertificate,
};
use bulwark_types::{CertSerial, DeviceId, DeviceState, GroupId, RevocationReason};
use common::{csr, leaf_pem, problem, rt, Server};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

async fn group(c: &bulwark_client::Client, name: &str) {
    c.create_group(&CreateGroup {
        name: GroupId::new(name).unwrap(),
        description: String::new(),
    })
    .await
    .unwrap();
}

async fn token(c: &bulwark_client::Client, g: &str, dev: Option<&str>, ttl: Option<u64>) -> String {
    c.create_enroll_token(&CreateEnrollToken {
        group: GroupId::new(g).unwrap(),
        device_id: dev.map(|d| DeviceId::new(d).unwrap()),
        ttl_seconds: ttl,
    })
    .await
    .unwrap()
    .token
}

fn cn_and_sans(der: &[u8]) -> (String, Vec<String>, bool) {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    let sans = cert
        .subject_alternative_name()
        .unwrap()
        .map(|s| {
            s.value
                .general_names
                .iter()
                .map(|g| match g {
                    GeneralName::URI(u) => u.to_string(),
                    other => format!("{other:?}"),
                })
                .collect()
        })
        .unwrap_or_default();
    let is_ca = cert
        .basic_constraints()
        .unwrap()
        .is_some_and(|b| b.value.ca);
    (cn, sans, is_ca)
}

#[test]
fn token_enrollment_and_every_token_refusal() {
    let server = Server::start("");
    rt().block_on(async {
        let admin = server.client();
        let anon = server.client_with(None);
        group(&admin, "plant-a").await;
        group(&admin, "plant-b").await;

        // Happy path with Bearer; the device is active with one certificate.
        let t = token(&admin, "plant-a", Some("sensor-1"), None).await;
        let (_, der) = csr("sensor-1");
        let p7 = anon.est_simpleenroll_bearer(&t, &der).await.unwrap();
        let (leaf, _) = leaf_pem(&p7);
        let (cn, _, _) = cn_and_sans(&leaf);
        assert_eq!(cn, "sensor-1");
        let d = admin
            .get_device(&DeviceId::new("sensor-1").unwrap())
            .await
            .unwrap();
        assert_eq!(d.device.state, DeviceState::Active);
        assert_eq!(d.certificates.len(), 1);

        // Reused token.
        let (_, der2) = csr("sensor-1");
        let e = anon.est_simpleenroll_bearer(&t, &der2).await.unwrap_err();
        assert_eq!(
            problem(e),
            (401, "enrollment token has already been used".into())
        );

        // HTTP Basic: the token is the password.
        let t = token(&admin, "plant-a", None, None).await;
        let p7 = anon
            .est_simpleenroll_basic("anything", &t, &der2)
            .await
            .unwrap();
        let (leaf, _) = leaf_pem(&p7);
        assert!(cn_and_sans(&leaf).0.starts_with("dev-"));

        // Expired token.
        let t = token(&admin, "plant-a", None, Some(1)).await;
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let e = anon.est_simpleenroll_bearer(&t, &der2).await.unwrap_err();
        assert_eq!(problem(e), (401, "enrollment token has expired".into()));

        // Unknown token.
        let e = anon
            .est_simpleenroll_bearer("bwe_not-a-token", &der2)
            .await
            .unwrap_err();
        assert_eq!(problem(e), (401, "enrollment token is not valid".into()));

        // A token for another group: the device was registered in plant-b.
        admin
            .create_device(&CreateDevice {
                id: DeviceId::new("valve-9").unwrap(),
                group: GroupId::new("plant-b").unwrap(),
                labels: Default::default(),
                hardware_model: None,
                manufacturer_ca: None,
            })
            .await
            .unwrap();
        let t = token(&admin, "plant-a", Some("valve-9"), None).await;
        let e = anon.est_simpleenroll_bearer(&t, &der2).await.unwrap_err();
        assert_eq!(
            problem(e),
            (
                403,
                "device valve-9 belongs to group plant-b, not plant-a".into()
            )
        );
        let v = admin
            .get_device(&DeviceId::new("valve-9").unwrap())
            .await
            .unwrap();
        assert_eq!(
            v.device.state,
            DeviceState::Pending,
            "refusal changed nothing"
        );
        assert!(v.certificates.is_empty());

        // No credential at all.
        let e = anon.est_simpleenroll_bearer("", &der2).await.unwrap_err();
        assert_eq!(problem(e).0, 401);

        // Every refusal is in the audit log.
        let log = admin.list_audit(None, Some(1000)).await.unwrap();
        let refused = log
            .iter()
            .filter(|e| e.event["type"] == "enrollment_refused")
            .count();
        assert!(refused >= 4, "refusals audited: {refused}");
    });
}

#[test]
fn csr_refusals_and_server_chosen_identity() {
    let server = Server::start("");
    rt().block_on(async {
        let admin = server.client();
        let anon = server.client_with(None);
        group(&admin, "g").await;

        // A CSR with a flipped bit in its signature.
        let t = token(&admin, "g", None, None).await;
        let (_, mut der) = csr("x");
        let last = der.len() - 1;
        der[last] ^= 0x01;
        let e = anon.est_simpleenroll_bearer(&t, &der).await.unwrap_err();
        let (status, detail) = problem(e);
        assert_eq!(status, 400);
        assert!(detail.contains("signature"), "{detail}");

        // Garbage instead of a CSR.
        let e = anon
            .est_simpleenroll_bearer(&t, b"hello")
            .await
            .unwrap_err();
        assert_eq!(problem(e).0, 400);

        // The token survived both refusals (nothing changed): a CSR asking for
        // another identity, extra SANs and CA:TRUE gets none of them.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(vec!["admin.example.com".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "other-device");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let der = params.serialize_request(&key).unwrap().der().to_vec();
        let t2 = token(&admin, "g", Some("bound-1"), None).await;
        let p7 = anon.est_simpleenroll_bearer(&t2, &der).await.unwrap();
        let (leaf, _) = leaf_pem(&p7);
        let (cn, sans, is_ca) = cn_and_sans(&leaf);
        assert_eq!(cn, "bound-1");
        assert_eq!(sans, vec!["urn:bulwark:device:bound-1".to_string()]);
        assert!(!is_ca);

        // A weak RSA-1024 key, made with openssl.
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("weak.der");
        common::run(
            std::process::Command::new("openssl")
                .args([
                    "req", "-new", "-newkey", "rsa:1024", "-nodes", "-subj", "/CN=w",
                ])
                .args(["-keyout"])
                .arg(dir.path().join("weak.key"))
                .args(["-outform", "DER", "-out"])
                .arg(&out),
        );
        let weak = std::fs::read(&out).unwrap();
        let e = anon.est_simpleenroll_bearer(&t, &weak).await.unwrap_err();
        let (status, detail) = problem(e);
        assert_eq!(status, 400);
        assert!(detail.contains("1024"), "{detail}");

        // The first token is still unused after all those refusals.
        let (_, good) = csr("y");
        anon.est_simpleenroll_bearer(&t, &good).await.unwrap();
    });
}

#[test]
fn reenrollment_with_valid_revoked_and_expired_certificates() {
    let server = Server::start("[ca]\ndevice_cert_secs = 6\n");
    rt().block_on(async {
        let admin = server.client();
        let anon = server.client_with(None);
        group(&admin, "g").await;
        let t = token(&admin, "g", Some("cam-1"), None).await;
        let (key, der) = csr("cam-1");
        let (leaf, pem) = leaf_pem(&anon.est_simpleenroll_bearer(&t, &der).await.unwrap());
        let device = server.client_with_identity(&pem, &key.serialize_pem());

        // Renewal with a new key keeps the identity.
        let (key2, der2) = csr("something-else");
        let (leaf2, pem2) = leaf_pem(&device.est_simplereenroll(&der2).await.unwrap());
        assert_eq!(cn_and_sans(&leaf2).0, "cam-1");
        assert_ne!(leaf, leaf2);
        let d = admin
            .get_device(&DeviceId::new("cam-1").unwrap())
            .await
            .unwrap();
        assert_eq!(d.certificates.len(), 2);

        // A device certificate cannot be used to enroll again.
        let e = device.est_simpleenroll_mtls(&der2).await.unwrap_err();
        assert_eq!(problem(e).0, 403);

        // Renewal without a client certificate.
        use base64::Engine;
        let resp = common::raw(&server)
            .post(format!("{}/.well-known/est/simplereenroll", server.addr))
            .header("content-type", "application/pkcs10")
            .body(base64::engine::general_purpose::STANDARD.encode(&der2))
            .send()
            .await
            .unwrap();
        let (status, detail, _) = common::raw_problem(resp).await;
        assert_eq!(status, 401);
        assert!(
            detail.contains("requires the device's current certificate"),
            "{detail}"
        );

        // Revoke the renewed certificate; renewing with it is refused.
        let (_, c2) = X509Certificate::from_der(&leaf2).unwrap();
        let serial2 = CertSerial::from_bytes(c2.raw_serial()).unwrap();
        admin
            .revoke_certificate(
                &serial2,
                &RevokeCertificate {
                    reason: Some(RevocationReason::KeyCompromise),
                },
            )
            .await
            .unwrap();
        let revoked = server.client_with_identity(&pem2, &key2.serialize_pem());
        let e = revoked.est_simplereenroll(&der2).await.unwrap_err();
        assert_eq!(
            problem(e),
            (401, format!("client certificate {serial2} is revoked"))
        );

        // Let the first certificate expire (6 s lifetime); renewal is refused
        // with a clear answer, not a TLS alert.
        std::thread::sleep(std::time::Duration::from_secs(7));
        let e = device.est_simplereenroll(&der2).await.unwrap_err();
        let (_, c1) = X509Certificate::from_der(&leaf).unwrap();
        let serial1 = CertSerial::from_bytes(c1.raw_serial()).unwrap();
        assert_eq!(
            problem(e),
            (401, format!("client certificate {serial1} has expired"))
        );
    });
}

#[test]
fn claim_certificates_enroll_only_within_their_rate() {
    let server = Server::start("");
    rt().block_on(async {
        let admin = server.client();
        group(&admin, "batch-7").await;
        let claim_key = rcgen::KeyPair::generate().unwrap();
        let claim_csr = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .serialize_request(&claim_key)
            .unwrap()
            .pem()
            .unwrap();
        let created = admin
            .create_claim(&CreateClaim {
                group: GroupId::new("batch-7").unwrap(),
                csr_pem: claim_csr,
                ttl_seconds: None,
                rate_per_minute: Some(2),
            })
            .await
            .unwrap();
        let claim =
            server.client_with_identity(&created.certificate_pem, &claim_key.serialize_pem());

        // Two enrollments pass; the third exceeds 2/minute.
        for _ in 0..2 {
            let (_, der) = csr("ignored");
            let (leaf, _) = leaf_pem(&claim.est_simpleenroll_mtls(&der).await.unwrap());
            let (cn, _, _) = cn_and_sans(&leaf);
            let d = admin.get_device(&DeviceId::new(cn).unwrap()).await.unwrap();
            assert_eq!(d.device.group.as_str(), "batch-7");
        }
        let (_, der) = csr("ignored");
        let e = claim.est_simpleenroll_mtls(&der).await.unwrap_err();
        assert_eq!(problem(e).0, 429);

        // A claim certificate cannot renew.
        let e = claim.est_simplereenroll(&der).await.unwrap_err();
        assert_eq!(
            problem(e),
            (403, "a claim certificate may only call simpleenroll".into())
        );

        // Revoked, it enrolls nothing.
        admin
            .revoke_certificate(&created.record.serial, &RevokeCertificate::default())
            .await
            .unwrap();
        let e = claim.est_simpleenroll_mtls(&der).await.unwrap_err();
        assert_eq!(
            problem(e),
            (
                401,
                format!("client certificate {} is revoked", created.record.serial)
            )
        );
    });
}
