//! The happy paths: publish (dev mode and offline signing), load, check,
//! download, verify; the artifact store; re-signing; serving paths.

use super::*;
use crate::{describe_targets, sign_targets_metadata, FsRangeFetch};

#[tokio::test]
async fn publish_load_check_download_verify() {
    let fx = Fixture::new();
    let content = b"firmware image v1.2.0".repeat(1000);
    let published = fx.add(
        "gw-fw.bin",
        &content,
        release(&["gw-100", "gw-200"], "1.2.0", Some("1.1.0")),
    );
    assert_eq!(
        (published.targets, published.snapshot, published.timestamp),
        (1, 1, 1)
    );

    let store = tempfile::tempdir().unwrap();
    let client = fx.client(&store.path().join("tuf")).await.unwrap();
    assert_eq!(client.targets_version(), 1);
    let candidate = client
        .check(&name("gw-fw.bin"), &device("gw-200", Some("1.0.0")))
        .unwrap();
    assert_eq!(candidate.length(), content.len() as u64);
    let downloads = store.path().join("downloads");
    let verified = client
        .download(&candidate, &FsRangeFetch, &downloads)
        .await
        .unwrap();
    assert_eq!(std::fs::read(verified.path()).unwrap(), content);
    assert_eq!(verified.name().as_str(), "gw-fw.bin");
    assert_eq!(verified.version(), &Version::new(1, 2, 0));
    assert_eq!(verified.floor(), Some(&Version::new(1, 1, 0)));
    assert_eq!(verified.length(), content.len() as u64);
    assert_eq!(verified.path().parent(), Some(downloads.as_path()));
    // No partial file is left behind.
    assert_eq!(std::fs::read_dir(&downloads).unwrap().count(), 1);
}

#[tokio::test]
async fn offline_signing_with_a_key_file_is_accepted() {
    let fx = Fixture::new();
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = key_dir.path().join("targets.pem");
    fx.targets_key.write_file(&key_file).unwrap();

    let t = fx.new_target("fw.bin", b"offline signed", release(&["m1"], "2.0.0", None));
    let unsigned = fx.repo.next_targets(&[t], &[], now()).unwrap();
    // On the signing machine: show what is signed, then sign with the file.
    let summary = describe_targets(&unsigned).unwrap();
    assert_eq!((summary.version, summary.signatures), (1, 0));
    assert_eq!(summary.targets[0].name, "fw.bin");
    assert_eq!(
        summary.targets[0].release.as_ref().unwrap().version(),
        &Version::new(2, 0, 0)
    );
    let key = SigningKey::read_file(&key_file).unwrap();
    let signed = sign_targets_metadata(&unsigned, &key).unwrap();
    assert_eq!(describe_targets(&signed).unwrap().signatures, 1);

    let published = fx
        .repo
        .accept_signed_targets(&signed, &fx.online(), now())
        .unwrap();
    assert_eq!(published.targets, 1);
    let store = tempfile::tempdir().unwrap();
    let client = fx.client(store.path()).await.unwrap();
    client.check(&name("fw.bin"), &device("m1", None)).unwrap();
}

#[tokio::test]
async fn latest_for_picks_the_highest_compatible_release() {
    let fx = Fixture::new();
    fx.add("a-1.0.bin", b"a1", release(&["m1"], "1.0.0", None));
    fx.add("a-1.5.bin", b"a15", release(&["m1"], "1.5.0", None));
    fx.add("b-3.0.bin", b"b3", release(&["m2"], "3.0.0", None));
    fx.add(
        "a-2.0-rc.bin",
        b"a2rc",
        release(&["m1"], "2.0.0-rc.1", Some("1.5.0")),
    );
    let store = tempfile::tempdir().unwrap();
    let client = fx.client(store.path()).await.unwrap();
    assert_eq!(client.targets_version(), 4);
    let best = client.latest_for(&device("m1", None)).unwrap().unwrap();
    assert_eq!(best.name().as_str(), "a-2.0-rc.bin");
    let best = client.latest_for(&device("m2", None)).unwrap().unwrap();
    assert_eq!(best.name().as_str(), "b-3.0.bin");
    assert!(client
        .latest_for(&device("m2", Some("4.0.0")))
        .unwrap()
        .is_none());
    assert!(client.latest_for(&device("m3", None)).unwrap().is_none());
}

