//! Each TUF attack against a device, refused with its own error: tampered
//! artifact, endless data, replayed timestamp/snapshot/targets (rollback),
//! expired metadata (freeze), mix-and-match, arbitrary software, downgrade
//! below the floor, wrong hardware, unknown target.

use tough::schema::{Signed, Targets};

use super::*;
use crate::{FsRangeFetch, MetadataRole};

fn sha_hex(content: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        content,
    ))
}

/// Publishes `fw.bin`, returns the fixture and the served target file name.
fn one_release(content: &[u8]) -> (Fixture, String) {
    let fx = Fixture::new();
    fx.add("fw.bin", content, release(&["m1"], "1.0.0", None));
    let file = format!("targets/{}.fw.bin", sha_hex(content));
    (fx, file)
}

#[tokio::test]
async fn tampered_artifact_is_refused_and_deleted() {
    let content = b"genuine firmware".repeat(100);
    let (fx, file) = one_release(&content);
    let mut evil = content.clone();
    evil[10] ^= 0x01;
    fx.write(&file, &evil);

    let store = tempfile::tempdir().unwrap();
    let client = fx.client(&store.path().join("tuf")).await.unwrap();
    let candidate = client.check(&name("fw.bin"), &device("m1", None)).unwrap();
    let dl = store.path().join("dl");
    let err = client
        .download(&candidate, &FsRangeFetch, &dl)
        .await
        .unwrap_err();
    assert_refused(
        &err,
        matches!(err, OtaError::HashMismatch { .. }),
        "hash mismatch",
    );
    assert_eq!(
        std::fs::read_dir(&dl).unwrap().count(),
        0,
        "partial file deleted"
    );
}

#[tokio::test]
async fn endless_data_is_cut_at_the_signed_length() {
    let content = b"genuine firmware".to_vec();
    let (fx, file) = one_release(&content);
    let mut longer = content.clone();
    longer.extend(std::iter::repeat_n(0u8, 1024 * 1024));
    fx.write(&file, &longer);

    let store = tempfile::tempdir().unwrap();
    let client = fx.client(&store.path().join("tuf")).await.unwrap();
    let candidate = client.check(&name("fw.bin"), &device("m1", None)).unwrap();
    let dl = store.path().join("dl");
    let err = client
        .download(&candidate, &FsRangeFetch, &dl)
        .await
        .unwrap_err();
    assert_refused(
        &err,
        matches!(err, OtaError::LengthExceeded { max, .. } if max == content.len() as u64),
        "endless data",
    );
    assert_eq!(std::fs::read_dir(&dl).unwrap().count(), 0);
}

#[tokio::test]
async fn replayed_older_timestamp_is_a_rollback() {
    let fx = Fixture::new();
    fx.add("a.bin", b"a", release(&["m1"], "1.0.0", None));
    let old_timestamp = fx.read("timestamp.json");
    fx.add("b.bin", b"b", release(&["m1"], "2.0.0", None));
    let store = tempfile::tempdir().unwrap();
    fx.client(store.path()).await.unwrap();

    fx.write("timestamp.json", &old_timestamp);
    let err = fx.client(store.path()).await.unwrap_err();
    assert_refused(
        &err,
        matches!(
            err,
            OtaError::Rollback {
                role: MetadataRole::Timestamp,
                ..
            }
        ),
        "rollback of timestamp",
    );
    // A device that never saw the newer one accepts the older (still valid) set.
    let fresh = tempfile::tempdir().unwrap();
    assert_eq!(fx.client(fresh.path()).await.unwrap().targets_version(), 1);
}

#[tokio::test]
async fn replayed_older_snapshot_is_a_rollback() {
    // An attacker with the (online) timestamp key signs a new timestamp
    // pointing at the older snapshot.
    let fx = Fixture::new();
    fx.add("a.bin", b"a", release(&["m1"], "1.0.0", None));
    let old_snapshot = fx.read("1.snapshot.json");
    fx.add("b.bin", b"b", release(&["m1"], "2.0.0", None));
    let store = tempfile::tempdir().unwrap();
    fx.client(store.path()).await.unwrap();

    fx.forge_timestamp(&old_snapshot, 1, 3);
    let err = fx.client(store.path()).await.unwrap_err();
    assert_refused(
        &err,
        matches!(
            err,
            OtaError::Rollback {
                role: MetadataRole::Snapshot,
                ..
            }
        ),
        "rollback of snapshot",
    );
}

