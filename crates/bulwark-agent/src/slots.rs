//! A/B boot slots behind one trait, [`Slots`].
//!
//! An update is written into the slot that is *not* running, that slot is
//! marked to boot once in **trial** mode, the device reboots, and the agent
//! then either **confirms** the new slot (it becomes the last known good)
//! or **rolls back** to the last known good one. A trial slot that never
//! gets confirmed (the device hangs, the agent dies) is abandoned by the
//! bootloader after its attempts run out.
//!
//! Two implementations:
//!
//! - [`DirectorySlots`]: `root/a/`, `root/b/` and `root/state.json`
//!   (written atomically). The agent's own start plays the bootloader
//!   ([`DirectorySlots::boot`]). For tests and for simple devices whose
//!   "firmware" is a directory an application runs from.
//! - [`CommandSlots`]: hook commands for a real bootloader, configured as
//!   argument arrays (no shell; `{artifact}` and `{slot}` are replaced only
//!   when they are a whole argument, and always as one argument). Every
//!   command runs under `timeout_secs`.
//!
//! The `status` hook prints `key=value` lines: `booted=<slot>` (the slot
//! running now), `trial=yes|no` (it is running on trial, not yet marked
//! good) and optionally `good=<slot>` (the last known good slot; default:
//! the booted slot when not on trial, the other one when on trial).
//!
//! # RAUC
//!
//! RAUC installs into the inactive slot group itself and marks it to boot
//! next; its bootloader integration counts attempts and falls back.
//!
//! ```toml
//! [slots]
//! backend = "command"
//! slot_names = ["A", "B"]
//! status = ["/usr/lib/bulwark-agent/rauc-hook", "status"]
//! install = ["/usr/bin/rauc", "install", "{artifact}"]
//! mark_trial = ["/usr/bin/true"]              # rauc install already did it
//! confirm = ["/usr/bin/rauc", "status", "mark-good", "booted"]
//! rollback = ["/usr/lib/bulwark-agent/rauc-hook", "rollback", "{slot}"]
//! reboot = ["/usr/bin/systemctl", "reboot"]
//! ```
//!
//! with `rauc-hook` along these lines:
//!
//! ```sh
//! #!/bin/sh -eu
//! case "$1" in
//! status)
//!   eval "$(rauc status --output-format=shell)"      # RAUC_BOOT_PRIMARY, RAUC_SLOT_* ...
//!   booted=$(rauc status --output-format=json | jq -r '.booted')
//!   echo "booted=$booted"
//!   # trial until mark-good: keep a marker written by mark_trial, or read the
//!   # bootloader's attempt counter
//!   [ -e /run/bulwark-trial ] && echo trial=yes || echo trial=no ;;
//! rollback)
//!   rauc status mark-bad booted
//!   rauc status mark-active "$2"   # "$2" is the good slot, one argument
//!   systemctl reboot ;;
//! esac
//! ```
//!
//! # U-Boot (`fw_setenv` / `fw_printenv`)
//!
//! The classic A/B scheme: `bootslot` selects the slot, `upgrade_available=1`
//! makes U-Boot count boots in `bootcount` and run `altbootcmd` (boot the
//! other slot) once `bootlimit` is exceeded.
//!
//! ```toml
//! [slots]
//! backend = "command"
//! status = ["/usr/lib/bulwark-agent/uboot-hook", "status"]
//! install = ["/usr/lib/bulwark-agent/uboot-hook", "install", "{artifact}", "{slot}"]
//! mark_trial = ["/usr/lib/bulwark-agent/uboot-hook", "trial", "{slot}"]
//! confirm = ["/usr/lib/bulwark-agent/uboot-hook", "confirm", "{slot}"]
//! rollback = ["/usr/lib/bulwark-agent/uboot-hook", "rollback", "{slot}"]
//! reboot = ["/sbin/reboot"]
//! ```
//!
//! ```sh
//! #!/bin/sh -eu
//! case "$1" in
//! status)
//!   echo "booted=$(fw_printenv -n bootslot)"
//!   [ "$(fw_printenv -n upgrade_available)" = 1 ] && echo trial=yes || echo trial=no
//!   echo "good=$(fw_printenv -n goodslot)" ;;
//! install)  dd if="$2" of="/dev/disk/by-partlabel/rootfs_$3" bs=4M conv=fsync ;;
//! trial)    fw_setenv bootslot "$2"; fw_setenv bootcount 0; fw_setenv upgrade_available 1 ;;
//! confirm)  fw_setenv goodslot "$2"; fw_setenv upgrade_available 0; fw_setenv bootcount 0 ;;
//! rollback) fw_setenv bootslot "$2"; fw_setenv upgrade_available 0; fw_setenv bootcount 0; reboot ;;
//! esac
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::config::{valid_slot_name, CommandHooks};
use crate::{command, fsutil, AgentError};

