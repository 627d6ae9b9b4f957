//! Group windows: a group's devices combined into one window (group rules,
//! group baselines), and each device compared with its peers in it.

use crate::baseline::{peer_stats, scale, Robust, Sample};
use crate::config::Scope;
use crate::engine::Engine;
use crate::entity::{Group, Ring};
use crate::finding::Finding;
use crate::metric::{combine_into, combiners, finish};
use crate::rules::RuleState;
use crate::tick::{baseline_findings, new_baselines, rules_for, Ctx, Member, Subject};
use crate::validate::CompiledRule;
use serde_json::json;

impl Engine {
    pub(crate) fn group_window(
        &mut self,
        name: &str,
        list: &[Member],
        ctx: &Ctx,
        out: &mut Vec<Finding>,
    ) {
        if !self.groups.contains_key(name) && self.groups.len() >= self.cfg.max_entities {
            return;
        }
        let mut acc = combiners();
        for m in list {
            combine_into(&mut acc, &m.values);
        }
        let values = finish(&acc);
        let mut g = match self.groups.remove(name) {
            Some(g) => g,
            None => Group {
                first_window: ctx.idx,
                last_active: ctx.idx,
                active_windows: 0,
                ring: Ring::new(self.ring_len),
                rules: vec![RuleState::default(); self.rules.len()],
                baselines: new_baselines(self),
                reference: vec![Robust::default(); self.cfg.baseline.metrics.len()],
            },
        };
        g.last_active = ctx.idx;
        g.active_windows += 1;
        g.ring.push(ctx.idx, &values);
        let applies = |r: &CompiledRule| r.scope == Scope::Group;
        let subject = || Subject::group(name);
        rules_for(
            &self.rules,
            &applies,
            &mut g.rules,
            &g.ring,
            ctx,
            &subject,
            out,
        );
        let cfg = &self.cfg.baseline;
        let lw = self.cfg.learning_windows;
        if cfg.enabled && cfg.deflate {
            let members = f64::from(self.group_members.get(name).copied().unwrap_or(1).max(1));
            for (m, r) in cfg.metrics.iter().zip(g.reference.iter_mut()) {
                let sample = Sample::plain(values[m.index()] / members, ctx.idx);
                r.update(sample, cfg, lw, ctx.end_ms, ctx.refire_ms);
            }
        }
        if cfg.enabled && cfg.groups {
            let subject = Subject::group(name);
            for (m, r) in cfg.metrics.iter().zip(g.baselines.metrics.iter_mut()) {
                // Groups score spikes only: their drift is what deflates
                // their devices.
                let sample = Sample::plain(values[m.index()], ctx.idx);
                let o = r.update(sample, cfg, lw, ctx.end_ms, ctx.refire_ms);
                if o.spike {
                    baseline_findings(self, &subject, *m, &o, ctx, out);
                }
            }
        }
        self.groups.insert(name.into(), g);
        let cfg = &self.cfg.baseline;
        if cfg.enabled && cfg.peer_enabled && list.len() >= cfg.peer_min_devices {
            self.peers(list, ctx, out);
        }
    }

    fn peers(&mut self, list: &[Member], ctx: &Ctx, out: &mut Vec<Finding>) {
        let cfg = &self.cfg.baseline;
        let mut column = Vec::with_capacity(list.len());
        for (mi, metric) in cfg.peer_metrics.iter().enumerate() {
            column.clear();
            column.extend(list.iter().map(|m| m.values[metric.index()]));
            let Some((median, mad)) = peer_stats(&mut column) else {
                continue;
            };
            let s = scale(cfg, median, mad);
            for m in list {
                let Some(e) = self.slots.get_mut(m.slot as usize).and_then(Option::as_mut) else {
                    continue;
                };
                let Some(streak) = e.baselines.as_mut().and_then(|b| b.peers.get_mut(mi)) else {
                    continue;
                };
                let x = m.values[metric.index()];
                let score = (x - median) / s;
                let far = x >= cfg.peer_min_ratio * (median + cfg.floor);
                if !streak.step(
                    score > cfg.peer_threshold && far,
                    cfg.peer_consecutive,
                    ctx.end_ms,
                    ctx.refire_ms,
                ) {
                    continue;
                }
                out.push(Subject::of(e).finding(
                    format!("baseline:{}", metric.as_str()),
                    ":peer",
                    cfg.peer_severity,
                    format!(
                        "{metric} {x} is far above its group's devices (median {median}, score {score:.1})"
                    ),
                    json!({
                        "mode": "peer",
                        "metric": metric.as_str(),
                        "value": x,
                        "peer_median": median,
                        "peer_mad": mad,
                        "peers": list.len(),
                        "score": score,
                        "threshold": cfg.peer_threshold,
                        "consecutive": cfg.peer_consecutive,
                        "window": ctx.window,
                    }),
                    ctx.end_ms,
                ));
            }
        }
    }
}
