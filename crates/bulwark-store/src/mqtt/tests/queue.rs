//! The writer and its queue: group commit, a panicking batch, submission
//! order of `apply_nowait` and `apply`, and the queue's bounds.

use std::time::Duration;

use super::*;
use crate::mqtt::queue::Limits;

#[tokio::test]
async fn a_panicking_batch_is_rolled_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = open(&dir);
    store.apply(vec![session("a")]).await.unwrap();
    store
        .queue
        .send(Msg::Hook(Box::new(|conn| {
            conn.execute("DELETE FROM sessions", [])?;
            panic!("deliberate panic in an MQTT store batch");
        })))
        .await
        .unwrap();
    store.apply(vec![message("a", 1)]).await.unwrap();
    assert_eq!(seqs(&store.load().await.unwrap(), "a"), [1]);
    assert_eq!(count(&path, "SELECT COUNT(*) FROM sessions"), 1);
}

#[tokio::test]
async fn batches_share_a_commit_and_a_failing_one_fails_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir);
    store.apply(vec![session("a")]).await.unwrap();
    let before = store.stats();
    let release = stall(&store).await;
    let tasks: Vec<_> = (0..100u64)
        .map(|i| {
            let store = store.clone();
            let op = if i % 10 == 9 {
                MqttOp::PutSession {
                    client_id: "a".into(),
                    principal: "p".into(),
                    protocol_level: 0,
                    expiry_secs: 0,
                    disconnected_at_ms: None,
                }
            } else {
                message("a", i)
            };
            tokio::spawn(async move { store.apply(vec![op]).await.is_ok() })
        })
        .collect();
    // Let every task queue its batch behind the stalled writer.
    tokio::time::sleep(Duration::from_millis(100)).await;
    release.send(()).unwrap();
    let mut ok = 0;
    for t in tasks {
        ok += t.await.unwrap() as u64;
    }
    assert_eq!(ok, 90);
    let after = store.stats();
    assert_eq!(after.commits - before.commits, 1, "one transaction");
    assert_eq!(after.batches - before.batches, 90);
    let expected: Vec<u64> = (0..100).filter(|i| i % 10 != 9).collect();
    assert_eq!(seqs(&store.load().await.unwrap(), "a"), expected);
}

/// Each message is put and then deleted by `apply_nowait` (except the
/// last), then updated by `apply`: any reordering would leave a deleted
/// message behind or lose the update.
async fn check_submission_order(store: &MqttStore, stalled: bool) {
    store.apply(vec![session("a")]).await.unwrap();
    let release = if stalled {
        Some(stall(store).await)
    } else {
        None
    };
    const N: u64 = 500;
    for seq in 0..N {
        store.apply_nowait(vec![message("a", seq)]);
        store.apply_nowait(vec![MqttOp::UpdateMessage {
            client_id: "a".into(),
            seq,
            packet_id: Some(1),
            state: 1,
        }]);
        if seq + 1 < N {
            store.apply_nowait(vec![MqttOp::DeleteMessage {
                client_id: "a".into(),
                seq,
            }]);
        }
    }
    let update = tokio::spawn({
        let store = store.clone();
        async move {
            let op = MqttOp::UpdateMessage {
                client_id: "a".into(),
                seq: N - 1,
                packet_id: Some(2),
                state: 2,
            };
            store.apply(vec![op]).await
        }
    });
    if let Some(release) = release {
        // Let the update queue behind the spilled batches first.
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.send(()).unwrap();
    }
    update.await.unwrap().unwrap();
    let snapshot = store.load().await.unwrap();
    assert_eq!(snapshot.sessions[0].messages, [stored(N - 1, Some(2), 2)]);
    assert_eq!(store.stats().dropped_batches, 0);
}

#[tokio::test]
async fn apply_nowait_and_apply_keep_submission_order() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir);
    check_submission_order(&store, false).await;
}

#[tokio::test]
async fn submission_order_holds_when_batches_spill() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        channel: 4,
        spill_bytes: 1 << 20,
    };
    let store = MqttStore::open_with(&dir.path().join("mqtt.db"), limits).unwrap();
    check_submission_order(&store, true).await;
    assert!(store.stats().spilled_batches > 1000, "{:?}", store.stats());
}

/// On a single-threaded runtime, with the writer stalled: `apply_nowait`
/// returns at once, then drops (and counts) what does not fit; `apply`
/// waits for room.
#[tokio::test]
async fn a_full_queue_drops_nowait_batches_and_makes_apply_wait() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        channel: 2,
        spill_bytes: 2000,
    };
    let store = MqttStore::open_with(&dir.path().join("mqtt.db"), limits).unwrap();
    store.apply(vec![session("a")]).await.unwrap();
    let release = stall(&store).await;
    const N: u64 = 40;
    for seq in 0..N {
        store.apply_nowait(vec![MqttOp::PutMessage {
            client_id: "a".into(),
            seq,
            packet: vec![0; 100],
            packet_id: None,
            state: 0,
            expires_at_ms: None,
        }]);
    }
    let stats = store.stats();
    assert!(stats.dropped_batches > 0, "{stats:?}");
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { store.apply(vec![message("a", N)]).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiting.is_finished(),
        "apply waits while the queue is full"
    );
    release.send(()).unwrap();
    waiting.await.unwrap().unwrap();
    // What was kept is a prefix, in order, and then the waiting batch.
    let kept = N - stats.dropped_batches;
    let mut expected: Vec<u64> = (0..kept).collect();
    expected.push(N);
    assert_eq!(seqs(&store.load().await.unwrap(), "a"), expected);
}

#[tokio::test]
async fn flush_and_load_wait_for_earlier_nowait_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = open(&dir);
    store.apply_nowait(vec![session("a")]);
    for seq in 0..100 {
        store.apply_nowait(vec![message("a", seq)]);
    }
    assert_eq!(seqs(&store.load().await.unwrap(), "a").len(), 100);
    store.apply_nowait(vec![MqttOp::DeleteSession {
        client_id: "a".into(),
    }]);
    store.flush().await.unwrap();
    assert_eq!(count(&path, "SELECT COUNT(*) FROM messages"), 0);
    let stats = store.stats();
    assert_eq!((stats.batches, stats.failed_batches), (102, 0));
    // A failing nowait batch is counted.
    store.apply_nowait(vec![session("b"), message("b", u64::MAX)]);
    store.flush().await.unwrap();
    assert_eq!(store.stats().failed_batches, 1);
}
