//! Period summaries: every closed window of an active entity is folded into
//! a small accumulator, and [`Engine::take_summaries`] drains them (one
//! [`PeriodSummary`] per entity active since the last call) so the server
//! can keep the metrics beyond the ring of recent windows.
//!
//! An accumulator exists only while its entity has been active in the
//! current period (a boxed ~190 bytes); taking the summaries frees them.
//! An entity that is evicted or forgotten loses its open period.

use std::collections::BTreeMap;

use crate::engine::Engine;
use crate::entity::{Entity, Key};
use crate::finding::PeriodSummary;
use crate::metric::{Aggregation, Metric, Values, METRIC_COUNT};

/// The metrics aggregated as a mean; each needs a count of the windows
/// that had a value.
const MEANS: [Metric; 2] = [Metric::PayloadMean, Metric::InterarrivalMeanMs];

/// One entity's windows since the last [`Engine::take_summaries`].
#[derive(Debug, Clone)]
pub(crate) struct PeriodAcc {
    start_ms: u64,
    end_ms: u64,
    windows: u32,
    /// Per metric: the sum, the maximum, the sum of the non-zero values
    /// (means) or the smallest non-zero value (0: none yet), as
    /// [`Metric::aggregation`] says.
    acc: Values,
    /// Windows with a value, per entry of [`MEANS`].
    means: [u32; MEANS.len()],
}

impl PeriodAcc {
    pub(crate) fn new(start_ms: u64, end_ms: u64) -> PeriodAcc {
        PeriodAcc {
            start_ms,
            end_ms,
            windows: 0,
            acc: [0.0; METRIC_COUNT],
            means: [0; MEANS.len()],
        }
    }

    /// Folds in one closed window `[start_ms, end_ms)`.
    pub(crate) fn add(&mut self, start_ms: u64, end_ms: u64, v: &Values) {
        // Min/max rather than first/last: a clock stepped back
        // resynchronises the windows to an earlier index.
        self.start_ms = self.start_ms.min(start_ms);
        self.end_ms = self.end_ms.max(end_ms);
        self.windows = self.windows.saturating_add(1);
        for m in Metric::ALL {
            let x = v[m.index()];
            let a = &mut self.acc[m.index()];
            match m.aggregation() {
                Aggregation::Sum => *a += x,
                Aggregation::Max => *a = a.max(x),
                Aggregation::Mean => {
                    if x > 0.0 {
                        *a += x;
                        if let Some(i) = MEANS.iter().position(|&k| k == m) {
                            self.means[i] += 1;
                        }
                    }
                }
                Aggregation::Min => {
                    if x > 0.0 && (*a == 0.0 || x < *a) {
                        *a = x;
                    }
                }
            }
        }
    }

    /// The non-zero aggregates, by metric name.
    fn values(&self) -> BTreeMap<&'static str, f64> {
        Metric::ALL
            .into_iter()
            .filter_map(|m| {
                let a = self.acc[m.index()];
                let v = match MEANS.iter().position(|&k| k == m) {
                    Some(i) if self.means[i] > 0 => a / f64::from(self.means[i]),
                    Some(_) => 0.0,
                    None => a,
                };
                (v != 0.0 && v.is_finite()).then_some((m.as_str(), v))
            })
            .collect()
    }
}

