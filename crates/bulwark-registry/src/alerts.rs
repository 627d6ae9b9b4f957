//! Alerts and automated response: recording findings, the lifecycle an
//! operator drives, and carrying out response actions.
//!
//! Detection (in the server) turns a finding into a [`NewAlert`] with the
//! playbook's steps already planned and calls [`Registry::alerts_raise`];
//! the store de-duplicates and schedules. [`Registry::alerts_run_due`]
//! carries out what is due: `restrict` (quarantine), `revoke` and
//! `decommission` here, through the store and the event bus like an
//! operator's change; `throttle` and `disconnect` through a [`Responder`]
//! (the gateway, in the server). A reversible action is released by its
//! timer or an operator; an irreversible one waits for an operator's
//! approval unless its playbook said otherwise. Every step is audited by
//! the store in the transaction that records it.

use std::net::IpAddr;

use async_trait::async_trait;
use bulwark_audit::Actor;
use bulwark_store::{
    AlertActionChange, AlertFilter, DueAlertAction, NewAlert, NewAlertAction, RaiseOutcome,
    StoreError,
};
use bulwark_types::{
    ActionKind, ActionState, Alert, AlertAction, AlertState, DeviceId, DeviceState,
    RevocationReason,
};
use time::OffsetDateTime;

use crate::auth::Action;
use crate::{Event, Operator, Registry, RegistryError};

/// The gateway's side of a response.
#[async_trait]
pub trait Responder: Send + Sync {
    /// Tighter publish limits for the device's sessions, until `unthrottle`.
    async fn throttle(&self, device: &DeviceId, rate_per_sec: f64, burst: f64) -> bool;
    async fn unthrottle(&self, device: &DeviceId) -> bool;
    /// Cuts the device's live sessions; whether one was connected.
    async fn disconnect(&self, device: &DeviceId) -> bool;
    /// Refuses new connections from `source` for `duration`.
    async fn block_source(&self, source: IpAddr, duration: std::time::Duration) -> bool;
    async fn unblock_source(&self, source: IpAddr) -> bool;
}

/// Default length of a block when its step names none.
const DEFAULT_BLOCK_SECS: u64 = 900;

/// The address an alert about `source:<ip>` is about.
fn source_of(alert: &Alert) -> Option<IpAddr> {
    alert.entity.strip_prefix("source:")?.parse().ok()
}

/// What an operator does to one action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionCommand {
    /// Let an action awaiting approval run now.
    Approve,
    /// Refuse an action awaiting approval, or cancel a scheduled one.
    Reject,
    /// Undo an applied reversible action now.
    Release,
}

impl ActionCommand {
    pub fn parse(s: &str) -> Option<ActionCommand> {
        Some(match s {
            "approve" => ActionCommand::Approve,
            "reject" => ActionCommand::Reject,
            "release" => ActionCommand::Release,
            _ => return None,
        })
    }
}

/// Default throttle when a step names none: 1 message/s, burst 5.
const DEFAULT_THROTTLE: (f64, f64) = (1.0, 5.0);

/// An action carried out (or failed), for the sinks.
pub type ActionDone = (Alert, AlertAction);

fn not_found() -> RegistryError {
    StoreError::NotFound { what: "alert" }.into()
}

impl Registry {
    // --- operators ----------------------------------------------------------

    pub async fn alerts_list(
        &self,
        op: &Operator,
        filter: AlertFilter,
    ) -> Result<Vec<Alert>, RegistryError> {
        self.allow(op, Action::ReadAlerts).await?;
        Ok(self.store.list_alerts(filter).await?)
    }

    pub async fn alert_get(&self, op: &Operator, id: i64) -> Result<Alert, RegistryError> {
        self.allow(op, Action::ReadAlerts).await?;
        self.store.get_alert(id).await?.ok_or_else(not_found)
    }

