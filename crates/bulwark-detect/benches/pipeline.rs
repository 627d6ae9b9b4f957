//! Hot paths: `observe` of a MessageIn across 10,000 devices, and `tick`
//! closing a window in which 10,000 devices were active (after learning,
//! with the forest fitted, so every detector runs).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bulwark_detect::{DetectConfig, Engine, EntityRef, ObsKind, Observation};
use criterion::{criterion_group, criterion_main, Criterion};

const DEVICES: usize = 10_000;
const W: u64 = 1000;

struct Fleet {
    ids: Vec<String>,
    groups: Vec<String>,
    topics: Vec<String>,
}

impl Fleet {
    fn new() -> Fleet {
        Fleet {
            ids: (0..DEVICES).map(|i| format!("dev-{i:05}")).collect(),
            groups: (0..DEVICES).map(|i| format!("group-{}", i % 100)).collect(),
            topics: (0..DEVICES)
                .map(|i| format!("devices/dev-{i:05}/telemetry"))
                .collect(),
        }
    }

    fn observe(&self, engine: &mut Engine, i: usize, at_ms: u64, bytes: u32) {
        let i = i % DEVICES;
        engine.observe(&Observation {
            entity: EntityRef::Device {
                id: &self.ids[i],
                group: Some(&self.groups[i]),
            },
            at_ms,
            kind: ObsKind::MessageIn {
                topic: &self.topics[i],
                bytes,
            },
        });
    }

    /// Every device sends 1-3 messages in window `w`.
    fn window(&self, engine: &mut Engine, w: u64) {
        for i in 0..DEVICES {
            for k in 0..(1 + (i + w as usize) % 3) {
                self.observe(engine, i, w * W + k as u64 * 100, 100 + (i % 200) as u32);
            }
        }
    }
}

fn engine() -> Engine {
    match Engine::new(DetectConfig::default()) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    }
}

fn bench(c: &mut Criterion) {
    let fleet = Fleet::new();

    let mut e = engine();
    fleet.window(&mut e, 0);
    let mut i = 0usize;
    c.bench_function("observe_message_in_10k_devices", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            fleet.observe(&mut e, black_box(i), 500, 120);
        })
    });

    // Past learning, forest fitted.
    let mut e = engine();
    let mut w = 0;
    while w < 70 {
        fleet.window(&mut e, w);
        e.tick((w + 1) * W);
        w += 1;
    }
    assert!(e.stats().forest_fits >= 1);
    let mut group = c.benchmark_group("tick");
    group.sample_size(20);
    group.bench_function("tick_10k_active_devices", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                fleet.window(&mut e, w);
                let start = Instant::now();
                let found = e.tick((w + 1) * W);
                spent += start.elapsed();
                black_box(found);
                w += 1;
            }
            spent
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