/// What the bootloader did at the last boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootState {
    /// The slot running now.
    pub booted: String,
    /// The running slot is on trial (not confirmed yet).
    pub trial: bool,
    /// The slot to go back to.
    pub last_known_good: String,
}

/// A/B slots. Implementations must be safe to call again after a crash.
#[async_trait]
pub trait Slots: Send + Sync {
    /// The state read at startup: which slot runs, and is it on trial?
    async fn boot_state(&self) -> Result<BootState, AgentError>;
    /// The slot running now.
    async fn active(&self) -> Result<String, AgentError> {
        Ok(self.boot_state().await?.booted)
    }
    /// The slot an update goes into.
    async fn inactive(&self) -> Result<String, AgentError>;
    /// Writes the (already verified) artifact into the inactive slot;
    /// refused while the running slot is on trial. Returns the slot.
    async fn write_inactive(&self, artifact: &Path) -> Result<String, AgentError>;
    /// Makes `slot` boot once, on trial, at the next boot.
    async fn mark_trial(&self, slot: &str) -> Result<(), AgentError>;
    /// Reboots (or asks for a reboot); may not return on real hardware.
    async fn reboot(&self) -> Result<(), AgentError>;
    /// Marks the running slot good.
    async fn confirm(&self) -> Result<(), AgentError>;
    /// Goes back to the last known good slot; returns it.
    async fn rollback(&self) -> Result<String, AgentError>;
}

fn other(names: &[String; 2], slot: &str) -> Result<String, AgentError> {
    if slot == names[0] {
        Ok(names[1].clone())
    } else if slot == names[1] {
        Ok(names[0].clone())
    } else {
        Err(AgentError::Slot(format!("unknown slot {slot:?}")))
    }
}

/// The persisted state of [`DirectorySlots`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryState {
    pub booted: String,
    pub last_known_good: String,
    /// The slot to try at the next boot, if any.
    pub pending_trial: Option<String>,
    /// Boots already spent on the pending trial.
    pub attempts: u32,
}

/// Slots as directories: `root/a/`, `root/b/`, `root/state.json`.
#[derive(Debug)]
pub struct DirectorySlots {
    root: PathBuf,
    names: [String; 2],
    max_attempts: u32,
    state: tokio::sync::Mutex<DirectoryState>,
}

/// File name the artifact gets inside its slot directory.
pub const IMAGE_FILE: &str = "image";

impl DirectorySlots {
    /// Opens (creating on first use) the slots under `root`; slot `a` is
    /// active and good at first. One boot attempt per trial.
    pub fn open(root: &Path) -> Result<DirectorySlots, AgentError> {
        let names = ["a".to_owned(), "b".to_owned()];
        for n in &names {
            fsutil::ensure_private_dir(&root.join(n))?;
        }
        let path = root.join("state.json");
        let state = match fsutil::read_json::<DirectoryState>(&path)? {
            Some(s) => {
                for slot in [
                    Some(&s.booted),
                    Some(&s.last_known_good),
                    s.pending_trial.as_ref(),
                ]
                .into_iter()
                .flatten()
                {
                    other(&names, slot)?;
                }
                s
            }
            None => {
                let s = DirectoryState {
                    booted: names[0].clone(),
                    last_known_good: names[0].clone(),
                    pending_trial: None,
                    attempts: 0,
                };
                fsutil::write_json(&path, &s)?;
                s
            }
        };
        Ok(DirectorySlots {
            root: root.to_owned(),
            names,
            max_attempts: 1,
            state: tokio::sync::Mutex::new(state),
        })
    }

