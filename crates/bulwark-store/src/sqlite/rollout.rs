//! Rollouts: the bodies of the `Store` operations (`ops.rs` runs each as
//! one read or write job).
//!
//! The store keeps a rollout's plan and position, one row per device, and
//! the history of every device's steps with their times. It decides
//! nothing: the registry decides (with `bulwark_ota::rollout`) and the
//! store applies each decision atomically. A device's step changes only by
//! compare-and-set on its current step, so two reports racing for one
//! device cannot both apply. Creation, status changes, phase starts and
//! every device step are audited; the history keeps each step's time.

use bulwark_audit::{Actor, AuditEvent};
use bulwark_types::{
    AcceptedFailures, DeviceId, PhaseProgress, Rollout, RolloutDevice, RolloutPlan, RolloutSelector,
};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::rows::{self, ms};
use super::writer::WriteTx;
use crate::{DeviceStepChange, NewRollout, Result, StoreError};

const COLS: &str =
    "id, release, plan, selector, status, reason, phase, soak_started_at, created_at, updated_at, accepted";
const DEVICE_COLS: &str = "device, phase, step, attempts, reason, flagged, notified_at, updated_at";

fn json<T: serde::de::DeserializeOwned>(r: &Row, i: usize) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text).map_err(|e| rows::bad(i, e))
}

fn rollout_row(r: &Row) -> rusqlite::Result<Rollout> {
    let plan: RolloutPlan = json(r, 2)?;
    let phases = vec![PhaseProgress::default(); plan.phases.len()];
    Ok(Rollout {
        id: r.get(0)?,
        release: r.get(1)?,
        plan,
        selector: json::<RolloutSelector>(r, 3)?,
        status: r.get(4)?,
        reason: r.get(5)?,
        phase: r.get::<_, Option<i64>>(6)?.map(|p| p as u32),
        phases,
        soak_started_at: rows::opt_time(r.get(7)?),
        created_at: rows::from_ms(r.get(8)?),
        updated_at: rows::from_ms(r.get(9)?),
        accepted: match r.get::<_, Option<String>>(10)? {
            None => None,
            Some(text) => Some(serde_json::from_str(&text).map_err(|e| rows::bad(10, e))?),
        },
    })
}

fn device_row(r: &Row) -> rusqlite::Result<RolloutDevice> {
    Ok(RolloutDevice {
        device: rows::device_id(r, 0)?,
        phase: r.get::<_, i64>(1)? as u32,
        step: r.get(2)?,
        attempts: r.get::<_, i64>(3)? as u32,
        reason: r.get(4)?,
        flagged: r.get(5)?,
        notified_at: rows::opt_time(r.get(6)?),
        updated_at: rows::from_ms(r.get(7)?),
    })
}

/// Fills in the per-phase counts.
fn with_progress(conn: &Connection, mut rollout: Rollout) -> Result<Rollout> {
    let mut st = conn.prepare_cached(
        "SELECT phase, step, flagged IS NOT NULL, COUNT(*) FROM ota_rollout_devices \
         WHERE rollout = ?1 GROUP BY 1, 2, 3",
    )?;
    let counts = st.query_map([&rollout.id], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, bool>(2)?,
            r.get::<_, i64>(3)? as u32,
        ))
    })?;
    for c in counts {
        let (phase, step, flagged, n) = c?;
        let Some(p) = usize::try_from(phase)
            .ok()
            .and_then(|i| rollout.phases.get_mut(i))
        else {
            continue;
        };
        p.total += n;
        match (step.as_str(), flagged) {
            ("queued", _) => p.queued += n,
            ("healthy", false) => p.healthy += n,
            ("healthy", true) => p.flagged += n,
            ("failed" | "rolled_back", _) => p.failed += n,
            _ => p.in_progress += n,
        }
    }
    Ok(rollout)
}

pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<Rollout>> {
    let r = conn
        .prepare_cached(&format!("SELECT {COLS} FROM ota_rollouts WHERE id = ?1"))?
        .query_row([id], rollout_row)
        .optional()?;
    r.map(|r| with_progress(conn, r)).transpose()
}

pub(super) fn list(conn: &Connection) -> Result<Vec<Rollout>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {COLS} FROM ota_rollouts ORDER BY created_at, id"
    ))?;
    let all = st
        .query_map([], rollout_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    all.into_iter().map(|r| with_progress(conn, r)).collect()
}

