//! Robust streaming baselines.
//!
//! Per metric, per device (and per group's summed window):
//! - **center**: a streaming median estimate. Each window moves it one step
//!   of `rate · scale` towards the value (a sign step, as in frugal
//!   streaming quantiles), never past it. The fixed point is the median and
//!   a burst moves it by one step whatever its size, so it is robust.
//! - **mad**: the same sign step on `|x - center|`, converging to the median
//!   absolute deviation. Step `rate · (mad + floor)`, so it adapts in
//!   relative terms.
//! - **score** `= (x - center) / (1.4826·mad + floor + rel_floor·|center|)`:
//!   a robust z-score; the floors keep near-constant metrics from dividing
//!   by zero. Fires above `threshold` for `consecutive` active windows.
//! - **drift**: a slow EWMA of the value, clipped at `center + clip·scale`
//!   (so one burst does not read as drift), compared with the level and
//!   scale frozen at the end of learning. A slow rise that the median
//!   follows quietly still fires once the slow average passes
//!   `drift_ratio · learned + drift_k · learned_scale`.
//!
//! Baselines learn from active windows only (an idle device's silence is
//! not a sample), with a faster step during the learning period, and only
//! score after it. 56 bytes per metric, O(1) per window.
//!
//! **Peer comparison** ([`peer_stats`]): a device's value against the exact
//! median/MAD of its group's active devices in the same window, when the
//! group has at least `peer_min_devices` of them.

use crate::config::BaselineConfig;

/// Consistency constant: `1.4826·MAD` estimates σ for normal data.
pub(crate) const MAD_TO_SIGMA: f64 = 1.4826;

/// First samples whose drift contribution is not clipped (estimates are
/// still settling).
const UNCLIPPED: u32 = 10;

#[derive(Debug, Clone, Default)]
pub(crate) struct Robust {
    pub n: u32,
    pub center: f64,
    pub mad: f64,
    pub slow: f64,
    pub learned: Option<(f64, f64)>,
    pub spike: Streak,
    pub drift: Streak,
}

/// Consecutive-breach counter with re-fire limiting.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Streak {
    pub count: u32,
    pub fired_at: Option<u64>,
}

impl Streak {
    /// Records one window; true when it should fire now.
    pub(crate) fn step(&mut self, breach: bool, need: u32, now_ms: u64, refire_ms: u64) -> bool {
        if !breach {
            *self = Streak::default();
            return false;
        }
        self.count = self.count.saturating_add(1);
        if self.count < need {
            return false;
        }
        let due = self
            .fired_at
            .is_none_or(|t| now_ms.saturating_sub(t) >= refire_ms);
        if due {
            self.fired_at = Some(now_ms);
        }
        due
    }
}

/// What one window did to a baseline.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Outcome {
    pub value: f64,
    pub center: f64,
    pub mad: f64,
    pub score: f64,
    pub spike: bool,
    pub drift: bool,
    pub slow: f64,
    pub drift_limit: f64,
}

pub(crate) fn scale(cfg: &BaselineConfig, center: f64, mad: f64) -> f64 {
    MAD_TO_SIGMA * mad + cfg.floor + cfg.rel_floor * center.abs()
}

/// Moves `from` towards `to` by at most `step`.
fn toward(from: f64, to: f64, step: f64) -> f64 {
    if to > from {
        from + step.min(to - from)
    } else {
        from - step.min(from - to)
    }
}

impl Robust {
    /// Feeds one active window's value; scores it against the state before
    /// the update.
    pub(crate) fn update(
        &mut self,
        x: f64,
        cfg: &BaselineConfig,
        learning_windows: u32,
        now_ms: u64,
        refire_ms: u64,
    ) -> Outcome {
        let x = if x.is_finite() { x.max(0.0) } else { 0.0 };
        self.n = self.n.saturating_add(1);
        if self.n == 1 {
            self.center = x;
            self.mad = 0.0;
            self.slow = x;
            return Outcome::default();
        }
        let learning = self.n <= learning_windows;
        let s = scale(cfg, self.center, self.mad);
        let score = (x - self.center) / s;
        let clipped = if self.n <= UNCLIPPED {
            x
        } else {
            x.min(self.center + cfg.clip * s)
        };
        let mut out = Outcome {
            value: x,
            center: self.center,
            mad: self.mad,
            score,
            ..Outcome::default()
        };

        let eta = if learning { cfg.learn_rate } else { cfg.rate };
        let dev = (x - self.center).abs();
        self.center = toward(self.center, x, eta * s);
        self.mad = toward(self.mad, dev, eta * (self.mad + cfg.floor));
        if learning {
            // Running mean of the (clipped) value: the level drift compares with.
            self.slow += (clipped - self.slow) / f64::from(self.n);
            if self.n == learning_windows {
                self.learned = Some((self.slow, self.mad));
            }
            return out;
        }
        let (level, learned_mad) = *self.learned.get_or_insert((self.slow, self.mad));
        self.slow += cfg.drift_rate * (clipped - self.slow);
        let limit = cfg.drift_ratio * level + cfg.drift_k * scale(cfg, level, learned_mad);
        out.slow = self.slow;
        out.drift_limit = limit;
        out.spike = self
            .spike
            .step(score > cfg.threshold, cfg.consecutive, now_ms, refire_ms);
        out.drift = self
            .drift
            .step(self.slow > limit, cfg.drift_consecutive, now_ms, refire_ms);
        out
    }

    pub(crate) fn learning(&self, learning_windows: u32) -> bool {
        self.n <= learning_windows
    }
}

/// Median and MAD of `values` (sorted in place). `None` when empty.
pub(crate) fn peer_stats(values: &mut [f64]) -> Option<(f64, f64)> {
    let median = |v: &mut [f64]| -> Option<f64> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable_by(f64::total_cmp);
        let mid = v.len() / 2;
        Some(if v.len() & 1 == 0 {
            (v[mid - 1] + v[mid]) / 2.0
        } else {
            v[mid]
        })
    };
    let med = median(values)?;
    let mut dev: Vec<f64> = values.iter().map(|x| (x - med).abs()).collect();
    let mad = median(&mut dev)?;
    Some((med, mad))
}
