//! Isolation forest: quiet on the fleet it learned, loud on an outlier
//! window, explains itself, deterministic for a seed.

use super::{fleet, num, Sim};
use crate::{DetectConfig, EntityRef, ObsKind};

fn forest_only(seed: u64) -> DetectConfig {
    let mut cfg = DetectConfig::default();
    cfg.rules.clear();
    cfg.baseline.enabled = false;
    cfg.novelty.enabled = false;
    cfg.seed = seed;
    cfg
}

#[test]
fn outlier_window_is_isolated_and_explained() {
    let mut sim = Sim::new(forest_only(1));
    let devices = fleet(20, "meters");
    sim.run_benign(&devices, 120);
    assert!(sim.seen.is_empty(), "{:?}", sim.seen);
    assert!(sim.engine.stats().forest_fits >= 1);
    let start = sim.window;
    let odd = devices[3].clone();
    for _ in 0..5 {
        for d in &devices {
            if d.id != odd.id {
                sim.benign(d);
            }
        }
        // 120 msg/s (under the flood rule) of 4 KiB on 40 topics.
        for i in 0..120u64 {
            let topic = format!("devices/d3/x{}", i % 40);
            let at = sim.at(i, 120);
            sim.obs(
                odd.entity(),
                at,
                ObsKind::MessageIn {
                    topic: &topic,
                    bytes: 4096,
                },
            );
        }
        sim.tick();
    }
    let hits = sim.by("model:iforest");
    assert_eq!(hits.len(), 1, "{:?}", sim.seen);
    assert_eq!(hits[0].window, start + 2, "3 consecutive windows");
    let f = &hits[0].finding;
    assert_eq!(f.entity, "device:d3");
    assert!(num(&f.evidence, "score") > 0.7, "{}", f.evidence);
    let top = f.evidence["top_features"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(top.len(), 3, "{}", f.evidence);
    let names: Vec<&str> = top.iter().filter_map(|t| t["metric"].as_str()).collect();
    assert!(
        names.iter().any(|n| [
            "msgs_in",
            "bytes_in",
            "distinct_topics",
            "payload_mean",
            "payload_max"
        ]
        .contains(n)),
        "{names:?}"
    );
    assert!(top
        .iter()
        .all(|t| t["value"].as_f64().is_some() && t["share"].as_f64() > Some(0.0)));
}

#[test]
fn a_feature_the_fleet_never_uses_is_guarded() {
    let mut sim = Sim::new(forest_only(2));
    let devices = fleet(10, "meters");
    sim.run_benign(&devices, 100);
    assert!(sim.seen.is_empty(), "{:?}", sim.seen);
    let d = devices[5].clone();
    for _ in 0..3 {
        sim.benign(&d);
        for i in 0..4 {
            let at = sim.at(i, 4);
            sim.obs(
                d.entity(),
                at,
                ObsKind::Denied {
                    action: "publish",
                    topic: "x",
                },
            );
        }
        sim.tick();
    }
    let hits = sim.by("model:iforest");
    assert_eq!(hits.len(), 1, "{:?}", sim.seen);
    let top = &hits[0].finding.evidence["top_features"][0];
    assert_eq!(top["metric"], "denials");
    assert_eq!(top["value"], 4.0);
}

#[test]
fn same_seed_same_scores() {
    let scores = |seed: u64| {
        let mut sim = Sim::new(forest_only(seed));
        let devices = fleet(8, "g");
        sim.run_benign(&devices, 80);
        devices
            .iter()
            .map(|d| {
                sim.engine
                    .summary(&d.key())
                    .and_then(|s| s.last_model_score)
            })
            .collect::<Vec<_>>()
    };
    let a = scores(9);
    assert!(a.iter().all(Option::is_some), "{a:?}");
    assert_eq!(a, scores(9));
    assert_ne!(a, scores(10));
}

#[test]
fn sources_and_idle_windows_are_not_scored() {
    let mut sim = Sim::new(forest_only(3));
    let devices = fleet(10, "g");
    sim.run_benign(&devices, 80);
    let src = super::ip("203.0.113.1");
    let at = sim.start();
    sim.obs(
        EntityRef::Source(src),
        at,
        ObsKind::AuthFailure { source: src },
    );
    sim.tick();
    let s = sim.engine.summary("source:203.0.113.1");
    assert_eq!(s.map(|s| s.last_model_score), Some(None));
}