impl Engine {
    /// The period summaries of every entity active in at least one window
    /// closed since the last call (in no particular order), and a fresh
    /// period for each. Entities evicted or forgotten meanwhile are not in
    /// it: their period is lost with them. Costs O(entities active in the
    /// period), a few small allocations each.
    pub fn take_summaries(&mut self) -> Vec<PeriodSummary> {
        let mut periods = std::mem::take(&mut self.periods);
        let mut out = Vec::with_capacity(periods.len());
        for &(slot, generation) in &periods {
            let Some(e) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
                continue;
            };
            if e.generation != generation {
                continue;
            }
            let Some(p) = e.period.take() else {
                continue;
            };
            out.push(PeriodSummary {
                entity: e.key.render(),
                device: match &e.key {
                    Key::Device(id) => Some(id.to_string()),
                    _ => None,
                },
                group: e.group.as_deref().map(str::to_owned),
                start_ms: p.start_ms,
                end_ms: p.end_ms,
                active_windows: p.windows,
                values: p.values(),
            });
        }
        // Keep the allocation for the next period.
        periods.clear();
        self.periods = periods;
        out
    }

    /// Whether closed windows are folded into period summaries (on by
    /// default). A caller that never takes them should turn them off
    /// rather than hold an accumulator per active entity; turning them off
    /// drops the open periods.
    pub fn set_summaries(&mut self, on: bool) {
        self.summaries = on;
        if !on {
            for &(slot, generation) in &self.periods {
                if let Some(e) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) {
                    if e.generation == generation {
                        e.period = None;
                    }
                }
            }
            self.periods = Vec::new();
        }
    }

    /// Folds a closed window into the entity's period, opening one (and
    /// registering it for [`Engine::take_summaries`]) on its first window.
    pub(crate) fn fold_period(
        &mut self,
        slot: u32,
        e: &mut Entity,
        start_ms: u64,
        end_ms: u64,
        v: &Values,
    ) {
        if !self.summaries {
            return;
        }
        if e.period.is_none() {
            // Entries of evicted or forgotten entities stay in the list
            // until the next take; if nobody takes for long, compact it so
            // it stays within twice the entity cap (amortised O(1)).
            if self.periods.len() >= self.cfg.max_entities.saturating_mul(2).max(1024) {
                let slots = &self.slots;
                self.periods.retain(|&(s, g)| {
                    slots
                        .get(s as usize)
                        .and_then(Option::as_ref)
                        .is_some_and(|x| x.generation == g && x.period.is_some())
                });
            }
            self.periods.push((slot, e.generation));
        }
        e.period
            .get_or_insert_with(|| Box::new(PeriodAcc::new(start_ms, end_ms)))
            .add(start_ms, end_ms, v);
    }
}

#[cfg(test)]
mod tests {
    use crate::tests::{ip, Device, Sim, W};
    use crate::{DetectConfig, EntityRef, ObsKind, PeriodSummary};

