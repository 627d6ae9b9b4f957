//! Per-entity and per-group state, and the ring of recent closed windows.

use std::collections::VecDeque;
use std::net::IpAddr;

use crate::baseline::{Robust, Streak};
use crate::metric::{Combiner, Metric, Posture, Values, WindowAcc, METRIC_COUNT};
use crate::novelty::Novelty;
use crate::period::PeriodAcc;
use crate::rules::RuleState;

/// Who an entity is; owned, rendered as `device:<id>` etc. in findings.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    Device(Box<str>),
    Source(IpAddr),
    Service(Box<str>),
}

impl Key {
    pub(crate) fn render(&self) -> String {
        match self {
            Key::Device(id) => format!("device:{id}"),
            Key::Source(ip) => format!("source:{ip}"),
            Key::Service(name) => format!("service:{name}"),
        }
    }
}

/// Closed windows, newest last, stored as f32 (80 bytes a window).
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    cap: usize,
    windows: VecDeque<(u64, [f32; METRIC_COUNT])>,
}

impl Ring {
    pub(crate) fn new(cap: usize) -> Ring {
        Ring {
            cap: cap.max(1),
            windows: VecDeque::new(),
        }
    }

    pub(crate) fn push(&mut self, idx: u64, v: &Values) {
        if self.windows.len() >= self.cap {
            self.windows.pop_front();
        }
        self.windows.push_back((idx, v.map(|x| x as f32)));
    }

    /// `metric` aggregated over windows `idx - span + 1 ..= idx`; missing
    /// (idle) windows count as zero.
    pub(crate) fn aggregate(&self, metric: Metric, idx: u64, span: u64) -> f64 {
        let from = idx.saturating_sub(span.saturating_sub(1));
        let mut c = Combiner::new(metric);
        for (w, v) in self.windows.iter().rev() {
            if *w < from {
                break;
            }
            if *w <= idx {
                c.add(f64::from(v[metric.index()]));
            }
        }
        c.value()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &(u64, [f32; METRIC_COUNT])> {
        self.windows.iter()
    }
}

/// Baselines of one device (or group), created on first use.
#[derive(Debug, Clone, Default)]
pub(crate) struct Baselines {
    /// One per configured baseline metric.
    pub metrics: Vec<Robust>,
    /// One per configured peer metric.
    pub peers: Vec<Streak>,
}

/// Everything the engine keeps about one device, source or service.
#[derive(Debug)]
pub(crate) struct Entity {
    pub key: Key,
    pub generation: u64,
    pub group: Option<Box<str>>,
    /// Engine-wide observation sequence number of the last observation (LRU).
    pub touched: u64,
    pub first_window: u64,
    pub active: bool,
    pub active_windows: u64,
    pub acc: WindowAcc,
    pub posture: Posture,
    pub last_at: u64,
    pub last_msg_at: Option<u64>,
    pub ring: Ring,
    pub rules: Vec<RuleState>,
    pub baselines: Option<Box<Baselines>>,
    pub novelty: Option<Box<Novelty>>,
    pub model: Streak,
    pub last_score: Option<f32>,
    /// Windows since the last `take_summaries`, while there are any.
    pub period: Option<Box<PeriodAcc>>,
}

impl Entity {
    pub(crate) fn new(key: Key, generation: u64, window: u64, ring: usize, rules: usize) -> Entity {
        Entity {
            key,
            generation,
            group: None,
            touched: 0,
            first_window: window,
            active: false,
            active_windows: 0,
            acc: WindowAcc::default(),
            posture: Posture::default(),
            last_at: 0,
            last_msg_at: None,
            ring: Ring::new(ring),
            rules: vec![RuleState::default(); rules],
            baselines: None,
            novelty: None,
            model: Streak::default(),
            last_score: None,
            period: None,
        }
    }
}

/// A group: the combined windows of its devices.
#[derive(Debug)]
pub(crate) struct Group {
    pub first_window: u64,
    pub last_active: u64,
    pub active_windows: u64,
    pub ring: Ring,
    pub rules: Vec<RuleState>,
    pub baselines: Baselines,
    /// Per baseline metric, the group's level per tracked device (the
    /// reference its devices are deflated by; see `baseline.rs`).
    pub reference: Vec<Robust>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_aggregates_over_span_with_gaps() {
        let mut r = Ring::new(4);
        let mut v = [0.0; METRIC_COUNT];
        for idx in [1u64, 2, 4, 5, 6] {
            v[Metric::MsgsIn.index()] = idx as f64;
            r.push(idx, &v);
        }
        assert_eq!(r.aggregate(Metric::MsgsIn, 6, 1), 6.0);
        assert_eq!(r.aggregate(Metric::MsgsIn, 6, 2), 11.0);
        // window 3 was idle
        assert_eq!(r.aggregate(Metric::MsgsIn, 4, 2), 4.0);
        assert_eq!(r.aggregate(Metric::MsgsIn, 6, u64::MAX), 17.0);
        assert_eq!(r.iter().count(), 4);
    }
}
