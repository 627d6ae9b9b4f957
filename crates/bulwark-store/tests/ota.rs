//! OTA release records against a real SQLite file: a release and its audit
//! entry commit together; a taken name is refused and leaves nothing.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use bulwark_audit::{Actor, AuditEvent};
use bulwark_store::sqlite::verify_audit_offline;
use bulwark_store::{CheckpointPolicy, CheckpointSigner, SqliteStore, Store, StoreError};
use bulwark_types::OtaRelease;
use time::OffsetDateTime;

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

fn release(name: &str, targets_version: u64) -> OtaRelease {
    OtaRelease {
        name: name.into(),
        version: "1.2.3".into(),
        hardware: vec!["rpi4".into()],
        floor: Some("1.0.0".into()),
        sha256: "ab".repeat(32),
        length: 4096,
        targets_version,
        published_at: OffsetDateTime::UNIX_EPOCH,
    }
}

fn events(entries: &[bulwark_audit::Entry]) -> Vec<AuditEvent> {
    entries
        .iter()
        .map(|e| serde_json::from_str(&e.event).unwrap())
        .collect()
}

#[tokio::test]
async fn a_release_and_its_audit_entry_commit_together() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bulwark.db");
    let (store, pk) = open(&path);
    let rel = store
        .publish_ota_release(release("fw-a.bin", 2), true, Actor::System)
        .await
        .unwrap();
    assert_eq!(rel.name, "fw-a.bin");
    assert!(
        rel.published_at > OffsetDateTime::UNIX_EPOCH,
        "stamped by the store"
    );
    assert_eq!(
        store.get_ota_release("fw-a.bin").await.unwrap(),
        Some(rel.clone())
    );
    let b = store
        .publish_ota_release(release("fw-b.bin", 3), false, Actor::System)
        .await
        .unwrap();
    assert_eq!(store.list_ota_releases().await.unwrap(), vec![rel, b]);
    assert_eq!(store.get_ota_release("nope").await.unwrap(), None);

    let published: Vec<_> = events(&store.audit_entries(0, 100).await.unwrap())
        .into_iter()
        .filter_map(|e| match e {
            AuditEvent::OtaReleasePublished {
                name,
                offline_signed,
                targets_version,
                ..
            } => Some((name, offline_signed, targets_version)),
            _ => None,
        })
        .collect();
    assert_eq!(
        published,
        vec![
            ("fw-a.bin".to_owned(), true, 2),
            ("fw-b.bin".to_owned(), false, 3)
        ]
    );
    drop(store);
    verify_audit_offline(&path, &pk).unwrap().unwrap();
}

#[tokio::test]
async fn a_taken_name_is_refused_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir.path().join("bulwark.db"));
    let first = store
        .publish_ota_release(release("fw.bin", 2), false, Actor::System)
        .await
        .unwrap();
    let audited = store.audit_entries(0, 100).await.unwrap().len();
    let e = store
        .publish_ota_release(release("fw.bin", 3), false, Actor::System)
        .await
        .unwrap_err();
    assert!(
        matches!(e, StoreError::AlreadyExists { what: "release" }),
        "{e:?}"
    );
    assert_eq!(store.get_ota_release("fw.bin").await.unwrap(), Some(first));
    assert_eq!(store.audit_entries(0, 100).await.unwrap().len(), audited);
}

#[tokio::test]
async fn a_new_root_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir.path().join("bulwark.db"));
    store.ota_root_published(2, Actor::System).await.unwrap();
    let all = events(&store.audit_entries(0, 100).await.unwrap());
    assert_eq!(
        all.last(),
        Some(&AuditEvent::OtaRootPublished { version: 2 })
    );
}
