//! Rollouts: selecting devices, the engine that moves a rollout through its
//! phases, and the devices' reports.
//!
//! Decisions are `bulwark_ota::rollout`'s (pure); this module reads the
//! store, asks, and applies the answer through the store's atomic
//! operations. Devices are told, and watched, through a [`Fleet`] (the MQTT
//! gateway, in the server). A device is notified when its phase starts and
//! again on a retry (its step goes back to `queued` and the next tick
//! re-notifies it); a notification lost in a crash is repaired by the
//! device timeout.
//!
//! Security signals count against a rollout like install failures: an
//! updated (healthy) device that fails MQTT authentication after updating,
//! has no MQTT session for the plan's `silence_secs`, or raises an alert of
//! medium severity or worse (detection) is flagged (and audited). Authentication failures are compared with the count the
//! engine saw when it first found the device healthy ([`EngineMemory`],
//! in memory: a restart takes a new baseline).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bulwark_audit::Actor;
use bulwark_ota::rollout::{
    AbortAction, AbortPolicy, Accepted, DeviceStep, FailureOutcome, Phase, PhaseCounts, PhaseSize,
    RolloutSpec, Verdict,
};
use bulwark_store::{DeviceFilter, DeviceStepChange, NewRollout, StoreError};
use bulwark_types::{
    DeviceId, DeviceState, Rollout, RolloutDevice, RolloutPlan, RolloutSelector, Severity,
};
use time::OffsetDateTime;

use crate::auth::{Action, DeviceIdentity};
use crate::{Operator, Registry, RegistryError};

/// The fleet as the engine sees it: tell a device to install a release,
/// and what the gateway knows of it.
#[async_trait]
pub trait Fleet: Send + Sync {
    async fn notify(&self, device: &DeviceId, rollout: &str, release: &str);
    /// Whether the device holds a connected MQTT session.
    fn connected(&self, device: &DeviceId) -> bool;
    /// Failed MQTT authentications of the device since the server started.
    fn auth_failures(&self, device: &DeviceId) -> u64;
}

/// What the engine remembers between passes.
#[derive(Debug, Default)]
pub struct EngineMemory {
    /// Authentication failures of each healthy device when first seen so.
    auth_baseline: HashMap<(String, DeviceId), u64>,
}

/// Parses and checks a plan.
pub fn rollout_spec(plan: &RolloutPlan) -> Result<RolloutSpec, RegistryError> {
    let bad = |m: String| RegistryError::Invalid(m);
    let phases =
        plan.phases
            .iter()
            .map(|p| {
                let size =
                    match p.size.trim().strip_suffix('%') {
                        Some(pct) => PhaseSize::Percent(pct.trim().parse().map_err(|_| {
                            bad(format!("phase size {:?}: not a percentage", p.size))
                        })?),
                        None => {
                            PhaseSize::Count(p.size.trim().parse().map_err(|_| {
                                bad(format!("phase size {:?}: not a count", p.size))
                            })?)
                        }
                    };
                Ok(Phase {
                    size,
                    min_soak: Duration::from_secs(p.min_soak_secs),
                })
            })
            .collect::<Result<Vec<_>, RegistryError>>()?;
    let action = match plan.abort_action.as_str() {
        "pause" => AbortAction::Pause,
        "cancel" => AbortAction::Cancel,
        other => return Err(bad(format!("abort_action {other:?}: pause or cancel"))),
    };
    let spec = RolloutSpec {
        phases,
        min_healthy_percent: plan.min_healthy_percent,
        abort: AbortPolicy {
            max_failure_percent: plan.max_failure_percent,
            min_failures: plan.min_failures,
            action,
        },
        device_timeout: Duration::from_secs(plan.device_timeout_secs),
        max_retries: plan.max_retries,
    };
    spec.validate().map_err(|e| bad(e.to_string()))?;
    if !(1..=30 * 24 * 3600).contains(&plan.silence_secs) {
        return Err(bad(
            "silence_secs must be between 1 second and 30 days".into()
        ));
    }
    Ok(spec)
}

fn rollout_id() -> Result<String, RegistryError> {
    use aws_lc_rs::rand::{SecureRandom, SystemRandom};
    let mut b = [0u8; 6];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| RegistryError::Store(StoreError::Internal("no randomness".into())))?;
    Ok(format!("r-{}", hex::encode(b)))
}

