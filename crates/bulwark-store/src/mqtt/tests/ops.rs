//! Every op, atomicity, cascades, skipped ops, and the file itself.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rusqlite::Connection;

use super::*;

#[tokio::test]
async fn every_op_round_trips_and_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = open(&dir);
    assert_eq!(store.load().await.unwrap(), MqttSnapshot::default());
    let sub = |client: &str, filter: &str, options, subscription_id| MqttOp::PutSubscription {
        client_id: client.into(),
        filter: filter.into(),
        options,
        subscription_id,
    };
    let retain = |topic: &str, packet: &[u8], expires_at_ms| MqttOp::SetRetained {
        topic: topic.into(),
        packet: packet.to_vec(),
        expires_at_ms,
    };
    let will = |client: &str, packet: &[u8], publish_at_ms| MqttOp::PutWill {
        client_id: client.into(),
        packet: packet.to_vec(),
        publish_at_ms,
    };
    store
        .apply(vec![
            session("a"),
            session("b"),
            sub("a", "cmd/a/#", 0x01, Some(7)),
            sub("a", "fleet/+", 0x2e, None),
            sub("b", "x", 0, None),
            message("a", 1),
            message("a", 2),
            message("a", 3),
            MqttOp::PutMessage {
                client_id: "b".into(),
                seq: i64::MAX as u64,
                packet: vec![0; 300_000],
                packet_id: Some(65535),
                state: 255,
                expires_at_ms: Some(-1),
            },
            retain("t/1", b"one", None),
            retain("t/2", b"two", Some(5)),
            will("a", b"will-a", 10),
            will("b", b"will-b", 11),
        ])
        .await
        .unwrap();
    // Upserts replace, updates and deletes change.
    store
        .apply(vec![
            MqttOp::PutSession {
                client_id: "a".into(),
                principal: "service:x".into(),
                protocol_level: 4,
                expiry_secs: u32::MAX,
                disconnected_at_ms: Some(1_700_000_000_000),
            },
            sub("a", "fleet/+", 0x02, Some(268_435_455)),
            MqttOp::DeleteSubscription {
                client_id: "b".into(),
                filter: "x".into(),
            },
            MqttOp::PutMessage {
                client_id: "a".into(),
                seq: 3,
                packet: vec![0x32, 3, 0xff],
                packet_id: Some(9),
                state: 1,
                expires_at_ms: None,
            },
            MqttOp::UpdateMessage {
                client_id: "a".into(),
                seq: 1,
                packet_id: Some(1),
                state: 2,
            },
            MqttOp::DeleteMessage {
                client_id: "a".into(),
                seq: 2,
            },
            retain("t/1", b"uno", Some(99)),
            MqttOp::ClearRetained {
                topic: "t/2".into(),
            },
            will("a", b"will-a2", 12),
            MqttOp::DeleteWill {
                client_id: "b".into(),
            },
        ])
        .await
        .unwrap();
    let expected = MqttSnapshot {
        sessions: vec![
            StoredSession {
                client_id: "a".into(),
                principal: "service:x".into(),
                protocol_level: 4,
                expiry_secs: u32::MAX,
                disconnected_at_ms: Some(1_700_000_000_000),
                subscriptions: vec![
                    StoredSubscription {
                        filter: "cmd/a/#".into(),
                        options: 0x01,
                        subscription_id: Some(7),
                    },
                    StoredSubscription {
                        filter: "fleet/+".into(),
                        options: 0x02,
                        subscription_id: Some(268_435_455),
                    },
                ],
                messages: vec![stored(1, Some(1), 2), stored(3, Some(9), 1)],
            },
            StoredSession {
                client_id: "b".into(),
                principal: "device:b".into(),
                protocol_level: 5,
                expiry_secs: 3600,
                disconnected_at_ms: None,
                subscriptions: vec![],
                messages: vec![StoredMessage {
                    seq: i64::MAX as u64,
                    packet: vec![0; 300_000],
                    packet_id: Some(65535),
                    state: 255,
                    expires_at_ms: Some(-1),
                }],
            },
        ],
        retained: vec![StoredRetained {
            topic: "t/1".into(),
            packet: b"uno".to_vec(),
            expires_at_ms: Some(99),
        }],
        wills: vec![StoredWill {
            client_id: "a".into(),
            packet: b"will-a2".to_vec(),
            publish_at_ms: 12,
        }],
    };
    assert_eq!(store.load().await.unwrap(), expected);
    assert_eq!(store.stats().skipped_ops, 0);
    drop(store);
    let store = MqttStore::open(&path).unwrap();
    assert_eq!(store.load().await.unwrap(), expected);
}

