//! Bulwark's streaming detection engine: observations in, findings out.
//!
//! Sans-I/O and synchronous: no sockets, no async, no clock. Time arrives
//! as `u64` milliseconds on every call. The server feeds [`Engine::observe`]
//! with gateway events and agent posture reports, calls [`Engine::tick`]
//! once per second, and turns the returned [`Finding`]s into alerts.
//!
//! ```
//! use bulwark_detect::{DetectConfig, Engine, EntityRef, ObsKind, Observation};
//!
//! let mut engine = Engine::new(DetectConfig::default()).unwrap();
//! let device = EntityRef::Device { id: "d1", group: Some("meters") };
//! let mut findings = Vec::new();
//! for second in 0..3u64 {
//!     for i in 0..500u64 {
//!         let kind = ObsKind::MessageIn { topic: "devices/d1/telemetry", bytes: 64 };
//!         engine.observe(&Observation { entity: device, at_ms: second * 1000 + i, kind });
//!     }
//!     findings.extend(engine.tick((second + 1) * 1000));
//! }
//! assert!(findings.iter().any(|f| f.detector == "rule:flood"));
//! ```
//!
//! # Windows
//! Each entity (device, source address, service principal) counts its
//! observations into the open window: plain counters plus two 256-bit
//! distinct counters, O(1) per observation. The window is closed by the
//! first `tick` at or after its end (`window_ms`, default 1 s); late events
//! count into the open window, timestamps before an entity's last one are
//! clamped, a `tick` in the past is ignored (more than two windows back, the
//! engine resynchronises to it: a clock stepped back). Closing computes the
//! [`Metric`] vector, pushes it into the entity's small ring of recent
//! windows and runs the detectors, for the entities active in the window
//! only. Group windows combine their devices' windows. Each closed window
//! is also folded into the entity's period summary, which the caller takes
//! with [`Engine::take_summaries`] (e.g. every minute, to store).
//!
//! # Detectors
//! 1. **Rules** (`rule:<name>`, [`RuleConfig`]): `metric op threshold`
//!    aggregated over `over_ms`, `consecutive` breaching windows; fires once
//!    per episode, re-fires every `refire_ms` while it lasts.
//! 2. **Baselines** (`baseline:<metric>`): streaming median/MAD per device,
//!    service and group with a robust z-score (spikes), a slow clipped EWMA
//!    against the level frozen after learning (drift), and peer comparison
//!    within a group's devices in the same window. See `baseline.rs`.
//! 3. **Novelty** (`novelty:<kind>`): never-seen topics, source addresses,
//!    listening ports and destinations per device after learning, and
//!    overlapping sessions from two addresses (`novelty:concurrent-source`).
//! 4. **Isolation forest** (`model:iforest`): over `log1p` window vectors,
//!    fitted on a reservoir of recent fleet windows, refitted periodically;
//!    findings name the features that isolated the window. Hand-written:
//!    linfa and smartcore have no isolation forest, and this one is
//!    deterministic (seeded), bounded, and scores a whole window tree by tree.
//!
//! # Bounds
//! - Entities: at most `max_entities`; beyond it the least recently seen
//!   1/32 are evicted in one O(n) pass (amortised O(32) per new entity),
//!   counted in [`EngineStats::evicted`]. Groups: at most `max_entities`,
//!   forgotten after a day of windows without activity.
//! - Per entity: the ring (`history_windows`, 80 B a window), rule state
//!   (24 B a rule), baselines (~60 B a metric), and for devices four novelty
//!   sets of at most `novelty.cap` 8-byte hashes and at most
//!   `novelty.max_pending` queued events. A device is about 1 KiB plus its
//!   novelty sets.
//! - Period summaries: an entity active since the last
//!   [`Engine::take_summaries`] holds a boxed accumulator (~190 B: the 20
//!   aggregates, two mean counts, its bounds), freed when the summaries are
//!   taken (or all dropped by [`Engine::set_summaries`]`(false)`). The
//!   list of open periods is compacted when it reaches twice
//!   `max_entities`. An evicted or forgotten entity loses its open period.
//! - Forest: `trees × ~2ψ` nodes and a reservoir of `forest.reservoir`
//!   80-byte vectors. Findings per tick: `max_findings_per_tick`.
//!
//! Invariants: `observe` never returns findings and never panics; nothing
//! here reads a clock, a file or a socket; no `unsafe`.

mod baseline;
mod config;
mod engine;
mod entity;
mod finding;
mod forest;
mod group;
mod metric;
mod mix;
mod novelty;
mod observation;
mod period;
mod rules;
mod tick;
mod validate;

#[cfg(test)]
mod tests;

pub use bulwark_types::Severity;
pub use config::{
    BaselineConfig, DetectConfig, Escalation, ForestConfig, NoveltyConfig, Op, RuleConfig, Scope,
};
pub use engine::Engine;
pub use finding::{
    BaselineSummary, EngineStats, EntitySummary, Finding, NoveltySummary, PeriodSummary,
    WindowSummary,
};
pub use metric::{Aggregation, Metric, METRIC_COUNT};
pub use observation::{EntityRef, ObsKind, Observation, Proto};
pub use validate::ConfigError;
