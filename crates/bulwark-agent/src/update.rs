//! The device side of an update: install an artifact that the verifier has
//! already checked (TUF chain, length, hash) into the inactive slot, boot
//! it on trial, run the health check, then confirm it or roll back.
//!
//! States, reported through [`Reporter`] at every step and persisted in
//! `<state_dir>/update.json` (atomically) *before* they are reported:
//!
//! ```text
//! queued → downloading → verifying → installing → rebooting → healthy
//!    └──────────┴────────────┴───────────┴→ failed(reason)      └→ rolled_back(reason)
//! ```
//!
//! - `verifying` checks the artifact's length and SHA-256 again (the file
//!   could have changed since the verifier saw it) and the **anti-rollback
//!   floor**: each release carries a floor counter; a release whose floor
//!   is below the device's floor (the highest floor ever installed) is
//!   refused, so an old, vulnerable release cannot be reinstalled.
//! - `downloading` covers the verifier's download when it goes through
//!   [`Updater::fetch_and_install`] (the agent's OTA path does); a download
//!   or verification refusal ends the update as `failed` with its reason.
//! - the release's semver version floor becomes the device's
//!   [`Updater::version_floor`] once the release is confirmed healthy, and
//!   [`Updater::release_in`] tells which release each slot holds.
//! - nothing touches a boot slot before `verifying` has passed.
//! - after the (real or simulated) reboot, [`Updater::resume`] runs at
//!   startup: on a trial boot of the new slot it runs the health check
//!   (with a timeout): success → confirm → `healthy` (and the floor rises);
//!   failure or timeout → roll back → `rolled_back`, and the agent keeps
//!   working on the old slot (fallback mode). If the bootloader already
//!   fell back, or a restart interrupted the install, that is reported too.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt as _;

use crate::slots::Slots;
use crate::{command, fsutil, AgentError};

/// File name of the update state in the state directory.
pub const STATE_FILE: &str = "update.json";

/// A release as the verifier hands it over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// TUF target name.
    pub target: String,
    pub version: String,
    /// Expected length in bytes.
    pub length: u64,
    /// Expected SHA-256, lower-case hex.
    pub sha256: String,
    /// Anti-rollback counter of this release.
    pub floor: u64,
    /// The release's version floor (semver) from the verified metadata;
    /// the device keeps the highest one it confirmed healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_floor: Option<String>,
    /// The server's rollout this install belongs to, echoed in reports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
}

/// The release a slot holds (the last one written into it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotRelease {
    pub target: String,
    pub version: String,
}

/// Where an update is. Names match `bulwark_ota::rollout::DeviceStep`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Queued,
    Downloading,
    Verifying,
    Installing,
    Rebooting,
    Healthy,
    Failed,
    RolledBack,
}

impl Step {
    /// Healthy, failed or rolled back.
    pub fn is_terminal(self) -> bool {
        matches!(self, Step::Healthy | Step::Failed | Step::RolledBack)
    }
}

/// One step of one update, as sent to the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepReport {
    pub device_id: String,
    pub target: String,
    pub version: String,
    pub state: Step,
    pub reason: Option<String>,
    /// The rollout of the instruction, when it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
}

/// Receives every step; the transport (MQTT) is plugged in later. A
/// failing reporter never stops an install.
#[async_trait]
pub trait Reporter: Send + Sync {
    async fn report(&self, report: &StepReport) -> Result<(), AgentError>;
}

/// The update in progress or the last one, and the device's floor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateState {
    pub floor: u64,
    /// The highest version floor (semver) of a release confirmed healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_floor: Option<String>,
    pub current: Option<UpdateRecord>,
    /// What each slot holds, as far as this agent wrote it.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub slots: std::collections::BTreeMap<String, SlotRelease>,
}

/// One update's persisted progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRecord {
    pub release: Release,
    pub step: Step,
    pub reason: Option<String>,
    /// The slot that ran when the install started.
    pub from_slot: Option<String>,
    /// The slot the release was written to.
    pub to_slot: Option<String>,
}

/// The health check run after booting a new slot.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub command: Vec<String>,
    pub timeout: std::time::Duration,
}

/// Drives installs and the post-boot decision.
pub struct Updater {
    path: PathBuf,
    device_id: String,
    slots: Arc<dyn Slots>,
    reporter: Arc<dyn Reporter>,
    health: HealthCheck,
    state: tokio::sync::Mutex<UpdateState>,
}

impl std::fmt::Debug for Updater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updater")
            .field("path", &self.path)
            .field("device_id", &self.device_id)
            .finish()
    }
}