fn not_found() -> RegistryError {
    RegistryError::Store(StoreError::NotFound { what: "rollout" })
}

fn step_of(d: &RolloutDevice) -> Result<DeviceStep, RegistryError> {
    d.step
        .parse()
        .map_err(|e| RegistryError::Store(StoreError::Internal(format!("stored step: {e}"))))
}

impl Registry {
    /// Creates a rollout of a published release over the active devices
    /// the selector matches, split into the plan's phases (by device id).
    pub async fn ota_create_rollout(
        &self,
        op: &Operator,
        release: String,
        selector: RolloutSelector,
        plan: RolloutPlan,
    ) -> Result<Rollout, RegistryError> {
        self.allow(op, Action::ManageReleases).await?;
        let spec = rollout_spec(&plan)?;
        let rel = self
            .store
            .get_ota_release(&release)
            .await?
            .ok_or(RegistryError::Store(StoreError::NotFound {
                what: "release",
            }))?;
        let devices = self.select_devices(&selector).await?;
        if devices.is_empty() {
            return Err(RegistryError::Invalid(
                "no active device matches the selector".into(),
            ));
        }
        let mut assigned = Vec::with_capacity(devices.len());
        let mut it = devices.into_iter();
        for (phase, size) in spec.phase_sizes(it.len()).into_iter().enumerate() {
            for d in it.by_ref().take(size) {
                assigned.push((d, phase as u32));
            }
        }
        let rollout = self
            .store
            .create_rollout(
                NewRollout {
                    id: rollout_id()?,
                    release: rel.name,
                    plan,
                    selector,
                    devices: assigned,
                },
                op.actor(),
            )
            .await?;
        Ok(rollout)
    }

    async fn select_devices(&self, s: &RolloutSelector) -> Result<Vec<DeviceId>, RegistryError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .list_devices(DeviceFilter {
                    group: s.group.clone(),
                    state: Some(DeviceState::Active),
                    after: after.clone(),
                    limit: Some(1000),
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            out.extend(
                page.into_iter()
                    .filter(|d| {
                        s.hardware_model
                            .as_ref()
                            .is_none_or(|m| d.hardware_model.as_ref() == Some(m))
                            && s.labels.iter().all(|(k, v)| d.labels.get(k) == Some(v))
                    })
                    .map(|d| d.id),
            );
        }
        Ok(out)
    }

    pub async fn ota_rollouts(&self, op: &Operator) -> Result<Vec<Rollout>, RegistryError> {
        self.allow(op, Action::ReadOta).await?;
        Ok(self.store.list_rollouts().await?)
    }

    pub async fn ota_rollout(&self, op: &Operator, id: &str) -> Result<Rollout, RegistryError> {
        self.allow(op, Action::ReadOta).await?;
        self.store.get_rollout(id).await?.ok_or_else(not_found)
    }

    pub async fn ota_rollout_devices(
        &self,
        op: &Operator,
        id: &str,
    ) -> Result<Vec<RolloutDevice>, RegistryError> {
        self.allow(op, Action::ReadOta).await?;
        self.store.get_rollout(id).await?.ok_or_else(not_found)?;
        Ok(self.store.rollout_devices(id).await?)
    }

    /// `pause`, `resume` or `cancel`, by an operator.
    pub async fn ota_control_rollout(
        &self,
        op: &Operator,
        id: &str,
        command: &str,
        reason: Option<String>,
    ) -> Result<Rollout, RegistryError> {
        self.allow(op, Action::ControlRollouts).await?;
        let r = self.store.get_rollout(id).await?.ok_or_else(not_found)?;
        let (from, to): (&[&str], &str) = match command {
            "pause" => (&["running"], "paused"),
            "resume" => (&["paused"], "running"),
            "cancel" => (&["running", "paused"], "cancelled"),
            other => {
                return Err(RegistryError::Invalid(format!(
                    "unknown rollout command {other:?}: pause, resume or cancel"
                )))
            }
        };
        if !from.contains(&r.status.as_str()) {
            return Err(RegistryError::Conflict(format!(
                "rollout {id} is {}; it cannot be {to}",
                r.status
            )));
        }
        let reason = reason.or_else(|| Some(format!("{command} by an operator")));
        let reason = (to != "running").then_some(reason).flatten();
        Ok(self
            .store
            .set_rollout_status(id, to, reason, command == "resume", op.actor())
            .await?)
    }

