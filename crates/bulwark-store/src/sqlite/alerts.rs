//! Alerts and response actions: the bodies of the `Store` operations
//! (`ops.rs` runs each as one read or write job).
//!
//! The store de-duplicates (one unresolved alert per key, enforced by a
//! partial unique index), keeps the suppression window of resolved alerts,
//! and moves actions only by compare-and-set on their state, so the engine
//! and an operator racing on one action cannot both apply. Opening an
//! alert, every alert state change and every action change are audited in
//! the same transaction; a folded duplicate only bumps the count (a flood
//! of findings does not flood the audit log).

use bulwark_audit::{Actor, AuditEvent};
use bulwark_types::{ActionKind, ActionState, Alert, AlertAction, AlertState, DeviceId, Severity};
use rusqlite::{params, Connection, OptionalExtension, Row};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::rows::{self, ms};
use super::writer::WriteTx;
use crate::{
    AlertActionChange, AlertFilter, DueAlertAction, NewAlert, NewAlertAction, RaiseOutcome, Result,
    StoreError,
};

const COLS: &str = "id, device, entity, detector, severity, title, state, count, evidence, \
                    bundle_sha256, first_seen, last_seen, updated_at";
const ACTION_COLS: &str =
    "id, playbook, step, action, state, reason, due_at, release_at, applied_at, updated_at, params";

/// Longest list answer.
pub const MAX_LIST: u32 = 1000;

fn alert_row(r: &Row) -> rusqlite::Result<Alert> {
    let evidence: String = r.get(8)?;
    Ok(Alert {
        id: r.get(0)?,
        device: match r.get::<_, Option<String>>(1)? {
            None => None,
            Some(d) => Some(DeviceId::new(d).map_err(|e| rows::bad(1, e))?),
        },
        entity: r.get(2)?,
        detector: r.get(3)?,
        severity: rows::parse(4, r.get(4)?, Severity::parse)?,
        title: r.get(5)?,
        state: rows::parse(6, r.get(6)?, AlertState::parse)?,
        count: r.get::<_, i64>(7)? as u64,
        evidence: serde_json::from_str(&evidence).map_err(|e| rows::bad(8, e))?,
        bundle_sha256: r.get(9)?,
        first_seen: rows::from_ms(r.get(10)?),
        last_seen: rows::from_ms(r.get(11)?),
        updated_at: rows::from_ms(r.get(12)?),
        actions: Vec::new(),
    })
}

fn action_row(r: &Row) -> rusqlite::Result<(AlertAction, serde_json::Value)> {
    let params: String = r.get(10)?;
    Ok((
        AlertAction {
            id: r.get(0)?,
            playbook: r.get(1)?,
            step: r.get::<_, i64>(2)? as u32,
            action: rows::parse(3, r.get(3)?, ActionKind::parse)?,
            state: rows::parse(4, r.get(4)?, ActionState::parse)?,
            reason: r.get(5)?,
            due_at: rows::opt_time(r.get(6)?),
            release_at: rows::opt_time(r.get(7)?),
            applied_at: rows::opt_time(r.get(8)?),
            updated_at: rows::from_ms(r.get(9)?),
        },
        serde_json::from_str(&params).map_err(|e| rows::bad(10, e))?,
    ))
}

fn actions_of(conn: &Connection, alert: i64) -> Result<Vec<(AlertAction, serde_json::Value)>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {ACTION_COLS} FROM alert_actions WHERE alert = ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([alert], action_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn with_actions(conn: &Connection, mut alert: Alert) -> Result<Alert> {
    alert.actions = actions_of(conn, alert.id)?
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    Ok(alert)
}

pub(super) fn get(conn: &Connection, id: i64) -> Result<Option<Alert>> {
    let alert = conn
        .prepare_cached(&format!("SELECT {COLS} FROM alerts WHERE id = ?1"))?
        .query_row([id], alert_row)
        .optional()?;
    alert.map(|a| with_actions(conn, a)).transpose()
}

fn must_get(conn: &Connection, id: i64) -> Result<Alert> {
    get(conn, id)?.ok_or(StoreError::NotFound { what: "alert" })
}

pub(super) fn list(conn: &Connection, f: &AlertFilter) -> Result<Vec<Alert>> {
    let limit = f.limit.clamp(1, MAX_LIST);
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLS} FROM alerts WHERE id > ?1 AND (?2 IS NULL OR device = ?2) \
         AND (?3 IS NULL OR state = ?3) ORDER BY id LIMIT ?4"
    ))?;
    let alerts = stmt
        .query_map(
            params![
                f.after.unwrap_or(0),
                f.device.as_ref().map(DeviceId::as_str),
                f.state.map(AlertState::as_str),
                limit
            ],
            alert_row,
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    alerts.into_iter().map(|a| with_actions(conn, a)).collect()
}