impl Updater {
    /// Loads `<state_dir>/update.json` (or starts empty).
    pub fn open(
        state_dir: &Path,
        device_id: &str,
        slots: Arc<dyn Slots>,
        reporter: Arc<dyn Reporter>,
        health: HealthCheck,
    ) -> Result<Updater, AgentError> {
        fsutil::ensure_private_dir(state_dir)?;
        let path = state_dir.join(STATE_FILE);
        let state = fsutil::read_json(&path)?.unwrap_or_default();
        Ok(Updater {
            path,
            device_id: device_id.to_owned(),
            slots,
            reporter,
            health,
            state: tokio::sync::Mutex::new(state),
        })
    }

    /// The device's anti-rollback floor: the highest floor installed.
    pub async fn rollback_floor(&self) -> u64 {
        self.state.lock().await.floor
    }

    /// The highest version floor of a release confirmed healthy (the
    /// verifier's `Device::floor`).
    pub async fn version_floor(&self) -> Option<String> {
        self.state.lock().await.version_floor.clone()
    }

    /// The release this agent wrote into `slot`, if any.
    pub async fn release_in(&self, slot: &str) -> Option<SlotRelease> {
        self.state.lock().await.slots.get(slot).cloned()
    }

    /// The update in progress, or the last one.
    pub async fn current(&self) -> Option<UpdateRecord> {
        self.state.lock().await.current.clone()
    }

    /// Persists then reports `step` for the current record.
    async fn step(
        &self,
        state: &mut UpdateState,
        step: Step,
        reason: Option<String>,
    ) -> Result<(), AgentError> {
        let Some(record) = state.current.as_mut() else {
            return Err(AgentError::Update("no update in progress".into()));
        };
        record.step = step;
        record.reason = reason.clone();
        let report = StepReport {
            device_id: self.device_id.clone(),
            target: record.release.target.clone(),
            version: record.release.version.clone(),
            state: step,
            reason,
            rollout: record.release.rollout.clone(),
            at: time::OffsetDateTime::now_utc(),
        };
        fsutil::write_json(&self.path, &*state)?;
        tracing::info!(target_name = %report.target, version = %report.version, state = ?step, reason = ?report.reason, "update step");
        if let Err(e) = self.reporter.report(&report).await {
            tracing::warn!(error = %crate::report_chain(&e), "cannot report an update step");
        }
        Ok(())
    }

    /// Installs `release` from `artifact` (already verified) up to the
    /// reboot. Returns the step reached: `rebooting`, or `failed`.
    pub async fn install(&self, release: Release, artifact: &Path) -> Result<Step, AgentError> {
        let artifact = artifact.to_owned();
        self.fetch_and_install(release, async move { Ok(artifact) })
            .await
    }

    /// [`Updater::install`] where the artifact is first fetched (and
    /// verified) by `fetch` while `downloading` is the reported step; an
    /// `Err(reason)` from it ends the update as `failed` with that reason.
    pub async fn fetch_and_install<F>(&self, release: Release, fetch: F) -> Result<Step, AgentError>
    where
        F: std::future::Future<Output = Result<PathBuf, String>> + Send,
    {
        let mut state = self.state.lock().await;
        if let Some(r) = &state.current {
            if !r.step.is_terminal() {
                return Err(AgentError::Update(format!(
                    "an update to {} {} is in progress ({:?})",
                    r.release.target, r.release.version, r.step
                )));
            }
        }
        state.current = Some(UpdateRecord {
            release: release.clone(),
            step: Step::Queued,
            reason: None,
            from_slot: None,
            to_slot: None,
        });
        self.step(&mut state, Step::Queued, None).await?;
        self.step(&mut state, Step::Downloading, None).await?;
        let artifact = match fetch.await {
            Ok(path) => path,
            Err(reason) => {
                self.step(&mut state, Step::Failed, Some(reason)).await?;
                return Ok(Step::Failed);
            }
        };
        let artifact = artifact.as_path();
        self.step(&mut state, Step::Verifying, None).await?;
        if let Err(reason) = verify(&release, artifact, state.floor).await {
            self.step(&mut state, Step::Failed, Some(reason)).await?;
            return Ok(Step::Failed);
        }
        self.step(&mut state, Step::Installing, None).await?;
        match self.write_and_mark(&mut state, artifact).await {
            Ok(()) => {}
            Err(e) => {
                let reason = crate::report_chain(&e);
                self.step(&mut state, Step::Failed, Some(reason)).await?;
                return Ok(Step::Failed);
            }
        }
        self.step(&mut state, Step::Rebooting, None).await?;
        drop(state);
        self.slots.reboot().await?;
        Ok(Step::Rebooting)
    }

