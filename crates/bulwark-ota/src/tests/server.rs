//! Server-side refusals of offline-signed targets metadata: wrong key,
//! below threshold, wrong version, expired, unknown artifact, unsafe name,
//! changed content of a published name; and wrong online keys.

use std::collections::HashMap;

use tough::schema::{Hashes, Signed, Target, Targets};

use super::*;
use crate::{sign_targets_metadata, MetadataRole};

fn unsigned_next(fx: &Fixture, target: &str, content: &[u8]) -> Vec<u8> {
    let t = fx.new_target(target, content, release(&["m1"], "1.0.0", None));
    fx.repo.next_targets(&[t], &[], now()).unwrap()
}

#[test]
fn targets_signed_with_a_wrong_key_are_refused() {
    let fx = Fixture::new();
    let unsigned = unsigned_next(&fx, "fw.bin", b"x");
    let wrong = SigningKey::generate().unwrap();
    for key in [&wrong, &fx.snapshot_key, &fx.root_key] {
        let signed = sign_targets_metadata(&unsigned, key).unwrap();
        let err = fx
            .repo
            .accept_signed_targets(&signed, &fx.online(), now())
            .unwrap_err();
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
    // Unsigned metadata is refused too.
    let err = fx
        .repo
        .accept_signed_targets(&unsigned, &fx.online(), now())
        .unwrap_err();
    assert!(matches!(err, OtaError::Malformed { .. }), "{err:?}");
    assert!(fx.repo.status().unwrap().targets.is_none());
}

#[test]
fn targets_below_the_threshold_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys: Vec<SigningKey> = (0..5).map(|_| SigningKey::generate().unwrap()).collect();
    let [root, t1, t2, snap, ts] = [&keys[0], &keys[1], &keys[2], &keys[3], &keys[4]];
    let mut spec = RootSpec::single(root, t1, snap, ts);
    spec.targets = vec![t1.public_key(), t2.public_key()];
    spec.targets_threshold = NonZeroU64::new(2).unwrap();
    let repo = Repository::create(dir.path(), &spec, &[root], Expiries::default(), now()).unwrap();
    let online = OnlineKeys {
        snapshot: vec![copy_key(snap)],
        timestamp: vec![copy_key(ts)],
    };
    let artifact = repo.store_artifact(&b"fw"[..], MAX).unwrap();
    let t = NewTarget {
        name: name("fw.bin"),
        artifact,
        release: release(&["m1"], "1.0.0", None),
    };
    let unsigned = repo.next_targets(&[t], &[], now()).unwrap();
    let once = sign_targets_metadata(&unsigned, t1).unwrap();
    // Signing again with the same key adds no second signature.
    let twice_same = sign_targets_metadata(&once, t1).unwrap();
    for signed in [&once, &twice_same] {
        let err = repo
            .accept_signed_targets(signed, &online, now())
            .unwrap_err();
        assert_refused(
            &err,
            matches!(
                err,
                OtaError::BadSignature {
                    role: MetadataRole::Targets,
                    ..
                }
            ),
            "threshold",
        );
    }
    let both = sign_targets_metadata(&once, t2).unwrap();
    assert_eq!(
        repo.accept_signed_targets(&both, &online, now())
            .unwrap()
            .targets,
        1
    );
}

#[test]
fn targets_must_be_exactly_the_next_version() {
    let fx = Fixture::new();
    let unsigned = unsigned_next(&fx, "fw.bin", b"x");
    let signed = sign_targets_metadata(&unsigned, &fx.targets_key).unwrap();
    fx.repo
        .accept_signed_targets(&signed, &fx.online(), now())
        .unwrap();
    // Replaying the same signed file: version 1 is no longer the next.
    let err = fx
        .repo
        .accept_signed_targets(&signed, &fx.online(), now())
        .unwrap_err();
    assert_refused(
        &err,
        matches!(
            err,
            OtaError::Refused {
                role: MetadataRole::Targets,
                ..
            }
        ),
        "not the next version",
    );
    // Skipping a version is refused too.
    let mut targets: Targets = serde_json::from_slice(&unsigned_next(&fx, "b.bin", b"b")).unwrap();
    targets.version = NonZeroU64::new(5).unwrap();
    let signed = file_bytes(&sign_role(targets, &[&fx.targets_key]).unwrap()).unwrap();
    let err = fx
        .repo
        .accept_signed_targets(&signed, &fx.online(), now())
        .unwrap_err();
    assert!(matches!(err, OtaError::Refused { .. }), "{err:?}");
}

