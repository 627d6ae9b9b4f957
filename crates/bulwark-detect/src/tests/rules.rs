//! Declarative rules: the default set fires on attacks within a few windows
//! and never on a benign device.

use super::{fleet, ip, num, Device, Sim};
use crate::{DetectConfig, EntityRef, Metric, ObsKind, Op, RuleConfig, Scope, Severity};

/// Rules only: the other detectors are switched off so the assertions are
/// about the rules alone.
fn rules_only() -> DetectConfig {
    let mut cfg = DetectConfig::default();
    cfg.baseline.enabled = false;
    cfg.novelty.enabled = false;
    cfg.forest.enabled = false;
    cfg
}

fn warm(sim: &mut Sim) -> Vec<Device> {
    let devices = fleet(5, "meters");
    sim.run_benign(&devices, 30);
    assert!(sim.seen.is_empty(), "{:?}", sim.seen);
    devices
}

#[test]
fn flood_fires_on_second_window_with_evidence() {
    let mut sim = Sim::new(rules_only());
    let devices = warm(&mut sim);
    let start = sim.window;
    for _ in 0..3 {
        sim.messages(&devices[0], 300, 50);
        sim.tick();
    }
    let hits = sim.by("rule:flood");
    assert_eq!(hits.len(), 1, "fires once per episode");
    let f = &hits[0].finding;
    assert_eq!(hits[0].window, start + 1, "2 consecutive windows");
    assert_eq!(f.entity, "device:d0");
    assert_eq!(f.device.as_deref(), Some("d0"));
    assert_eq!(f.group.as_deref(), Some("meters"));
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.dedup_key, "rule:flood:device:d0");
    assert_eq!(num(&f.evidence, "value"), 300.0);
    assert_eq!(num(&f.evidence, "threshold"), 200.0);
    assert_eq!(num(&f.evidence, "streak"), 2.0);
}

#[test]
fn flood_needs_consecutive_windows_and_the_threshold() {
    let mut sim = Sim::new(rules_only());
    let devices = warm(&mut sim);
    // One burst window, then quiet, then just under the threshold.
    sim.messages(&devices[0], 500, 50);
    sim.tick();
    sim.tick();
    for _ in 0..5 {
        sim.messages(&devices[0], 190, 50);
        sim.tick();
    }
    assert!(sim.seen.is_empty(), "{:?}", sim.seen);
}

#[test]
fn flood_refires_with_the_same_key_while_it_lasts() {
    let mut sim = Sim::new(rules_only());
    let devices = warm(&mut sim);
    for _ in 0..125 {
        sim.messages(&devices[1], 250, 50);
        sim.tick();
    }
    let hits = sim.by("rule:flood");
    // at +1, then every refire_ms (60 windows)
    let windows: Vec<u64> = hits.iter().map(|s| s.window - 30).collect();
    assert_eq!(windows, vec![1, 61, 121]);
    assert!(hits
        .iter()
        .all(|s| s.finding.dedup_key == "rule:flood:device:d1"));
}

#[test]
fn credential_stuffing_from_a_source() {
    let mut sim = Sim::new(rules_only());
    warm(&mut sim);
    let attacker = ip("203.0.113.9");
    let start = sim.window;
    for _ in 0..3 {
        for i in 0..8 {
            let at = sim.at(i, 8);
            sim.obs(
                EntityRef::Source(attacker),
                at,
                ObsKind::AuthFailure { source: attacker },
            );
        }
        sim.tick();
    }
    let hits = sim.by("rule:credential-stuffing");
    assert_eq!(hits.len(), 1, "{:?}", sim.seen);
    assert_eq!(hits[0].window, start + 1);
    let f = &hits[0].finding;
    assert_eq!(f.entity, "source:203.0.113.9");
    assert_eq!(f.device, None);
    assert_eq!(num(&f.evidence, "value"), 8.0);
    assert_eq!(f.evidence["scope"], "any");
}

#[test]
fn a_few_auth_failures_do_not_fire() {
    let mut sim = Sim::new(rules_only());
    warm(&mut sim);
    let user = ip("198.51.100.7");
    for _ in 0..10 {
        for i in 0..4 {
            let at = sim.at(i, 4);
            sim.obs(
                EntityRef::Source(user),
                at,
                ObsKind::AuthFailure { source: user },
            );
        }
        sim.tick();
    }
    assert!(sim.seen.is_empty(), "{:?}", sim.seen);
}

