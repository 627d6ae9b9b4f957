//! Interop: tough's own client, a standard TUF 1.0 client used on its own
//! (no code of this crate on the reading side), loads the repository and
//! fetches a target from the standard consistent-snapshot layout.

use futures::StreamExt;
use tough::{FilesystemTransport, Prefix, RepositoryLoader};

use super::*;

#[tokio::test]
async fn tough_client_reads_the_repository() {
    let fx = Fixture::new();
    let content = b"interop".repeat(500);
    fx.add("fw.bin", &content, release(&["m1"], "1.0.0", None));
    fx.add("other.bin", b"other", release(&["m2"], "2.0.0", None));
    let sha = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        &content,
    ));
    for file in [
        "1.root.json".to_owned(),
        "timestamp.json".to_owned(),
        "2.snapshot.json".to_owned(),
        "2.targets.json".to_owned(),
        format!("targets/{sha}.fw.bin"),
    ] {
        assert!(fx.served().join(&file).is_file(), "{file}");
    }

    let repo = RepositoryLoader::new(&fx.root_v1(), fx.metadata_url(), fx.targets_url())
        .transport(FilesystemTransport)
        .load()
        .await
        .unwrap();
    assert!(repo.root().signed.consistent_snapshot);
    assert_eq!(repo.all_targets().count(), 2);
    let target_name = tough::TargetName::new("fw.bin").unwrap();
    let mut stream = repo.read_target(&target_name).await.unwrap().unwrap();
    let mut read = Vec::new();
    while let Some(chunk) = stream.next().await {
        read.extend_from_slice(&chunk.unwrap());
    }
    assert_eq!(read, content);

    let out = tempfile::tempdir().unwrap();
    repo.save_target(&target_name, out.path(), Prefix::None)
        .await
        .unwrap();
    assert_eq!(std::fs::read(out.path().join("fw.bin")).unwrap(), content);

    // Its custom fields are plain JSON any client can read.
    let target = repo.targets().signed.targets.get(&target_name).unwrap();
    assert_eq!(target.custom["bulwark"]["version"], "1.0.0");
    assert_eq!(target.custom["bulwark"]["hardware"][0], "m1");
}

#[tokio::test]
async fn tough_client_detects_a_tampered_target() {
    let fx = Fixture::new();
    fx.add("fw.bin", b"genuine", release(&["m1"], "1.0.0", None));
    let sha = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        b"genuine",
    ));
    fx.write(&format!("targets/{sha}.fw.bin"), b"GENUINE");
    let repo = RepositoryLoader::new(&fx.root_v1(), fx.metadata_url(), fx.targets_url())
        .transport(FilesystemTransport)
        .load()
        .await
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let name = tough::TargetName::new("fw.bin").unwrap();
    assert!(repo
        .save_target(&name, out.path(), Prefix::None)
        .await
        .is_err());
}
