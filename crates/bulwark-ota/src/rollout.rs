//! The rollout state machine: pure decisions over counts and clocks.
//!
//! A rollout updates a selected set of devices in phases. The server keeps
//! one row per device (its [`DeviceStep`], attempts, timestamps) and the
//! rollout's status; this module decides, from those, what happens next:
//!
//! - which device reports are legal ([`DeviceStep::may_advance_to`]):
//!   progress only moves forward, and a terminal step is final (a retry is
//!   the engine's decision, never a device's);
//! - how many devices each phase takes ([`RolloutSpec::phase_sizes`]);
//! - whether a failed device is retried ([`RolloutSpec::on_failure`]) or a
//!   silent one has timed out ([`RolloutSpec::timed_out`]);
//! - whether the rollout waits, has met the current phase's success
//!   criterion (and starts its soak), advances, completes, or is aborted
//!   ([`RolloutSpec::evaluate`]).
//!
//! Failures are install failures, rollbacks, timeouts *and* security
//! signals: an updated device that starts failing authentication, goes
//! silent or raises alerts is counted against the rollout even if it
//! reported itself healthy.
//!
//! Nothing here reads a clock or stores anything; callers pass `now`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use time::OffsetDateTime;

/// Where one device is in its update. Ordered: a report may only move a
/// device forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeviceStep {
    Queued,
    Notified,
    Downloading,
    Verifying,
    Installing,
    Rebooting,
    Healthy,
    Failed,
    RolledBack,
}

impl DeviceStep {
    pub const ALL: [DeviceStep; 9] = [
        DeviceStep::Queued,
        DeviceStep::Notified,
        DeviceStep::Downloading,
        DeviceStep::Verifying,
        DeviceStep::Installing,
        DeviceStep::Rebooting,
        DeviceStep::Healthy,
        DeviceStep::Failed,
        DeviceStep::RolledBack,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStep::Queued => "queued",
            DeviceStep::Notified => "notified",
            DeviceStep::Downloading => "downloading",
            DeviceStep::Verifying => "verifying",
            DeviceStep::Installing => "installing",
            DeviceStep::Rebooting => "rebooting",
            DeviceStep::Healthy => "healthy",
            DeviceStep::Failed => "failed",
            DeviceStep::RolledBack => "rolled_back",
        }
    }

    /// Healthy, failed or rolled back: the device's part is over.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            DeviceStep::Healthy | DeviceStep::Failed | DeviceStep::RolledBack
        )
    }

    /// Failed or rolled back.
    pub fn is_failure(self) -> bool {
        matches!(self, DeviceStep::Failed | DeviceStep::RolledBack)
    }

    /// Whether a device's report may move it from `self` to `next`.
    ///
    /// Forward only, and never out of a terminal step: a late or replayed
    /// report cannot resurrect a failed device or undo a healthy one. A
    /// report may skip steps (a device that resumes after a restart reports
    /// where it is). `Queued` is never reported: it is where the engine puts
    /// a device, first and on a retry.
    pub fn may_advance_to(self, next: DeviceStep) -> bool {
        !self.is_terminal() && next != DeviceStep::Queued && next > self
    }
}

impl fmt::Display for DeviceStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeviceStep {
    type Err = RolloutError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeviceStep::ALL
            .into_iter()
            .find(|step| step.as_str() == s)
            .ok_or_else(|| RolloutError::UnknownStep(s.chars().take(32).collect()))
    }
}

/// How many devices a phase takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhaseSize {
    /// This many more devices.
    Count(u32),
    /// This percentage (1..=100) of all selected devices, rounded up.
    Percent(u8),
}

/// One phase of a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub size: PhaseSize,
    /// How long the phase's devices are watched after its success
    /// criterion is met, before the next phase starts.
    pub min_soak: Duration,
}

/// What an abort does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortAction {
    /// Stop notifying devices; an operator may resume.
    Pause,
    /// Stop for good.
    Cancel,
}

impl AbortAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AbortAction::Pause => "pause",
            AbortAction::Cancel => "cancel",
        }
    }
}

/// When failures stop the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortPolicy {
    /// Failures as a percentage of the devices that finished (healthy or
    /// failed) at or above which the rollout is aborted.
    pub max_failure_percent: u8,
    /// Fewer failures than this never abort (a single early failure is not
    /// 100 % of a phase).
    pub min_failures: u32,
    pub action: AbortAction,
}

