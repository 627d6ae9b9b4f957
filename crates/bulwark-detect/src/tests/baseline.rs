//! Robust baselines: spikes, slow drift, peers; quiet on stationary noise.

use super::{fleet, num, poisson, Device, Sim};
use crate::DetectConfig;

fn baselines_only() -> DetectConfig {
    let mut cfg = DetectConfig::default();
    cfg.rules.clear();
    cfg.novelty.enabled = false;
    cfg.forest.enabled = false;
    cfg
}

#[test]
fn spike_below_every_rule_is_caught_after_learning() {
    let mut sim = Sim::new(baselines_only());
    let d = Device::new(0, None, 5.0);
    sim.run_benign(std::slice::from_ref(&d), 100);
    assert!(sim.seen.is_empty(), "{:?}", sim.seen);
    let start = sim.window;
    for _ in 0..5 {
        // 60 msg/s: far under the flood rule's 200, 12× the usual rate.
        sim.messages(&d, 60, 200);
        sim.tick();
    }
    let hits: Vec<_> = sim
        .by("baseline:msgs_in")
        .into_iter()
        .filter(|s| s.finding.evidence["mode"] == "spike")
        .collect();
    assert_eq!(hits.len(), 1, "{:?}", sim.seen);
    assert_eq!(hits[0].window, start + 2, "3 consecutive windows");
    let ev = &hits[0].finding.evidence;
    assert_eq!(num(ev, "value"), 60.0);
    let (center, mad, score) = (num(ev, "center"), num(ev, "mad"), num(ev, "score"));
    assert!((3.0..=8.0).contains(&center), "center {center}");
    assert!(mad > 0.5 && mad < 5.0, "mad {mad}");
    assert!(score > 6.0, "score {score}");
    assert_eq!(
        hits[0].finding.dedup_key,
        "baseline:msgs_in:device:d0:spike"
    );
    // bytes_in spiked too
    assert!(!sim.by("baseline:bytes_in").is_empty());
}

#[test]
fn nothing_is_scored_while_learning() {
    let mut sim = Sim::new(baselines_only());
    let d = Device::new(0, None, 5.0);
    sim.run_benign(std::slice::from_ref(&d), 20);
    for _ in 0..10 {
        sim.messages(&d, 80, 200);
        sim.tick();
    }
    assert!(sim.seen.is_empty(), "{:?}", sim.seen);
    let s = sim.engine.summary("device:d0");
    let learning = s.map(|s| s.baselines.iter().all(|b| b.learning));
    assert_eq!(learning, Some(true));
}

#[test]
fn slow_drift_is_caught_by_the_frozen_level_not_the_fast_one() {
    let mut sim = Sim::new(baselines_only());
    let d = Device::new(0, None, 5.0);
    sim.run_benign(std::slice::from_ref(&d), 80);
    assert!(sim.seen.is_empty(), "{:?}", sim.seen);
    let start = sim.window;
    let mut rate = 5.0;
    for _ in 0..400 {
        rate *= 1.01;
        let n = poisson(&mut sim.rng, rate);
        sim.messages(&d, n, 200);
        sim.tick();
        if !sim.by("baseline:msgs_in").is_empty() {
            break;
        }
    }
    let hits = sim.by("baseline:msgs_in");
    assert!(!hits.is_empty(), "drift not detected");
    let first = hits[0];
    assert_eq!(first.finding.evidence["mode"], "drift", "{first:?}");
    let after = first.window - start;
    // 3× the learned level (~5) plus margins is reached near window 160;
    // the slow average lags ~20 windows, then 5 consecutive.
    assert!((120..=260).contains(&after), "after {after} windows");
    let ev = &first.finding.evidence;
    assert!(num(ev, "slow") > num(ev, "limit"));
    assert!(num(ev, "limit") > 15.0, "{ev}");
}

#[test]
fn peers_flag_the_odd_device_out() {
    let mut cfg = baselines_only();
    cfg.baseline.metrics.clear(); // peers only
    cfg.baseline.peer_enabled = true;
    let mut sim = Sim::new(cfg);
    let mut devices = fleet(6, "cams");
    for d in &mut devices {
        d.rate = 5.0;
    }
    devices[5].rate = 90.0;
    sim.run_benign(&devices, 10);
    let hits: Vec<_> = sim.by("baseline:msgs_in");
    assert!(!hits.is_empty(), "{:?}", sim.seen);
    let f = &hits[0].finding;
    assert_eq!(hits[0].window, 2, "3 consecutive windows");
    assert_eq!(f.entity, "device:d5");
    assert_eq!(f.evidence["mode"], "peer");
    assert_eq!(num(&f.evidence, "peers"), 6.0);
    assert!(num(&f.evidence, "peer_median") < 15.0);
    assert!(sim.seen.iter().all(|s| s.finding.entity == "device:d5"));
}

#[test]
fn peers_are_off_by_default_and_a_few_times_the_median_is_not_odd() {
    // Default configuration: no peer findings at all.
    let mut cfg = baselines_only();
    cfg.baseline.metrics.clear();
    let mut sim = Sim::new(cfg.clone());
    let mut devices = fleet(6, "cams");
    devices[5].rate = 90.0;
    sim.run_benign(&devices, 10);
    assert!(sim.seen.is_empty(), "{:?}", sim.seen);
    // Turned on: a device at 3x its peers' rate (a busier but normal
    // device) stays quiet; 18x does not.
    cfg.baseline.peer_enabled = true;
    let mut sim = Sim::new(cfg);
    let mut devices = fleet(6, "cams");
    for d in &mut devices {
        d.rate = 5.0;
    }
    devices[4].rate = 15.0;
    devices[5].rate = 90.0;
    sim.run_benign(&devices, 10);
    assert!(!sim.seen.is_empty());
    assert!(
        sim.seen.iter().all(|s| s.finding.entity == "device:d5"),
        "{:?}",
        sim.seen
    );
}

#[test]
fn peers_need_enough_devices() {
    let mut cfg = baselines_only();
    cfg.baseline.metrics.clear();
    cfg.baseline.peer_enabled = true;
    let mut sim = Sim::new(cfg);
    let mut devices = fleet(4, "cams");
    devices[3].rate = 90.0;
    sim.run_benign(&devices, 10);
    assert!(sim.seen.is_empty(), "{:?}", sim.seen);
}

#[test]
fn group_baseline_sees_the_group_sum() {
    let mut sim = Sim::new(baselines_only());
    let devices = fleet(5, "meters");
    sim.run_benign(&devices, 100);
    assert!(sim.seen.is_empty(), "{:?}", sim.seen);
    for _ in 0..4 {
        // every device triples: no peer stands out
        for d in &devices {
            let n = poisson(&mut sim.rng, d.rate * 8.0);
            sim.messages(d, n, 200);
        }
        sim.tick();
    }
    assert!(
        sim.seen.iter().any(|s| s.finding.entity == "group:meters"
            && s.finding.detector == "baseline:msgs_in"),
        "{:?}",
        sim.seen
    );
    assert!(sim.engine.summary("group:meters").is_some());
}
