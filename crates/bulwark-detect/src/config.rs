//! `[detect]` configuration: serde with defaults that make the engine useful
//! out of the box, and validation that turns it into compiled rules before
//! the engine exists (a bad config never reaches the hot path).

use bulwark_types::Severity;
use serde::{Deserialize, Serialize};

use crate::metric::Metric;

/// The engine's configuration (`[detect]` in the server's TOML).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    /// Window length; metrics are closed every window. Default 1000.
    pub window_ms: u64,
    /// Entities tracked at most; the least recently seen are evicted
    /// beyond it. Default 200,000.
    pub max_entities: usize,
    /// Per-entity learning period, in windows: baselines learn from this
    /// many active windows, novelty sets for this many windows after the
    /// entity was first seen. Default 60.
    pub learning_windows: u32,
    /// Closed windows kept per entity (also at least the longest rule
    /// span). Default 5.
    pub history_windows: u32,
    /// A condition that keeps holding re-fires at most this often. Default 60,000.
    pub refire_ms: u64,
    /// Findings one `tick` returns at most (most severe first). Default 1000.
    pub max_findings_per_tick: usize,
    /// Seed for hashing and the forest. Default 0x5eed.
    pub seed: u64,
    /// Threshold rules; replaces the built-in set when given.
    pub rules: Vec<RuleConfig>,
    pub baseline: BaselineConfig,
    pub novelty: NoveltyConfig,
    pub forest: ForestConfig,
}

impl Default for DetectConfig {
    fn default() -> DetectConfig {
        DetectConfig {
            window_ms: 1000,
            max_entities: 200_000,
            learning_windows: 60,
            history_windows: 5,
            refire_ms: 60_000,
            max_findings_per_tick: 1000,
            seed: 0x5eed,
            rules: RuleConfig::defaults(),
            baseline: BaselineConfig::default(),
            novelty: NoveltyConfig::default(),
            forest: ForestConfig::default(),
        }
    }
}

/// Comparison of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Lt => "<",
            Op::Le => "<=",
        }
    }

    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
        }
    }
}

/// What a rule is evaluated on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Each device.
    #[default]
    Device,
    /// Each group: the sum (see [`crate::Aggregation`]) of its devices' windows.
    Group,
    /// Each source address (failures before identity).
    Source,
    /// Each service principal.
    Service,
    /// Devices, sources and services, each on its own.
    Any,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Device => "device",
            Scope::Group => "group",
            Scope::Source => "source",
            Scope::Service => "service",
            Scope::Any => "any",
        }
    }
}

/// Raise the severity while the value is past a second threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Escalation {
    pub threshold: f64,
    pub severity: Severity,
}

/// A declarative threshold rule: `metric op threshold`, the metric
/// aggregated over the last `over_ms`, breaching `consecutive` windows in a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    pub metric: Metric,
    pub op: Op,
    pub threshold: f64,
    /// Span aggregated (rounded up to whole windows); default one window.
    #[serde(default)]
    pub over_ms: Option<u64>,
    #[serde(default = "one")]
    pub consecutive: u32,
    #[serde(default)]
    pub scope: Scope,
    #[serde(default = "medium")]
    pub severity: Severity,
    #[serde(default)]
    pub escalate: Option<Escalation>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn one() -> u32 {
    1
}
fn medium() -> Severity {
    Severity::Medium
}
fn yes() -> bool {
    true
}

impl RuleConfig {
    fn new(name: &str, metric: Metric, op: Op, threshold: f64) -> RuleConfig {
        RuleConfig {
            name: name.to_owned(),
            metric,
            op,
            threshold,
            over_ms: None,
            consecutive: 1,
            scope: Scope::Device,
            severity: Severity::Medium,
            escalate: None,
            enabled: true,
        }
    }

    /// The built-in rule set. A benign device doing up to 10 msg/s never
    /// fires; each attack fires within about three windows.
    pub fn defaults() -> Vec<RuleConfig> {
        vec![
            RuleConfig {
                over_ms: Some(1000),
                consecutive: 2,
                severity: Severity::High,
                ..RuleConfig::new("flood", Metric::MsgsIn, Op::Gt, 200.0)
            },
            RuleConfig {
                over_ms: Some(1000),
                consecutive: 2,
                scope: Scope::Any,
                severity: Severity::High,
                ..RuleConfig::new("credential-stuffing", Metric::AuthFailures, Op::Ge, 5.0)
            },
            RuleConfig {
                over_ms: Some(2000),
                escalate: Some(Escalation {
                    threshold: 20.0,
                    severity: Severity::High,
                }),
                ..RuleConfig::new("topic-scan", Metric::Denials, Op::Ge, 5.0)
            },
            RuleConfig {
                over_ms: Some(2000),
                severity: Severity::High,
                ..RuleConfig::new("exfiltration", Metric::BytesIn, Op::Gt, 1_048_576.0)
            },
            RuleConfig {
                over_ms: Some(2000),
                ..RuleConfig::new("connect-churn", Metric::Connects, Op::Ge, 5.0)
            },
        ]
    }
}