/// A rollout's plan, validated before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutSpec {
    pub phases: Vec<Phase>,
    /// The share of a phase's devices (percent) that must be healthy for
    /// the rollout to go on to the next phase.
    pub min_healthy_percent: u8,
    pub abort: AbortPolicy,
    /// A notified device must finish within this, or it has failed
    /// ("timeout").
    pub device_timeout: Duration,
    /// How many times a failed device is notified again before its failure
    /// counts.
    pub max_retries: u32,
}

/// The rollout as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutStatus {
    Running,
    Paused { reason: String },
    Completed,
    Cancelled { reason: String },
}

impl RolloutStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            RolloutStatus::Running => "running",
            RolloutStatus::Paused { .. } => "paused",
            RolloutStatus::Completed => "completed",
            RolloutStatus::Cancelled { .. } => "cancelled",
        }
    }

    /// Completed or cancelled: nothing changes any more.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            RolloutStatus::Completed | RolloutStatus::Cancelled { .. }
        )
    }
}

/// Device counts of one started phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhaseCounts {
    pub total: u32,
    /// Reported healthy and not flagged.
    pub healthy: u32,
    /// Failed or rolled back for good (no retry left), including timeouts.
    pub failed: u32,
    /// Reported healthy but raised a security signal since updating.
    pub flagged: u32,
}

impl PhaseCounts {
    fn finished(&self) -> u32 {
        self.healthy + self.failed + self.flagged
    }

    fn failures(&self) -> u32 {
        self.failed + self.flagged
    }
}

/// Failures an operator accepted by resuming a rollout the abort policy
/// had stopped: the policy counts only failures after them, and the phase
/// that was current then is no longer held to the success criterion.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Failures (failed or flagged) at the resume.
    pub failures: u32,
    /// Finished devices (healthy, failed or flagged) at the resume.
    pub finished: u32,
    /// The phase that was current at the resume.
    pub phase: Option<usize>,
}

/// What the engine decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing to do yet.
    Wait,
    /// The current phase's success criterion is met now: record the time,
    /// its soak starts.
    SoakStarted,
    /// Start this phase (notify its devices).
    Advance { to: usize },
    /// Every phase is done.
    Complete,
    /// Failures crossed the abort policy, or a phase finished below its
    /// success criterion.
    Abort { action: AbortAction, reason: String },
}