pub(super) fn bundle(conn: &Connection, id: i64) -> Result<Option<Vec<u8>>> {
    Ok(conn
        .prepare_cached("SELECT body FROM alert_bundles WHERE alert = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?)
}

pub(super) fn device_alerts_since(
    conn: &Connection,
    device: &DeviceId,
    since: OffsetDateTime,
    min: Severity,
) -> Result<u64> {
    let mut stmt =
        conn.prepare_cached("SELECT severity FROM alerts WHERE device = ?1 AND first_seen >= ?2")?;
    let severities = stmt.query_map(params![device.as_str(), ms(since)], |r| {
        r.get::<_, String>(0)
    })?;
    let mut n = 0;
    for s in severities {
        if Severity::parse(&s?).is_some_and(|s| s >= min) {
            n += 1;
        }
    }
    Ok(n)
}

pub(super) fn raise(tx: &mut WriteTx<'_>, a: NewAlert, actor: &Actor) -> Result<RaiseOutcome> {
    let now = ms(tx.now);
    let open: Option<(i64, String)> = tx
        .conn
        .prepare_cached("SELECT id, severity FROM alerts WHERE dedup = ?1 AND state != 'resolved'")?
        .query_row([&a.dedup], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let evidence = a.evidence.to_string();
    if let Some((id, severity)) = open {
        // The worst severity seen stays; the newest evidence replaces the old.
        let severity = Severity::parse(&severity).map_or(a.severity, |s| s.max(a.severity));
        tx.conn
            .prepare_cached(
                "UPDATE alerts SET count = count + 1, last_seen = ?2, updated_at = ?2, \
                 evidence = ?3, severity = ?4 WHERE id = ?1",
            )?
            .execute(params![id, now, evidence, severity.as_str()])?;
        return Ok(RaiseOutcome::Updated(must_get(tx.conn, id)?));
    }
    // The window in force now (the finding's) decides, so a changed
    // configuration applies at once.
    let suppress_ms = a.suppress_for.as_millis().min(i64::MAX as u128 / 2) as i64;
    let suppressed: bool = tx
        .conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM alerts WHERE dedup = ?1 AND state = 'resolved' \
             AND resolved_at > ?2)",
        )?
        .query_row(params![&a.dedup, now - suppress_ms], |r| r.get(0))?;
    if suppressed {
        return Ok(RaiseOutcome::Suppressed);
    }
    let sha = a.bundle.as_ref().map(|b| hex::encode(Sha256::digest(b)));
    tx.conn
        .prepare_cached(
            "INSERT INTO alerts (dedup, device, entity, detector, severity, title, state, count, \
             evidence, bundle_sha256, first_seen, last_seen, updated_at, resolved_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'open', 1, ?7, ?8, ?9, ?9, ?9, NULL)",
        )?
        .execute(params![
            a.dedup,
            a.device.as_ref().map(DeviceId::as_str),
            a.entity,
            a.detector,
            a.severity.as_str(),
            a.title,
            evidence,
            sha,
            now,
        ])?;
    let id = tx.conn.last_insert_rowid();
    if let Some(body) = &a.bundle {
        tx.conn
            .prepare_cached("INSERT INTO alert_bundles (alert, body) VALUES (?1, ?2)")?
            .execute(params![id, body])?;
    }
    tx.audit(
        actor,
        &AuditEvent::AlertOpened {
            id,
            entity: a.entity.clone(),
            device_id: a.device.clone(),
            detector: a.detector.clone(),
            severity: a.severity.as_str().to_owned(),
            title: a.title.clone(),
            bundle_sha256: sha,
        },
    )?;
    for action in a.actions {
        insert_action(tx, id, a.device.as_ref(), action, actor)?;
    }
    Ok(RaiseOutcome::Opened(must_get(tx.conn, id)?))
}

fn insert_action(
    tx: &mut WriteTx<'_>,
    alert: i64,
    device: Option<&DeviceId>,
    a: NewAlertAction,
    actor: &Actor,
) -> Result<AlertAction> {
    tx.conn
        .prepare_cached(
            "INSERT INTO alert_actions (alert, playbook, step, action, state, reason, params, \
             due_at, release_at, applied_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, ?7, NULL, NULL, ?8)",
        )?
        .execute(params![
            alert,
            a.playbook,
            a.step,
            a.action.as_str(),
            a.state.as_str(),
            a.params.to_string(),
            a.due_at.map(ms),
            ms(tx.now),
        ])?;
    let id = tx.conn.last_insert_rowid();
    tx.audit(
        actor,
        &AuditEvent::AlertActionChanged {
            alert,
            action_id: id,
            action: a.action.as_str().to_owned(),
            device_id: device.cloned(),
            state: a.state.as_str().to_owned(),
            reason: a
                .playbook
                .map(|p| format!("playbook {p}, step {}", a.step + 1)),
        },
    )?;
    action(tx.conn, id).map(|(a, _)| a)
}

fn action(conn: &Connection, id: i64) -> Result<(AlertAction, serde_json::Value)> {
    conn.prepare_cached(&format!(
        "SELECT {ACTION_COLS} FROM alert_actions WHERE id = ?1"
    ))?
    .query_row([id], action_row)
    .optional()?
    .ok_or(StoreError::NotFound {
        what: "alert action",
    })
}

pub(super) fn set_state(
    tx: &mut WriteTx<'_>,
    id: i64,
    to: AlertState,
    reason: Option<String>,
    actor: &Actor,
) -> Result<Alert> {
    let alert = must_get(tx.conn, id)?;
    let allowed = matches!(
        (alert.state, to),
        (AlertState::Open, AlertState::Acknowledged)
            | (
                AlertState::Open | AlertState::Acknowledged,
                AlertState::Resolved
            )
    );
    if !allowed {
        return Err(StoreError::Conflict(format!(
            "alert {id} is {}; it cannot become {}",
            alert.state.as_str(),
            to.as_str()
        )));
    }
    let now = ms(tx.now);
    tx.conn
        .prepare_cached(
            "UPDATE alerts SET state = ?2, updated_at = ?3, \
             resolved_at = CASE WHEN ?2 = 'resolved' THEN ?3 ELSE resolved_at END WHERE id = ?1",
        )?
        .execute(params![id, to.as_str(), now])?;
    tx.audit(
        actor,
        &AuditEvent::AlertStateChanged {
            id,
            state: to.as_str().to_owned(),
            reason: reason.clone(),
        },
    )?;
    if to == AlertState::Resolved {
        for a in alert.actions.iter().filter(|a| {
            matches!(
                a.state,
                ActionState::Scheduled | ActionState::AwaitingApproval
            )
        }) {
            change_action(
                tx,
                AlertActionChange {
                    action_id: a.id,
                    from: vec![a.state],
                    to: ActionState::Cancelled,
                    reason: Some("the alert was resolved first".into()),
                    release_at: None,
                },
                actor,
            )?;
        }
    }
    must_get(tx.conn, id)
}

pub(super) fn change_action(
    tx: &mut WriteTx<'_>,
    c: AlertActionChange,
    actor: &Actor,
) -> Result<(Alert, AlertAction)> {
    let alert_id: i64 = tx
        .conn
        .prepare_cached("SELECT alert FROM alert_actions WHERE id = ?1")?
        .query_row([c.action_id], |r| r.get(0))
        .optional()?
        .ok_or(StoreError::NotFound {
            what: "alert action",
        })?;
    let (current, _) = action(tx.conn, c.action_id)?;
    if !c.from.contains(&current.state) {
        return Err(StoreError::Conflict(format!(
            "action {} is {}; it cannot become {}",
            c.action_id,
            current.state.as_str(),
            c.to.as_str()
        )));
    }
    let now = ms(tx.now);
    let applied = c.to == ActionState::Applied;
    tx.conn
        .prepare_cached(
            "UPDATE alert_actions SET state = ?2, reason = ?3, updated_at = ?4, \
             applied_at = CASE WHEN ?5 THEN ?4 ELSE applied_at END, \
             release_at = CASE WHEN ?5 THEN ?6 ELSE release_at END WHERE id = ?1",
        )?
        .execute(params![
            c.action_id,
            c.to.as_str(),
            c.reason,
            now,
            applied,
            c.release_at.map(ms),
        ])?;
    let device: Option<String> = tx
        .conn
        .prepare_cached("SELECT device FROM alerts WHERE id = ?1")?
        .query_row([alert_id], |r| r.get(0))?;
    tx.audit(
        actor,
        &AuditEvent::AlertActionChanged {
            alert: alert_id,
            action_id: c.action_id,
            action: current.action.as_str().to_owned(),
            device_id: device.and_then(|d| DeviceId::new(d).ok()),
            state: c.to.as_str().to_owned(),
            reason: c.reason,
        },
    )?;
    let alert = must_get(tx.conn, alert_id)?;
    let (action, _) = action(tx.conn, c.action_id)?;
    Ok((alert, action))
}

pub(super) fn add_action(
    tx: &mut WriteTx<'_>,
    alert: i64,
    a: NewAlertAction,
    actor: &Actor,
) -> Result<(Alert, AlertAction)> {
    let current = must_get(tx.conn, alert)?;
    if current.state == AlertState::Resolved {
        return Err(StoreError::Conflict(format!(
            "alert {alert} is resolved; open a new one"
        )));
    }
    let step = current
        .actions
        .iter()
        .map(|a| a.step + 1)
        .max()
        .unwrap_or(0);
    let action = insert_action(
        tx,
        alert,
        current.device.as_ref(),
        NewAlertAction { step, ..a },
        actor,
    )?;
    Ok((must_get(tx.conn, alert)?, action))
}

/// Each (action id, alert id) with its alert, action and parameters.
fn with_alerts(conn: &Connection, ids: Vec<(i64, i64)>) -> Result<Vec<DueAlertAction>> {
    let mut out = Vec::with_capacity(ids.len());
    for (action_id, alert_id) in ids {
        let (action, params) = action(conn, action_id)?;
        out.push(DueAlertAction {
            alert: must_get(conn, alert_id)?,
            action,
            params,
        });
    }
    Ok(out)
}

/// Applied actions of `kinds`, oldest first.
pub(super) fn applied(
    conn: &Connection,
    kinds: &[ActionKind],
    limit: u32,
) -> Result<Vec<DueAlertAction>> {
    let kinds: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
    // The kinds as a JSON array: one cached statement whatever their number.
    let kinds = serde_json::Value::from(kinds).to_string();
    let ids = conn
        .prepare_cached(
            "SELECT id, alert FROM alert_actions WHERE state = 'applied' \
             AND action IN (SELECT value FROM json_each(?1)) ORDER BY id LIMIT ?2",
        )?
        .query_map(params![kinds, limit], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    with_alerts(conn, ids)
}

pub(super) fn due(conn: &Connection, now: OffsetDateTime) -> Result<Vec<DueAlertAction>> {
    let now = ms(now);
    let mut stmt = conn.prepare_cached(
        "SELECT a.id, a.alert FROM alert_actions a JOIN alerts al ON al.id = a.alert \
         WHERE (a.state = 'scheduled' AND a.due_at <= ?1 AND al.state != 'resolved') \
            OR (a.state = 'applied' AND a.release_at IS NOT NULL AND a.release_at <= ?1) \
         ORDER BY a.id LIMIT 1000",
    )?;
    let ids = stmt
        .query_map([now], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    with_alerts(conn, ids)
}
