//! Throughput of the MQTT store's group commit: QoS 1 deliveries, each a
//! `PutMessage` (stored before the PUBLISH goes out) and a `DeleteMessage`
//! (on PUBACK), from concurrent callers, each with its own session.
//!
//! Run with `cargo bench -p bulwark-store --bench mqtt`. The database lives
//! under the target directory (a real disk, fsync included). Reported per
//! pair:
//!
//! - `apply/N`: both ops awaited with `apply` (two durable commits per
//!   delivery as seen by the caller; group commit shares them);
//! - `nowait_delete/N`: the put awaited, the delete with `apply_nowait`
//!   (what the gateway does on PUBACK), then one `flush`.
//!
//! 10,000 pairs per iteration for many callers; 1,000 for one caller, whose
//! every op waits for its own fsync.

use std::time::Duration;

use bulwark_store::{MqttOp, MqttStore};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const PACKET: usize = 256;

#[derive(Clone, Copy)]
enum Delete {
    Apply,
    Nowait,
}

fn client(i: usize) -> String {
    format!("client-{i}")
}

async fn open(dir: &tempfile::TempDir, name: &str, callers: usize) -> MqttStore {
    let store = MqttStore::open(&dir.path().join(name)).unwrap();
    let sessions = (0..callers)
        .map(|i| MqttOp::PutSession {
            client_id: client(i),
            principal: format!("device:{i}"),
            protocol_level: 5,
            expiry_secs: 3600,
            disconnected_at_ms: None,
        })
        .collect();
    store.apply(sessions).await.unwrap();
    store
}

/// `pairs` deliveries spread over `callers` concurrent tasks.
async fn run(store: &MqttStore, callers: usize, pairs: usize, delete: Delete) {
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let store = store.clone();
            let n = pairs / callers + usize::from(i < pairs % callers);
            tokio::spawn(async move {
                for seq in 0..n as u64 {
                    let put = MqttOp::PutMessage {
                        client_id: client(i),
                        seq,
                        packet: vec![0x32; PACKET],
                        packet_id: Some((seq % 65535 + 1) as u16),
                        state: 1,
                        expires_at_ms: None,
                    };
                    store.apply(vec![put]).await.unwrap();
                    let del = vec![MqttOp::DeleteMessage {
                        client_id: client(i),
                        seq,
                    }];
                    match delete {
                        Delete::Apply => store.apply(del).await.unwrap(),
                        Delete::Nowait => store.apply_nowait(del),
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    store.flush().await.unwrap();
}

fn pairs(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut group = c.benchmark_group("mqtt_store_put_delete");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for callers in [1, 16, 64, 256] {
        let pairs = if callers == 1 { 1_000 } else { 10_000 };
        group.throughput(Throughput::Elements(pairs as u64));
        for (name, delete) in [("apply", Delete::Apply), ("nowait_delete", Delete::Nowait)] {
            let store = rt.block_on(open(&dir, &format!("{name}-{callers}.db"), callers));
            let before = store.stats();
            group.bench_function(format!("{name}/{callers}"), |b| {
                b.iter(|| rt.block_on(run(&store, callers, pairs, delete)))
            });
            let after = store.stats();
            let commits = after.commits - before.commits;
            let batches = after.batches - before.batches;
            if commits == 0 {
                continue; // filtered out
            }
            eprintln!(
                "{name}/{callers}: {batches} batches in {commits} commits ({:.1} per commit)",
                batches as f64 / commits.max(1) as f64
            );
        }
    }
    group.finish();
}

criterion_group!(benches, pairs);
criterion_main!(benches);