/// What happens to a device whose attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureOutcome {
    /// Notify it again (attempt number `attempt`, counting from 1).
    Retry { attempt: u32 },
    /// Its failure counts.
    Final,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RolloutError {
    #[error("a rollout needs at least one phase")]
    NoPhases,
    #[error("at most {max} phases")]
    TooManyPhases { max: usize },
    #[error("phase {phase}: {what}")]
    BadPhase { phase: usize, what: &'static str },
    #[error("min_healthy_percent must be 1..=100")]
    BadHealthyPercent,
    #[error("max_failure_percent must be 1..=100")]
    BadFailurePercent,
    #[error("device_timeout must be between 1 minute and 30 days")]
    BadTimeout,
    #[error("max_retries must be at most {max}")]
    TooManyRetries { max: u32 },
    #[error("unknown device step {0:?}")]
    UnknownStep(String),
}

pub const MAX_PHASES: usize = 32;
pub const MAX_RETRIES: u32 = 10;
const MAX_SOAK: Duration = Duration::from_secs(30 * 24 * 3600);

impl RolloutSpec {
    /// Checks the plan: at least one phase, sizes and percentages in range,
    /// bounded soak, timeout and retries.
    pub fn validate(&self) -> Result<(), RolloutError> {
        if self.phases.is_empty() {
            return Err(RolloutError::NoPhases);
        }
        if self.phases.len() > MAX_PHASES {
            return Err(RolloutError::TooManyPhases { max: MAX_PHASES });
        }
        for (i, phase) in self.phases.iter().enumerate() {
            let bad = |what| RolloutError::BadPhase { phase: i + 1, what };
            match phase.size {
                PhaseSize::Count(0) => return Err(bad("a phase takes at least one device")),
                PhaseSize::Percent(p) if p == 0 || p > 100 => {
                    return Err(bad("a percentage must be 1..=100"))
                }
                _ => {}
            }
            if phase.min_soak > MAX_SOAK {
                return Err(bad("a soak time is at most 30 days"));
            }
        }
        if self.min_healthy_percent == 0 || self.min_healthy_percent > 100 {
            return Err(RolloutError::BadHealthyPercent);
        }
        let p = self.abort.max_failure_percent;
        if p == 0 || p > 100 {
            return Err(RolloutError::BadFailurePercent);
        }
        if self.device_timeout < Duration::from_secs(60) || self.device_timeout > MAX_SOAK {
            return Err(RolloutError::BadTimeout);
        }
        if self.max_retries > MAX_RETRIES {
            return Err(RolloutError::TooManyRetries { max: MAX_RETRIES });
        }
        Ok(())
    }

    /// How many of `selected` devices each phase takes, in order. The last
    /// phase takes every device left; a phase never takes more than are
    /// left, so trailing phases may be empty when the fleet is small.
    pub fn phase_sizes(&self, selected: usize) -> Vec<usize> {
        let mut left = selected;
        let last = self.phases.len().saturating_sub(1);
        self.phases
            .iter()
            .enumerate()
            .map(|(i, phase)| {
                let want = if i == last {
                    left
                } else {
                    match phase.size {
                        PhaseSize::Count(n) => n as usize,
                        PhaseSize::Percent(p) => (selected * p as usize).div_ceil(100),
                    }
                };
                let take = want.min(left);
                left -= take;
                take
            })
            .collect()
    }

    /// A device's attempt `attempts` (counting from 1) failed: retry it, or
    /// count the failure.
    pub fn on_failure(&self, attempts: u32) -> FailureOutcome {
        if attempts <= self.max_retries {
            FailureOutcome::Retry {
                attempt: attempts + 1,
            }
        } else {
            FailureOutcome::Final
        }
    }

    /// Whether a device notified at `notified_at`, now at `step`, has run
    /// out of time.
    pub fn timed_out(
        &self,
        step: DeviceStep,
        notified_at: OffsetDateTime,
        now: OffsetDateTime,
    ) -> bool {
        !step.is_terminal()
            && step != DeviceStep::Queued
            && now - notified_at >= self.device_timeout
    }

    /// Decides the next move of a running rollout.
    ///
    /// `phases` holds the counts of every started phase, the current one
    /// last (`phases.len() - 1` is the current phase's index);
    /// `soak_started_at` is when the current phase's success criterion was
    /// first met (`None` until [`Verdict::SoakStarted`] was recorded).
    pub fn evaluate(
        &self,
        phases: &[PhaseCounts],
        soak_started_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Verdict {
        self.evaluate_accepting(phases, soak_started_at, Accepted::default(), now)
    }

    /// [`RolloutSpec::evaluate`] after an operator resumed the rollout
    /// and so accepted the failures counted until then.
    pub fn evaluate_accepting(
        &self,
        phases: &[PhaseCounts],
        soak_started_at: Option<OffsetDateTime>,
        accepted: Accepted,
        now: OffsetDateTime,
    ) -> Verdict {
        let Some((current, started)) = phases.split_last() else {
            return Verdict::Advance { to: 0 };
        };
        let index = started.len();
        let (failures, finished) = phases.iter().fold((0u32, 0u32), |(f, d), c| {
            (f + c.failures(), d + c.finished())
        });
        let failures = failures.saturating_sub(accepted.failures);
        let finished = finished.saturating_sub(accepted.finished);
        if failures > 0
            && failures >= self.abort.min_failures
            && u64::from(failures) * 100
                >= u64::from(self.abort.max_failure_percent) * u64::from(finished)
        {
            return Verdict::Abort {
                action: self.abort.action,
                reason: format!(
                    "{failures} of {finished} finished devices failed or raised security signals \
                     (abort at {}% with at least {})",
                    self.abort.max_failure_percent, self.abort.min_failures
                ),
            };
        }
        if current.finished() < current.total {
            return Verdict::Wait;
        }
        if accepted.phase != Some(index)
            && u64::from(current.healthy) * 100
                < u64::from(self.min_healthy_percent) * u64::from(current.total)
        {
            return Verdict::Abort {
                action: self.abort.action,
                reason: format!(
                    "phase {} finished with {} of {} devices healthy; {}% required",
                    index + 1,
                    current.healthy,
                    current.total,
                    self.min_healthy_percent
                ),
            };
        }
        let soak = self
            .phases
            .get(index)
            .map_or(Duration::ZERO, |p| p.min_soak);
        match soak_started_at {
            None if soak > Duration::ZERO => Verdict::SoakStarted,
            Some(at) if now - at < soak => Verdict::Wait,
            _ if index + 1 >= self.phases.len() => Verdict::Complete,
            _ => Verdict::Advance { to: index + 1 },
        }
    }
}

#[cfg(test)]
#[path = "rollout_tests.rs"]
mod tests;
