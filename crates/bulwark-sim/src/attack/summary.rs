//! What a run's alerts say, computed without I/O: was the attack detected,
//! when, when was it contained, and which benign devices were alerted on
//! (false positives), in which simulated hours.
//!
//! Times compare the server's timestamps (`first_seen`, `last_seen`,
//! `applied_at`) with the sim's wall clock at the attack's start: both run
//! on the same machine.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use bulwark_types::{ActionKind, ActionState};
use serde::Deserialize;
use time::OffsetDateTime;

/// Hours in a simulated day.
pub(crate) const HOURS: u32 = 24;

/// The parts of an alert (`bulwark_types::Alert`) the sim reads; unknown
/// fields are ignored, so the API may grow without breaking the sim.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Alert {
    pub(crate) id: i64,
    #[serde(default)]
    pub(crate) device: Option<String>,
    #[serde(default)]
    pub(crate) entity: String,
    #[serde(default)]
    pub(crate) detector: String,
    #[serde(default)]
    pub(crate) severity: Option<String>,
    /// Only its `mode` is read (spike, drift, peer), to tell baselines apart.
    #[serde(default)]
    pub(crate) evidence: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) first_seen: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) last_seen: OffsetDateTime,
    #[serde(default)]
    pub(crate) actions: Vec<Action>,
}

/// One response action of an alert.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub(crate) struct Action {
    pub(crate) action: String,
    pub(crate) state: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub(crate) applied_at: Option<OffsetDateTime>,
}

impl Action {
    /// Applied (or applied and since released) and one that contains the
    /// device: throttle, restrict, disconnect, revoke, decommission.
    fn contained_at(&self) -> Option<OffsetDateTime> {
        let kind = ActionKind::parse(&self.action)?;
        let state = ActionState::parse(&self.state)?;
        let took_effect = matches!(state, ActionState::Applied | ActionState::Released);
        (kind.contains() && took_effect).then_some(self.applied_at?)
    }
}

/// An alert as the poller last saw it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Seen {
    pub(crate) alert: Alert,
    /// The first `last_seen` observed at or after the attack's start: when
    /// an alert opened before the attack had the attack's findings folded
    /// into it (de-duplication), this is when that started.
    pub(crate) active_since: Option<OffsetDateTime>,
}

impl Seen {
    pub(crate) fn new(alert: Alert) -> Seen {
        Seen {
            alert,
            active_since: None,
        }
    }

    /// Replaces the alert with a newer copy, keeping `active_since`.
    pub(crate) fn update(&mut self, alert: Alert, attack_start: Option<OffsetDateTime>) {
        self.alert = alert;
        if let (None, Some(start)) = (self.active_since, attack_start) {
            if self.alert.last_seen >= start {
                self.active_since = Some(self.alert.last_seen);
            }
        }
    }

    /// When this alert first said something about the attack: its
    /// `first_seen` if it opened during the attack, else when findings
    /// started folding into it.
    fn detected_at(&self, attack_start: OffsetDateTime) -> Option<OffsetDateTime> {
        if self.alert.first_seen >= attack_start {
            Some(self.alert.first_seen)
        } else {
            self.active_since.filter(|t| *t >= attack_start)
        }
    }
}

/// Who attacks: a device, source addresses, or both.
#[derive(Debug, Clone, Default)]
pub(crate) struct Target {
    pub(crate) device: Option<String>,
    pub(crate) sources: Vec<String>,
}

impl Target {
    /// `device == attacker`, `entity == device:<attacker>` or
    /// `entity == source:<attacker address>`.
    pub(crate) fn matches(&self, a: &Alert) -> bool {
        if let Some(d) = &self.device {
            if a.device.as_deref() == Some(d.as_str())
                || a.entity.strip_prefix("device:") == Some(d.as_str())
            {
                return true;
            }
        }
        a.entity
            .strip_prefix("source:")
            .is_some_and(|ip| self.sources.iter().any(|s| s == ip))
    }

    /// How the attacker is named in the result.
    pub(crate) fn describe(&self) -> Option<String> {
        match (&self.device, self.sources.first()) {
            (Some(d), _) => Some(d.clone()),
            (None, Some(ip)) => Some(format!("source:{ip}")),
            (None, None) => None,
        }
    }
}

/// The device an alert is about, from `device` or a `device:<id>` entity.
fn device_of(a: &Alert) -> Option<&str> {
    a.device
        .as_deref()
        .or_else(|| a.entity.strip_prefix("device:"))
}