    /// The evidence bundle (JSON) captured when the alert opened.
    pub async fn alert_bundle(&self, op: &Operator, id: i64) -> Result<Vec<u8>, RegistryError> {
        self.allow(op, Action::ReadAlerts).await?;
        self.store.alert_bundle(id).await?.ok_or_else(|| {
            StoreError::NotFound {
                what: "evidence bundle",
            }
            .into()
        })
    }

    /// Acknowledges or resolves an alert.
    pub async fn alert_set_state(
        &self,
        op: &Operator,
        id: i64,
        to: AlertState,
        reason: Option<String>,
    ) -> Result<Alert, RegistryError> {
        self.allow(op, Action::ManageAlerts).await?;
        if to == AlertState::Open {
            return Err(RegistryError::Invalid(
                "an alert cannot be re-opened; acknowledge or resolve it".into(),
            ));
        }
        let alert = self
            .store
            .set_alert_state(id, to, reason, op.actor())
            .await?;
        self.bus.publish(Event::AlertChanged { id, action: None });
        Ok(alert)
    }

    /// Approves, refuses or releases one action of an alert.
    pub async fn alert_action_command(
        &self,
        op: &Operator,
        alert: i64,
        action_id: i64,
        command: ActionCommand,
        responder: &dyn Responder,
    ) -> Result<Alert, RegistryError> {
        self.allow(op, Action::ManageAlerts).await?;
        let current = self.store.get_alert(alert).await?.ok_or_else(not_found)?;
        let Some(action) = current.actions.iter().find(|a| a.id == action_id).cloned() else {
            return Err(StoreError::NotFound {
                what: "alert action",
            }
            .into());
        };
        let who = format!("by operator {}", op.token_id);
        match command {
            ActionCommand::Approve => {
                if current.state == AlertState::Resolved {
                    return Err(RegistryError::Conflict(format!(
                        "alert {alert} is resolved; nothing to approve"
                    )));
                }
                self.store
                    .change_alert_action(
                        AlertActionChange {
                            action_id,
                            from: vec![ActionState::AwaitingApproval],
                            to: ActionState::Scheduled,
                            reason: Some(format!("approved {who}")),
                            release_at: None,
                        },
                        op.actor(),
                    )
                    .await?;
                // Due since the alert opened: carried out now, with the
                // parameters its playbook stored.
                self.alerts_run_due(responder, OffsetDateTime::now_utc())
                    .await?;
            }
            ActionCommand::Reject => {
                self.store
                    .change_alert_action(
                        AlertActionChange {
                            action_id,
                            from: vec![ActionState::AwaitingApproval, ActionState::Scheduled],
                            to: ActionState::Cancelled,
                            reason: Some(format!("refused {who}")),
                            release_at: None,
                        },
                        op.actor(),
                    )
                    .await?;
            }
            ActionCommand::Release => {
                if !action.action.reversible() {
                    return Err(RegistryError::Invalid(format!(
                        "a {} cannot be released",
                        action.action.as_str()
                    )));
                }
                self.release(&current, &action, responder, op.actor(), &who)
                    .await?;
            }
        }
        self.bus.publish(Event::AlertChanged {
            id: alert,
            action: Some(action_id),
        });
        self.store.get_alert(alert).await?.ok_or_else(not_found)
    }