    fn of<'a>(all: &'a [PeriodSummary], entity: &str) -> Option<&'a PeriodSummary> {
        all.iter().find(|s| s.entity == entity)
    }

    fn value(s: &PeriodSummary, metric: &str) -> f64 {
        s.values.get(metric).copied().unwrap_or(0.0)
    }

    fn publish(sim: &mut Sim, d: &Device, offsets_ms: &[u64], bytes: u32) {
        for &off in offsets_ms {
            let at = sim.start() + off;
            sim.obs(
                d.entity(),
                at,
                ObsKind::MessageIn {
                    topic: "devices/d0/t",
                    bytes,
                },
            );
        }
    }

    #[test]
    fn sums_maxima_means_and_minima_over_the_period() {
        let mut sim = Sim::new(DetectConfig::default());
        let d = Device::new(0, Some("meters"), 1.0);
        // Window 0: 3 messages of 100 B, gaps 100 and 300 ms.
        publish(&mut sim, &d, &[0, 100, 400], 100);
        sim.tick();
        // Window 1: idle apart from a delivery (no gaps, no payload).
        let at = sim.start();
        sim.obs(
            d.entity(),
            at,
            ObsKind::MessageOut {
                messages: 4,
                bytes: 800,
            },
        );
        sim.tick();
        // Window 2: nothing at all.
        sim.tick();
        // Window 3: 2 messages of 400 B, 50 ms apart (plus the gap from
        // window 0's last message).
        publish(&mut sim, &d, &[0, 50], 400);
        sim.tick();

        let all = sim.engine.take_summaries();
        assert_eq!(all.len(), 1, "{all:?}");
        let s = &all[0];
        assert_eq!(s.entity, "device:d0");
        assert_eq!(s.device.as_deref(), Some("d0"));
        assert_eq!(s.group.as_deref(), Some("meters"));
        assert_eq!(s.active_windows, 3);
        assert_eq!((s.start_ms, s.end_ms), (0, 4 * W));
        assert_eq!(value(s, "msgs_in"), 5.0);
        assert_eq!(value(s, "bytes_in"), 1100.0);
        assert_eq!(value(s, "msgs_out"), 4.0);
        assert_eq!(value(s, "bytes_out"), 800.0);
        assert_eq!(value(s, "payload_max"), 400.0);
        // Mean of the windows' means (100 and 400), not of the messages.
        assert_eq!(value(s, "payload_mean"), 250.0);
        // Window 3's gaps: 2600 (from window 0's last) and 50; mean 1325.
        assert_eq!(value(s, "interarrival_min_ms"), 50.0);
        assert_eq!(value(s, "interarrival_mean_ms"), (200.0 + 1325.0) / 2.0);
        assert_eq!(value(s, "distinct_topics"), 1.0);
        // Zero metrics are left out.
        assert!(!s.values.contains_key("auth_failures"), "{:?}", s.values);
        assert!(s.values.values().all(|v| *v != 0.0));
    }

    #[test]
    fn taking_resets_and_idle_entities_are_absent() {
        let mut sim = Sim::new(DetectConfig::default());
        let busy = Device::new(1, None, 1.0);
        let idle = Device::new(2, None, 1.0);
        publish(&mut sim, &idle, &[0], 10);
        publish(&mut sim, &busy, &[0, 10], 10);
        sim.tick();
        let first = sim.engine.take_summaries();
        assert_eq!(first.len(), 2);
        assert!(of(&first, "device:d2").is_some());

        publish(&mut sim, &busy, &[0], 10);
        sim.tick();
        sim.tick();
        let second = sim.engine.take_summaries();
        assert_eq!(second.len(), 1, "{second:?}");
        let s = of(&second, "device:d1").expect("busy device");
        assert_eq!(s.active_windows, 1);
        assert_eq!(value(s, "msgs_in"), 1.0, "counted again from zero");
        assert_eq!((s.start_ms, s.end_ms), (W, 2 * W));
        assert!(
            of(&second, "device:d2").is_none(),
            "idle since the last take"
        );

        // Nothing closed since: nothing to take.
        assert!(sim.engine.take_summaries().is_empty());
        // An observation in the open window is not a period yet.
        publish(&mut sim, &busy, &[0], 10);
        assert!(sim.engine.take_summaries().is_empty());
    }

    #[test]
    fn sources_and_services_have_periods_too() {
        let mut sim = Sim::new(DetectConfig::default());
        let src = ip("203.0.113.9");
        let at = sim.start();
        for _ in 0..3 {
            sim.obs(
                EntityRef::Source(src),
                at,
                ObsKind::AuthFailure { source: src },
            );
        }
        sim.obs(
            EntityRef::Service("ingest"),
            at,
            ObsKind::MessageIn {
                topic: "x",
                bytes: 1,
            },
        );
        sim.tick();
        let all = sim.engine.take_summaries();
        let s = of(&all, "source:203.0.113.9").expect("source");
        assert_eq!(s.device, None);
        assert_eq!(value(s, "auth_failures"), 3.0);
        assert!(of(&all, "service:ingest").is_some());
    }

    #[test]
    fn evicted_and_forgotten_entities_lose_their_period() {
        let mut sim = Sim::new(DetectConfig {
            max_entities: 2,
            ..DetectConfig::default()
        });
        let (a, b, c) = (
            Device::new(0, None, 1.0),
            Device::new(1, None, 1.0),
            Device::new(2, None, 1.0),
        );
        publish(&mut sim, &a, &[0], 10);
        publish(&mut sim, &b, &[0], 10);
        sim.tick();
        // A third device evicts the least recently seen (d0), which takes
        // its period with it; its slot is reused by d2.
        publish(&mut sim, &c, &[0], 10);
        sim.tick();
        assert_eq!(sim.engine.stats().evicted, 1);
        let all = sim.engine.take_summaries();
        assert!(of(&all, "device:d0").is_none(), "{all:?}");
        assert!(of(&all, "device:d1").is_some());
        let s = of(&all, "device:d2").expect("the newcomer");
        assert_eq!((s.active_windows, s.start_ms), (1, W));

        publish(&mut sim, &c, &[0], 10);
        sim.tick();
        assert!(sim.engine.forget("device:d2"));
        assert!(sim.engine.take_summaries().is_empty());
    }

    #[test]
    fn open_periods_stay_bounded_when_nobody_takes_them() {
        let mut sim = Sim::new(DetectConfig {
            max_entities: 4,
            ..DetectConfig::default()
        });
        for i in 0..5_000u32 {
            let src = std::net::IpAddr::from(i.to_be_bytes());
            let at = sim.start();
            sim.obs(
                EntityRef::Source(src),
                at,
                ObsKind::AuthFailure { source: src },
            );
            sim.tick();
            assert!(
                sim.engine.periods.len() <= 1024,
                "{}",
                sim.engine.periods.len()
            );
        }
        assert!(sim.engine.take_summaries().len() <= 4);
    }

    #[test]
    fn summaries_can_be_turned_off() {
        let mut sim = Sim::new(DetectConfig::default());
        let d = Device::new(0, None, 1.0);
        publish(&mut sim, &d, &[0], 10);
        sim.tick();
        sim.engine.set_summaries(false);
        publish(&mut sim, &d, &[0], 10);
        sim.tick();
        assert!(sim.engine.take_summaries().is_empty());
        sim.engine.set_summaries(true);
        publish(&mut sim, &d, &[0], 10);
        sim.tick();
        let all = sim.engine.take_summaries();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].active_windows, 1);
    }
}