/// The verdict on a run's alerts.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) time_to_detect: Option<Duration>,
    /// The detector of the first alert about the attacker.
    pub(crate) detector: Option<String>,
    pub(crate) time_to_contain: Option<Duration>,
    /// The action that contained it.
    pub(crate) contained_by: Option<String>,
    /// Alerts about the attacker (any time in the run).
    pub(crate) attacker_alerts: usize,
    /// Benign fleet devices with any alert.
    pub(crate) false_positive_devices: BTreeSet<String>,
    /// Alerts about benign fleet devices.
    pub(crate) false_positive_alerts: usize,
    /// Those alerts by detector, to see where false positives come from.
    pub(crate) false_positive_detectors: BTreeMap<String, usize>,
    /// Alerts about neither the attacker nor a fleet device (other
    /// sources, services, the fleet).
    pub(crate) other_alerts: usize,
}

impl Outcome {
    pub(crate) fn detected(&self) -> bool {
        self.time_to_detect.is_some()
    }

    pub(crate) fn contained(&self) -> bool {
        self.time_to_contain.is_some()
    }
}

/// Time from `start` to `t`, zero if `t` is earlier (clock granularity).
fn since(start: OffsetDateTime, t: OffsetDateTime) -> Duration {
    Duration::try_from(t - start).unwrap_or(Duration::ZERO)
}

/// Judges the alerts of a run. `attack_start` is `None` before the attack
/// (and for `benign`); `fleet` holds the simulated devices' ids.
pub(crate) fn evaluate<'a>(
    alerts: impl IntoIterator<Item = &'a Seen>,
    target: &Target,
    attack_start: Option<OffsetDateTime>,
    fleet: &HashSet<String>,
) -> Outcome {
    let mut out = Outcome::default();
    let mut first: Option<(OffsetDateTime, i64, &str)> = None;
    let mut contained: Option<(OffsetDateTime, &str)> = None;
    for seen in alerts {
        let a = &seen.alert;
        if target.matches(a) {
            out.attacker_alerts += 1;
            let Some(start) = attack_start else { continue };
            if let Some(t) = seen.detected_at(start) {
                if first.is_none_or(|(f, id, _)| (t, a.id) < (f, id)) {
                    first = Some((t, a.id, a.detector.as_str()));
                }
            }
            for act in &a.actions {
                if let Some(t) = act.contained_at().filter(|t| *t >= start) {
                    if contained.is_none_or(|(c, _)| t < c) {
                        contained = Some((t, act.action.as_str()));
                    }
                }
            }
        } else if let Some(d) = device_of(a).filter(|d| fleet.contains(*d)) {
            out.false_positive_alerts += 1;
            out.false_positive_devices.insert(d.to_owned());
            let key = match a.evidence.get("mode").and_then(|m| m.as_str()) {
                Some(mode) => format!("{}:{mode}", a.detector),
                None => a.detector.clone(),
            };
            *out.false_positive_detectors.entry(key).or_default() += 1;
        } else {
            out.other_alerts += 1;
        }
    }
    if let (Some(start), Some((t, _, detector))) = (attack_start, first) {
        out.time_to_detect = Some(since(start, t));
        out.detector = Some(detector.to_owned());
    }
    if let (Some(start), Some((t, action))) = (attack_start, contained) {
        out.time_to_contain = Some(since(start, t));
        out.contained_by = Some(action.to_owned());
    }
    out
}

/// The simulated hour (0..24) that wall-clock time `t` falls in, for a day
/// that began at `day_start` and lasts `day`: times before the day count in
/// hour 0, times after it in hour 23.
pub(crate) fn hour_of(t: OffsetDateTime, day_start: OffsetDateTime, day: Duration) -> u32 {
    let into = (t - day_start).as_seconds_f64();
    if into <= 0.0 || day.is_zero() {
        return 0;
    }
    let hour = day.as_secs_f64() / f64::from(HOURS);
    ((into / hour).floor() as u32).min(HOURS - 1)
}

/// Per benign device, the simulated hours in which one of its alerts was
/// active (from its `first_seen` hour to its `last_seen` hour, inclusive).
pub(crate) fn alert_hours<'a>(
    alerts: impl IntoIterator<Item = &'a Seen>,
    target: &Target,
    fleet: &HashSet<String>,
    day_start: OffsetDateTime,
    day: Duration,
) -> BTreeMap<String, BTreeSet<u32>> {
    let mut out: BTreeMap<String, BTreeSet<u32>> = BTreeMap::new();
    for seen in alerts {
        let a = &seen.alert;
        if target.matches(a) {
            continue;
        }
        let Some(d) = device_of(a).filter(|d| fleet.contains(*d)) else {
            continue;
        };
        let (from, to) = (
            hour_of(a.first_seen, day_start, day),
            hour_of(a.last_seen.max(a.first_seen), day_start, day),
        );
        out.entry(d.to_owned()).or_default().extend(from..=to);
    }
    out
}