    /// An operator's escalation: carries out `action` on the alert's
    /// device now (an operator's explicit decision needs no approval).
    pub async fn alert_escalate(
        &self,
        op: &Operator,
        alert: i64,
        action: ActionKind,
        release_after_secs: Option<u64>,
        responder: &dyn Responder,
    ) -> Result<Alert, RegistryError> {
        self.allow(op, Action::ManageAlerts).await?;
        let current = self.store.get_alert(alert).await?.ok_or_else(not_found)?;
        match (&current.device, action) {
            (_, ActionKind::Notify) => {}
            (None, ActionKind::Block) if source_of(&current).is_some() => {}
            (None, _) => {
                return Err(RegistryError::Invalid(format!(
                    "alert {alert} is about {}, not a device: only notify and block apply",
                    current.entity
                )))
            }
            (Some(_), ActionKind::Block) => {
                return Err(RegistryError::Invalid(format!(
                    "alert {alert} is about a device: block applies to source addresses"
                )))
            }
            (Some(_), _) => {}
        }
        let params = match release_after_secs {
            Some(s) if action.reversible() => serde_json::json!({ "release_after_secs": s }),
            Some(_) => {
                return Err(RegistryError::Invalid(format!(
                    "a {} cannot be released by a timer",
                    action.as_str()
                )))
            }
            None => serde_json::json!({}),
        };
        let (alert, added) = self
            .store
            .add_alert_action(
                alert,
                NewAlertAction {
                    playbook: None,
                    step: 0,
                    action,
                    state: ActionState::Scheduled,
                    due_at: Some(OffsetDateTime::now_utc()),
                    params: params.clone(),
                },
                op.actor(),
            )
            .await?;
        let _ = self
            .apply(&alert, &added, &params, responder, op.actor())
            .await?;
        self.bus.publish(Event::AlertChanged {
            id: alert.id,
            action: Some(added.id),
        });
        self.store.get_alert(alert.id).await?.ok_or_else(not_found)
    }

    /// An alert as the system sees it (no operator: for the pipeline's
    /// notices to the sinks).
    pub async fn alert_for_notice(&self, id: i64) -> Result<Option<Alert>, RegistryError> {
        Ok(self.store.get_alert(id).await?)
    }

    // --- detection ----------------------------------------------------------

    /// Records a finding (the detection pipeline's; the system is the actor).
    pub async fn alerts_raise(&self, alert: NewAlert) -> Result<RaiseOutcome, RegistryError> {
        Ok(self.store.raise_alert(alert, Actor::System).await?)
    }

    /// Carries out every action that is due by `now`: scheduled steps, and
    /// the release of reversible ones whose time is up. Returns what
    /// changed (for the sinks); one failing action does not stop the rest.
    pub async fn alerts_run_due(
        &self,
        responder: &dyn Responder,
        now: OffsetDateTime,
    ) -> Result<Vec<ActionDone>, RegistryError> {
        let due = self.store.due_alert_actions(now).await?;
        let mut done = Vec::with_capacity(due.len());
        for DueAlertAction {
            alert,
            action,
            params,
        } in due
        {
            let result = match action.state {
                ActionState::Scheduled => {
                    self.apply(&alert, &action, &params, responder, Actor::System)
                        .await
                }
                _ => {
                    self.release(&alert, &action, responder, Actor::System, "by its timer")
                        .await
                }
            };
            match result {
                Ok(Some(d)) => done.push(d),
                Ok(None) => {}
                // Someone else moved it first (an operator): fine.
                Err(RegistryError::Conflict(_)) => {}
                Err(e) => {
                    tracing::error!(alert = alert.id, action = action.id, error = %e, "response action failed")
                }
            }
        }
        Ok(done)
    }

    /// After a restart: enforces again the applied throttles and address
    /// blocks (the gateway keeps them in memory), each for the rest of its
    /// time (a block whose time is up is left to the timer, which releases
    /// it). Quarantine, revocation and decommissioning are device and
    /// certificate state and need nothing. Returns how many were restored.
    pub async fn alerts_reapply(&self, responder: &dyn Responder) -> Result<usize, RegistryError> {
        let applied = self
            .store
            .applied_alert_actions(vec![ActionKind::Throttle, ActionKind::Block], 100_000)
            .await?;
        let now = OffsetDateTime::now_utc();
        let mut restored = 0;
        for DueAlertAction {
            alert,
            action,
            params,
        } in applied
        {
            let ok = match (action.action, &alert.device) {
                (ActionKind::Throttle, Some(device)) => {
                    let (rate, burst) = throttle_params(&params);
                    responder.throttle(device, rate, burst).await
                }
                (ActionKind::Block, _) => {
                    let left = action
                        .release_at
                        .map_or(DEFAULT_BLOCK_SECS as f64, |t| (t - now).as_seconds_f64());
                    match source_of(&alert) {
                        Some(ip) if left >= 1.0 => {
                            responder
                                .block_source(ip, std::time::Duration::from_secs_f64(left))
                                .await
                        }
                        _ => false,
                    }
                }
                _ => false,
            };
            if ok {
                restored += 1;
                tracing::info!(alert = alert.id, action = action.id, kind = action.action.as_str(), entity = %alert.entity, "response action enforced again after a restart");
            }
        }
        Ok(restored)
    }

