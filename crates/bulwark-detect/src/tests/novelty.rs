//! Novelty: new ports, destinations, topics, sources; concurrent sessions.

use super::{ip, num, Device, Sim};
use crate::{DetectConfig, ObsKind, Proto, Severity};

fn novelty_only() -> DetectConfig {
    let mut cfg = DetectConfig::default();
    cfg.rules.clear();
    cfg.baseline.enabled = false;
    cfg.forest.enabled = false;
    cfg
}

fn learned(sim: &mut Sim) -> Device {
    let d = Device::new(0, Some("g"), 3.0);
    sim.run_benign(std::slice::from_ref(&d), 70);
    assert!(sim.seen.is_empty(), "{:?}", sim.seen);
    d
}

#[test]
fn new_listening_port_is_high_and_fires_once() {
    let mut sim = Sim::new(novelty_only());
    let mut d = learned(&mut sim);
    d.ports.push((Proto::Tcp, 4444));
    let start = sim.window;
    for _ in 0..3 {
        sim.posture(&d);
        sim.tick();
    }
    let hits = sim.by("novelty:listening-port");
    assert_eq!(hits.len(), 1, "{:?}", sim.seen);
    assert_eq!(hits[0].window, start);
    let f = &hits[0].finding;
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.evidence["value"], "tcp/4444");
    assert_eq!(f.dedup_key, "novelty:listening-port:device:d0:tcp/4444");
}

#[test]
fn new_destination_topic_and_source() {
    let mut sim = Sim::new(novelty_only());
    let mut d = learned(&mut sim);
    d.destinations.push(ip("198.51.100.66"));
    sim.posture(&d);
    let at = sim.start();
    sim.obs(
        d.entity(),
        at,
        ObsKind::MessageIn {
            topic: "devices/d0/shell",
            bytes: 10,
        },
    );
    sim.obs(d.entity(), at, ObsKind::Disconnect { normal: true });
    sim.obs(
        d.entity(),
        at + 1,
        ObsKind::Connect {
            source: ip("100.64.0.9"),
        },
    );
    sim.tick();
    let kinds: Vec<(&str, Severity)> = sim
        .seen
        .iter()
        .map(|s| (s.finding.detector.as_str(), s.finding.severity))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("novelty:destination", Severity::Medium),
            ("novelty:topic", Severity::Low),
            // A device's address changes under DHCP, NAT and cellular
            // networks: a new one alone is only worth a low finding.
            ("novelty:source", Severity::Low),
        ]
    );
    // Not concurrent: the old session closed first.
    assert!(sim.by("novelty:concurrent-source").is_empty());
}

#[test]
fn concurrent_second_source_is_a_cloned_certificate() {
    let mut sim = Sim::new(novelty_only());
    let d = Device::new(0, None, 1.0);
    // Day one: no learning needed for this one.
    let at = sim.start();
    sim.obs(
        d.entity(),
        at,
        ObsKind::Connect {
            source: ip("192.0.2.1"),
        },
    );
    sim.tick();
    let at = sim.start();
    sim.obs(
        d.entity(),
        at,
        ObsKind::Connect {
            source: ip("192.0.2.200"),
        },
    );
    sim.tick();
    let hits = sim.by("novelty:concurrent-source");
    assert_eq!(hits.len(), 1, "{:?}", sim.seen);
    assert_eq!(hits[0].window, 1);
    let ev = &hits[0].finding.evidence;
    assert_eq!(hits[0].finding.severity, Severity::High);
    assert_eq!(ev["source"], "192.0.2.200");
    assert_eq!(ev["open_source"], "192.0.2.1");
    let open = sim
        .engine
        .summary("device:d0")
        .map(|s| s.open_sources.len());
    assert_eq!(open, Some(2));
}

#[test]
fn reconnect_from_the_same_address_is_not_concurrent() {
    let mut sim = Sim::new(novelty_only());
    let d = Device::new(0, None, 1.0);
    for _ in 0..5 {
        let at = sim.start();
        sim.obs(d.entity(), at, ObsKind::Connect { source: d.source });
        sim.obs(d.entity(), at + 1, ObsKind::Connect { source: d.source });
        sim.obs(d.entity(), at + 2, ObsKind::Disconnect { normal: false });
        sim.tick();
    }
    assert!(sim.seen.is_empty(), "{:?}", sim.seen);
}

#[test]
fn a_million_topics_stay_within_the_cap() {
    let mut sim = Sim::new(novelty_only());
    let d = learned(&mut sim);
    let mut topic = String::new();
    for i in 0..1_000_000u64 {
        topic.clear();
        topic.push_str("scan/");
        topic.push_str(&i.to_string());
        let at = sim.start();
        sim.obs(
            d.entity(),
            at,
            ObsKind::MessageIn {
                topic: &topic,
                bytes: 1,
            },
        );
        if i % 100_000 == 99_999 {
            sim.tick();
        }
    }
    let s = sim.engine.summary("device:d0");
    let topics = s
        .as_ref()
        .and_then(|s| s.novelty.iter().find(|n| n.kind == "topic"));
    let Some(topics) = topics else {
        panic!("no topic set: {s:?}");
    };
    assert_eq!(topics.known, 256);
    assert!(topics.overflow > 999_000 - 256);
    let stats = sim.engine.stats();
    assert!(stats.novelty_overflow >= topics.overflow);
    let new = sim.by("novelty:topic");
    // 8 per window are reported at most; the rest are counted
    assert!(new.len() <= 8 * 10 + 1, "{}", new.len());
    let saturated: Vec<_> = new
        .iter()
        .filter(|s| s.finding.dedup_key.ends_with(":saturated"))
        .collect();
    assert_eq!(saturated.len(), 1);
    assert!(num(&saturated[0].finding.evidence, "overflow") >= 1.0);
    assert!(stats.novelty_dropped > 0);
}