/// Total device-hours with an alert.
pub(crate) fn device_hours(hours: &BTreeMap<String, BTreeSet<u32>>) -> u64 {
    hours.values().map(|h| h.len() as u64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: i64 = 1_700_000_000;

    fn at(secs: f64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(T0).unwrap() + time::Duration::seconds_f64(secs)
    }

    fn alert(id: i64, device: Option<&str>, entity: &str, first: f64, last: f64) -> Alert {
        Alert {
            id,
            device: device.map(str::to_owned),
            entity: entity.to_owned(),
            detector: format!("rule:r{id}"),
            severity: Some("high".into()),
            evidence: serde_json::Value::Null,
            first_seen: at(first),
            last_seen: at(last),
            actions: Vec::new(),
        }
    }

    fn act(action: &str, state: &str, applied: Option<f64>) -> Action {
        Action {
            action: action.into(),
            state: state.into(),
            applied_at: applied.map(at),
        }
    }

    fn fleet(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    fn seen(alerts: Vec<Alert>) -> Vec<Seen> {
        alerts.into_iter().map(Seen::new).collect()
    }

    #[test]
    fn parses_the_api_json() {
        let v = json!({
            "id": 7, "device": "dev-1", "entity": "device:dev-1", "detector": "rule:flood",
            "severity": "high", "title": "t", "state": "open", "count": 3,
            "evidence": {"rate": 900}, "bundle_sha256": null,
            "first_seen": "2023-11-14T22:13:20.5Z", "last_seen": "2023-11-14T22:13:21Z",
            "updated_at": "2023-11-14T22:13:21Z",
            "actions": [{"id": 1, "playbook": "p", "step": 0, "action": "throttle",
                "state": "applied", "reason": null, "due_at": null, "release_at": null,
                "applied_at": "2023-11-14T22:13:22.25Z", "updated_at": "2023-11-14T22:13:22Z"},
                {"id": 2, "playbook": null, "step": 1, "action": "notify", "state": "scheduled",
                "reason": null, "due_at": null, "release_at": null, "applied_at": null,
                "updated_at": "2023-11-14T22:13:22Z"}]
        });
        let a: Alert = serde_json::from_value(v).unwrap();
        assert_eq!(a.id, 7);
        assert_eq!(a.first_seen, at(0.5));
        assert_eq!(a.actions[0].contained_at(), Some(at(2.25)));
        assert_eq!(a.actions[1].contained_at(), None);
        // An alert about a source has no device.
        let v = json!({"id": 8, "device": null, "entity": "source:127.0.0.77",
            "detector": "rule:auth", "first_seen": "2023-11-14T22:13:20Z",
            "last_seen": "2023-11-14T22:13:20Z", "actions": []});
        assert_eq!(serde_json::from_value::<Alert>(v).unwrap().device, None);
    }

    #[test]
    fn detect_and_contain_times() {
        let target = Target {
            device: Some("dev-a".into()),
            sources: vec![],
        };
        let mut a1 = alert(3, Some("dev-a"), "device:dev-a", 12.0, 14.0);
        a1.actions = vec![
            act("notify", "applied", Some(12.1)),
            act("throttle", "applied", Some(13.5)),
            act("revoke", "awaiting_approval", None),
        ];
        let mut a2 = alert(4, None, "device:dev-a", 11.25, 11.25);
        a2.detector = "baseline:messages".into();
        // Released later, but it was applied first: it contained the device.
        a2.actions = vec![act("disconnect", "released", Some(13.0))];
        let fp = alert(5, Some("dev-b"), "device:dev-b", 3.0, 4.0);
        let other = alert(6, None, "fleet", 3.0, 4.0);
        let unknown = alert(7, Some("dev-z"), "device:dev-z", 3.0, 4.0);
        let all = seen(vec![a1, a2, fp, other, unknown]);
        let out = evaluate(&all, &target, Some(at(10.0)), &fleet(&["dev-a", "dev-b"]));
        assert_eq!(out.time_to_detect, Some(Duration::from_millis(1250)));
        assert_eq!(out.detector.as_deref(), Some("baseline:messages"));
        assert_eq!(out.time_to_contain, Some(Duration::from_millis(3000)));
        assert_eq!(out.contained_by.as_deref(), Some("disconnect"));
        assert_eq!(out.attacker_alerts, 2);
        assert_eq!(
            out.false_positive_devices,
            BTreeSet::from(["dev-b".to_owned()])
        );
        assert_eq!(out.false_positive_alerts, 1);
        assert_eq!(
            out.false_positive_detectors,
            BTreeMap::from([("rule:r5".to_owned(), 1)])
        );
        assert_eq!(out.other_alerts, 2);

        // Before the attack nothing is a detection.
        let out = evaluate(&all, &target, None, &fleet(&["dev-a", "dev-b"]));
        assert!(!out.detected() && !out.contained());
        assert_eq!(out.attacker_alerts, 2);
    }

    #[test]
    fn detected_but_not_contained() {
        let target = Target {
            device: None,
            sources: vec!["127.0.0.77".into()],
        };
        let mut a = alert(1, None, "source:127.0.0.77", 10.5, 11.0);
        a.actions = vec![
            act("notify", "applied", Some(10.6)),
            act("revoke", "failed", None),
            act("throttle", "cancelled", None),
        ];
        let other_source = alert(2, None, "source:127.0.0.7", 10.0, 11.0);
        let out = evaluate(
            &seen(vec![a, other_source]),
            &target,
            Some(at(10.0)),
            &fleet(&[]),
        );
        assert_eq!(out.time_to_detect, Some(Duration::from_millis(500)));
        assert!(!out.contained());
        assert_eq!(out.other_alerts, 1);
        assert_eq!(target.describe().as_deref(), Some("source:127.0.0.77"));
    }

    #[test]
    fn alerts_from_before_the_attack() {
        let target = Target {
            device: Some("dev-a".into()),
            sources: vec![],
        };
        let start = at(100.0);
        // Opened during the warm-up; the attack's findings fold into it.
        let mut s = Seen::new(alert(1, Some("dev-a"), "device:dev-a", 50.0, 60.0));
        s.update(
            alert(1, Some("dev-a"), "device:dev-a", 50.0, 60.0),
            Some(start),
        );
        assert_eq!(s.active_since, None);
        let out = evaluate([&s], &target, Some(start), &fleet(&["dev-a"]));
        assert!(!out.detected());
        s.update(
            alert(1, Some("dev-a"), "device:dev-a", 50.0, 102.0),
            Some(start),
        );
        s.update(
            alert(1, Some("dev-a"), "device:dev-a", 50.0, 109.0),
            Some(start),
        );
        assert_eq!(s.active_since, Some(at(102.0)));
        let out = evaluate([&s], &target, Some(start), &fleet(&["dev-a"]));
        assert_eq!(out.time_to_detect, Some(Duration::from_secs(2)));
        // An action applied before the attack does not count as containment.
        s.alert.actions = vec![act("throttle", "applied", Some(55.0))];
        let out = evaluate([&s], &target, Some(start), &fleet(&["dev-a"]));
        assert!(!out.contained());
    }

    #[test]
    fn hour_buckets() {
        let day = Duration::from_secs(240); // an hour is 10 s
        let start = at(0.0);
        for (t, h) in [
            (-5.0, 0),
            (0.0, 0),
            (9.99, 0),
            (10.0, 1),
            (125.0, 12),
            (239.9, 23),
            (400.0, 23),
        ] {
            assert_eq!(hour_of(at(t), start, day), h, "{t}");
        }
        let target = Target::default();
        let f = fleet(&["d1", "d2", "d3"]);
        let all = seen(vec![
            alert(1, Some("d1"), "device:d1", 12.0, 31.0), // hours 1, 2, 3
            alert(2, Some("d1"), "device:d1", 25.0, 25.0), // hour 2 again
            alert(3, None, "device:d2", 235.0, 500.0),     // hour 23
            alert(4, Some("d9"), "device:d9", 0.0, 0.0),   // not ours
            alert(5, None, "source:127.0.0.2", 0.0, 100.0),
        ]);
        let hours = alert_hours(&all, &target, &f, start, day);
        assert_eq!(hours["d1"], BTreeSet::from([1, 2, 3]));
        assert_eq!(hours["d2"], BTreeSet::from([23]));
        assert_eq!(hours.len(), 2);
        assert_eq!(device_hours(&hours), 4);
    }
}
