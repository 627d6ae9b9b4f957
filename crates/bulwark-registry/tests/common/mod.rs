//! The registry over a real SQLite store and CA in a temporary directory,
//! with an admin operator: what the registry's integration tests share.

#![allow(dead_code)]

use std::sync::Arc;

use aws_lc_rs::signature::Ed25519KeyPair;
use bulwark_ca::{Ca, CaOptions, KdfParams, Passphrase};
use bulwark_registry::{EventBus, Operator, Registry, RegistryConfig};
use bulwark_store::{CheckpointPolicy, CheckpointSigner, SqliteStore};
use bulwark_types::{DeviceId, GroupId, Role};

struct Signer(Ed25519KeyPair);

impl CheckpointSigner for Signer {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).as_ref().to_vec()
    }
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub registry: Registry,
    pub admin: Operator,
}

pub async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let pass = Passphrase::new("correct horse battery staple".into()).unwrap();
    let ca = Ca::init(
        dir.path(),
        &pass,
        KdfParams::fast_for_tests(),
        CaOptions::default(),
    )
    .unwrap();
    let key = Ed25519KeyPair::from_pkcs8(ca.audit_key_pkcs8()).unwrap();
    let store = SqliteStore::open(
        &dir.path().join("bulwark.db"),
        Box::new(Signer(key)),
        CheckpointPolicy::default(),
    )
    .unwrap();
    let registry = Registry::new(
        Arc::new(store),
        Arc::new(ca),
        EventBus::new(64),
        RegistryConfig::default(),
    );
    let token = registry.bootstrap_admin_token("test").await.unwrap();
    let admin = registry
        .authenticate_operator(&token, "test")
        .await
        .unwrap();
    Fixture {
        dir,
        registry,
        admin,
    }
}

pub fn group(name: &str) -> GroupId {
    GroupId::new(name).unwrap()
}

/// A CSR for a fresh P-256 key (the registry takes only its public key).
pub fn csr_der() -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .der()
        .to_vec()
}

impl Fixture {
    pub async fn operator(&self, role: Role) -> Operator {
        let (secret, _) = self
            .registry
            .create_operator_token(&self.admin, role.to_string(), role, None)
            .await
            .unwrap();
        self.registry
            .authenticate_operator(&secret, "test")
            .await
            .unwrap()
    }

    /// Creates group `g` if needed and enrolls device `id` into it (active).
    pub async fn enrolled(&self, g: &str, id: &str) -> DeviceId {
        let r = &self.registry;
        let _ = r.create_group(&self.admin, group(g), String::new()).await;
        let (token, _) = r
            .create_enroll_token(
                &self.admin,
                group(g),
                Some(DeviceId::new(id).unwrap()),
                None,
            )
            .await
            .unwrap();
        r.enroll_with_token(&token, &csr_der(), "test")
            .await
            .unwrap();
        DeviceId::new(id).unwrap()
    }
}