    /// Carries out a scheduled action and records the outcome.
    async fn apply(
        &self,
        alert: &Alert,
        action: &AlertAction,
        params: &serde_json::Value,
        responder: &dyn Responder,
        actor: Actor,
    ) -> Result<Option<ActionDone>, RegistryError> {
        let release_after = params
            .get("release_after_secs")
            .and_then(serde_json::Value::as_u64)
            .or((action.action == ActionKind::Block).then_some(DEFAULT_BLOCK_SECS));
        let outcome = match (&alert.device, action.action) {
            (_, ActionKind::Notify) => Ok(None),
            (_, ActionKind::Block) => match source_of(alert) {
                Some(ip) => {
                    let secs = release_after.unwrap_or(DEFAULT_BLOCK_SECS);
                    match responder
                        .block_source(ip, std::time::Duration::from_secs(secs))
                        .await
                    {
                        true => Ok(None),
                        false => Err(format!("cannot block {ip}: too many blocks")),
                    }
                }
                None => Ok(Some("no source address to block".into())),
            },
            (None, _) => Err(format!("{} is not a device", alert.entity)),
            (Some(device), kind) => self.execute(device, kind, params, responder).await,
        };
        let (to, reason, release_at) = match outcome {
            Ok(note) => {
                let release_at = release_after
                    .filter(|_| action.action.reversible() && note.is_none())
                    .map(|s| OffsetDateTime::now_utc() + std::time::Duration::from_secs(s));
                (ActionState::Applied, note, release_at)
            }
            Err(why) => (ActionState::Failed, Some(why), None),
        };
        let done = self
            .store
            .change_alert_action(
                AlertActionChange {
                    action_id: action.id,
                    from: vec![ActionState::Scheduled],
                    to,
                    reason,
                    release_at,
                },
                actor,
            )
            .await?;
        if to == ActionState::Applied {
            tracing::warn!(alert = alert.id, device = ?alert.device, action = action.action.as_str(), "response action applied");
        }
        Ok(Some(done))
    }

    /// Does one action to a device; `Ok(Some(note))` when there was
    /// nothing to do (and so nothing to release later).
    async fn execute(
        &self,
        device: &DeviceId,
        kind: ActionKind,
        params: &serde_json::Value,
        responder: &dyn Responder,
    ) -> Result<Option<String>, String> {
        match kind {
            ActionKind::Notify | ActionKind::Block => Ok(None),
            ActionKind::Throttle => {
                let (rate, burst) = throttle_params(params);
                match responder.throttle(device, rate, burst).await {
                    true => Ok(None),
                    false => Ok(Some("already throttled".into())),
                }
            }
            ActionKind::Restrict => self
                .set_device_state(device, DeviceState::Quarantined)
                .await
                .map(|changed| (!changed).then(|| "already quarantined".into())),
            ActionKind::Disconnect => match responder.disconnect(device).await {
                true => Ok(None),
                false => Ok(Some("no live session".into())),
            },
            ActionKind::Revoke => self
                .revoke_device_certificates(device)
                .await
                .map(|n| (n == 0).then(|| "no live certificate to revoke".into())),
            ActionKind::Decommission => self
                .set_device_state(device, DeviceState::Decommissioned)
                .await
                .map(|changed| (!changed).then(|| "already decommissioned".into())),
        }
    }