    fn save(&self, state: &DirectoryState) -> Result<(), AgentError> {
        fsutil::write_json(&self.root.join("state.json"), state)
    }

    /// A copy of the persisted state.
    pub async fn state(&self) -> DirectoryState {
        self.state.lock().await.clone()
    }

    /// The directory of `slot`.
    pub fn slot_dir(&self, slot: &str) -> PathBuf {
        self.root.join(slot)
    }

    /// Plays the bootloader: boots the pending trial slot while it has
    /// attempts left, otherwise the last known good slot. Call once per
    /// (simulated) boot, before [`Slots::boot_state`].
    pub async fn boot(&self) -> Result<BootState, AgentError> {
        let mut s = self.state.lock().await;
        match s.pending_trial.clone() {
            Some(trial) if s.attempts < self.max_attempts => {
                s.attempts += 1;
                s.booted = trial;
            }
            Some(_) => {
                // Attempts exhausted without a confirmation: fall back.
                s.pending_trial = None;
                s.attempts = 0;
                s.booted = s.last_known_good.clone();
            }
            None => s.booted = s.last_known_good.clone(),
        }
        self.save(&s)?;
        Ok(Self::boot_state_of(&s))
    }

    fn boot_state_of(s: &DirectoryState) -> BootState {
        BootState {
            booted: s.booted.clone(),
            trial: s.pending_trial.as_deref() == Some(s.booted.as_str()),
            last_known_good: s.last_known_good.clone(),
        }
    }
}

#[async_trait]
impl Slots for DirectorySlots {
    async fn boot_state(&self) -> Result<BootState, AgentError> {
        Ok(Self::boot_state_of(&*self.state.lock().await))
    }

    async fn inactive(&self) -> Result<String, AgentError> {
        other(&self.names, &self.state.lock().await.booted)
    }

    async fn write_inactive(&self, artifact: &Path) -> Result<String, AgentError> {
        let mut s = self.state.lock().await;
        if Self::boot_state_of(&s).trial {
            return Err(AgentError::Slot(
                "the running slot is on trial: confirm or roll back before installing".into(),
            ));
        }
        let slot = other(&self.names, &s.booted)?;
        // A trial that was marked but not booted yet is overwritten: forget it.
        if s.pending_trial.is_some() {
            s.pending_trial = None;
            s.attempts = 0;
            self.save(&s)?;
        }
        let dest = self.slot_dir(&slot).join(IMAGE_FILE);
        let tmp = fsutil::with_suffix(&dest, ".tmp");
        let _ = std::fs::remove_file(&tmp);
        let copied = tokio::fs::copy(artifact, &tmp).await;
        copied.map_err(|e| AgentError::io("cannot copy the artifact into", &tmp, e))?;
        let f = std::fs::File::open(&tmp).map_err(|e| AgentError::io("cannot open", &tmp, e))?;
        f.sync_all()
            .map_err(|e| AgentError::io("cannot sync", &tmp, e))?;
        fsutil::rename_durable(&tmp, &dest)?;
        Ok(slot)
    }

    async fn mark_trial(&self, slot: &str) -> Result<(), AgentError> {
        let mut s = self.state.lock().await;
        if slot == s.booted {
            return Err(AgentError::Slot(format!("{slot} is the running slot")));
        }
        other(&self.names, slot)?;
        if !self.slot_dir(slot).join(IMAGE_FILE).exists() {
            return Err(AgentError::Slot(format!("slot {slot} holds no image")));
        }
        s.pending_trial = Some(slot.to_owned());
        s.attempts = 0;
        self.save(&s)
    }

    async fn reboot(&self) -> Result<(), AgentError> {
        // No machine to reboot: the agent runs its boot path (`boot`, then
        // `Updater::resume`) in-process after this returns; see `agent`.
        Ok(())
    }

    async fn confirm(&self) -> Result<(), AgentError> {
        let mut s = self.state.lock().await;
        if Self::boot_state_of(&s).trial {
            s.last_known_good = s.booted.clone();
            s.pending_trial = None;
            s.attempts = 0;
            self.save(&s)?;
        }
        Ok(())
    }

