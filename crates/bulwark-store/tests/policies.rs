//! Stored policies, attachments and service principals against a real
//! SQLite file: versioning, refusals that leave nothing behind, and the
//! audit chain staying whole across them.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use bulwark_audit::Actor;
use bulwark_store::sqlite::verify_audit_offline;
use bulwark_store::{
    CheckpointPolicy, CheckpointSigner, NewCert, NewGroup, NewPolicyVersion, NewService,
    SqliteStore, Store, StoreError,
};
use bulwark_types::{CertKind, CertSerial, GroupId, PolicyName, PolicyTarget, ServiceName};
use time::{Duration, OffsetDateTime};

struct Signer(Ed25519KeyPair);
impl CheckpointSigner for Signer {
    fn sign(&self, m: &[u8]) -> Vec<u8> {
        self.0.sign(m).as_ref().to_vec()
    }
}

fn open(path: &std::path::Path) -> (SqliteStore, [u8; 32]) {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let pk: [u8; 32] = key.public_key().as_ref().try_into().unwrap();
    let store = SqliteStore::open(path, Box::new(Signer(key)), CheckpointPolicy::default());
    (store.unwrap(), pk)
}

fn version(name: &str, body: &str) -> NewPolicyVersion {
    NewPolicyVersion {
        name: PolicyName::new(name).unwrap(),
        document: body.to_owned(),
        sha256: format!("sha-of-{body}"),
    }
}

fn p(s: &str) -> PolicyName {
    PolicyName::new(s).unwrap()
}

fn group(s: &str) -> PolicyTarget {
    PolicyTarget::Group(GroupId::new(s).unwrap())
}

fn service(s: &str) -> PolicyTarget {
    PolicyTarget::Service(ServiceName::new(s).unwrap())
}

fn svc(s: &str) -> ServiceName {
    ServiceName::new(s).unwrap()
}

fn service_cert(serial: u8, subject: &str) -> NewCert {
    let now = OffsetDateTime::now_utc();
    NewCert {
        serial: CertSerial::from_bytes(&[serial, 9, 9, 9]).unwrap(),
        kind: CertKind::Service,
        subject: subject.into(),
        der: vec![0x30, 0x00],
        fingerprint_sha256: "00".into(),
        not_before: now,
        not_after: now + Duration::days(30),
    }
}

#[tokio::test]
async fn versions_attachments_and_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let (store, pk) = open(&path);
    let a = || Actor::System;
    store
        .create_group(
            NewGroup {
                name: GroupId::new("g").unwrap(),
                description: String::new(),
            },
            a(),
        )
        .await
        .unwrap();

    let w = store.put_policy(version("p", "one"), a()).await.unwrap();
    assert_eq!((w.version, w.created), (1, true));
    let w = store.put_policy(version("p", "one"), a()).await.unwrap();
    assert_eq!(
        (w.version, w.created),
        (1, false),
        "same document, no version"
    );
    let w = store.put_policy(version("p", "two"), a()).await.unwrap();
    assert_eq!((w.version, w.created), (2, true));

    let rec = store.get_policy(&p("p"), None).await.unwrap().unwrap();
    assert_eq!(rec.selected.version, 2);
    assert_eq!(rec.selected.document, "two");
    assert_eq!(rec.versions.len(), 2);
    assert_eq!(rec.versions[0].created_by, "system");
    let old = store.get_policy(&p("p"), Some(1)).await.unwrap().unwrap();
    assert_eq!(old.selected.document, "one");
    assert!(matches!(
        store.get_policy(&p("p"), Some(9)).await,
        Err(StoreError::NotFound {
            what: "policy version"
        })
    ));
    assert!(store.get_policy(&p("nope"), None).await.unwrap().is_none());

    // Attachments: only to what exists, only once.
    assert!(matches!(
        store.attach_policy(p("p"), group("missing"), a()).await,
        Err(StoreError::NoSuchGroup(_))
    ));
    assert!(matches!(
        store.attach_policy(p("p"), service("missing"), a()).await,
        Err(StoreError::NotFound { what: "service" })
    ));
    assert!(matches!(
        store.attach_policy(p("nope"), group("g"), a()).await,
        Err(StoreError::NotFound { what: "policy" })
    ));
    assert!(store.attach_policy(p("p"), group("g"), a()).await.unwrap());
    assert!(!store.attach_policy(p("p"), group("g"), a()).await.unwrap());
    store
        .create_service(
            NewService {
                name: svc("s"),
                password_hash: None,
            },
            a(),
        )
        .await
        .unwrap();
    assert!(store
        .attach_policy(p("p"), service("s"), a())
        .await
        .unwrap());
    let attached = store.attached_policies(&group("g")).await.unwrap();
    assert_eq!(attached.len(), 1);
    assert_eq!(
        (attached[0].version, attached[0].document.as_str()),
        (2, "two")
    );

    let listed = store.list_policies().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].attachments, vec![group("g"), service("s")]);

    // Delete refused while attached, naming every attachment.
    let e = store.delete_policy(p("p"), a()).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "policy p is attached to group g, service s; detach it first"
    );
    store.detach_policy(p("p"), group("g"), a()).await.unwrap();
    assert!(matches!(
        store.detach_policy(p("p"), group("g"), a()).await,
        Err(StoreError::NotFound {
            what: "policy attachment"
        })
    ));
    // Deleting the service detaches its policy; then the policy can go.
    store
        .record_service_certificate(svc("s"), service_cert(1, "s"), a())
        .await
        .unwrap();
    let revoked = store.delete_service(svc("s"), a()).await.unwrap();
    assert_eq!(revoked.len(), 1);
    let cert = store.get_certificate(&revoked[0]).await.unwrap().unwrap();
    assert!(cert.info.revoked_at.is_some());
    store.delete_policy(p("p"), a()).await.unwrap();
    assert!(store.list_policies().await.unwrap().is_empty());
    assert!(store
        .attached_policies(&group("g"))
        .await
        .unwrap()
        .is_empty());

    // A certificate for a service that does not exist is not recorded.
    let orphan = service_cert(2, "s");
    assert!(matches!(
        store
            .record_service_certificate(svc("s"), orphan.clone(), a())
            .await,
        Err(StoreError::NotFound { what: "service" })
    ));
    assert!(store
        .get_certificate(&orphan.serial)
        .await
        .unwrap()
        .is_none());

    // Re-created: numbering goes on.
    let w = store.put_policy(version("p", "one"), a()).await.unwrap();
    assert_eq!((w.version, w.created), (3, true));

    store.checkpoint_now().await.unwrap();
    let report = verify_audit_offline(&path, &pk).unwrap().unwrap();
    // group, versions 1 and 2, attach, service, attach, detach, certificate,
    // revocation, service detach, service deleted, policy deleted, version 3.
    assert_eq!(report.entries, 13);
}