    /// Undoes an applied reversible action.
    async fn release(
        &self,
        alert: &Alert,
        action: &AlertAction,
        responder: &dyn Responder,
        actor: Actor,
        who: &str,
    ) -> Result<Option<ActionDone>, RegistryError> {
        if action.action == ActionKind::Block {
            if let Some(ip) = source_of(alert) {
                responder.unblock_source(ip).await;
            }
        }
        let undone = match (&alert.device, action.action) {
            (Some(device), ActionKind::Throttle) => {
                responder.unthrottle(device).await;
                Ok(())
            }
            (Some(device), ActionKind::Restrict) => {
                // Only a device still quarantined goes back to active (an
                // operator may have decommissioned it meanwhile).
                match self.store.get_device(device).await? {
                    Some(d) if d.device.state == DeviceState::Quarantined => self
                        .set_device_state(device, DeviceState::Active)
                        .await
                        .map(|_| ()),
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        };
        let (to, reason) = match undone {
            Ok(()) => (ActionState::Released, format!("released {who}")),
            Err(why) => (ActionState::Failed, format!("release failed: {why}")),
        };
        let done = self
            .store
            .change_alert_action(
                AlertActionChange {
                    action_id: action.id,
                    from: vec![ActionState::Applied],
                    to,
                    reason: Some(reason),
                    release_at: None,
                },
                actor,
            )
            .await?;
        Ok(Some(done))
    }

    /// Moves a device to `to` as the system; whether it changed.
    async fn set_device_state(&self, device: &DeviceId, to: DeviceState) -> Result<bool, String> {
        match self.store.get_device(device).await {
            Ok(Some(d)) if d.device.state == to => return Ok(false),
            Ok(Some(_)) => {}
            Ok(None) => return Err(format!("device {device} does not exist")),
            Err(e) => return Err(e.to_string()),
        }
        let t = self
            .store
            .transition_device(device.clone(), to, Actor::System)
            .await
            .map_err(|e| e.to_string())?;
        self.bus.publish(Event::DeviceStateChanged {
            device_id: t.device.id.clone(),
            from: t.from,
            to,
        });
        for serial in t.revoked {
            self.revoked(serial, Some(t.device.id.clone()));
        }
        Ok(true)
    }

    /// Revokes every unrevoked certificate of the device; how many.
    async fn revoke_device_certificates(&self, device: &DeviceId) -> Result<usize, String> {
        let detail = self
            .store
            .get_device(device)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("device {device} does not exist"))?;
        let mut n = 0;
        for c in detail
            .certificates
            .iter()
            .filter(|c| c.revoked_at.is_none())
        {
            match self
                .store
                .revoke_certificate(
                    c.serial.clone(),
                    RevocationReason::KeyCompromise,
                    Actor::System,
                )
                .await
            {
                Ok(_) => {
                    self.revoked(c.serial.clone(), Some(device.clone()));
                    n += 1;
                }
                Err(StoreError::AlreadyRevoked(_)) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(n)
    }
}

/// The filter of `GET /v1/alerts` with its bound applied.
pub fn alert_filter(
    after: Option<i64>,
    device: Option<DeviceId>,
    state: Option<AlertState>,
    limit: Option<u32>,
) -> AlertFilter {
    AlertFilter {
        after,
        device,
        state,
        limit: limit.unwrap_or(100),
    }
}

/// A throttle step's rate and burst, or the defaults.
fn throttle_params(params: &serde_json::Value) -> (f64, f64) {
    let get = |k: &str, d: f64| {
        params
            .get(k)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(d)
    };
    (
        get("rate_per_sec", DEFAULT_THROTTLE.0),
        get("burst", DEFAULT_THROTTLE.1),
    )
}
