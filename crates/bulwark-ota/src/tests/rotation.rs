//! Root rotation: N+1 needs a threshold of the old root keys and of the new
//! ones; a device holding the old root follows the chain.

use tough::schema::{Root, Signed};

use super::*;
use crate::{sign_root_metadata, FsRangeFetch, MetadataRole};

#[tokio::test]
async fn rotated_root_and_timestamp_key_are_followed_by_an_old_client() {
    let fx = Fixture::new();
    fx.add(
        "fw.bin",
        b"before rotation",
        release(&["m1"], "1.0.0", None),
    );
    let store = tempfile::tempdir().unwrap();
    fx.client(&store.path().join("tuf")).await.unwrap();

    let new_root = SigningKey::generate().unwrap();
    let new_timestamp = SigningKey::generate().unwrap();
    let mut spec = fx.spec();
    spec.root = vec![new_root.public_key()];
    spec.timestamp = vec![new_timestamp.public_key()];
    let v = fx
        .repo
        .rotate_root(&spec, &[&fx.root_key, &new_root], now())
        .unwrap();
    assert_eq!(v, 2);
    assert!(fx.served().join("2.root.json").is_file());

    // The old timestamp signature no longer satisfies the new root:
    // refresh re-signs with the new online key right away.
    let online = OnlineKeys {
        snapshot: vec![copy_key(&fx.snapshot_key)],
        timestamp: vec![copy_key(&new_timestamp)],
    };
    let r = fx.repo.refresh(&online, now()).unwrap();
    assert_eq!(r.timestamp, Some(2));

    // Both a device that loaded before and a new one provisioned with
    // root v1 reach root v2 and verify the download.
    for datastore in [store.path().join("tuf"), store.path().join("fresh")] {
        let client = fx.client(&datastore).await.unwrap();
        assert_eq!(client.tough().root().signed.version.get(), 2);
        let c = client.check(&name("fw.bin"), &device("m1", None)).unwrap();
        let a = client
            .download(&c, &FsRangeFetch, &store.path().join("dl"))
            .await
            .unwrap();
        assert_eq!(std::fs::read(a.path()).unwrap(), b"before rotation");
    }
    // The root handed to new devices is now version 2.
    let latest: Signed<Root> = serde_json::from_slice(&fx.repo.root_bytes().unwrap()).unwrap();
    assert_eq!(latest.signed.version.get(), 2);
}