    /// A device's report of its update. Only a step forward from where the
    /// device is applies (a replayed or stale report is a conflict); a
    /// failure is retried while the plan allows.
    pub async fn ota_device_report(
        &self,
        device: &DeviceIdentity,
        rollout: &str,
        release: &str,
        step: &str,
        reason: Option<String>,
    ) -> Result<(), RegistryError> {
        let id = device.device_id();
        let r = self
            .store
            .get_rollout(rollout)
            .await?
            .ok_or_else(not_found)?;
        let current = self
            .store
            .rollout_device(rollout, id)
            .await?
            .ok_or(RegistryError::Store(StoreError::NotFound {
                what: "device in this rollout",
            }))?;
        if r.release != release {
            return Err(RegistryError::Invalid(format!(
                "rollout {rollout} installs {}, not {release}",
                r.release
            )));
        }
        let next: DeviceStep = step
            .parse()
            .map_err(|e: bulwark_ota::rollout::RolloutError| {
                RegistryError::Invalid(e.to_string())
            })?;
        let from = step_of(&current)?;
        if !from.may_advance_to(next) {
            return Err(RegistryError::Conflict(format!(
                "device {id} is {from}; a report of {next} does not advance it"
            )));
        }
        let reason = reason.map(|r| r.chars().take(512).collect::<String>());
        let spec = rollout_spec(&r.plan)?;
        let to = match (next.is_failure(), spec.on_failure(current.attempts)) {
            (true, FailureOutcome::Retry { .. }) if r.status == "running" => "queued",
            _ => next.as_str(),
        };
        let applied = self
            .store
            .set_rollout_device_step(
                DeviceStepChange {
                    rollout: rollout.to_owned(),
                    device: id.clone(),
                    from: from.as_str().to_owned(),
                    to: to.to_owned(),
                    reason,
                    new_attempt: false,
                    notify: false,
                    flag: None,
                    audit: true,
                },
                Actor::Device {
                    device_id: id.clone(),
                },
            )
            .await?;
        if !applied {
            return Err(RegistryError::Conflict(format!(
                "device {id} moved on concurrently; report again"
            )));
        }
        Ok(())
    }

    /// One pass of the engine over every running rollout: time-outs,
    /// retries, soak, next phase, completion, abort.
    pub async fn ota_rollout_tick(
        &self,
        fleet: &dyn Fleet,
        memory: &mut EngineMemory,
        now: OffsetDateTime,
    ) -> Result<(), RegistryError> {
        let rollouts = self.store.list_rollouts().await?;
        memory.auth_baseline.retain(|(id, _), _| {
            rollouts
                .iter()
                .any(|r| r.id == *id && r.status == "running")
        });
        for r in rollouts {
            if r.status == "running" {
                if let Err(e) = self.tick_one(&r, fleet, memory, now).await {
                    tracing::error!(rollout = %r.id, error = %e, "rollout step failed");
                }
            }
        }
        Ok(())
    }

    /// Flags updated devices that fail authentication or go silent.
    async fn watch_updated(
        &self,
        r: &Rollout,
        d: &RolloutDevice,
        fleet: &dyn Fleet,
        memory: &mut EngineMemory,
        now: OffsetDateTime,
    ) -> Result<(), RegistryError> {
        let failures = fleet.auth_failures(&d.device);
        let baseline = *memory
            .auth_baseline
            .entry((r.id.clone(), d.device.clone()))
            .or_insert(failures);
        let silence = Duration::from_secs(r.plan.silence_secs);
        let flag = if failures > baseline {
            Some(format!(
                "{} failed MQTT authentication(s) since updating",
                failures - baseline
            ))
        } else if !fleet.connected(&d.device) && now - d.updated_at >= silence {
            Some(format!(
                "silent: no MQTT session for {} s since updating",
                silence.as_secs()
            ))
        } else {
            let alerts = self
                .store
                .device_alerts_since(&d.device, d.updated_at, Severity::Medium)
                .await?;
            (alerts > 0).then(|| {
                format!("raised {alerts} alert(s) of medium severity or worse since updating")
            })
        };
        let Some(flag) = flag else { return Ok(()) };
        tracing::warn!(rollout = %r.id, device = %d.device, %flag, "updated device flagged");
        self.store
            .set_rollout_device_step(
                DeviceStepChange {
                    rollout: r.id.clone(),
                    device: d.device.clone(),
                    from: "healthy".into(),
                    to: "healthy".into(),
                    reason: Some(flag.clone()),
                    new_attempt: false,
                    notify: false,
                    flag: Some(flag),
                    audit: true,
                },
                Actor::System,
            )
            .await?;
        Ok(())
    }

