//! What the engine returns: findings, counters and per-entity summaries.

use std::collections::BTreeMap;

use bulwark_types::Severity;
use serde::{Deserialize, Serialize};

/// One detector's verdict about one entity in one window. The server turns
/// findings into alerts, folding those with the same `dedup_key`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// `device:<id>`, `source:<ip>`, `service:<name>` or `group:<name>`.
    pub entity: String,
    /// The device it is about, when it is about a device.
    pub device: Option<String>,
    /// The device's group (or the group itself for group findings).
    pub group: Option<String>,
    /// `rule:<name>`, `baseline:<metric>`, `novelty:<kind>` or `model:iforest`.
    pub detector: String,
    pub severity: Severity,
    pub title: String,
    /// Stable across re-fires of the same condition on the same entity.
    pub dedup_key: String,
    /// Values, thresholds, baselines, the window, top features.
    pub evidence: serde_json::Value,
    /// End of the window that produced it.
    pub at_ms: u64,
}

/// Engine counters, for metrics and health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EngineStats {
    /// Entities currently tracked (devices, sources, services).
    pub entities: u64,
    /// Groups currently tracked.
    pub groups: u64,
    /// Entities evicted because `max_entities` was reached.
    pub evicted: u64,
    pub observations: u64,
    /// Observations whose time was before the entity's last one (clamped).
    pub clamped_times: u64,
    /// `tick` calls whose time went backwards (ignored).
    pub backwards_ticks: u64,
    pub windows_closed: u64,
    pub findings: u64,
    /// Findings dropped because one tick produced more than the cap.
    pub findings_dropped: u64,
    /// Values a full novelty set could not learn or check.
    pub novelty_overflow: u64,
    /// Novelty events dropped because one window had too many.
    pub novelty_dropped: u64,
    /// Times the isolation forest was (re)fitted.
    pub forest_fits: u64,
}

/// One closed window of an entity (non-zero metrics only).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WindowSummary {
    pub start_ms: u64,
    pub end_ms: u64,
    pub values: BTreeMap<&'static str, f64>,
}

/// One metric's robust baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BaselineSummary {
    pub metric: &'static str,
    /// Windows learned from.
    pub samples: u32,
    pub learning: bool,
    /// Streaming median estimate.
    pub center: f64,
    /// Streaming median-absolute-deviation estimate.
    pub mad: f64,
    /// Slow EWMA compared with the learned level (drift).
    pub slow: f64,
    /// Level frozen at the end of learning.
    pub learned_level: Option<f64>,
}

/// One novelty set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NoveltySummary {
    pub kind: &'static str,
    pub known: usize,
    pub cap: usize,
    pub learning: bool,
    /// Values not learned or checked because the set was full.
    pub overflow: u64,
}

/// What the engine knows about one entity: recent windows and baselines,
/// for evidence bundles and for summarising to the store.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntitySummary {
    pub entity: String,
    pub group: Option<String>,
    pub first_window_ms: u64,
    /// Windows in which the entity was active.
    pub active_windows: u64,
    pub recent: Vec<WindowSummary>,
    pub baselines: Vec<BaselineSummary>,
    pub novelty: Vec<NoveltySummary>,
    /// Sources of currently open sessions (devices).
    pub open_sources: Vec<String>,
    /// The forest's score for the entity's last scored window.
    pub last_model_score: Option<f64>,
}

/// An entity's windows since the last [`crate::Engine::take_summaries`],
/// aggregated metric by metric as [`crate::Metric::aggregation`] says: sums
/// of counters, maxima of maxima, distinct counts and gauges, means over
/// the windows that had a value, minima over the non-zero values.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodSummary {
    /// `device:<id>`, `source:<ip>` or `service:<name>`.
    pub entity: String,
    /// The device it is about, when it is about a device.
    pub device: Option<String>,
    /// The device's group when the summary was taken.
    pub group: Option<String>,
    /// Start of the entity's first active window in the period.
    pub start_ms: u64,
    /// End of its last active window in the period.
    pub end_ms: u64,
    /// Windows in which it was active (idle ones are not counted).
    pub active_windows: u32,
    /// Non-zero metrics only, by [`crate::Metric::as_str`].
    pub values: BTreeMap<&'static str, f64>,
}