#[test]
fn rotation_needs_the_old_and_the_new_root_keys() {
    let fx = Fixture::new();
    let new_root = SigningKey::generate().unwrap();
    let mut spec = fx.spec();
    spec.root = vec![new_root.public_key()];
    for signers in [vec![&new_root], vec![&fx.root_key], vec![]] {
        let err = fx.repo.rotate_root(&spec, &signers, now()).unwrap_err();
        assert_refused(
            &err,
            matches!(
                err,
                OtaError::BadSignature {
                    role: MetadataRole::Root,
                    ..
                }
            ),
            "root metadata",
        );
    }
    assert!(!fx.served().join("2.root.json").exists());
    // Version N+1 only, never rewritten.
    fx.repo
        .rotate_root(&spec, &[&fx.root_key, &new_root], now())
        .unwrap();
    let old_next = fx.repo.next_root(&spec, now()).unwrap();
    let stale = sign_root_metadata(&old_next, &new_root).unwrap();
    fx.repo.rotate_root(&spec, &[&new_root], now()).unwrap();
    let err = fx.repo.accept_root(&stale, now()).unwrap_err();
    assert!(
        matches!(
            err,
            OtaError::Refused {
                role: MetadataRole::Root,
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn several_offline_root_keys_sign_in_turn() {
    // Root threshold 2 of 3, old and new; each key file signs the same bytes.
    let dir = tempfile::tempdir().unwrap();
    let old: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate().unwrap()).collect();
    let [t, s, ts] = [0, 1, 2].map(|_| SigningKey::generate().unwrap());
    let mut spec = RootSpec::single(&old[0], &t, &s, &ts);
    spec.root = old.iter().map(SigningKey::public_key).collect();
    spec.root_threshold = NonZeroU64::new(2).unwrap();
    let err =
        Repository::create(dir.path(), &spec, &[&old[0]], Expiries::default(), now()).unwrap_err();
    assert!(matches!(err, OtaError::BadSignature { .. }), "{err:?}");
    let repo = Repository::create(
        dir.path(),
        &spec,
        &[&old[0], &old[2]],
        Expiries::default(),
        now(),
    )
    .unwrap();

    let new: Vec<SigningKey> = (0..3).map(|_| SigningKey::generate().unwrap()).collect();
    let mut next = spec.clone();
    next.root = new.iter().map(SigningKey::public_key).collect();
    let mut bytes = repo.next_root(&next, now()).unwrap();
    for key in [&old[1], &new[0], &new[2]] {
        bytes = sign_root_metadata(&bytes, key).unwrap();
    }
    // One old key is not a threshold of the old root.
    assert!(matches!(
        repo.accept_root(&bytes, now()),
        Err(OtaError::BadSignature { .. })
    ));
    bytes = sign_root_metadata(&bytes, &old[2]).unwrap();
    assert_eq!(repo.accept_root(&bytes, now()).unwrap(), 2);
}

#[tokio::test]
async fn a_root_not_signed_by_the_old_keys_is_refused_by_the_device() {
    let fx = Fixture::new();
    fx.add("fw.bin", b"x", release(&["m1"], "1.0.0", None));
    // An attacker's root v2, self-signed with their own root key.
    let evil = SigningKey::generate().unwrap();
    let mut spec = fx.spec();
    spec.root = vec![evil.public_key()];
    let unsigned = fx.repo.next_root(&spec, now()).unwrap();
    let signed = sign_root_metadata(&unsigned, &evil).unwrap();
    fx.write("2.root.json", &signed);
    let store = tempfile::tempdir().unwrap();
    let err = fx.client(store.path()).await.unwrap_err();
    assert_refused(
        &err,
        matches!(
            err,
            OtaError::BadSignature {
                role: MetadataRole::Root,
                ..
            }
        ),
        "bad signature",
    );
}

#[tokio::test]
async fn a_device_that_saw_a_rotation_ignores_a_fork_signed_by_the_retired_key() {
    let fx = Fixture::new();
    fx.add("fw.bin", b"x", release(&["m1"], "1.0.0", None));
    let new_root = SigningKey::generate().unwrap();
    let mut spec = fx.spec();
    spec.root = vec![new_root.public_key()];
    fx.repo
        .rotate_root(&spec, &[&fx.root_key, &new_root], now())
        .unwrap();
    let store = tempfile::tempdir().unwrap();
    assert_eq!(
        fx.client(store.path())
            .await
            .unwrap()
            .tough()
            .root()
            .signed
            .version
            .get(),
        2
    );

    // Later the retired root key leaks: the attacker makes another root v2
    // (self-consistent under the old key) naming their own timestamp key.
    let evil_ts = SigningKey::generate().unwrap();
    let mut forged: Signed<Root> = serde_json::from_slice(&fx.root_v1()).unwrap();
    forged.signed.version = NonZeroU64::new(2).unwrap();
    let evil_id = evil_ts.public_key().as_tough().key_id().unwrap();
    forged
        .signed
        .keys
        .insert(evil_id.clone(), evil_ts.public_key().as_tough().clone());
    let ts_role = forged
        .signed
        .roles
        .get_mut(&tough::schema::RoleType::Timestamp)
        .unwrap();
    ts_role.keyids = vec![evil_id];
    let forged = sign_role(forged.signed, &[&fx.root_key]).unwrap();
    fx.write_signed("2.root.json", &forged);
    let snapshot = fx.read("1.snapshot.json");
    let mut ts = tough::schema::Timestamp::new(
        "1.0.0".into(),
        NonZeroU64::new(9).unwrap(),
        jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24),
    );
    ts.meta.insert(
        "snapshot.json".into(),
        crate::repo::publish::metafile(&snapshot, NonZeroU64::MIN),
    );
    fx.write_signed("timestamp.json", &sign_role(ts, &[&evil_ts]).unwrap());

    // The device starts from the root v2 it verified, not from v1.
    let err = fx.client(store.path()).await.unwrap_err();
    assert_refused(
        &err,
        matches!(
            err,
            OtaError::BadSignature {
                role: MetadataRole::Timestamp,
                ..
            }
        ),
        "bad signature",
    );
    // A device that only ever had v1 would follow the fork: why roots persist.
    let fresh = tempfile::tempdir().unwrap();
    assert!(fx.client(fresh.path()).await.is_ok());
}

fn source_text(err: &OtaError) -> String {
    std::error::Error::source(err)
        .map(ToString::to_string)
        .unwrap_or_default()
}

#[test]
fn current_spec_is_the_newest_roots_keys_and_thresholds() {
    let fx = Fixture::new();
    assert_eq!(fx.repo.current_spec().unwrap(), fx.spec());

    // Change only the targets role (two keys, threshold two): the other
    // roles come through unchanged, in the next version.
    let extra = SigningKey::generate().unwrap();
    let mut spec = fx.repo.current_spec().unwrap();
    spec.targets.push(extra.public_key());
    spec.targets_threshold = NonZeroU64::new(2).unwrap();
    fx.repo.rotate_root(&spec, &[&fx.root_key], now()).unwrap();
    let current = fx.repo.current_spec().unwrap();
    // A role's keys are a set: the metadata lists them by key id.
    spec.targets.sort_by_key(|k| k.key_id().as_str().to_owned());
    assert_eq!(current, spec);
    assert_eq!(current.root, vec![fx.root_key.public_key()]);
    assert_eq!(current.timestamp, vec![fx.timestamp_key.public_key()]);

    let summary = crate::describe_root(&fx.repo.root_bytes().unwrap()).unwrap();
    assert_eq!((summary.version, summary.signatures), (2, 1));
    let targets = &summary.roles[1];
    assert_eq!(targets.role, MetadataRole::Targets);
    assert_eq!(targets.threshold, 2);
    let mut ids = vec![fx.targets_key.key_id(), extra.key_id()];
    ids.sort();
    assert_eq!(targets.key_ids, ids);
}

#[test]
fn a_refused_rotation_says_which_keys_are_missing() {
    let fx = Fixture::new();
    let new_root = SigningKey::generate().unwrap();
    let mut spec = fx.repo.current_spec().unwrap();
    spec.root = vec![new_root.public_key()];
    let unsigned = fx.repo.next_root(&spec, now()).unwrap();
    for (key, says) in [
        (
            &new_root,
            "not signed by a threshold of the current root (version 1)'s root keys",
        ),
        (
            &fx.root_key,
            "not signed by a threshold of its own (new) root keys",
        ),
    ] {
        let signed = sign_root_metadata(&unsigned, key).unwrap();
        let err = fx.repo.accept_root(&signed, now()).unwrap_err();
        assert!(matches!(err, OtaError::BadSignature { .. }), "{err:?}");
        let why = source_text(&err);
        assert!(why.contains(says), "{why}");
        assert!(why.contains("Signature threshold of 1 not met"), "{why}");
    }
}

#[test]
fn the_server_refuses_a_root_whose_online_roles_it_could_not_sign() {
    let fx = Fixture::new();
    fx.add("fw.bin", b"x", release(&["m1"], "1.0.0", None));
    let online = OnlineKeys {
        snapshot: vec![copy_key(&fx.snapshot_key)],
        timestamp: vec![copy_key(&fx.timestamp_key)],
    };
    // A timestamp key the server does not hold: refused before anything
    // is written.
    let foreign = SigningKey::generate().unwrap();
    let mut spec = fx.repo.current_spec().unwrap();
    spec.timestamp = vec![foreign.public_key()];
    let err = spec.check_online(&online).unwrap_err();
    assert!(err.to_string().contains("timestamp"), "{err}");
    let signed =
        sign_root_metadata(&fx.repo.next_root(&spec, now()).unwrap(), &fx.root_key).unwrap();
    let err = fx
        .repo
        .accept_root_online(&signed, &online, now())
        .unwrap_err();
    assert!(matches!(err, OtaError::Refused { .. }), "{err:?}");
    assert!(!fx.served().join("2.root.json").exists());

    // The server's own keys, a new root key: accepted; snapshot and
    // timestamp still verify under it, so nothing is re-signed.
    let new_root = SigningKey::generate().unwrap();
    let mut spec = fx.repo.current_spec().unwrap();
    spec.root = vec![new_root.public_key()];
    let mut bytes = fx.repo.next_root(&spec, now()).unwrap();
    for key in [&fx.root_key, &new_root] {
        bytes = sign_root_metadata(&bytes, key).unwrap();
    }
    let version = fx.repo.accept_root_online(&bytes, &online, now()).unwrap();
    assert_eq!(version, 2);
    assert_eq!(fx.repo.refresh(&online, now()).unwrap().timestamp, None);
}