    async fn tick_one(
        &self,
        r: &Rollout,
        fleet: &dyn Fleet,
        memory: &mut EngineMemory,
        now: OffsetDateTime,
    ) -> Result<(), RegistryError> {
        let spec = rollout_spec(&r.plan)?;
        // Silent devices time out (and are retried while the plan allows);
        // updated ones are watched for security signals.
        for d in self.store.rollout_devices(&r.id).await? {
            let step = step_of(&d)?;
            if step == DeviceStep::Healthy && d.flagged.is_none() {
                self.watch_updated(r, &d, fleet, memory, now).await?;
                continue;
            }
            let Some(notified) = d.notified_at else {
                continue;
            };
            if !spec.timed_out(step, notified, now) {
                continue;
            }
            let to = match spec.on_failure(d.attempts) {
                FailureOutcome::Retry { .. } => "queued",
                FailureOutcome::Final => "failed",
            };
            self.store
                .set_rollout_device_step(
                    DeviceStepChange {
                        rollout: r.id.clone(),
                        device: d.device.clone(),
                        from: step.as_str().to_owned(),
                        to: to.to_owned(),
                        reason: Some(format!(
                            "timeout: not finished {} s after notification (last step {step})",
                            spec.device_timeout.as_secs()
                        )),
                        new_attempt: false,
                        notify: false,
                        flag: None,
                        audit: true,
                    },
                    Actor::System,
                )
                .await?;
        }
        let r = self.store.get_rollout(&r.id).await?.ok_or_else(not_found)?;
        // Retried devices of started phases are notified again.
        if let Some(current) = r.phase {
            for (p, progress) in r.phases.iter().enumerate().take(current as usize + 1) {
                if progress.queued > 0 {
                    self.start_phase(&r, p as u32, fleet).await?;
                }
            }
        }
        let started: Vec<PhaseCounts> = match r.phase {
            None => Vec::new(),
            Some(p) => r.phases[..=p as usize]
                .iter()
                .map(|c| PhaseCounts {
                    total: c.total,
                    healthy: c.healthy,
                    failed: c.failed,
                    flagged: c.flagged,
                })
                .collect(),
        };
        let accepted = r.accepted.map_or_else(Accepted::default, |a| Accepted {
            failures: a.failures,
            finished: a.finished,
            phase: a.phase.map(|p| p as usize),
        });
        match spec.evaluate_accepting(&started, r.soak_started_at, accepted, now) {
            Verdict::Wait => {}
            Verdict::SoakStarted => self.store.set_rollout_soak(&r.id, Some(now)).await?,
            Verdict::Advance { to } => self.start_phase(&r, to as u32, fleet).await?,
            Verdict::Complete => {
                self.store
                    .set_rollout_status(&r.id, "completed", None, false, Actor::System)
                    .await?;
            }
            Verdict::Abort { action, reason } => {
                let status = match action {
                    AbortAction::Pause => "paused",
                    AbortAction::Cancel => "cancelled",
                };
                tracing::warn!(rollout = %r.id, %reason, status, "rollout stopped by its abort policy");
                self.store
                    .set_rollout_status(&r.id, status, Some(reason), false, Actor::System)
                    .await?;
            }
        }
        Ok(())
    }

    async fn start_phase(
        &self,
        r: &Rollout,
        phase: u32,
        fleet: &dyn Fleet,
    ) -> Result<(), RegistryError> {
        let devices = self
            .store
            .start_rollout_phase(&r.id, phase, Actor::System)
            .await?;
        for d in &devices {
            fleet.notify(d, &r.id, &r.release).await;
        }
        Ok(())
    }
}
