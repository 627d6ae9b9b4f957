//! The update service with a real CA, key store, SQLite store and
//! repository directory: dev-mode publication and its record, the role
//! check, and the start-up reconciliation of a release whose metadata was
//! written but whose record was not (a crash between the two).

use std::io::Cursor;
use std::sync::Arc;

use aws_lc_rs::signature::Ed25519KeyPair;
use bulwark_ca::{Ca, CaOptions, KdfParams, Passphrase};
use bulwark_registry::{
    EventBus, Operator, Ota, OtaConfig, Registry, RegistryConfig, RegistryError, ReleaseRequest,
};
use bulwark_store::{CheckpointPolicy, CheckpointSigner, SqliteStore};
use bulwark_types::Role;

struct Signer(Ed25519KeyPair);

impl CheckpointSigner for Signer {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).as_ref().to_vec()
    }
}

const PASS: &str = "correct horse battery staple";

/// A registry over `dir`'s CA and OTA repository, with its own database
/// file `db` (two registries over one repository stand for a store that
/// missed a commit).
async fn registry(dir: &std::path::Path, db: &str) -> (Registry, Operator) {
    let pass = Passphrase::new(PASS.into()).unwrap();
    let ca = if Ca::is_initialized(dir) {
        Ca::open(dir, &pass, CaOptions::default()).unwrap()
    } else {
        Ca::init(
            dir,
            &pass,
            KdfParams::fast_for_tests(),
            CaOptions::default(),
        )
        .unwrap()
    };
    let key = Ed25519KeyPair::from_pkcs8(ca.audit_key_pkcs8()).unwrap();
    let store = SqliteStore::open(
        &dir.join(db),
        Box::new(Signer(key)),
        CheckpointPolicy::default(),
    )
    .unwrap();
    let (ota, _) = Ota::open_or_create(dir, ca.keystore(), true, OtaConfig::default()).unwrap();
    let registry = Registry::new(
        Arc::new(store),
        Arc::new(ca),
        EventBus::new(16),
        RegistryConfig::default(),
    )
    .with_ota(ota);
    let token = registry.bootstrap_admin_token("test").await.unwrap();
    let admin = registry
        .authenticate_operator(&token, "test")
        .await
        .unwrap();
    (registry, admin)
}

async fn publish(registry: &Registry, op: &Operator, name: &str) -> Result<(), RegistryError> {
    let artifact = registry
        .ota_store_artifact(op, Cursor::new(vec![42u8; 5000]))
        .await?;
    registry
        .ota_publish_release(
            op,
            ReleaseRequest {
                name: name.into(),
                version: "1.4.0".into(),
                hardware: vec!["gw-v2".into()],
                floor: Some("1.2.0".into()),
                sha256: artifact.sha256.to_hex(),
                length: artifact.length,
            },
            None,
        )
        .await
        .map(|_| ())
}

#[tokio::test]
async fn a_release_published_before_a_crash_is_recorded_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let (first, admin) = registry(dir.path(), "first.db").await;
    publish(&first, &admin, "fw-1.4.0").await.unwrap();
    assert_eq!(first.ota_reconcile().await.unwrap(), 0, "nothing missing");
    let listed = first.ota_releases(&admin).await.unwrap();
    assert_eq!(listed.len(), 1);
    drop(first);

    // Same repository, a store that never got the record.
    let (second, admin) = registry(dir.path(), "second.db").await;
    assert!(second.ota_releases(&admin).await.unwrap().is_empty());
    assert_eq!(second.ota_reconcile().await.unwrap(), 1);
    let recovered = second.ota_release(&admin, "fw-1.4.0").await.unwrap();
    assert_eq!(
        (
            recovered.version.as_str(),
            recovered.floor.as_deref(),
            recovered.length
        ),
        (listed[0].version.as_str(), Some("1.2.0"), 5000)
    );
    assert_eq!(recovered.sha256, listed[0].sha256);
    assert_eq!(second.ota_reconcile().await.unwrap(), 0, "recorded once");
}

#[tokio::test]
async fn only_admins_and_release_managers_publish() {
    let dir = tempfile::tempdir().unwrap();
    let (registry, admin) = registry(dir.path(), "bulwark.db").await;
    for (role, may) in [
        (Role::Operator, false),
        (Role::Auditor, false),
        (Role::Enroller, false),
        (Role::ReleaseManager, true),
    ] {
        let (token, _) = registry
            .create_operator_token(&admin, role.to_string(), role, None)
            .await
            .unwrap();
        let op = registry
            .authenticate_operator(&token, "test")
            .await
            .unwrap();
        let r = publish(&registry, &op, &format!("fw-{role}")).await;
        assert_eq!(r.is_ok(), may, "{role}: {r:?}");
        if !may {
            assert!(
                matches!(r, Err(RegistryError::Forbidden { .. })),
                "{role}: {r:?}"
            );
        }
    }
}
