//! Resumable downloads at the unit level, over [`FsRangeFetch`] wrapped to
//! cut a transfer, ignore ranges, or record the offsets asked for.

use std::sync::Mutex;

use async_trait::async_trait;
use futures::StreamExt;

use super::*;
use crate::client::{RangeFetch, RangeResponse};
use crate::FsRangeFetch;

/// Cuts the first transfer after `cut` bytes with an error; records offsets.
struct Flaky {
    cut: Mutex<Option<usize>>,
    ignore_range: bool,
    offsets: Mutex<Vec<u64>>,
}

impl Flaky {
    fn new(cut: Option<usize>, ignore_range: bool) -> Self {
        Flaky {
            cut: Mutex::new(cut),
            ignore_range,
            offsets: Mutex::new(Vec::new()),
        }
    }
    fn offsets(&self) -> Vec<u64> {
        self.offsets.lock().unwrap().clone()
    }
}

#[async_trait]
impl RangeFetch for Flaky {
    async fn fetch_from(&self, url: &url::Url, offset: u64) -> Result<RangeResponse, OtaError> {
        self.offsets.lock().unwrap().push(offset);
        let offset = if self.ignore_range { 0 } else { offset };
        let resp = FsRangeFetch.fetch_from(url, offset).await?;
        let Some(cut) = self.cut.lock().unwrap().take() else {
            return Ok(resp);
        };
        // Re-chunk to `cut` bytes, then fail like a dropped connection.
        let mut all = Vec::new();
        let mut body = resp.body;
        while let Some(chunk) = body.next().await {
            all.extend_from_slice(&chunk?);
        }
        all.truncate(cut);
        let items = vec![
            Ok(bytes::Bytes::from(all)),
            Err(OtaError::Transport {
                url: url.to_string(),
                source: "connection reset".into(),
            }),
        ];
        Ok(RangeResponse {
            start: resp.start,
            body: Box::pin(futures::stream::iter(items)),
        })
    }
}

async fn setup(content: &[u8]) -> (Fixture, tempfile::TempDir, UpdateClient) {
    let fx = Fixture::new();
    fx.add("fw.bin", content, release(&["m1"], "1.0.0", None));
    let store = tempfile::tempdir().unwrap();
    let client = fx.client(&store.path().join("tuf")).await.unwrap();
    (fx, store, client)
}

fn partial_path(dl: &Path, content: &[u8]) -> PathBuf {
    let sha = hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        content,
    ));
    dl.join(format!("{sha}.fw.bin.partial"))
}

#[tokio::test]
async fn an_interrupted_download_resumes_where_it_stopped() {
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let (_fx, store, client) = setup(&content).await;
    let c = client.check(&name("fw.bin"), &device("m1", None)).unwrap();
    let dl = store.path().join("dl");
    let fetch = Flaky::new(Some(100_000), false);

    let err = client.download(&c, &fetch, &dl).await.unwrap_err();
    assert!(matches!(err, OtaError::Transport { .. }), "{err:?}");
    let partial = partial_path(&dl, &content);
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), 100_000);

    let verified = client.download(&c, &fetch, &dl).await.unwrap();
    assert_eq!(fetch.offsets(), vec![0, 100_000]);
    assert_eq!(std::fs::read(verified.path()).unwrap(), content);
    assert!(!partial.exists());
}

#[tokio::test]
async fn a_server_ignoring_the_range_restarts_the_file() {
    let content = b"0123456789".repeat(10_000);
    let (_fx, store, client) = setup(&content).await;
    let c = client.check(&name("fw.bin"), &device("m1", None)).unwrap();
    let dl = store.path().join("dl");
    let fetch = Flaky::new(Some(12_345), true);
    client.download(&c, &fetch, &dl).await.unwrap_err();
    let verified = client.download(&c, &fetch, &dl).await.unwrap();
    assert_eq!(fetch.offsets(), vec![0, 12_345]);
    assert_eq!(std::fs::read(verified.path()).unwrap(), content);
}

#[tokio::test]
async fn a_corrupted_partial_file_fails_verification_and_is_deleted() {
    let content = b"abcdefghij".repeat(10_000);
    let (_fx, store, client) = setup(&content).await;
    let c = client.check(&name("fw.bin"), &device("m1", None)).unwrap();
    let dl = store.path().join("dl");
    std::fs::create_dir_all(&dl).unwrap();
    let partial = partial_path(&dl, &content);
    // What an attacker (or a bad disk) left: wrong bytes before the resume point.
    std::fs::write(&partial, vec![b'X'; 50_000]).unwrap();
    let err = client.download(&c, &FsRangeFetch, &dl).await.unwrap_err();
    assert!(matches!(err, OtaError::HashMismatch { .. }), "{err:?}");
    assert!(!partial.exists());
    // The next attempt starts over and succeeds.
    let verified = client.download(&c, &FsRangeFetch, &dl).await.unwrap();
    assert_eq!(std::fs::read(verified.path()).unwrap(), content);
}

#[tokio::test]
async fn a_partial_file_longer_than_the_target_is_discarded() {
    let content = b"short".to_vec();
    let (_fx, store, client) = setup(&content).await;
    let c = client.check(&name("fw.bin"), &device("m1", None)).unwrap();
    let dl = store.path().join("dl");
    std::fs::create_dir_all(&dl).unwrap();
    std::fs::write(partial_path(&dl, &content), vec![0u8; 1000]).unwrap();
    let fetch = Flaky::new(None, false);
    let verified = client.download(&c, &fetch, &dl).await.unwrap();
    assert_eq!(fetch.offsets(), vec![0]);
    assert_eq!(std::fs::read(verified.path()).unwrap(), content);
}