#[test]
fn topic_scan_fires_and_escalates() {
    let mut sim = Sim::new(rules_only());
    let devices = warm(&mut sim);
    let start = sim.window;
    let denied = |sim: &mut Sim, d: &Device, n: u64| {
        for i in 0..n {
            let at = sim.at(i, n);
            sim.obs(
                d.entity(),
                at,
                ObsKind::Denied {
                    action: "subscribe",
                    topic: "devices/+/secrets",
                },
            );
        }
    };
    denied(&mut sim, &devices[2], 6);
    sim.tick();
    denied(&mut sim, &devices[3], 30);
    sim.tick();
    let hits = sim.by("rule:topic-scan");
    assert_eq!(hits.len(), 2, "{:?}", sim.seen);
    assert_eq!(hits[0].window, start);
    assert_eq!(hits[0].finding.severity, Severity::Medium);
    assert_eq!(hits[1].finding.entity, "device:d3");
    assert_eq!(hits[1].finding.severity, Severity::High);
    assert_eq!(num(&hits[1].finding.evidence, "value"), 30.0);
}

#[test]
fn exfiltration_sums_bytes_over_two_windows() {
    let mut sim = Sim::new(rules_only());
    let devices = warm(&mut sim);
    let start = sim.window;
    for _ in 0..2 {
        // 600 KiB a window: under 1 MiB alone, over it across 2 s.
        sim.messages(&devices[4], 10, 60 * 1024);
        sim.tick();
    }
    let hits = sim.by("rule:exfiltration");
    assert_eq!(hits.len(), 1, "{:?}", sim.seen);
    assert_eq!(hits[0].window, start + 1);
    let v = num(&hits[0].finding.evidence, "value");
    assert!(v > 1_048_576.0, "{v}");
    assert_eq!(num(&hits[0].finding.evidence, "over_ms"), 2000.0);
}

#[test]
fn connect_churn() {
    let mut sim = Sim::new(rules_only());
    let devices = warm(&mut sim);
    let start = sim.window;
    for _ in 0..2 {
        for i in 0..3 {
            let at = sim.at(i, 3);
            sim.obs(
                devices[0].entity(),
                at,
                ObsKind::Connect {
                    source: devices[0].source,
                },
            );
            sim.obs(
                devices[0].entity(),
                at + 1,
                ObsKind::Disconnect { normal: false },
            );
        }
        sim.tick();
    }
    let hits = sim.by("rule:connect-churn");
    assert_eq!(hits.len(), 1, "{:?}", sim.seen);
    assert_eq!(hits[0].window, start + 1);
    assert_eq!(num(&hits[0].finding.evidence, "value"), 6.0);
}

#[test]
fn group_scope_sums_the_group() {
    let mut cfg = rules_only();
    cfg.rules = vec![RuleConfig {
        name: "group-volume".into(),
        metric: Metric::MsgsIn,
        op: Op::Gt,
        threshold: 400.0,
        over_ms: None,
        consecutive: 1,
        scope: Scope::Group,
        severity: Severity::Medium,
        escalate: None,
        enabled: true,
    }];
    let mut sim = Sim::new(cfg);
    let devices = warm(&mut sim);
    // 5 devices × 100: no device is loud, the group is.
    for d in &devices {
        sim.messages(d, 100, 10);
    }
    sim.tick();
    let hits = sim.by("rule:group-volume");
    assert_eq!(hits.len(), 1, "{:?}", sim.seen);
    assert_eq!(hits[0].finding.entity, "group:meters");
    assert_eq!(hits[0].finding.group.as_deref(), Some("meters"));
    assert_eq!(num(&hits[0].finding.evidence, "value"), 500.0);
}

#[test]
fn disabled_rules_do_not_fire() {
    let mut cfg = rules_only();
    for r in &mut cfg.rules {
        r.enabled = false;
    }
    let mut sim = Sim::new(cfg);
    let d = Device::new(0, None, 1.0);
    for _ in 0..3 {
        sim.messages(&d, 1000, 10);
        sim.tick();
    }
    assert!(sim.seen.is_empty());
}