#[tokio::test]
async fn a_failing_op_leaves_nothing_of_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir);
    store
        .apply(vec![session("a"), session("b"), message("a", 1)])
        .await
        .unwrap();
    let before = store.load().await.unwrap();
    let failing = [
        MqttOp::PutMessage {
            client_id: "a".into(),
            seq: 5,
            packet: vec![],
            packet_id: Some(0), // packet identifiers are never 0
            state: 0,
            expires_at_ms: None,
        },
        message("a", u64::MAX), // beyond SQLite's integers
        MqttOp::PutSession {
            client_id: "c".into(),
            principal: "p".into(),
            protocol_level: 9,
            expiry_secs: 0,
            disconnected_at_ms: None,
        },
        MqttOp::PutSubscription {
            client_id: "a".into(),
            filter: "f".into(),
            options: 0,
            subscription_id: Some(0),
        },
    ];
    for bad in failing {
        let batch = vec![
            session("new"),
            message("a", 2),
            MqttOp::DeleteSession {
                client_id: "b".into(),
            },
            MqttOp::SetRetained {
                topic: "t".into(),
                packet: vec![1],
                expires_at_ms: None,
            },
            MqttOp::DeleteMessage {
                client_id: "a".into(),
                seq: 1,
            },
            bad.clone(),
        ];
        let r = store.apply(batch).await;
        assert!(r.is_err(), "{bad:?} should fail its batch");
        assert_eq!(store.load().await.unwrap(), before, "after {bad:?}");
    }
    // The writer carries on.
    store.apply(vec![message("a", 2)]).await.unwrap();
    assert_eq!(seqs(&store.load().await.unwrap(), "a"), [1, 2]);
}

#[tokio::test]
async fn deleting_a_session_deletes_everything_it_owns() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = open(&dir);
    let owned = |id: &str| {
        vec![
            session(id),
            MqttOp::PutSubscription {
                client_id: id.into(),
                filter: "f/#".into(),
                options: 1,
                subscription_id: None,
            },
            message(id, 1),
            message(id, 2),
            MqttOp::PutWill {
                client_id: id.into(),
                packet: vec![1],
                publish_at_ms: 1,
            },
        ]
    };
    store.apply(owned("gone")).await.unwrap();
    store.apply(owned("kept")).await.unwrap();
    store
        .apply(vec![MqttOp::DeleteSession {
            client_id: "gone".into(),
        }])
        .await
        .unwrap();
    let snapshot = store.load().await.unwrap();
    assert_eq!(snapshot.sessions.len(), 1);
    assert_eq!(snapshot.sessions[0].client_id, "kept");
    assert_eq!(snapshot.sessions[0].subscriptions.len(), 1);
    assert_eq!(seqs(&snapshot, "kept"), [1, 2]);
    assert_eq!(snapshot.wills.len(), 1);
    for table in ["subscriptions", "messages", "wills"] {
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE client_id = 'gone'");
        assert_eq!(count(&path, &sql), 0, "{table}");
    }
}

#[tokio::test]
async fn ops_for_a_missing_session_are_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = open(&dir);
    store
        .apply(vec![session("a"), message("a", 1)])
        .await
        .unwrap();
    let ghost = || "ghost".to_string();
    store
        .apply(vec![
            MqttOp::PutSubscription {
                client_id: ghost(),
                filter: "f".into(),
                options: 0,
                subscription_id: None,
            },
            MqttOp::DeleteSubscription {
                client_id: ghost(),
                filter: "f".into(),
            },
            message("ghost", 1),
            MqttOp::UpdateMessage {
                client_id: ghost(),
                seq: 1,
                packet_id: Some(1),
                state: 1,
            },
            MqttOp::DeleteMessage {
                client_id: ghost(),
                seq: 1,
            },
            MqttOp::PutWill {
                client_id: ghost(),
                packet: vec![],
                publish_at_ms: 0,
            },
            MqttOp::DeleteWill { client_id: ghost() },
            MqttOp::DeleteSession { client_id: ghost() },
            // The rest of the batch applies; missing rows of an existing
            // session are not skips.
            message("a", 2),
            MqttOp::UpdateMessage {
                client_id: "a".into(),
                seq: 99,
                packet_id: None,
                state: 1,
            },
            MqttOp::DeleteMessage {
                client_id: "a".into(),
                seq: 98,
            },
        ])
        .await
        .unwrap();
    assert_eq!(store.stats().skipped_ops, 8);
    let snapshot = store.load().await.unwrap();
    assert_eq!(snapshot.sessions.len(), 1);
    assert_eq!(seqs(&snapshot, "a"), [1, 2]);
    // Skips in a batch that fails are not counted.
    let r = store
        .apply(vec![message("ghost", 3), message("a", u64::MAX)])
        .await;
    assert!(r.is_err());
    assert_eq!(store.stats().skipped_ops, 8);
}

#[tokio::test]
async fn the_file_is_private_wal_and_only_ours() {
    let dir = tempfile::tempdir().unwrap();
    let (store, path) = open(&dir);
    store.apply(vec![session("a")]).await.unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(&dir.path().join("mqtt.db-wal")), 0o600);
    let conn = Connection::open(&path).unwrap();
    let journal: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
    drop(store);

    // A widened mode is narrowed again.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(MqttStore::open(&path).unwrap());
    assert_eq!(mode(&path), 0o600);

    // Another SQLite database is refused.
    let other = dir.path().join("bulwark.db");
    Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE meta (key TEXT)")
        .unwrap();
    let err = MqttStore::open(&other).unwrap_err();
    assert!(err.to_string().contains("not a Bulwark MQTT"), "{err}");

    // So is a schema from a newer server.
    conn.pragma_update(None, "user_version", 99).unwrap();
    let err = MqttStore::open(&path).unwrap_err();
    assert!(err.to_string().contains("newer"), "{err}");
}
