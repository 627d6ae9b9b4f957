//! Validation of [`DetectConfig`]: everything is checked, and the enabled
//! rules compiled, before an engine exists.

use std::collections::BTreeSet;

use bulwark_types::Severity;

use crate::config::{DetectConfig, Escalation, Op, Scope};
use crate::metric::Metric;

/// Longest learning period, in windows.
const MAX_WINDOWS: u64 = 86_400;

/// A configuration the engine refuses.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("detect.{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("detect.rules: rule {name:?}: {reason}")]
    Rule { name: String, reason: String },
}

/// A validated, enabled rule.
#[derive(Debug, Clone)]
pub(crate) struct CompiledRule {
    pub name: String,
    pub metric: Metric,
    pub op: Op,
    pub threshold: f64,
    /// Windows aggregated.
    pub span: u64,
    pub consecutive: u32,
    pub scope: Scope,
    pub severity: Severity,
    pub escalate: Option<Escalation>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn check(ok: bool, field: &'static str, reason: &str) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(invalid(field, reason))
    }
}

fn unit(x: f64) -> bool {
    x.is_finite() && x > 0.0 && x <= 1.0
}

fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}

impl DetectConfig {
    /// Validates everything and compiles the enabled rules.
    pub(crate) fn compile(&self) -> Result<Vec<CompiledRule>, ConfigError> {
        check(
            (10..=3_600_000).contains(&self.window_ms),
            "window_ms",
            "must be between 10 and 3600000",
        )?;
        check(self.max_entities >= 1, "max_entities", "must be at least 1")?;
        check(
            u64::from(self.learning_windows) <= MAX_WINDOWS,
            "learning_windows",
            "too long",
        )?;
        check(
            (1..=1024).contains(&self.history_windows),
            "history_windows",
            "must be between 1 and 1024",
        )?;
        check(
            self.max_findings_per_tick >= 1,
            "max_findings_per_tick",
            "must be at least 1",
        )?;
        self.check_baseline()?;
        let n = &self.novelty;
        check(
            (1..=65_536).contains(&n.cap),
            "novelty.cap",
            "must be between 1 and 65536",
        )?;
        check(
            (1..=1024).contains(&n.max_pending),
            "novelty.max_pending",
            "must be between 1 and 1024",
        )?;
        let f = &self.forest;
        check(
            (1..=1000).contains(&f.trees),
            "forest.trees",
            "must be between 1 and 1000",
        )?;
        check(
            (2..=4096).contains(&f.sample_size),
            "forest.sample_size",
            "must be between 2 and 4096",
        )?;
        check(
            f.reservoir >= f.sample_size && f.reservoir <= 1 << 20,
            "forest.reservoir",
            "must be at least sample_size and at most 1048576",
        )?;
        check(
            f.refit_windows >= 1,
            "forest.refit_windows",
            "must be at least 1",
        )?;
        check(
            f.threshold.is_finite() && f.threshold > 0.0 && f.threshold < 1.0,
            "forest.threshold",
            "must be in (0, 1)",
        )?;
        check(
            f.quantile.is_finite() && (0.0..=1.0).contains(&f.quantile),
            "forest.quantile",
            "must be in [0, 1]",
        )?;
        check(
            f.consecutive >= 1,
            "forest.consecutive",
            "must be at least 1",
        )?;
        check(
            f.guard_margin.is_finite() && f.guard_margin >= 0.0,
            "forest.guard_margin",
            "must be finite and not negative",
        )?;
        self.compile_rules()
    }

    fn check_baseline(&self) -> Result<(), ConfigError> {
        let b = &self.baseline;
        let unique = |m: &[Metric]| m.iter().collect::<BTreeSet<_>>().len() == m.len();
        check(unique(&b.metrics), "baseline.metrics", "duplicate metric")?;
        check(
            unique(&b.peer_metrics),
            "baseline.peer_metrics",
            "duplicate metric",
        )?;
        check(positive(b.threshold), "baseline.threshold", "must be > 0")?;
        check(unit(b.rate), "baseline.rate", "must be in (0, 1]")?;
        check(
            unit(b.learn_rate),
            "baseline.learn_rate",
            "must be in (0, 1]",
        )?;
        check(
            unit(b.drift_rate),
            "baseline.drift_rate",
            "must be in (0, 1]",
        )?;
        check(
            unit(b.group_rate),
            "baseline.group_rate",
            "must be in (0, 1]",
        )?;
        check(positive(b.floor), "baseline.floor", "must be > 0")?;
        check(
            b.rel_floor.is_finite() && b.rel_floor >= 0.0,
            "baseline.rel_floor",
            "must be >= 0",
        )?;
        check(positive(b.clip), "baseline.clip", "must be > 0")?;
        check(
            b.drift_ratio.is_finite() && b.drift_ratio >= 1.0,
            "baseline.drift_ratio",
            "must be >= 1",
        )?;
        check(
            b.drift_k.is_finite() && b.drift_k >= 0.0,
            "baseline.drift_k",
            "must be >= 0",
        )?;
        check(
            b.peer_min_ratio.is_finite() && b.peer_min_ratio >= 1.0,
            "baseline.peer_min_ratio",
            "must be >= 1",
        )?;
        check(
            positive(b.peer_threshold),
            "baseline.peer_threshold",
            "must be > 0",
        )?;
        check(
            b.peer_min_devices >= 3,
            "baseline.peer_min_devices",
            "must be at least 3",
        )?;
        check(
            b.consecutive >= 1 && b.drift_consecutive >= 1 && b.peer_consecutive >= 1,
            "baseline.consecutive",
            "consecutive counts must be at least 1",
        )
    }

    fn compile_rules(&self) -> Result<Vec<CompiledRule>, ConfigError> {
        let mut names = BTreeSet::new();
        let mut out = Vec::new();
        for r in &self.rules {
            let bad = |reason: &str| ConfigError::Rule {
                name: r.name.clone(),
                reason: reason.to_owned(),
            };
            let name_ok = !r.name.is_empty()
                && r.name.len() <= 64
                && r.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !name_ok {
                return Err(bad("name must be 1-64 of [A-Za-z0-9_-]"));
            }
            if !names.insert(r.name.as_str()) {
                return Err(bad("duplicate name"));
            }
            if !r.threshold.is_finite() {
                return Err(bad("threshold must be finite"));
            }
            if r.consecutive == 0 || u64::from(r.consecutive) > MAX_WINDOWS {
                return Err(bad("consecutive must be between 1 and 86400"));
            }
            let over = r.over_ms.unwrap_or(self.window_ms);
            if over == 0 {
                return Err(bad("over_ms must be positive"));
            }
            let span = over.div_ceil(self.window_ms);
            if span > 1024 {
                return Err(bad("over_ms spans more than 1024 windows"));
            }
            if let Some(e) = r.escalate {
                if !e.threshold.is_finite() {
                    return Err(bad("escalate.threshold must be finite"));
                }
            }
            if r.enabled {
                out.push(CompiledRule {
                    name: r.name.clone(),
                    metric: r.metric,
                    op: r.op,
                    threshold: r.threshold,
                    span,
                    consecutive: r.consecutive,
                    scope: r.scope,
                    severity: r.severity,
                    escalate: r.escalate,
                });
            }
        }
        Ok(out)
    }
}
