//! Closing a window: every entity active in it goes through the rules, its
//! baselines, its pending novelty events and the forest; then groups (group
//! rules, group baselines, peer comparison); then the forest refits if due.
//! Cost is proportional to the entities active in the window, not to all
//! entities tracked.

use std::collections::BTreeMap;

use bulwark_types::Severity;
use serde_json::json;

use crate::baseline::{scale, Outcome, Robust, Sample};
use crate::config::Scope;
use crate::engine::Engine;
use crate::entity::{Baselines, Entity, Key, Ring};
use crate::finding::Finding;
use crate::forest::{features, top_features, Forest};
use crate::metric::{Aggregation, Metric, Values, METRIC_COUNT};
use crate::novelty::{Kind, Pending};
use crate::rules::{evaluate, RuleState};
use crate::validate::CompiledRule;

/// A `tick` further back than this many windows resynchronises the engine
/// to it; closer ones are jitter and ignored.
const MAX_BACKSTEP_WINDOWS: u64 = 2;

/// Groups idle this many windows are forgotten.
const GROUP_IDLE_WINDOWS: u64 = 86_400;

/// Who a finding is about.
pub(crate) struct Subject {
    entity: String,
    device: Option<String>,
    group: Option<String>,
}

impl Subject {
    pub(crate) fn of(e: &Entity) -> Subject {
        Subject::parts(&e.key, e.group.as_deref())
    }

    fn parts(key: &Key, group: Option<&str>) -> Subject {
        Subject {
            entity: key.render(),
            device: match key {
                Key::Device(id) => Some(id.to_string()),
                _ => None,
            },
            group: group.map(str::to_owned),
        }
    }

    pub(crate) fn group(name: &str) -> Subject {
        Subject {
            entity: format!("group:{name}"),
            device: None,
            group: Some(name.to_owned()),
        }
    }

    pub(crate) fn finding(
        &self,
        detector: String,
        suffix: &str,
        severity: Severity,
        title: String,
        evidence: serde_json::Value,
        at_ms: u64,
    ) -> Finding {
        Finding {
            dedup_key: format!("{detector}:{}{suffix}", self.entity),
            entity: self.entity.clone(),
            device: self.device.clone(),
            group: self.group.clone(),
            detector,
            severity,
            title,
            evidence,
            at_ms,
        }
    }
}

/// The window being closed.
pub(crate) struct Ctx {
    pub idx: u64,
    pub end_ms: u64,
    pub window_ms: u64,
    pub refire_ms: u64,
    pub window: serde_json::Value,
}

/// Windows waiting to be scored by the forest.
#[derive(Default)]
struct Batch {
    /// Probability that a window replaces a reservoir slot once it is full.
    keep: f64,
    slots: Vec<u32>,
    points: Vec<crate::forest::Features>,
}

/// A finished window of one group member, for group sums and peers.
pub(crate) struct Member {
    pub slot: u32,
    pub values: Values,
}

