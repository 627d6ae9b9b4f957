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
//!   Center and mad learn from active windows only (an idle device's
//!   silence is not a sample).
//! - **drift**: a slow EWMA of the value over *every* window (idle ones
//!   count as zero, applied in O(1) when the entity is next active), so it
//!   measures a rate: a device at one message every five seconds that
//!   creeps up to one a second drifts even though each of its active
//!   windows still holds one message. Values are clipped at
//!   `center + clip·scale` first (one burst does not read as drift). It is
//!   compared with the mean and standard deviation per window learned over
//!   the first `learning_windows` windows (and at least
//!   [`MIN_DRIFT_SAMPLES`] active ones): drift fires once the average passes
//!   [`drift_limit`], `drift_ratio · mean` plus `drift_k` times the noise of
//!   that comparison.
//!
//! **Group deflation.** A device's value is divided by its group's factor
//! (`≥ 1`) before it reaches the baseline: the group's current level (a
//! fast EWMA of the group's summed windows) over the level the group
//! learned. When the whole fleet gets busier (a daily cycle, a reconnect
//! wave), every device is measured against that, and only a device that
//! rises *relative to its fleet* spikes or drifts. Groups themselves score
//! spikes but not drift (their drift is what deflates their devices).
//!
//! 96 bytes per metric, O(1) per window.
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

/// Active windows the drift level learns from at least, however long that
/// takes: a device seen twice in its first minute has no level yet.
pub(crate) const MIN_DRIFT_SAMPLES: u32 = 10;

/// Idle windows after which an EWMA is simply zero.
const DECAY_HORIZON: u64 = 100_000;

#[derive(Debug, Clone, Default)]
pub(crate) struct Robust {
    /// Active windows seen.
    pub n: u32,
    pub center: f64,
    pub mad: f64,
    /// Slow EWMA over every window (drift).
    pub slow: f64,
    /// Fast EWMA over every window (a group's current level).
    pub fast: f64,
    /// Window index of the first and the last update.
    pub first_idx: u64,
    pub last_idx: u64,
    /// Sum and sum of squares of the values while the drift level learns.
    sum: f64,
    sumsq: f64,
    /// Mean and standard deviation per window, frozen when learning ends.
    pub learned: Option<(f64, f64)>,
    /// Windows the level was learned over.
    learned_windows: u32,
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
    /// The group factor the value was divided by (1 without one).
    pub factor: f64,
}

/// One window as a baseline sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    /// The window's value.
    pub x: f64,
    /// The window's index (for idle gaps).
    pub idx: u64,
    /// Divide `x` by this (a group factor, `>= 1`).
    pub factor: f64,
    /// Whether drift may fire (groups: no).
    pub drift: bool,
}

impl Sample {
    /// A value without a group factor, drift not scored (a group's own windows).
    pub(crate) fn plain(x: f64, idx: u64) -> Sample {
        Sample {
            x,
            idx,
            factor: 1.0,
            drift: false,
        }
    }
}

pub(crate) fn scale(cfg: &BaselineConfig, center: f64, mad: f64) -> f64 {
    MAD_TO_SIGMA * mad + cfg.floor + cfg.rel_floor * center.abs()
}

/// Where drift starts: `drift_ratio` times the learned mean plus `drift_k`
/// times the noise of comparing an EWMA with a learned mean, that is σ
/// times `√(α/(2-α) + 1/N)` (the EWMA's own spread for independent
/// windows, and the learned mean's over `N` windows), and at least
/// `drift_k · α · floor` (one event of the floor's size moves the EWMA by
/// `α · floor`: a metric that was constant must change for a while).
pub(crate) fn drift_limit(cfg: &BaselineConfig, mean: f64, sd: f64, windows: u32) -> f64 {
    let a = cfg.drift_rate;
    let noise = sd * (a / (2.0 - a) + 1.0 / f64::from(windows.max(1))).sqrt();
    cfg.drift_ratio * mean + cfg.drift_k * noise.max(a * cfg.floor)
}

/// Moves `from` towards `to` by at most `step`.
fn toward(from: f64, to: f64, step: f64) -> f64 {
    if to > from {
        from + step.min(to - from)
    } else {
        from - step.min(from - to)
    }
}

/// An EWMA of weight `alpha` after `idle` windows of zeros.
fn decay(v: f64, alpha: f64, idle: u64) -> f64 {
    if idle == 0 {
        return v;
    }
    if idle >= DECAY_HORIZON {
        return 0.0;
    }
    v * (1.0 - alpha).powi(idle as i32)
}