#[tokio::test]
async fn replayed_older_targets_is_a_rollback() {
    // With both online keys: a new snapshot listing the older targets.
    let fx = Fixture::new();
    fx.add("a.bin", b"a", release(&["m1"], "1.0.0", None));
    let old_targets = fx.read("1.targets.json");
    fx.add("b.bin", b"b", release(&["m1"], "2.0.0", None));
    let store = tempfile::tempdir().unwrap();
    fx.client(store.path()).await.unwrap();

    fx.forge_snapshot_and_timestamp(&old_targets, 1, 3, 3);
    let err = fx.client(store.path()).await.unwrap_err();
    assert_refused(
        &err,
        matches!(
            err,
            OtaError::Rollback {
                role: MetadataRole::Targets,
                ..
            }
        ),
        "rollback of targets",
    );
}

#[tokio::test]
async fn expired_timestamp_is_a_freeze() {
    let fx = Fixture::new();
    let t = fx.new_target("fw.bin", b"x", release(&["m1"], "1.0.0", None));
    fx.publish_at(t, now() - 2 * DAY);
    let store = tempfile::tempdir().unwrap();
    let err = fx.client(store.path()).await.unwrap_err();
    assert_refused(
        &err,
        matches!(
            err,
            OtaError::Expired {
                role: MetadataRole::Timestamp,
                ..
            }
        ),
        "freeze",
    );
}

#[tokio::test]
async fn expired_targets_is_a_freeze() {
    let fx = Fixture::new();
    let t = fx.new_target("fw.bin", b"x", release(&["m1"], "1.0.0", None));
    fx.publish_at(t, now() - 91 * DAY);
    // Snapshot and timestamp are fresh again; the targets are not.
    let r = fx.repo.refresh(&fx.online(), now()).unwrap();
    assert_eq!((r.snapshot, r.timestamp), (Some(2), Some(2)));
    let store = tempfile::tempdir().unwrap();
    let err = fx.client(store.path()).await.unwrap_err();
    assert_refused(
        &err,
        matches!(
            err,
            OtaError::Expired {
                role: MetadataRole::Targets,
                ..
            }
        ),
        "targets metadata has expired",
    );
}

#[tokio::test]
async fn targets_from_another_publication_are_a_mix_and_match() {
    let fx = Fixture::new();
    fx.add("a.bin", b"a", release(&["m1"], "1.0.0", None));
    let targets_1 = fx.read("1.targets.json");
    fx.add("b.bin", b"b", release(&["m1"], "2.0.0", None));
    fx.write("2.targets.json", &targets_1);
    let store = tempfile::tempdir().unwrap();
    let err = fx.client(store.path()).await.unwrap_err();
    assert_refused(
        &err,
        matches!(
            err,
            OtaError::MixAndMatch {
                role: MetadataRole::Targets,
                ..
            }
        ),
        "mix-and-match",
    );
}

#[tokio::test]
async fn snapshot_from_another_publication_is_a_mix_and_match() {
    let fx = Fixture::new();
    fx.add("a.bin", b"a", release(&["m1"], "1.0.0", None));
    let snapshot_1 = fx.read("1.snapshot.json");
    fx.add("b.bin", b"b", release(&["m1"], "2.0.0", None));
    fx.write("2.snapshot.json", &snapshot_1);
    let store = tempfile::tempdir().unwrap();
    let err = fx.client(store.path()).await.unwrap_err();
    assert_refused(
        &err,
        matches!(
            err,
            OtaError::MixAndMatch {
                role: MetadataRole::Snapshot,
                ..
            }
        ),
        "mix-and-match",
    );
}

