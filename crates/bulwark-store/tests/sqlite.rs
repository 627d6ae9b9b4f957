//! The SQLite store against a real database file.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use bulwark_audit::{Actor, AuditEvent, VerifyError};
use bulwark_store::sqlite::verify_audit_offline;
use bulwark_store::{
    CheckpointPolicy, CheckpointSigner, EnrollAuth, Enrollment, NewCert, NewEnrollToken, NewGroup,
    SqliteStore, Store, StoreError,
};
use bulwark_types::{CertKind, CertSerial, DeviceId, DeviceState, GroupId, RevocationReason};
use time::{Duration, OffsetDateTime};

struct Signer(Ed25519KeyPair);
impl CheckpointSigner for Signer {
    fn sign(&self, m: &[u8]) -> Vec<u8> {
        self.0.sign(m).as_ref().to_vec()
    }
}

fn open(path: &Path) -> (SqliteStore, [u8; 32]) {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let pk: [u8; 32] = key.public_key().as_ref().try_into().unwrap();
    let policy = CheckpointPolicy {
        every_entries: 5,
        every: std::time::Duration::from_secs(60),
    };
    (
        SqliteStore::open(path, Box::new(Signer(key)), policy).unwrap(),
        pk,
    )
}

fn cert(serial: u8, subject: &str) -> NewCert {
    let now = OffsetDateTime::now_utc();
    NewCert {
        serial: CertSerial::from_bytes(&[serial, 1, 2, 3, 4, 5, 6, 7]).unwrap(),
        kind: CertKind::Device,
        subject: subject.into(),
        der: vec![0x30, 0x00],
        fingerprint_sha256: "00".into(),
        not_before: now,
        not_after: now + Duration::days(30),
    }
}

async fn token(store: &SqliteStore, hash: u8, ttl: Duration) {
    store
        .create_enroll_token(
            NewEnrollToken {
                id: format!("t{hash}"),
                hash: [hash; 32],
                group: GroupId::new("g").unwrap(),
                device_id: None,
                expires_at: OffsetDateTime::now_utc() + ttl,
            },
            Actor::System,
        )
        .await
        .unwrap();
}

fn enrollment(hash: u8, device: &str, serial: u8) -> Enrollment {
    Enrollment {
        auth: EnrollAuth::Token([hash; 32]),
        device_id: DeviceId::new(device).unwrap(),
        group: GroupId::new("g").unwrap(),
        cert: cert(serial, device),
        actor: Actor::Anonymous {
            source: "127.0.0.1".into(),
        },
    }
}

#[tokio::test]
async fn enrollment_consumes_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, pk) = open(&dir.path().join("db.sqlite"));
    let group = NewGroup {
        name: GroupId::new("g").unwrap(),
        description: String::new(),
    };
    store.create_group(group, Actor::System).await.unwrap();
    token(&store, 1, Duration::hours(1)).await;
    token(&store, 2, Duration::seconds(-1)).await;

    let dev = store
        .commit_enrollment(enrollment(1, "d1", 1))
        .await
        .unwrap();
    assert_eq!(dev.state, DeviceState::Active);
    let again = store.commit_enrollment(enrollment(1, "d2", 2)).await;
    assert!(matches!(again, Err(StoreError::TokenUsed)), "{again:?}");
    let expired = store.commit_enrollment(enrollment(2, "d3", 3)).await;
    assert!(
        matches!(expired, Err(StoreError::TokenExpired)),
        "{expired:?}"
    );
    let unknown = store.commit_enrollment(enrollment(9, "d4", 4)).await;
    assert!(
        matches!(unknown, Err(StoreError::TokenInvalid)),
        "{unknown:?}"
    );
    // The refused enrollments wrote nothing.
    assert!(store
        .get_device(&DeviceId::new("d2").unwrap())
        .await
        .unwrap()
        .is_none());

    // Decommissioning revokes the device's certificate.
    let t = store
        .transition_device(
            DeviceId::new("d1").unwrap(),
            DeviceState::Decommissioned,
            Actor::System,
        )
        .await
        .unwrap();
    assert_eq!(t.revoked.len(), 1);
    let revoked = store.revoked_certificates().await.unwrap();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0].reason, RevocationReason::CessationOfOperation);
    let bad = store
        .transition_device(
            DeviceId::new("d1").unwrap(),
            DeviceState::Active,
            Actor::System,
        )
        .await;
    assert!(matches!(bad, Err(StoreError::Transition(_))), "{bad:?}");

    store.checkpoint_now().await.unwrap();
    let report = verify_audit_offline(store.path(), &pk).unwrap().unwrap();
    assert!(report.entries >= 6, "{report:?}");
    assert_eq!(report.last_checkpoint, report.entries);
}

#[tokio::test]
async fn concurrent_writes_commit_and_chain() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let (store, pk) = open(&path);
    let store = std::sync::Arc::new(store);
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.append_audit(
                Actor::System,
                AuditEvent::AuthenticationFailed {
                    reason: format!("attempt {i}"),
                },
            )
            .await
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.unwrap().unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());
    store.checkpoint_now().await.unwrap();
    let report = verify_audit_offline(&path, &pk).unwrap().unwrap();
    assert_eq!(report.entries, 200);

    // An edit made directly in SQLite is found and named.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE audit_log SET actor = 'operator:nobody' WHERE seq = 42",
        [],
    )
    .unwrap();
    let verdict = verify_audit_offline(&path, &pk).unwrap();
    assert_eq!(verdict, Err(VerifyError::Modified { seq: 42 }));
}