#[test]
fn identical_content_is_stored_once_and_uploads_are_bounded() {
    let fx = Fixture::new();
    let a = fx.repo.store_artifact(&b"same bytes"[..], 100).unwrap();
    let b = fx.repo.store_artifact(&b"same bytes"[..], 100).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.length, 10);
    let expected = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b"same bytes");
    assert_eq!(a.sha256.to_hex(), hex::encode(expected));
    let artifacts = fx.dir.path().join("ota/artifacts");
    assert_eq!(std::fs::read_dir(&artifacts).unwrap().count(), 1);

    // Exactly at the limit is fine; one byte more is refused and leaves nothing.
    assert!(fx.repo.store_artifact(&[7u8; 100][..], 100).is_ok());
    let err = fx.repo.store_artifact(&[8u8; 101][..], 100).unwrap_err();
    assert!(
        matches!(err, OtaError::ArtifactTooLarge { max: 100 }),
        "{err:?}"
    );
    let big = std::io::Read::take(std::io::repeat(1), 10 * 1024 * 1024);
    assert!(matches!(
        fx.repo.store_artifact(big, 1024 * 1024),
        Err(OtaError::ArtifactTooLarge { .. })
    ));
    assert_eq!(
        std::fs::read_dir(fx.dir.path().join("ota/tmp"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(std::fs::read_dir(&artifacts).unwrap().count(), 2);
}

#[tokio::test]
async fn refresh_resigns_timestamp_and_snapshot_when_due() {
    let fx = Fixture::new();
    fx.add("fw.bin", b"x", release(&["m1"], "1.0.0", None));
    let fresh = fx.repo.refresh(&fx.online(), now()).unwrap();
    assert_eq!((fresh.snapshot, fresh.timestamp), (None, None));
    assert!(fresh.targets_expires.is_some());

    // 13 hours later less than half of the timestamp's day is left.
    let later = now() + Duration::from_secs(13 * 3600);
    let r = fx.repo.refresh(&fx.online(), later).unwrap();
    assert_eq!((r.snapshot, r.timestamp), (None, Some(2)));
    // 4 days later the snapshot is due too.
    let r = fx.repo.refresh(&fx.online(), now() + 4 * DAY).unwrap();
    assert_eq!((r.snapshot, r.timestamp), (Some(2), Some(3)));

    let status = fx.repo.status().unwrap();
    assert_eq!(status.timestamp.map(|t| t.0), Some(3));
    assert_eq!(status.snapshot.map(|t| t.0), Some(2));
    assert_eq!(status.targets.map(|t| t.0), Some(1));
    let store = tempfile::tempdir().unwrap();
    let client = fx.client(store.path()).await.unwrap();
    assert_eq!(client.tough().timestamp().signed.version.get(), 3);
}

#[test]
fn resolve_serves_only_the_client_file_forms() {
    let fx = Fixture::new();
    let p = fx.add("fw.bin", b"served", release(&["m1"], "1.0.0", None));
    let sha = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        b"served",
    ));
    for ok in [
        "1.root.json".to_owned(),
        "timestamp.json".to_owned(),
        format!("{}.snapshot.json", p.snapshot),
        format!("{}.targets.json", p.targets),
        format!("targets/{sha}.fw.bin"),
    ] {
        let path = fx.repo.resolve(&ok).unwrap();
        assert!(path.starts_with(fx.served()), "{ok}");
    }
    std::fs::write(fx.served().join("notes.txt"), b"x").unwrap();
    for bad in [
        "2.root.json".to_owned(),
        "notes.txt".to_owned(),
        format!("../artifacts/{sha}"),
        format!("targets/../../artifacts/{sha}"),
        format!("targets/{sha}.other.bin"),
        "..%2Fartifacts".to_owned(),
        "/etc/passwd".to_owned(),
    ] {
        let err = fx.repo.resolve(&bad).unwrap_err();
        assert!(matches!(err, OtaError::NotFound { .. }), "{bad}: {err:?}");
    }
}

#[test]
fn unpublished_repository_has_only_a_root() {
    let fx = Fixture::new();
    let status = fx.repo.status().unwrap();
    assert_eq!(status.root.0, 1);
    assert!(status.targets.is_none() && status.timestamp.is_none());
    let reopened = Repository::open(&fx.dir.path().join("ota"), Expiries::default()).unwrap();
    assert_eq!(reopened.root_bytes().unwrap(), fx.root_v1());
    assert!(Repository::open(fx.dir.path(), Expiries::default()).is_err());
}