impl Engine {
    /// Closes the open window if `now_ms` has reached its end and returns
    /// the findings (at most `max_findings_per_tick`, most severe first).
    /// A `now_ms` in the past is ignored and counted; one more than two
    /// windows back (a clock stepped back) resynchronises the windows to it.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Finding> {
        let now_idx = now_ms / self.cfg.window_ms;
        let Some(open) = self.open else {
            self.open = Some(now_idx);
            return Vec::new();
        };
        if now_idx < open {
            self.stats.backwards_ticks += 1;
            if open - now_idx > MAX_BACKSTEP_WINDOWS {
                // The clock was stepped back (or an earlier tick was wild):
                // resynchronise rather than stall until it catches up. The
                // open window's counts carry over into the new one.
                self.open = Some(now_idx);
            }
            return Vec::new();
        }
        if now_idx == open {
            return Vec::new();
        }
        let mut out = Vec::new();
        self.close(open, &mut out);
        self.open = Some(now_idx);
        self.stats.windows_closed += 1;
        if out.len() > self.cfg.max_findings_per_tick {
            out.sort_by_key(|f| std::cmp::Reverse(f.severity));
            let dropped = out.len() - self.cfg.max_findings_per_tick;
            out.truncate(self.cfg.max_findings_per_tick);
            self.stats.findings_dropped += dropped as u64;
        }
        self.stats.findings += out.len() as u64;
        out
    }

    fn close(&mut self, idx: u64, out: &mut Vec<Finding>) {
        let w = self.cfg.window_ms;
        let end_ms = idx.saturating_add(1).saturating_mul(w);
        let ctx = Ctx {
            idx,
            end_ms,
            window_ms: w,
            refire_ms: self.cfg.refire_ms,
            window: json!({ "start_ms": idx.saturating_mul(w), "end_ms": end_ms }),
        };
        let mut active = std::mem::take(&mut self.active);
        // Reservoir turnover: about one reservoir per refit period.
        let keep = self.cfg.forest.reservoir as f64
            / (active.len().max(1) as f64 * self.cfg.forest.refit_windows as f64);
        let mut members: BTreeMap<Box<str>, Vec<Member>> = BTreeMap::new();
        let mut batch = Batch {
            keep,
            ..Batch::default()
        };
        for &(slot, generation) in &active {
            // Taken out of its slot while it is processed, put back after.
            let Some(mut e) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
                continue;
            };
            if e.generation == generation {
                self.close_entity(&mut e, slot, &ctx, &mut members, &mut batch, out);
            }
            if let Some(s) = self.slots.get_mut(slot as usize) {
                *s = Some(e);
            }
        }
        // Keep the allocation for the next window.
        active.clear();
        self.active = active;
        self.model(&batch, &ctx, out);

        for (name, list) in members {
            self.group_window(&name, &list, &ctx, out);
        }
        self.groups
            .retain(|_, g| idx.saturating_sub(g.last_active) < GROUP_IDLE_WINDOWS);
        self.refit_if_due();
    }

    fn close_entity(
        &mut self,
        e: &mut Entity,
        slot: u32,
        ctx: &Ctx,
        members: &mut BTreeMap<Box<str>, Vec<Member>>,
        batch: &mut Batch,
        out: &mut Vec<Finding>,
    ) {
        e.active = false;
        e.active_windows += 1;
        let values = e.acc.values(&e.posture);
        e.acc = Default::default();
        e.ring.push(ctx.idx, &values);
        let start_ms = ctx.idx.saturating_mul(ctx.window_ms);
        self.fold_period(slot, e, start_ms, ctx.end_ms, &values);

        let kind = match e.key {
            Key::Device(_) => Scope::Device,
            Key::Source(_) => Scope::Source,
            Key::Service(_) => Scope::Service,
        };
        let applies = |r: &CompiledRule| r.scope == kind || r.scope == Scope::Any;
        let (key, group) = (&e.key, e.group.as_deref());
        let subject = || Subject::parts(key, group);
        rules_for(
            &self.rules,
            &applies,
            &mut e.rules,
            &e.ring,
            ctx,
            &subject,
            out,
        );
        if kind != Scope::Source {
            self.baselines(e, &values, ctx, out);
            self.offer(&values, slot, batch);
        }
        self.novelty(e, ctx.end_ms, out);
        if let (Scope::Device, Some(g)) = (kind, e.group.as_ref()) {
            members
                .entry(g.clone())
                .or_default()
                .push(Member { slot, values });
        }
    }

    fn baselines(&self, e: &mut Entity, values: &Values, ctx: &Ctx, out: &mut Vec<Finding>) {
        let cfg = &self.cfg.baseline;
        if !cfg.enabled {
            return;
        }
        // The group this device is deflated by, with its tracked devices.
        let reference = e
            .group
            .as_deref()
            .filter(|_| cfg.deflate && matches!(e.key, Key::Device(_)))
            .and_then(|g| Some((self.groups.get(g)?, *self.group_members.get(g)?)));
        let b = e
            .baselines
            .get_or_insert_with(|| Box::new(new_baselines(self)));
        let mut hits = Vec::new();
        for (i, (m, r)) in cfg.metrics.iter().zip(b.metrics.iter_mut()).enumerate() {
            // Rates (counters) drift and are deflated; a window's maximum or
            // distinct count (say distinct topics) follows the rate up to a
            // ceiling, so it only spikes.
            let counter = m.aggregation() == Aggregation::Sum;
            let reference = reference.filter(|_| counter);
            let factor = reference.map_or(1.0, |(g, members)| {
                g.reference.get(i).map_or(1.0, |rf| {
                    let own = r.fast_at(ctx.idx, cfg);
                    rf.factor(ctx.idx, own, members, cfg.peer_min_devices, cfg)
                })
            });
            let sample = Sample {
                x: values[m.index()],
                idx: ctx.idx,
                factor,
                drift: counter,
            };
            let o = r.update(
                sample,
                cfg,
                self.cfg.learning_windows,
                ctx.end_ms,
                ctx.refire_ms,
            );
            if o.spike || o.drift {
                hits.push((*m, o));
            }
        }
        if hits.is_empty() {
            return;
        }
        let subject = Subject::of(e);
        for (m, o) in hits {
            baseline_findings(self, &subject, m, &o, ctx, out);
        }
    }

    /// Feeds a window to the reservoir and queues it for scoring.
    fn offer(&mut self, values: &Values, slot: u32, batch: &mut Batch) {
        let f = &self.cfg.forest;
        if !f.enabled || values.iter().all(|x| *x == 0.0) {
            return;
        }
        let x = features(values);
        self.reservoir
            .offer(x, f.reservoir, batch.keep, &mut self.rng);
        if self.forest.is_some() {
            batch.slots.push(slot);
            batch.points.push(x);
        }
    }

    /// Scores the window's queued entities in one batch.
    fn model(&mut self, batch: &Batch, ctx: &Ctx, out: &mut Vec<Finding>) {
        let Some(forest) = self.forest.as_ref() else {
            return;
        };
        let f = &self.cfg.forest;
        let mut scores = Vec::new();
        forest.score_batch(&batch.points, &mut scores);
        let threshold = self.forest_threshold;
        for ((slot, x), score) in batch.slots.iter().zip(&batch.points).zip(scores) {
            let Some(e) = self.slots.get_mut(*slot as usize).and_then(Option::as_mut) else {
                continue;
            };
            e.last_score = Some(score as f32);
            if !e
                .model
                .step(score > threshold, f.consecutive, ctx.end_ms, ctx.refire_ms)
            {
                continue;
            }
            let mut credit = [0.0; METRIC_COUNT];
            let s = forest.score(x, Some(&mut credit));
            let values = e
                .ring
                .iter()
                .last()
                .map_or([0.0; METRIC_COUNT], |(_, v)| v.map(f64::from));
            let top = top_features(&credit, &values, 3);
            let names: Vec<&str> = top.iter().map(|t| t.0.as_str()).collect();
            let title = format!(
                "unusual window (isolation score {:.2}; {})",
                s.score,
                names.join(", ")
            );
            let top: Vec<_> = top
                .into_iter()
                .map(|(m, share, value)| json!({ "metric": m.as_str(), "share": share, "value": value }))
                .collect();
            out.push(Subject::of(e).finding(
                "model:iforest".to_owned(),
                "",
                f.severity,
                title,
                json!({
                    "score": s.score,
                    "threshold": threshold,
                    "configured_threshold": f.threshold,
                    "mean_depth": s.mean_depth,
                    "consecutive": f.consecutive,
                    "top_features": top,
                    "window": ctx.window,
                }),
                ctx.end_ms,
            ));
        }
    }

    fn novelty(&self, e: &mut Entity, end_ms: u64, out: &mut Vec<Finding>) {
        let subject = Subject::of(e);
        let Some(n) = e.novelty.as_mut() else {
            return;
        };
        if n.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut n.pending);
        let concurrent_due = n
            .concurrent_fired_at
            .is_none_or(|t| end_ms.saturating_sub(t) >= self.cfg.refire_ms);
        let c = &self.cfg.novelty;
        let mut concurrent_fired = false;
        for p in pending {
            match p {
                Pending::New { kind, value } => {
                    let severity = match kind {
                        Kind::Topic => c.topic_severity,
                        Kind::Source => c.source_severity,
                        Kind::Port => c.port_severity,
                        Kind::Destination => c.destination_severity,
                    };
                    out.push(subject.finding(
                        format!("novelty:{}", kind.as_str()),
                        &format!(":{value}"),
                        severity,
                        format!("new {} {value}", kind.as_str()),
                        json!({ "kind": kind.as_str(), "value": value }),
                        end_ms,
                    ));
                }
                Pending::Saturated { kind, overflow } => out.push(subject.finding(
                    format!("novelty:{}", kind.as_str()),
                    ":saturated",
                    Severity::Medium,
                    format!(
                        "too many distinct {} values; novelty tracking is full",
                        kind.as_str()
                    ),
                    json!({ "kind": kind.as_str(), "cap": c.cap, "overflow": overflow }),
                    end_ms,
                )),
                Pending::Concurrent { source, open } => {
                    if !concurrent_due || concurrent_fired {
                        continue;
                    }
                    concurrent_fired = true;
                    let open_sessions: Vec<String> =
                        n.open.iter().map(ToString::to_string).collect();
                    out.push(subject.finding(
                        "novelty:concurrent-source".to_owned(),
                        "",
                        c.concurrent_severity,
                        format!("connected from {source} while a session from {open} is open"),
                        json!({
                            "source": source.to_string(),
                            "open_source": open.to_string(),
                            "open_sessions": open_sessions,
                        }),
                        end_ms,
                    ));
                }
            }
        }
        if concurrent_fired {
            n.concurrent_fired_at = Some(end_ms);
        }
    }

    fn refit_if_due(&mut self) {
        let f = &self.cfg.forest;
        if !f.enabled {
            return;
        }
        self.windows_since_fit += 1;
        let due = match self.forest {
            None => {
                self.stats.windows_closed + 1 >= f.warmup_windows
                    && self.reservoir.points.len() >= f.sample_size
            }
            Some(_) => self.windows_since_fit >= f.refit_windows,
        };
        if !due {
            return;
        }
        let fitted = Forest::fit(
            &self.reservoir.points,
            f.trees,
            f.sample_size,
            f.guard_margin,
            &mut self.rng,
        );
        if let Some(forest) = fitted {
            // Effective threshold: the configured one, or the chosen
            // quantile of the training windows' own scores if higher.
            let mut scores: Vec<f64> = self
                .reservoir
                .points
                .iter()
                .map(|x| forest.score(x, None).score)
                .collect();
            scores.sort_unstable_by(f64::total_cmp);
            let at = ((scores.len() as f64 - 1.0) * f.quantile).round() as usize;
            let q = scores.get(at).copied().unwrap_or(0.0);
            self.forest_threshold = f.threshold.max(q);
            self.forest = Some(forest);
            self.windows_since_fit = 0;
            self.stats.forest_fits += 1;
        }
    }
}