impl Robust {
    /// Feeds one active window; scores it against the state before the update.
    pub(crate) fn update(
        &mut self,
        s: Sample,
        cfg: &BaselineConfig,
        learning_windows: u32,
        now_ms: u64,
        refire_ms: u64,
    ) -> Outcome {
        let factor = if s.factor.is_finite() && s.factor > 1.0 {
            s.factor
        } else {
            1.0
        };
        let raw = if s.x.is_finite() { s.x.max(0.0) } else { 0.0 };
        let x = raw / factor;
        self.n = self.n.saturating_add(1);
        if self.n == 1 {
            self.center = x;
            self.mad = 0.0;
            self.slow = x;
            self.fast = raw;
            self.first_idx = s.idx;
            self.last_idx = s.idx;
            self.sum = x;
            self.sumsq = x * x;
            return Outcome {
                factor,
                ..Outcome::default()
            };
        }
        let idle = s.idx.saturating_sub(self.last_idx).saturating_sub(1);
        self.last_idx = self.last_idx.max(s.idx);
        let sc = scale(cfg, self.center, self.mad);
        let score = (x - self.center) / sc;
        let clipped = if self.n <= UNCLIPPED {
            x
        } else {
            x.min(self.center + cfg.clip * sc)
        };
        let mut out = Outcome {
            value: raw,
            center: self.center,
            mad: self.mad,
            score,
            factor,
            ..Outcome::default()
        };

        let eta = if self.learning(learning_windows) {
            cfg.learn_rate
        } else {
            cfg.rate
        };
        let dev = (x - self.center).abs();
        self.center = toward(self.center, x, eta * sc);
        self.mad = toward(self.mad, dev, eta * (self.mad + cfg.floor));
        self.fast = decay(self.fast, cfg.group_rate, idle);
        self.fast += cfg.group_rate * (raw - self.fast);

        let Some((mean, sd)) = self.learn_level(clipped, learning_windows) else {
            return out;
        };
        self.slow = decay(self.slow, cfg.drift_rate, idle);
        self.slow += cfg.drift_rate * (clipped - self.slow);
        let limit = drift_limit(cfg, mean, sd, self.learned_windows);
        out.slow = self.slow;
        out.drift_limit = limit;
        if !self.learning(learning_windows) {
            out.spike = self
                .spike
                .step(score > cfg.threshold, cfg.consecutive, now_ms, refire_ms);
        }
        out.drift = s.drift
            && self
                .drift
                .step(self.slow > limit, cfg.drift_consecutive, now_ms, refire_ms);
        out
    }

    /// Accumulates the drift level while it learns; the learned (mean, σ)
    /// per window once it has.
    fn learn_level(&mut self, clipped: f64, learning_windows: u32) -> Option<(f64, f64)> {
        if let Some(l) = self.learned {
            return Some(l);
        }
        self.sum += clipped;
        self.sumsq += clipped * clipped;
        let windows = (self.last_idx - self.first_idx + 1) as f64;
        if windows < f64::from(learning_windows) || self.n < MIN_DRIFT_SAMPLES {
            return None;
        }
        let mean = self.sum / windows;
        let var = (self.sumsq / windows - mean * mean).max(0.0);
        self.slow = mean;
        self.learned = Some((mean, var.sqrt()));
        self.learned_windows = windows.min(f64::from(u32::MAX)) as u32;
        None
    }

    /// Spike scoring learns from this many active windows.
    pub(crate) fn learning(&self, learning_windows: u32) -> bool {
        self.n <= learning_windows
    }

    /// The fast EWMA of the raw values as of window `idx` (idle windows since
    /// the last update decayed in).
    pub(crate) fn fast_at(&self, idx: u64, cfg: &BaselineConfig) -> f64 {
        let idle = idx.saturating_sub(self.last_idx).saturating_sub(1);
        decay(self.fast, cfg.group_rate, idle)
    }

    /// As a group's reference (its level per device), the factor for one
    /// of its `members` devices whose own fast level is `own`: the other
    /// devices' current level per device over the level learned, never
    /// below one. Leaving the device itself out means it cannot deflate its
    /// own values by flooding. One until learned, without a level, or for
    /// fewer than `min_members` devices.
    pub(crate) fn factor(
        &self,
        idx: u64,
        own: f64,
        members: u32,
        min_members: usize,
        cfg: &BaselineConfig,
    ) -> f64 {
        let Some((mean, _)) = self.learned else {
            return 1.0;
        };
        if (members as usize) < min_members.max(2) || mean <= 0.0 {
            return 1.0;
        }
        let m = f64::from(members);
        let others = ((self.fast_at(idx, cfg) * m - own) / (m - 1.0)).max(0.0);
        let f = others / mean;
        if f.is_finite() {
            f.max(1.0)
        } else {
            1.0
        }
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
