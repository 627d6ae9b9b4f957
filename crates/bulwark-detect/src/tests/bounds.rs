//! Memory bounds, eviction, summaries, and no panics on hostile input.

use super::{ip, Device, Sim, W};
use crate::{DetectConfig, EntityRef, ObsKind, Proto};

#[test]
fn entities_beyond_the_cap_are_evicted_least_recent_first() {
    let mut sim = Sim::new(DetectConfig {
        max_entities: 100,
        ..DetectConfig::default()
    });
    for i in 0..1000u32 {
        let src = std::net::IpAddr::from(i.to_be_bytes());
        let at = sim.start();
        sim.obs(
            EntityRef::Source(src),
            at,
            ObsKind::AuthFailure { source: src },
        );
        if i % 100 == 99 {
            sim.tick();
        }
        assert!(sim.engine.stats().entities <= 100);
    }
    let stats = sim.engine.stats();
    assert_eq!(stats.entities + stats.evicted, 1000);
    assert!(stats.evicted >= 900);
    assert!(sim.engine.summary("source:0.0.0.0").is_none());
    assert!(sim.engine.summary("source:0.0.3.231").is_some());
}

#[test]
fn evicting_an_active_entity_mid_window_is_safe() {
    let mut sim = Sim::new(DetectConfig {
        max_entities: 3,
        ..DetectConfig::default()
    });
    for round in 0..5 {
        for i in 0..10 {
            let d = Device::new(i, Some("g"), 1.0);
            sim.messages(&d, 300, 10);
        }
        let found = sim.tick();
        assert!(found.len() <= 3, "round {round}: {found:?}");
    }
    assert_eq!(sim.engine.stats().entities, 3);
}

#[test]
fn extreme_values_and_time_going_backwards_never_panic() {
    let mut cfg = DetectConfig {
        learning_windows: 2,
        ..DetectConfig::default()
    };
    cfg.forest.warmup_windows = 1;
    cfg.forest.sample_size = 4;
    cfg.forest.reservoir = 8;
    cfg.forest.refit_windows = 1;
    let mut sim = Sim::new(cfg);
    let mut rng = crate::mix::Rng::new(5);
    let ports: Vec<(Proto, u16)> = (0..=u16::MAX).map(|p| (Proto::Udp, p)).collect();
    let dests = [ip("::1"), ip("0.0.0.0"), ip("255.255.255.255")];
    let times = [0, u64::MAX, 1, u64::MAX / 2, 5, 3, 0];
    for step in 0..300u64 {
        let at = times[(step % times.len() as u64) as usize].wrapping_add(rng.next_u64() % 3);
        let id = format!("d{}", rng.below(4));
        let e = match rng.below(4) {
            0 => EntityRef::Device {
                id: &id,
                group: Some(""),
            },
            1 => EntityRef::Device {
                id: "",
                group: None,
            },
            2 => EntityRef::Source(ip("::")),
            _ => EntityRef::Service("svc"),
        };
        let kind = match step % 8 {
            0 => ObsKind::MessageIn {
                topic: "",
                bytes: u32::MAX,
            },
            1 => ObsKind::MessageOut {
                messages: u32::MAX,
                bytes: u64::MAX,
            },
            2 => ObsKind::Connect {
                source: dests[rng.below(3)],
            },
            3 => ObsKind::Disconnect { normal: false },
            4 => ObsKind::AuthFailure { source: ip("::") },
            5 => ObsKind::Denied {
                action: "",
                topic: "",
            },
            6 => ObsKind::Subscribe { filter: "#" },
            _ => ObsKind::Posture {
                listening_ports: &ports,
                destinations: &dests,
                established: u32::MAX,
                processes: u32::MAX,
            },
        };
        for _ in 0..(1 + rng.below(50)) {
            sim.obs(e, at, kind);
        }
        let tick_at = times[rng.below(times.len())];
        sim.engine.tick(tick_at);
        if step % 3 == 0 {
            sim.tick();
        }
    }
    sim.engine.tick(u64::MAX);
    sim.engine.tick(0);
    // After all that, the clock is back at 0 and detection still works.
    sim.window = 0;
    let d = Device::new(9, None, 1.0);
    for _ in 0..2 {
        sim.messages(&d, 500, 10);
        sim.tick();
    }
    assert!(!sim.by("rule:flood").is_empty(), "{:?}", sim.engine.stats());
    let stats = sim.engine.stats();
    assert!(stats.backwards_ticks > 0, "{stats:?}");
    assert!(stats.clamped_times > 0, "{stats:?}");
    assert!(stats.entities <= 8);
    for key in [
        "device:d0",
        "device:",
        "source:::",
        "service:svc",
        "nonsense",
        "device",
    ] {
        if let Some(s) = sim.engine.summary(key) {
            assert!(serde_json::to_string(&s).is_ok());
        }
    }
}

#[test]
fn summary_has_recent_windows_and_baselines() {
    let mut sim = Sim::new(DetectConfig::default());
    let d = Device::new(0, Some("g"), 4.0);
    sim.run_benign(std::slice::from_ref(&d), 70);
    let Some(s) = sim.engine.summary("device:d0") else {
        panic!("no summary");
    };
    assert_eq!(s.entity, "device:d0");
    assert_eq!(s.group.as_deref(), Some("g"));
    assert_eq!(s.recent.len(), 5);
    let last = &s.recent[4];
    assert_eq!(last.end_ms, 70 * W);
    assert!(last.values.contains_key("msgs_in") || last.values.contains_key("processes"));
    assert_eq!(s.baselines.len(), 6);
    assert!(s
        .baselines
        .iter()
        .all(|b| !b.learning && b.learned_level.is_some()));
    assert_eq!(s.novelty.len(), 4);
    let json = serde_json::to_value(&s).unwrap_or_default();
    assert!(json["baselines"][0]["center"].is_number());
    assert!(sim.engine.forget("device:d0"));
    assert!(sim.engine.summary("device:d0").is_none());
}
