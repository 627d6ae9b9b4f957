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
    // 2× the learned level (~5) plus the EWMA's noise margin (~2.5×) is
    // reached near window 90; the slow average lags ~20 windows, then 5
    // consecutive.
    assert!((80..=160).contains(&after), "after {after} windows");
    let ev = &first.finding.evidence;
    assert!(num(ev, "slow") > num(ev, "limit"));
    assert!(num(ev, "limit") > 7.0, "{ev}");
}

/// One message per active window, ever: a device creeping from one message
/// every 5 s to one a second. Its active windows all look alike; the rate
/// over every window does not.
#[test]
fn drift_of_a_low_rate_device_is_measured_over_every_window() {
    let mut sim = Sim::new(baselines_only());
    let d = Device::new(0, None, 0.0);
    let mut quiet = Vec::new();
    for w in 0..120u64 {
        if w % 5 == 0 {
            sim.messages(&d, 1, 100);
        }
        quiet.extend(sim.tick());
    }
    assert!(quiet.is_empty(), "{quiet:?}");
    let start = sim.window;
    let mut credit = 0.0;
    for w in 0..200u64 {
        // 0.2/s rising by 2% of it per second (the simulator's slow drift).
        credit += 0.2 * (1.0 + 0.02 * w as f64);
        if credit >= 1.0 {
            credit -= 1.0;
            sim.messages(&d, 1, 100);
        }
        sim.tick();
        if !sim.by("baseline:msgs_in").is_empty() {
            break;
        }
    }
    let hits = sim.by("baseline:msgs_in");
    assert!(
        !hits.is_empty(),
        "low-rate drift not detected: {:?}",
        sim.seen
    );
    assert_eq!(hits[0].finding.evidence["mode"], "drift");
    let after = hits[0].window - start;
    assert!((40..=180).contains(&after), "after {after} windows");
}

/// A fleet whose every device gets four times busier (a daily cycle)
/// moves no device's baseline; one device that rises against its fleet
/// still drifts, with the group factor in its evidence.
#[test]
fn a_fleet_wide_rise_is_deflated_by_the_group_factor() {
    let mut sim = Sim::new(baselines_only());
    let mut devices = fleet(12, "meters");
    for d in &mut devices {
        d.rate = 1.0;
    }
    sim.run_benign(&devices, 90);
    assert!(sim.seen.is_empty(), "{:?}", sim.seen);
    // The whole fleet ramps from 1 to 4 msg/s over 120 windows and stays.
    for w in 0..200u64 {
        let rate = 1.0 + 3.0 * (w as f64 / 120.0).min(1.0);
        for d in &mut devices {
            d.rate = rate;
        }
        for d in &devices {
            sim.benign(d);
        }
        sim.tick();
    }
    let devices_alerted: Vec<_> = sim
        .seen
        .iter()
        .filter(|s| s.finding.device.is_some())
        .map(|s| (&s.finding.entity, &s.finding.evidence))
        .collect();
    assert!(devices_alerted.is_empty(), "{devices_alerted:?}");
    // Now one device doubles, then keeps rising, while the fleet stays.
    let start = sim.window;
    for w in 0..200u64 {
        devices[3].rate = 4.0 * (2.0 + 0.05 * w as f64);
        for d in &devices {
            sim.benign(d);
        }
        sim.tick();
        if sim.seen.iter().any(|s| s.finding.entity == "device:d3") {
            break;
        }
    }
    let hit = sim
        .seen
        .iter()
        .find(|s| s.finding.entity == "device:d3")
        .unwrap_or_else(|| panic!("relative rise not detected: {:?}", sim.seen));
    assert!(
        hit.window - start < 120,
        "after {} windows",
        hit.window - start
    );
    let factor = num(&hit.finding.evidence, "group_factor");
    assert!((2.5..=5.5).contains(&factor), "factor {factor}");
    assert!(
        sim.seen
            .iter()
            .all(|s| s.finding.device.as_deref() != Some("d1")),
        "{:?}",
        sim.seen
    );
}

/// The factor leaves the device itself out: a device that floods its own
/// group (at 40× its rate, under every rule) is not excused by the rise it
/// causes in the group's level.
#[test]
fn a_device_cannot_deflate_itself() {
    let mut sim = Sim::new(baselines_only());
    let mut devices = fleet(6, "cams");
    for d in &mut devices {
        d.rate = 2.0;
    }
    sim.run_benign(&devices, 100);
    assert!(sim.seen.is_empty(), "{:?}", sim.seen);
    for _ in 0..6 {
        for d in &devices[1..] {
            sim.benign(d);
        }
        sim.messages(&devices[0], 80, 200);
        sim.tick();
    }
    let hits: Vec<_> = sim
        .by("baseline:msgs_in")
        .into_iter()
        .filter(|s| s.finding.entity == "device:d0")
        .collect();
    assert!(!hits.is_empty(), "{:?}", sim.seen);
    let factor = num(&hits[0].finding.evidence, "group_factor");
    assert!(factor < 1.5, "factor {factor}");
}

/// A group that grows (more devices enrolled) is not a busier fleet: the
/// factor is per tracked device.
#[test]
fn a_growing_group_does_not_deflate_its_devices() {
    let mut sim = Sim::new(baselines_only());
    let mut devices = fleet(6, "cams");
    for d in &mut devices {
        d.rate = 2.0;
    }
    sim.run_benign(&devices, 100);
    // Five times the devices, each as busy as before; d0 then spikes.
    let mut grown = devices.clone();
    grown.extend((6..30).map(|i| Device::new(i, Some("cams"), 2.0)));
    sim.run_benign(&grown, 30);
    for _ in 0..6 {
        for d in &grown[1..] {
            sim.benign(d);
        }
        sim.messages(&grown[0], 60, 200);
        sim.tick();
    }
    let hit = sim
        .by("baseline:msgs_in")
        .into_iter()
        .find(|s| s.finding.entity == "device:d0");
    let Some(hit) = hit else {
        panic!(
            "spike of a device in a grown group not detected: {:?}",
            sim.seen
        )
    };
    let factor = num(&hit.finding.evidence, "group_factor");
    assert!(factor < 1.6, "factor {factor}");
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