pub(super) fn devices(conn: &Connection, id: &str) -> Result<Vec<RolloutDevice>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {DEVICE_COLS} FROM ota_rollout_devices WHERE rollout = ?1 ORDER BY phase, device"
    ))?;
    let rows = st.query_map([id], device_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn device(
    conn: &Connection,
    id: &str,
    device: &DeviceId,
) -> Result<Option<RolloutDevice>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {DEVICE_COLS} FROM ota_rollout_devices WHERE rollout = ?1 AND device = ?2"
        ))?
        .query_row(params![id, device.as_str()], device_row)
        .optional()?)
}

fn history(
    tx: &WriteTx<'_>,
    id: &str,
    device: &str,
    step: &str,
    reason: Option<&str>,
) -> Result<()> {
    tx.conn
        .prepare_cached(
            "INSERT INTO ota_rollout_history (rollout, device, step, reason, at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![id, device, step, reason, ms(tx.now)])?;
    Ok(())
}

pub(super) fn create(tx: &mut WriteTx<'_>, r: NewRollout, actor: &Actor) -> Result<Rollout> {
    let plan = serde_json::to_string(&r.plan).map_err(StoreError::internal)?;
    let selector = serde_json::to_string(&r.selector).map_err(StoreError::internal)?;
    let released: Option<String> = tx
        .conn
        .prepare_cached("SELECT name FROM ota_releases WHERE name = ?1")?
        .query_row([&r.release], |row| row.get(0))
        .optional()?;
    if released.is_none() {
        return Err(StoreError::NotFound { what: "release" });
    }
    let n = tx
        .conn
        .prepare_cached(&format!(
            "INSERT INTO ota_rollouts ({COLS}) VALUES (?1, ?2, ?3, ?4, 'running', NULL, NULL, NULL, ?5, ?5, NULL) \
             ON CONFLICT(id) DO NOTHING"
        ))?
        .execute(params![r.id, r.release, plan, selector, ms(tx.now)])?;
    if n == 0 {
        return Err(StoreError::AlreadyExists { what: "rollout" });
    }
    for (device, phase) in &r.devices {
        tx.conn
            .prepare_cached(
                "INSERT INTO ota_rollout_devices (rollout, device, phase, step, attempts, updated_at) \
                 VALUES (?1, ?2, ?3, 'queued', 0, ?4)",
            )?
            .execute(params![r.id, device.as_str(), phase, ms(tx.now)])?;
        history(tx, &r.id, device.as_str(), "queued", None)?;
    }
    tx.audit(
        actor,
        &AuditEvent::RolloutCreated {
            id: r.id.clone(),
            release: r.release.clone(),
            devices: r.devices.len() as u64,
        },
    )?;
    get(tx.conn, &r.id)?.ok_or(StoreError::NotFound { what: "rollout" })
}

pub(super) fn set_status(
    tx: &mut WriteTx<'_>,
    id: &str,
    status: &str,
    reason: Option<String>,
    accept_failures: bool,
    actor: &Actor,
) -> Result<Rollout> {
    // Counted in the same transaction as the change, so no report can
    // slip between what was accepted and the resume.
    let accepted = match accept_failures {
        false => None,
        true => {
            let r = get(tx.conn, id)?.ok_or(StoreError::NotFound { what: "rollout" })?;
            let started = r.phase.map_or(0, |p| p as usize + 1);
            let mut a = AcceptedFailures {
                phase: r.phase,
                ..AcceptedFailures::default()
            };
            for p in r.phases.iter().take(started) {
                a.failures += p.failed + p.flagged;
                a.finished += p.healthy + p.failed + p.flagged;
            }
            Some(serde_json::json!(a).to_string())
        }
    };
    let n = tx
        .conn
        .prepare_cached(
            "UPDATE ota_rollouts SET status = ?2, reason = ?3, updated_at = ?4, \
             accepted = COALESCE(?5, accepted) WHERE id = ?1",
        )?
        .execute(params![id, status, reason, ms(tx.now), accepted])?;
    if n == 0 {
        return Err(StoreError::NotFound { what: "rollout" });
    }
    tx.audit(
        actor,
        &AuditEvent::RolloutStatusChanged {
            id: id.to_owned(),
            status: status.to_owned(),
            reason,
        },
    )?;
    get(tx.conn, id)?.ok_or(StoreError::NotFound { what: "rollout" })
}

pub(super) fn start_phase(
    tx: &mut WriteTx<'_>,
    id: &str,
    phase: u32,
    actor: &Actor,
) -> Result<Vec<DeviceId>> {
    let n = tx
        .conn
        .prepare_cached(
            "UPDATE ota_rollouts SET phase = MAX(COALESCE(phase, -1), ?2), soak_started_at = NULL, updated_at = ?3 \
             WHERE id = ?1 AND status = 'running'",
        )?
        .execute(params![id, phase, ms(tx.now)])?;
    if n == 0 {
        return Err(StoreError::Conflict(format!("rollout {id} is not running")));
    }
    let devices: Vec<String> = tx
        .conn
        .prepare_cached(
            "SELECT device FROM ota_rollout_devices WHERE rollout = ?1 AND phase = ?2 \
             AND step = 'queued' ORDER BY device",
        )?
        .query_map(params![id, phase], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    tx.conn
        .prepare_cached(
            "UPDATE ota_rollout_devices SET step = 'notified', attempts = attempts + 1, notified_at = ?3, updated_at = ?3 \
             WHERE rollout = ?1 AND phase = ?2 AND step = 'queued'",
        )?
        .execute(params![id, phase, ms(tx.now)])?;
    for d in &devices {
        history(tx, id, d, "notified", None)?;
    }
    tx.audit(
        actor,
        &AuditEvent::RolloutPhaseStarted {
            id: id.to_owned(),
            phase,
            devices: devices.len() as u64,
        },
    )?;
    devices
        .into_iter()
        .map(|d| DeviceId::new(d).map_err(StoreError::internal))
        .collect()
}

pub(super) fn set_soak(
    tx: &mut WriteTx<'_>,
    id: &str,
    at: Option<time::OffsetDateTime>,
) -> Result<()> {
    tx.conn
        .prepare_cached(
            "UPDATE ota_rollouts SET soak_started_at = ?2, updated_at = ?3 WHERE id = ?1",
        )?
        .execute(params![id, at.map(ms), ms(tx.now)])?;
    Ok(())
}

/// Applies a step change if the device is still at `from`; false otherwise.
pub(super) fn set_device_step(
    tx: &mut WriteTx<'_>,
    c: DeviceStepChange,
    actor: &Actor,
) -> Result<bool> {
    let notified = c.notify.then(|| ms(tx.now));
    let n = tx
        .conn
        .prepare_cached(
            "UPDATE ota_rollout_devices SET step = ?4, reason = ?5, \
             attempts = attempts + ?6, notified_at = COALESCE(?7, notified_at), \
             flagged = COALESCE(?8, flagged), updated_at = ?9 \
             WHERE rollout = ?1 AND device = ?2 AND step = ?3",
        )?
        .execute(params![
            c.rollout,
            c.device.as_str(),
            c.from,
            c.to,
            c.reason,
            u32::from(c.new_attempt),
            notified,
            c.flag,
            ms(tx.now)
        ])?;
    if n == 0 {
        return Ok(false);
    }
    history(
        tx,
        &c.rollout,
        c.device.as_str(),
        &c.to,
        c.reason.as_deref(),
    )?;
    if c.audit {
        let attempts: i64 = tx
            .conn
            .prepare_cached(
                "SELECT attempts FROM ota_rollout_devices WHERE rollout = ?1 AND device = ?2",
            )?
            .query_row(params![c.rollout, c.device.as_str()], |r| r.get(0))?;
        tx.audit(
            actor,
            &AuditEvent::RolloutDeviceStep {
                id: c.rollout.clone(),
                device_id: c.device.clone(),
                step: c.to.clone(),
                reason: c.reason.clone(),
                attempts: attempts as u32,
            },
        )?;
    }
    Ok(true)
}

/// The device's steps with their times, oldest first.
pub(super) fn device_history(
    conn: &Connection,
    id: &str,
    device: &DeviceId,
) -> Result<Vec<(String, Option<String>, time::OffsetDateTime)>> {
    let mut st = conn.prepare_cached(
        "SELECT step, reason, at FROM ota_rollout_history WHERE rollout = ?1 AND device = ?2 \
         ORDER BY rowid",
    )?;
    let rows = st.query_map(params![id, device.as_str()], |r| {
        Ok((r.get(0)?, r.get(1)?, rows::from_ms(r.get(2)?)))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}