pub(crate) fn new_baselines(engine: &Engine) -> Baselines {
    Baselines {
        metrics: vec![Robust::default(); engine.cfg.baseline.metrics.len()],
        peers: vec![Default::default(); engine.cfg.baseline.peer_metrics.len()],
    }
}

pub(crate) fn rules_for(
    rules: &[CompiledRule],
    applies: &dyn Fn(&CompiledRule) -> bool,
    states: &mut [RuleState],
    ring: &Ring,
    ctx: &Ctx,
    subject: &dyn Fn() -> Subject,
    out: &mut Vec<Finding>,
) {
    for (rule, state) in rules.iter().zip(states.iter_mut()) {
        if !applies(rule) {
            continue;
        }
        let Some(hit) = evaluate(rule, state, ring, ctx.idx, ctx.end_ms, ctx.refire_ms) else {
            continue;
        };
        let over_ms = rule.span.saturating_mul(ctx.window_ms);
        out.push(subject().finding(
            format!("rule:{}", rule.name),
            "",
            hit.severity,
            format!(
                "{}: {} {} {} {} over {} ms",
                rule.name,
                rule.metric,
                hit.value,
                rule.op.as_str(),
                rule.threshold,
                over_ms
            ),
            json!({
                "rule": rule.name,
                "metric": rule.metric.as_str(),
                "op": rule.op.as_str(),
                "threshold": rule.threshold,
                "value": hit.value,
                "over_ms": over_ms,
                "consecutive": rule.consecutive,
                "streak": hit.streak,
                "scope": rule.scope.as_str(),
                "window": ctx.window,
            }),
            ctx.end_ms,
        ));
    }
}