    async fn rollback(&self) -> Result<String, AgentError> {
        let mut s = self.state.lock().await;
        s.pending_trial = None;
        s.attempts = 0;
        s.booted = s.last_known_good.clone();
        self.save(&s)?;
        Ok(s.booted.clone())
    }
}

/// Slots driven by hook commands (see the module documentation).
#[derive(Debug, Clone)]
pub struct CommandSlots {
    hooks: CommandHooks,
}

impl CommandSlots {
    pub fn new(hooks: CommandHooks) -> CommandSlots {
        CommandSlots { hooks }
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.hooks.timeout_secs)
    }

    async fn hook(&self, argv: &[String], subs: &[(&str, OsString)]) -> Result<String, AgentError> {
        Ok(command::run_checked(argv, subs, self.timeout())
            .await?
            .stdout)
    }
}

/// Parses the `status` hook's output.
pub fn parse_status(names: &[String; 2], text: &str) -> Result<BootState, AgentError> {
    let (mut booted, mut trial, mut good) = (None, None, None);
    for line in text.lines() {
        let Some((k, v)) = line.trim().split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"');
        match k.trim() {
            "booted" => booted = Some(v.to_owned()),
            "trial" => {
                trial = Some(match v {
                    "yes" | "1" | "true" => true,
                    "no" | "0" | "false" => false,
                    _ => return Err(AgentError::Slot(format!("status: trial={v:?}"))),
                })
            }
            "good" if !v.is_empty() => good = Some(v.to_owned()),
            _ => {}
        }
    }
    let booted = booted.ok_or_else(|| AgentError::Slot("status printed no booted=".into()))?;
    let trial = trial.ok_or_else(|| AgentError::Slot("status printed no trial=".into()))?;
    if !valid_slot_name(&booted) {
        return Err(AgentError::Slot(format!(
            "status: bad slot name {booted:?}"
        )));
    }
    let last_known_good = match good {
        Some(g) => g,
        None if trial => other(names, &booted)?,
        None => booted.clone(),
    };
    other(names, &booted)?;
    other(names, &last_known_good)?;
    Ok(BootState {
        booted,
        trial,
        last_known_good,
    })
}

#[async_trait]
impl Slots for CommandSlots {
    async fn boot_state(&self) -> Result<BootState, AgentError> {
        let out = self.hook(&self.hooks.status, &[]).await?;
        parse_status(&self.hooks.slot_names, &out)
    }

    async fn inactive(&self) -> Result<String, AgentError> {
        let booted = self.boot_state().await?.booted;
        other(&self.hooks.slot_names, &booted)
    }

    async fn write_inactive(&self, artifact: &Path) -> Result<String, AgentError> {
        let state = self.boot_state().await?;
        if state.trial {
            return Err(AgentError::Slot(
                "the running slot is on trial: confirm or roll back before installing".into(),
            ));
        }
        let slot = other(&self.hooks.slot_names, &state.booted)?;
        let subs = [
            ("{artifact}", artifact.as_os_str().to_owned()),
            ("{slot}", OsString::from(&slot)),
        ];
        self.hook(&self.hooks.install, &subs).await?;
        Ok(slot)
    }

    async fn mark_trial(&self, slot: &str) -> Result<(), AgentError> {
        other(&self.hooks.slot_names, slot)?;
        self.hook(&self.hooks.mark_trial, &[("{slot}", slot.into())])
            .await
            .map(drop)
    }

    async fn reboot(&self) -> Result<(), AgentError> {
        match &self.hooks.reboot {
            Some(argv) => self.hook(argv, &[]).await.map(drop),
            None => {
                tracing::warn!("no slots.reboot hook: waiting for the device to be rebooted");
                Ok(())
            }
        }
    }

    async fn confirm(&self) -> Result<(), AgentError> {
        let booted = self.boot_state().await?.booted;
        self.hook(&self.hooks.confirm, &[("{slot}", booted.into())])
            .await
            .map(drop)
    }

    async fn rollback(&self) -> Result<String, AgentError> {
        let good = self.boot_state().await?.last_known_good;
        self.hook(&self.hooks.rollback, &[("{slot}", good.clone().into())])
            .await?;
        Ok(good)
    }
}

#[cfg(test)]
#[path = "slots_tests.rs"]
mod tests;