#[tokio::test]
async fn targets_signed_by_an_unknown_key_are_arbitrary_software() {
    // The attacker holds the online keys but not the targets key.
    let fx = Fixture::new();
    fx.add("a.bin", b"a", release(&["m1"], "1.0.0", None));
    let evil_artifact = fx.new_target("evil.bin", b"evil", release(&["m1"], "9.0.0", None));
    let unsigned = fx.repo.next_targets(&[evil_artifact], &[], now()).unwrap();
    let targets: Targets = serde_json::from_slice(&unsigned).unwrap();
    let evil_key = SigningKey::generate().unwrap();
    let signed: Signed<Targets> = sign_role(targets, &[&evil_key]).unwrap();
    let bytes = fx.write_signed("2.targets.json", &signed);
    fx.forge_snapshot_and_timestamp(&bytes, 2, 2, 2);

    let store = tempfile::tempdir().unwrap();
    let err = fx.client(store.path()).await.unwrap_err();
    assert_refused(
        &err,
        matches!(
            err,
            OtaError::BadSignature {
                role: MetadataRole::Targets,
                ..
            }
        ),
        "bad signature",
    );
}

#[tokio::test]
async fn downgrade_below_the_floor_is_refused() {
    let fx = Fixture::new();
    fx.add("fw-1.4.bin", b"old", release(&["m1"], "1.4.0", None));
    fx.add(
        "fw-2.0.bin",
        b"new",
        release(&["m1"], "2.0.0", Some("2.0.0")),
    );
    let store = tempfile::tempdir().unwrap();
    let client = fx.client(store.path()).await.unwrap();
    // The device installed 2.0.0 and persisted its floor.
    let installed = device("m1", Some("2.0.0"));
    client.check(&name("fw-2.0.bin"), &installed).unwrap();
    let err = client.check(&name("fw-1.4.bin"), &installed).unwrap_err();
    assert_refused(
        &err,
        matches!(&err, OtaError::BelowFloor { version, floor }
            if *version == Version::new(1, 4, 0) && *floor == Version::new(2, 0, 0)),
        "below floor",
    );
    // A device without that floor may still take the older release.
    client
        .check(&name("fw-1.4.bin"), &device("m1", None))
        .unwrap();
}

#[tokio::test]
async fn artifact_for_other_hardware_is_refused() {
    let fx = Fixture::new();
    fx.add(
        "fw.bin",
        b"x",
        release(&["gw-100", "gw-110"], "1.0.0", None),
    );
    let store = tempfile::tempdir().unwrap();
    let client = fx.client(store.path()).await.unwrap();
    let err = client
        .check(&name("fw.bin"), &device("cam-7", None))
        .unwrap_err();
    assert_refused(
        &err,
        matches!(&err, OtaError::WrongHardware { model, supported, .. }
            if model == "cam-7" && supported == "gw-100, gw-110"),
        "wrong hardware",
    );
}

#[tokio::test]
async fn unknown_target_is_refused() {
    let fx = Fixture::new();
    fx.add("fw.bin", b"x", release(&["m1"], "1.0.0", None));
    let store = tempfile::tempdir().unwrap();
    let client = fx.client(store.path()).await.unwrap();
    let err = client
        .check(&name("other.bin"), &device("m1", None))
        .unwrap_err();
    assert_refused(
        &err,
        matches!(err, OtaError::UnknownTarget { .. }),
        "unknown target",
    );
}

#[tokio::test]
async fn an_endless_timestamp_is_cut() {
    let fx = Fixture::new();
    fx.add("fw.bin", b"x", release(&["m1"], "1.0.0", None));
    let mut ts = fx.read("timestamp.json");
    ts.extend(std::iter::repeat_n(b' ', 2 * 1024 * 1024));
    fx.write("timestamp.json", &ts);
    let store = tempfile::tempdir().unwrap();
    let err = fx.client(store.path()).await.unwrap_err();
    assert_refused(
        &err,
        matches!(err, OtaError::LengthExceeded { .. }),
        "endless data",
    );
}