    async fn write_and_mark(
        &self,
        state: &mut UpdateState,
        artifact: &Path,
    ) -> Result<(), AgentError> {
        let from = self.slots.active().await?;
        let to = self.slots.write_inactive(artifact).await?;
        if let Some(r) = state.current.as_mut() {
            r.from_slot = Some(from);
            r.to_slot = Some(to.clone());
            let held = SlotRelease {
                target: r.release.target.clone(),
                version: r.release.version.clone(),
            };
            state.slots.insert(to.clone(), held);
        }
        self.slots.mark_trial(&to).await
    }

    /// Decides what an unfinished update means after a (re)start: runs the
    /// health check on a trial boot and confirms or rolls back. Returns the
    /// final step if there was an update to finish.
    pub async fn resume(&self) -> Result<Option<Step>, AgentError> {
        let mut state = self.state.lock().await;
        let Some(record) = state.current.clone() else {
            return Ok(None);
        };
        if record.step.is_terminal() {
            return Ok(None);
        }
        let boot = self.slots.boot_state().await?;
        let on_new_slot = record.to_slot.as_deref() == Some(boot.booted.as_str());
        if record.step != Step::Rebooting {
            // A restart interrupted the install itself.
            let reason = "the install was interrupted by a restart".to_owned();
            if boot.trial {
                let slot = self.slots.rollback().await?;
                let reason = format!("{reason}; rolled back to slot {slot}");
                self.step(&mut state, Step::RolledBack, Some(reason))
                    .await?;
                return Ok(Some(Step::RolledBack));
            }
            self.step(&mut state, Step::Failed, Some(reason)).await?;
            return Ok(Some(Step::Failed));
        }
        if !on_new_slot {
            let reason = format!(
                "the new slot did not stay booted; running the last known good slot {}",
                boot.booted
            );
            self.step(&mut state, Step::RolledBack, Some(reason))
                .await?;
            return Ok(Some(Step::RolledBack));
        }
        if boot.trial {
            if let Err(reason) = self.health_check().await {
                let slot = self.slots.rollback().await?;
                let reason = format!("{reason}; rolled back to slot {slot}");
                self.step(&mut state, Step::RolledBack, Some(reason))
                    .await?;
                return Ok(Some(Step::RolledBack));
            }
            self.slots.confirm().await?;
        }
        state.floor = state.floor.max(record.release.floor);
        if let Some(floor) = &record.release.version_floor {
            state.version_floor = Some(higher_version(state.version_floor.take(), floor));
        }
        self.step(&mut state, Step::Healthy, None).await?;
        Ok(Some(Step::Healthy))
    }

    async fn health_check(&self) -> Result<(), String> {
        match command::run(&self.health.command, &[], self.health.timeout).await {
            Ok(out) if out.success => Ok(()),
            Ok(out) => Err(format!(
                "health check failed ({}): {}",
                out.code.map_or_else(
                    || "killed by a signal".to_owned(),
                    |c| format!("exit status {c}")
                ),
                out.stderr.trim().chars().take(300).collect::<String>()
            )),
            Err(e) => Err(format!("health check: {}", crate::report_chain(&e))),
        }
    }
}

/// The higher of two semver versions; an unparsable stored one is replaced.
fn higher_version(stored: Option<String>, new: &str) -> String {
    let parse = |s: &str| semver::Version::parse(s).ok();
    match (stored.as_deref().and_then(parse), parse(new)) {
        (Some(old), Some(n)) if old > n => stored.unwrap_or_default(),
        (Some(_), None) => stored.unwrap_or_default(),
        _ => new.to_owned(),
    }
}

/// Checks the artifact's length and SHA-256 and the release's floor.
async fn verify(release: &Release, artifact: &Path, floor: u64) -> Result<(), String> {
    if release.floor < floor {
        return Err(format!(
            "release floor {} is below the device's anti-rollback floor {floor}",
            release.floor
        ));
    }
    let mut file = tokio::fs::File::open(artifact)
        .await
        .map_err(|e| format!("cannot open the artifact {}: {e}", artifact.display()))?;
    let mut hasher = <sha2::Sha256 as sha2::Digest>::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut length = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| format!("cannot read the artifact: {e}"))?;
        if n == 0 {
            break;
        }
        length += n as u64;
        if length > release.length {
            return Err(format!("artifact is longer than {} bytes", release.length));
        }
        sha2::Digest::update(&mut hasher, &buf[..n]);
    }
    if length != release.length {
        return Err(format!(
            "artifact is {length} bytes, expected {}",
            release.length
        ));
    }
    let digest = hex::encode(sha2::Digest::finalize(hasher));
    if !digest.eq_ignore_ascii_case(&release.sha256) {
        return Err("artifact SHA-256 does not match the release".to_owned());
    }
    Ok(())
}

#[cfg(test)]
#[path = "update_tests.rs"]
mod tests;