pub(crate) fn baseline_findings(
    engine: &Engine,
    subject: &Subject,
    m: Metric,
    o: &Outcome,
    ctx: &Ctx,
    out: &mut Vec<Finding>,
) {
    let cfg = &engine.cfg.baseline;
    if o.spike {
        out.push(subject.finding(
            format!("baseline:{}", m.as_str()),
            ":spike",
            cfg.severity,
            format!(
                "{m} {} is {:.1} robust deviations above its baseline {:.1}{}",
                o.value,
                o.score,
                o.center,
                deflated(o.factor)
            ),
            json!({
                "mode": "spike",
                "metric": m.as_str(),
                "value": o.value,
                "center": o.center,
                "mad": o.mad,
                "scale": scale(cfg, o.center, o.mad),
                "score": o.score,
                "threshold": cfg.threshold,
                "consecutive": cfg.consecutive,
                "group_factor": o.factor,
                "window": ctx.window,
            }),
            ctx.end_ms,
        ));
    }
    if o.drift {
        out.push(subject.finding(
            format!("baseline:{}", m.as_str()),
            ":drift",
            cfg.drift_severity,
            format!(
                "{m} drifted: long-run average {:.1} is past {:.1}{}",
                o.slow,
                o.drift_limit,
                deflated(o.factor)
            ),
            json!({
                "mode": "drift",
                "metric": m.as_str(),
                "value": o.value,
                "slow": o.slow,
                "limit": o.drift_limit,
                "center": o.center,
                "mad": o.mad,
                "drift_ratio": cfg.drift_ratio,
                "group_factor": o.factor,
                "window": ctx.window,
            }),
            ctx.end_ms,
        ));
    }
}

/// How a title says the value was divided by its group's factor.
fn deflated(factor: f64) -> String {
    if factor > 1.0 {
        format!(" (after dividing by its group's factor {factor:.2})")
    } else {
        String::new()
    }
}
