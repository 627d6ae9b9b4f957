//! Detection's metric summaries in a real SQLite file: batches, reads by
//! entity newest first, limits, retention, and JSON that always reads back.

use std::collections::BTreeMap;
use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use bulwark_store::{CheckpointPolicy, CheckpointSigner, MetricSummary, SqliteStore, Store};
use bulwark_types::DeviceId;
use time::{Duration, OffsetDateTime};

struct Signer(Ed25519KeyPair);
impl CheckpointSigner for Signer {
    fn sign(&self, m: &[u8]) -> Vec<u8> {
        self.0.sign(m).as_ref().to_vec()
    }
}

fn open(path: &Path) -> SqliteStore {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    SqliteStore::open(path, Box::new(Signer(key)), CheckpointPolicy::default()).unwrap()
}

/// A whole-millisecond time `minutes` after a fixed origin.
fn at(minutes: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap() + Duration::minutes(minutes)
}

fn summary(device: &str, minute: i64, msgs_in: f64) -> MetricSummary {
    MetricSummary {
        entity: format!("device:{device}"),
        device: Some(DeviceId::new(device).unwrap()),
        period_start: at(minute),
        period_end: at(minute + 1),
        active_windows: 60,
        metrics: BTreeMap::from([
            ("msgs_in".to_owned(), msgs_in),
            ("payload_max".to_owned(), 512.0),
        ]),
    }
}

fn source(ip: &str, minute: i64) -> MetricSummary {
    MetricSummary {
        entity: format!("source:{ip}"),
        device: None,
        period_start: at(minute),
        period_end: at(minute + 1),
        active_windows: 3,
        metrics: BTreeMap::from([("auth_failures".to_owned(), 9.0)]),
    }
}

#[tokio::test]
async fn a_batch_reads_back_by_entity_newest_first_with_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("db.sqlite"));
    let mut batch: Vec<_> = (0..5).map(|m| summary("m-1", m, m as f64 + 1.0)).collect();
    batch.push(summary("m-2", 0, 100.0));
    batch.push(source("203.0.113.7", 0));
    let written = store
        .record_metric_summaries(batch.clone(), at(-10_000))
        .await
        .unwrap();
    assert_eq!((written.inserted, written.pruned), (7, 0));

    let got = store
        .metric_summaries("device:m-1", at(-1), 100)
        .await
        .unwrap();
    let minutes: Vec<f64> = got.iter().map(|s| s.metrics["msgs_in"]).collect();
    assert_eq!(minutes, [5.0, 4.0, 3.0, 2.0, 1.0], "newest first");
    assert_eq!(got[0], batch[4], "every field round-trips");

    let limited = store
        .metric_summaries("device:m-1", at(-1), 2)
        .await
        .unwrap();
    assert_eq!(limited, got[..2]);
    // `since` is compared with the period's start.
    let since = store
        .metric_summaries("device:m-1", at(3), 100)
        .await
        .unwrap();
    assert_eq!(since.len(), 2);

    let src = store
        .metric_summaries("source:203.0.113.7", at(-1), 10)
        .await
        .unwrap();
    assert_eq!(src.len(), 1);
    assert_eq!(src[0].device, None);
    assert!(store
        .metric_summaries("device:nobody", at(-1), 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn retention_prunes_old_periods_in_the_same_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("db.sqlite"));
    let old: Vec<_> = (0..10).map(|m| summary("m-1", m, 1.0)).collect();
    store
        .record_metric_summaries(old, at(-10_000))
        .await
        .unwrap();
    // Periods that ended before minute 5 (those starting at 0..=3) go.
    let written = store
        .record_metric_summaries(vec![summary("m-1", 100, 7.0)], at(5))
        .await
        .unwrap();
    assert_eq!((written.inserted, written.pruned), (1, 4));
    let left = store
        .metric_summaries("device:m-1", at(-1), 100)
        .await
        .unwrap();
    assert_eq!(left.len(), 7);
    assert!(left.iter().all(|s| s.period_end >= at(5)));
    assert_eq!(left[0].metrics["msgs_in"], 7.0);
    // An empty batch still prunes.
    let written = store
        .record_metric_summaries(Vec::new(), at(1_000))
        .await
        .unwrap();
    assert_eq!((written.inserted, written.pruned), (0, 7));
}

#[tokio::test]
async fn metrics_are_always_valid_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let store = open(&path);
    let mut s = summary("m-1", 0, 1.0);
    s.metrics.insert("weird \"name\"\n".to_owned(), 2.5);
    s.metrics.insert("nan".to_owned(), f64::NAN);
    s.metrics.insert("inf".to_owned(), f64::INFINITY);
    store
        .record_metric_summaries(vec![s], at(-10_000))
        .await
        .unwrap();
    let got = store
        .metric_summaries("device:m-1", at(-1), 1)
        .await
        .unwrap();
    assert_eq!(got[0].metrics["weird \"name\"\n"], 2.5);
    assert!(
        !got[0].metrics.contains_key("nan"),
        "non-finite values are left out"
    );
    assert!(!got[0].metrics.contains_key("inf"));
    assert_eq!(got[0].metrics.len(), 3);

    // The table itself refuses anything that is not JSON.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let bad = conn.execute(
        "INSERT INTO metric_summaries (entity, device, period_start, period_end, \
         active_windows, metrics) VALUES ('device:x', 'x', 0, 1, 1, '{not json')",
        [],
    );
    assert!(bad.is_err(), "{bad:?}");
}

#[tokio::test]
async fn a_prune_deletes_a_bounded_number_of_rows_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("db.sqlite"));
    let old: Vec<_> = (0..12_000)
        .map(|i| summary(&format!("d-{i}"), 0, 1.0))
        .collect();
    store
        .record_metric_summaries(old, at(-10_000))
        .await
        .unwrap();
    // A shortened retention catches up over several batches, at most
    // max(10,000, twice the batch) rows each.
    let first = store
        .record_metric_summaries(vec![summary("m-1", 100, 1.0)], at(50))
        .await
        .unwrap();
    assert_eq!(first.pruned, 10_000);
    let second = store
        .record_metric_summaries(Vec::new(), at(50))
        .await
        .unwrap();
    assert_eq!(second.pruned, 2_000);
}