#[test]
fn expired_targets_are_refused() {
    let fx = Fixture::new();
    let t = fx.new_target("fw.bin", b"x", release(&["m1"], "1.0.0", None));
    let unsigned = fx.repo.next_targets(&[t], &[], now() - 100 * DAY).unwrap();
    let signed = sign_targets_metadata(&unsigned, &fx.targets_key).unwrap();
    let err = fx
        .repo
        .accept_signed_targets(&signed, &fx.online(), now())
        .unwrap_err();
    assert_refused(
        &err,
        matches!(
            err,
            OtaError::Expired {
                role: MetadataRole::Targets,
                ..
            }
        ),
        "expired",
    );
}

fn hand_made_targets(fx: &Fixture, name: &str, sha256: Vec<u8>, length: u64) -> Vec<u8> {
    let mut targets = Targets {
        spec_version: "1.0.0".into(),
        version: NonZeroU64::MIN,
        expires: jiff::Timestamp::now() + jiff::SignedDuration::from_hours(240),
        targets: HashMap::new(),
        delegations: None,
        _extra: HashMap::new(),
    };
    targets.targets.insert(
        tough::TargetName::new(name).unwrap(),
        Target {
            length,
            hashes: Hashes {
                sha256: sha256.into(),
                _extra: HashMap::new(),
            },
            custom: release(&["m1"], "1.0.0", None).to_custom(),
            _extra: HashMap::new(),
        },
    );
    let signed: Signed<Targets> = sign_role(targets, &[&fx.targets_key]).unwrap();
    file_bytes(&signed).unwrap()
}

#[test]
fn targets_naming_unknown_or_different_artifacts_are_refused() {
    let fx = Fixture::new();
    let stored = fx.repo.store_artifact(&b"real"[..], MAX).unwrap();
    // Not in the store at all.
    let bytes = hand_made_targets(&fx, "fw.bin", vec![0xaa; 32], 4);
    let err = fx
        .repo
        .accept_signed_targets(&bytes, &fx.online(), now())
        .unwrap_err();
    assert!(matches!(err, OtaError::ArtifactMissing { .. }), "{err:?}");
    // Right hash, wrong length.
    let bytes = hand_made_targets(&fx, "fw.bin", stored.sha256.0.to_vec(), 5);
    let err = fx
        .repo
        .accept_signed_targets(&bytes, &fx.online(), now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            OtaError::HashMismatch { .. } | OtaError::ArtifactMissing { .. }
        ),
        "{err:?}"
    );
    // A traversal name, signed by the real key, is refused.
    let bytes = hand_made_targets(&fx, "../fw.bin", stored.sha256.0.to_vec(), 4);
    let err = fx
        .repo
        .accept_signed_targets(&bytes, &fx.online(), now())
        .unwrap_err();
    assert_refused(
        &err,
        matches!(err, OtaError::InvalidName(_)),
        "path traversal",
    );
    assert!(fx.repo.status().unwrap().targets.is_none());
    // The right one is accepted.
    let bytes = hand_made_targets(&fx, "fw.bin", stored.sha256.0.to_vec(), 4);
    fx.repo
        .accept_signed_targets(&bytes, &fx.online(), now())
        .unwrap();
}

#[test]
fn a_published_name_keeps_its_content() {
    let fx = Fixture::new();
    fx.add("fw.bin", b"first", release(&["m1"], "1.0.0", None));
    let t = fx.new_target("fw.bin", b"second", release(&["m1"], "1.0.1", None));
    let err = fx
        .repo
        .next_targets(std::slice::from_ref(&t), &[], now())
        .unwrap_err();
    assert!(matches!(err, OtaError::TargetImmutable { .. }), "{err:?}");
    let err = fx
        .repo
        .publish(
            std::slice::from_ref(&t),
            &[],
            &[&fx.targets_key],
            &fx.online(),
            now(),
        )
        .unwrap_err();
    assert!(matches!(err, OtaError::TargetImmutable { .. }), "{err:?}");
    // Removing it first and re-adding in a later publication is explicit.
    fx.repo
        .publish(
            &[],
            &[name("fw.bin")],
            &[&fx.targets_key],
            &fx.online(),
            now(),
        )
        .unwrap();
    fx.publish_at(t, now());
    assert!(matches!(
        fx.repo.next_targets(&[], &[name("nope.bin")], now()),
        Err(OtaError::UnknownTarget { .. })
    ));
}

#[test]
fn wrong_online_keys_write_nothing() {
    let fx = Fixture::new();
    let t = fx.new_target("fw.bin", b"x", release(&["m1"], "1.0.0", None));
    let swapped = OnlineKeys {
        snapshot: vec![copy_key(&fx.timestamp_key)],
        timestamp: vec![copy_key(&fx.snapshot_key)],
    };
    let err = fx
        .repo
        .publish(&[t], &[], &[&fx.targets_key], &swapped, now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            OtaError::BadSignature {
                role: MetadataRole::Snapshot,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(!fx.served().join("1.targets.json").exists());
    assert!(!fx.served().join("timestamp.json").exists());
}
