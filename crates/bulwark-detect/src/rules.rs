//! Declarative threshold rules: `metric op threshold` over a sliding span of
//! windows, `consecutive` breaching windows in a row, fire once per episode
//! and re-fire at most once per `refire_ms` while it lasts.

use bulwark_types::Severity;

use crate::entity::Ring;
use crate::validate::CompiledRule;

/// Per rule, per entity: three words.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RuleState {
    streak: u32,
    last_breach: Option<u64>,
    fired_at: Option<u64>,
}

/// A rule that fired in a window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RuleHit {
    pub value: f64,
    pub severity: Severity,
    pub streak: u32,
}

/// Evaluates `rule` for the window `idx` (already pushed into `ring`),
/// ending at `now_ms`.
pub(crate) fn evaluate(
    rule: &CompiledRule,
    state: &mut RuleState,
    ring: &Ring,
    idx: u64,
    now_ms: u64,
    refire_ms: u64,
) -> Option<RuleHit> {
    let value = ring.aggregate(rule.metric, idx, rule.span);
    if !rule.op.holds(value, rule.threshold) {
        *state = RuleState::default();
        return None;
    }
    let continues = idx > 0 && state.last_breach == Some(idx - 1);
    if continues {
        state.streak = state.streak.saturating_add(1);
    } else {
        // A gap (idle or non-breaching window) ends the episode.
        state.streak = 1;
        state.fired_at = None;
    }
    state.last_breach = Some(idx);
    if state.streak < rule.consecutive {
        return None;
    }
    let due = match state.fired_at {
        None => true,
        Some(t) => now_ms.saturating_sub(t) >= refire_ms,
    };
    if !due {
        return None;
    }
    state.fired_at = Some(now_ms);
    let severity = match rule.escalate {
        Some(e) if rule.op.holds(value, e.threshold) => e.severity.max(rule.severity),
        _ => rule.severity,
    };
    Some(RuleHit {
        value,
        severity,
        streak: state.streak,
    })
}