/// Robust per-entity baselines (see the `baseline` module for the method).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BaselineConfig {
    pub enabled: bool,
    /// Metrics with a baseline per device and per group.
    pub metrics: Vec<Metric>,
    /// Robust z-score above which a window breaches. Default 6.
    pub threshold: f64,
    /// Breaching active windows in a row before firing. Default 3.
    pub consecutive: u32,
    /// Step of the streaming median/MAD after learning. Default 0.05.
    pub rate: f64,
    /// Step while learning. Default 0.2.
    pub learn_rate: f64,
    /// Absolute floor added to the scale (units of the metric). Default 1.
    pub floor: f64,
    /// Relative floor: this share of the center is added to the scale.
    /// Default 0.5: a device whose windows nearly always hold one message
    /// has a MAD of zero, and one extra message must not read as six
    /// deviations; with it a spike needs about four times the usual value.
    pub rel_floor: f64,
    /// Values are clipped at `center + clip * scale` before they reach the
    /// slow drift average, so single bursts do not read as drift. Default 3.
    pub clip: f64,
    /// Weight of the slow drift EWMA (over every window, idle ones as
    /// zero). Default 0.05.
    pub drift_rate: f64,
    /// Drift fires when the slow EWMA exceeds `drift_ratio` times the mean
    /// per window learned plus `drift_k` times the comparison's noise (the
    /// learned σ scaled by `√(α/(2-α) + 1/N)`, at least `α · floor`).
    /// Defaults 1.5 and 4.
    pub drift_ratio: f64,
    pub drift_k: f64,
    pub drift_consecutive: u32,
    pub severity: Severity,
    pub drift_severity: Severity,
    /// Also keep baselines of each group's summed windows.
    pub groups: bool,
    /// Divide a device's values by its group's factor before they reach
    /// its baselines: the other devices' current level per device over the
    /// level they learned (at least 1; groups of at least
    /// `peer_min_devices` tracked devices). A fleet-wide rise (a daily
    /// cycle, a reconnect wave) then moves no device's baseline; a device
    /// that rises relative to its fleet still does. Default true.
    pub deflate: bool,
    /// Weight of the fast EWMA of a group's level (the factor). Default 0.2.
    pub group_rate: f64,
    /// Peer comparison: a device against its group's devices in the same
    /// window. Off by default: it suits groups of alike devices (one
    /// window of a fleet with mixed rates is noisy); turn it on per
    /// deployment.
    pub peer_enabled: bool,
    /// A peer finding also needs the device at least this many times its
    /// group's median (plus the noise floor). Default 10.
    pub peer_min_ratio: f64,
    pub peer_min_devices: usize,
    pub peer_metrics: Vec<Metric>,
    pub peer_threshold: f64,
    pub peer_consecutive: u32,
    pub peer_severity: Severity,
}

impl Default for BaselineConfig {
    fn default() -> BaselineConfig {
        BaselineConfig {
            enabled: true,
            metrics: vec![
                Metric::MsgsIn,
                Metric::BytesIn,
                Metric::MsgsOut,
                Metric::Connects,
                Metric::Denials,
                Metric::DistinctTopics,
            ],
            threshold: 6.0,
            consecutive: 3,
            rate: 0.05,
            learn_rate: 0.2,
            floor: 1.0,
            rel_floor: 0.5,
            clip: 3.0,
            drift_rate: 0.05,
            drift_ratio: 1.5,
            drift_k: 4.0,
            drift_consecutive: 5,
            severity: Severity::Medium,
            drift_severity: Severity::Medium,
            groups: true,
            deflate: true,
            group_rate: 0.2,
            peer_enabled: false,
            peer_min_ratio: 10.0,
            peer_min_devices: 5,
            peer_metrics: vec![Metric::MsgsIn, Metric::BytesIn, Metric::DistinctTopics],
            peer_threshold: 8.0,
            peer_consecutive: 3,
            peer_severity: Severity::Low,
        }
    }
}

/// Never-seen values per device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NoveltyConfig {
    pub enabled: bool,
    /// Values remembered per device and kind. Default 256.
    pub cap: usize,
    /// Observations of a kind always learned before it is checked (on top
    /// of the learning period), so a device whose first posture report or
    /// first connect comes late learns it instead of reporting it. Default 1.
    pub min_observations: u32,
    /// Novelty events kept per device per window. Default 8.
    pub max_pending: usize,
    pub topic_severity: Severity,
    pub source_severity: Severity,
    pub port_severity: Severity,
    pub destination_severity: Severity,
    pub concurrent_severity: Severity,
}

impl Default for NoveltyConfig {
    fn default() -> NoveltyConfig {
        NoveltyConfig {
            enabled: true,
            cap: 256,
            min_observations: 1,
            max_pending: 8,
            topic_severity: Severity::Low,
            source_severity: Severity::Low,
            port_severity: Severity::High,
            destination_severity: Severity::Medium,
            concurrent_severity: Severity::High,
        }
    }
}

/// The streaming isolation forest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForestConfig {
    pub enabled: bool,
    /// Default 64.
    pub trees: usize,
    /// Samples per tree (ψ). Default 256.
    pub sample_size: usize,
    /// Recent fleet windows kept to fit from. Default 4096.
    pub reservoir: usize,
    /// Windows before the first fit. Default 60.
    pub warmup_windows: u64,
    /// Windows between refits. Default 300.
    pub refit_windows: u64,
    /// Anomaly score `2^(-E[h]/c(ψ))` above which a window breaches. Default 0.7.
    pub threshold: f64,
    /// The threshold actually used is the larger of `threshold` and this
    /// quantile of the scores of the windows the forest was fitted on, so a
    /// fleet whose normal windows already score high (rare but benign
    /// patterns) does not page. Default 0.995.
    pub quantile: f64,
    /// Default 3.
    pub consecutive: u32,
    /// A feature constant in a tree's sample isolates a point at depth 1 when
    /// the point differs by more than this (log1p units). Default 1.
    pub guard_margin: f64,
    pub severity: Severity,
}

impl Default for ForestConfig {
    fn default() -> ForestConfig {
        ForestConfig {
            enabled: true,
            trees: 64,
            sample_size: 256,
            reservoir: 4096,
            warmup_windows: 60,
            refit_windows: 300,
            threshold: 0.7,
            quantile: 0.995,
            consecutive: 3,
            guard_margin: 1.0,
            severity: Severity::Medium,
        }
    }
}
