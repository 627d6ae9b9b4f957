//! Manufacturer CAs and the certificates they issued: the bodies of the
//! `Store` operations (`ops.rs` runs each as one read or write job).
//!
//! A device is bound to a manufacturer CA by name (`devices.manufacturer_ca`).
//! A removed CA keeps its row with `removed_at` set, so its name is never
//! reused for another certificate; registering the same certificate under
//! the same name again restores it. Manufacturer certificates are keyed by
//! their SHA-256 fingerprint.

use bulwark_audit::{Actor, AuditEvent};
use bulwark_types::{
    DeviceId, DeviceState, JitMode, ManufacturerCa, ManufacturerCaName, ManufacturerCertificate,
    RevocationReason,
};
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::ops::require_group;
use super::rows::{self, ms};
use super::writer::WriteTx;
use crate::{
    BindKind, Bound, ManufacturerBinding, ManufacturerCaRecord, ManufacturerCertRecord,
    NewManufacturerCa, Result, StoreError,
};

const CA_COLS: &str = "m.name, m.fingerprint, m.subject, m.group_name, m.jit, m.not_before, \
     m.not_after, m.created_at, \
     (SELECT COUNT(*) FROM devices d WHERE d.manufacturer_ca = m.name), m.der";

fn ca_row(r: &Row) -> rusqlite::Result<ManufacturerCaRecord> {
    let group: Option<String> = r.get(3)?;
    Ok(ManufacturerCaRecord {
        ca: ManufacturerCa {
            name: ManufacturerCaName::new(r.get::<_, String>(0)?).map_err(|e| rows::bad(0, e))?,
            fingerprint_sha256: r.get(1)?,
            subject: r.get(2)?,
            group: group
                .map(bulwark_types::GroupId::new)
                .transpose()
                .map_err(|e| rows::bad(3, e))?,
            jit: rows::parse(4, r.get(4)?, JitMode::parse)?,
            not_before: rows::from_ms(r.get(5)?),
            not_after: rows::from_ms(r.get(6)?),
            created_at: rows::from_ms(r.get(7)?),
            devices: r.get::<_, i64>(8)? as u64,
        },
        der: r.get(9)?,
    })
}

/// A live (not removed) CA by name.
pub(super) fn get_ca(conn: &Connection, name: &str) -> Result<Option<ManufacturerCaRecord>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {CA_COLS} FROM manufacturer_cas m WHERE m.name = ?1 AND m.removed_at IS NULL"
        ))?
        .query_row([name], ca_row)
        .optional()?)
}

pub(super) fn list_cas(conn: &Connection) -> Result<Vec<ManufacturerCaRecord>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {CA_COLS} FROM manufacturer_cas m WHERE m.removed_at IS NULL ORDER BY m.name"
    ))?;
    let r = st.query_map([], ca_row)?;
    Ok(r.collect::<rusqlite::Result<_>>()?)
}

/// `(name, removed)` of the row holding `fingerprint`, or
/// `(fingerprint, removed)` of the row named `name`.
fn row_by(conn: &Connection, sql: &str, key: &str) -> Result<Option<(String, bool)>> {
    Ok(conn
        .prepare_cached(sql)?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

pub(super) fn create_ca(
    tx: &mut WriteTx<'_>,
    ca: NewManufacturerCa,
    actor: &Actor,
) -> Result<ManufacturerCaRecord> {
    if let Some(g) = &ca.group {
        require_group(tx, g.as_str())?;
    }
    let by_name = row_by(
        tx.conn,
        "SELECT fingerprint, removed_at IS NOT NULL FROM manufacturer_cas WHERE name = ?1",
        ca.name.as_str(),
    )?;
    let by_fingerprint = row_by(
        tx.conn,
        "SELECT name, removed_at IS NOT NULL FROM manufacturer_cas WHERE fingerprint = ?1",
        &ca.fingerprint,
    )?;
    let revive = match (&by_name, &by_fingerprint) {
        (Some((_, false)), _) => {
            return Err(StoreError::Conflict(format!(
                "a manufacturer CA named {} is already registered",
                ca.name
            )))
        }
        (_, Some((other, false))) => {
            return Err(StoreError::Conflict(format!(
                "this certificate is already registered as manufacturer CA {other}"
            )))
        }
        (Some((fp, true)), _) if *fp != ca.fingerprint => {
            return Err(StoreError::Conflict(format!(
                "the name {} belonged to another CA certificate, which was removed; devices bound \
                 to it keep the name, so register this certificate under another name",
                ca.name
            )))
        }
        (None, Some((other, true))) => {
            return Err(StoreError::Conflict(format!(
                "this certificate was registered as manufacturer CA {other} and removed; register \
                 it again under that name to restore its devices"
            )))
        }
        (Some(_), _) => true,
        (None, None) => false,
    };
    let group = ca.group.as_ref().map(|g| g.as_str());
    if revive {
        tx.conn
            .prepare_cached(
                "UPDATE manufacturer_cas SET group_name = ?2, jit = ?3, created_at = ?4, \
                 removed_at = NULL WHERE name = ?1",
            )?
            .execute(params![
                ca.name.as_str(),
                group,
                ca.jit.as_str(),
                ms(tx.now)
            ])?;
    } else {
        tx.conn
            .prepare_cached(
                "INSERT INTO manufacturer_cas (name, fingerprint, subject, der, group_name, jit, \
                 not_before, not_after, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                ca.name.as_str(),
                ca.fingerprint,
                ca.subject,
                ca.der,
                group,
                ca.jit.as_str(),
                ms(ca.not_before),
                ms(ca.not_after),
                ms(tx.now),
            ])?;
    }
    tx.audit(
        actor,
        &AuditEvent::ManufacturerCaRegistered {
            name: ca.name.clone(),
            fingerprint: ca.fingerprint.clone(),
            group: ca.group.clone(),
            jit: ca.jit,
        },
    )?;
    get_ca(tx.conn, ca.name.as_str())?.ok_or(StoreError::NotFound {
        what: "manufacturer CA",
    })
}

pub(super) fn delete_ca(
    tx: &mut WriteTx<'_>,
    name: ManufacturerCaName,
    actor: &Actor,
) -> Result<(ManufacturerCaRecord, Vec<DeviceId>)> {
    let ca = get_ca(tx.conn, name.as_str())?.ok_or(StoreError::NotFound {
        what: "manufacturer CA",
    })?;
    let devices: Vec<String> = {
        let mut st = tx
            .conn
            .prepare_cached("SELECT id FROM devices WHERE manufacturer_ca = ?1 ORDER BY id")?;
        let r = st.query_map([name.as_str()], |r| r.get(0))?;
        r.collect::<rusqlite::Result<_>>()?
    };
    let devices = devices
        .into_iter()
        .map(DeviceId::new)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(StoreError::internal)?;
    tx.conn
        .prepare_cached("UPDATE manufacturer_cas SET removed_at = ?2 WHERE name = ?1")?
        .execute(params![name.as_str(), ms(tx.now)])?;
    tx.audit(
        actor,
        &AuditEvent::ManufacturerCaRemoved {
            name,
            fingerprint: ca.ca.fingerprint_sha256.clone(),
            devices: devices.len() as u64,
        },
    )?;
    Ok((ca, devices))
}

const CERT_COLS: &str = "fingerprint, manufacturer_ca, serial, subject, not_before, not_after, \
     bound_at, revoked_at, revocation_reason, device_id";

fn cert_row(r: &Row) -> rusqlite::Result<ManufacturerCertRecord> {
    let reason: Option<String> = r.get(8)?;
    Ok(ManufacturerCertRecord {
        cert: ManufacturerCertificate {
            fingerprint_sha256: r.get(0)?,
            manufacturer_ca: ManufacturerCaName::new(r.get::<_, String>(1)?)
                .map_err(|e| rows::bad(1, e))?,
            serial: r.get(2)?,
            subject: r.get(3)?,
            not_before: rows::from_ms(r.get(4)?),
            not_after: rows::from_ms(r.get(5)?),
            bound_at: rows::from_ms(r.get(6)?),
            revoked_at: rows::opt_time(r.get(7)?),
            revocation_reason: match reason {
                Some(s) => Some(rows::parse(8, s, RevocationReason::parse)?),
                None => None,
            },
        },
        device_id: rows::device_id(r, 9)?,
    })
}

pub(super) fn get_cert(
    conn: &Connection,
    fingerprint: &str,
) -> Result<Option<ManufacturerCertRecord>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {CERT_COLS} FROM manufacturer_certificates WHERE fingerprint = ?1"
        ))?
        .query_row([fingerprint], cert_row)
        .optional()?)
}

/// A device's manufacturer certificates, newest first.
pub(super) fn device_certs(conn: &Connection, id: &str) -> Result<Vec<ManufacturerCertificate>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {CERT_COLS} FROM manufacturer_certificates WHERE device_id = ?1 \
         ORDER BY bound_at DESC, fingerprint"
    ))?;
    let r = st.query_map([id], cert_row)?;
    r.map(|c| c.map(|c| c.cert))
        .collect::<rusqlite::Result<_>>()
        .map_err(Into::into)
}

/// Whether the device holds an unrevoked manufacturer certificate.
pub(super) fn holds_live_cert(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM manufacturer_certificates WHERE device_id = ?1 AND revoked_at IS NULL",
        )?
        .exists([id])?)
}

/// Revokes every live manufacturer certificate of a device (decommissioning).
pub(super) fn revoke_device_certs(
    tx: &mut WriteTx<'_>,
    id: &DeviceId,
    reason: RevocationReason,
    actor: &Actor,
) -> Result<()> {
    let revoked: Vec<String> = {
        let mut st = tx.conn.prepare_cached(
            "UPDATE manufacturer_certificates SET revoked_at = ?2, revocation_reason = ?3 \
             WHERE device_id = ?1 AND revoked_at IS NULL RETURNING fingerprint",
        )?;
        let r = st.query_map(params![id.as_str(), ms(tx.now), reason.as_str()], |r| {
            r.get(0)
        })?;
        r.collect::<rusqlite::Result<_>>()?
    };
    for fingerprint in revoked {
        tx.audit(
            actor,
            &AuditEvent::ManufacturerCertificateRevoked {
                device_id: id.clone(),
                fingerprint,
                reason,
            },
        )?;
    }
    Ok(())
}

fn insert_cert(tx: &WriteTx<'_>, b: &ManufacturerBinding) -> Result<()> {
    tx.conn
        .prepare_cached(
            "INSERT INTO manufacturer_certificates (fingerprint, manufacturer_ca, device_id, \
             serial, subject, not_before, not_after, bound_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?
        .execute(params![
            b.fingerprint,
            b.manufacturer_ca.as_str(),
            b.device_id.as_str(),
            b.serial,
            b.subject,
            ms(b.not_before),
            ms(b.not_after),
            ms(tx.now),
        ])?;
    Ok(())
}

/// Why a manufacturer certificate may not speak for an existing device.
fn not_bound(conn: &Connection, b: &ManufacturerBinding, bound_to: Option<&str>) -> Result<String> {
    let id = &b.device_id;
    Ok(match bound_to {
        Some(other) => format!(
            "device {id} is bound to manufacturer CA {other}, not {}",
            b.manufacturer_ca
        ),
        None => {
            let enrolled = conn
                .prepare_cached(
                    "SELECT 1 FROM certificates WHERE kind = 'device' AND subject = ?1",
                )?
                .exists([id.as_str()])?;
            if enrolled {
                format!(
                    "device {id} was enrolled through Bulwark's CA; a manufacturer certificate cannot take it over"
                )
            } else {
                format!(
                    "device {id} was registered without a manufacturer CA; a manufacturer certificate cannot take it over"
                )
            }
        }
    })
}

pub(super) fn bind(tx: &mut WriteTx<'_>, b: ManufacturerBinding, actor: &Actor) -> Result<Bound> {
    let live = get_ca(tx.conn, b.manufacturer_ca.as_str())?;
    if live
        .as_ref()
        .is_none_or(|ca| ca.ca.fingerprint_sha256 != b.ca_fingerprint)
    {
        return Err(StoreError::NotFound {
            what: "manufacturer CA",
        });
    }
    if let Some(known) = get_cert(tx.conn, &b.fingerprint)? {
        if known.cert.revoked_at.is_some() {
            return Err(StoreError::CertificateRevoked(b.fingerprint.clone()));
        }
        if known.device_id != b.device_id {
            return Err(StoreError::ManufacturerBinding(format!(
                "this certificate is bound to device {}",
                known.device_id
            )));
        }
        let device = rows::get_device(tx.conn, b.device_id.as_str())?
            .ok_or(StoreError::NotFound { what: "device" })?;
        return Ok(Bound {
            device,
            kind: BindKind::Known,
        });
    }
    match rows::get_device(tx.conn, b.device_id.as_str())? {
        Some(d) => {
            if d.manufacturer_ca.as_ref() != Some(&b.manufacturer_ca) {
                let reason =
                    not_bound(tx.conn, &b, d.manufacturer_ca.as_ref().map(|n| n.as_str()))?;
                return Err(StoreError::ManufacturerBinding(reason));
            }
            if d.state == DeviceState::Decommissioned {
                return Err(StoreError::DeviceState {
                    device: d.id.to_string(),
                    state: d.state.to_string(),
                });
            }
            let first = !tx
                .conn
                .prepare_cached("SELECT 1 FROM manufacturer_certificates WHERE device_id = ?1")?
                .exists([d.id.as_str()])?;
            insert_cert(tx, &b)?;
            tx.audit(
                actor,
                &AuditEvent::ManufacturerCertificateBound {
                    device_id: d.id.clone(),
                    manufacturer_ca: b.manufacturer_ca.clone(),
                    fingerprint: b.fingerprint.clone(),
                    serial: b.serial.clone(),
                },
            )?;
            // A device an operator pre-registered for this CA is enrolled
            // by its first certificate, as a token enrolls a pending device.
            let activated = first && d.state == DeviceState::Pending;
            if activated {
                tx.conn
                    .prepare_cached(
                        "UPDATE devices SET state = 'active', enrolled_at = ?2 WHERE id = ?1",
                    )?
                    .execute(params![d.id.as_str(), ms(tx.now)])?;
                tx.audit(
                    actor,
                    &AuditEvent::DeviceStateChanged {
                        device_id: d.id.clone(),
                        from: DeviceState::Pending,
                        to: DeviceState::Active,
                    },
                )?;
            }
            let device = rows::get_device(tx.conn, d.id.as_str())?
                .ok_or(StoreError::NotFound { what: "device" })?;
            Ok(Bound {
                device,
                kind: BindKind::Added { activated },
            })
        }
        None => {
            let Some((group, state)) = b.jit.clone() else {
                return Err(StoreError::NotFound { what: "device" });
            };
            require_group(tx, group.as_str())?;
            let enrolled = (state == DeviceState::Active).then_some(ms(tx.now));
            tx.conn
                .prepare_cached(
                    "INSERT INTO devices (id, group_name, state, created_at, enrolled_at, \
                     manufacturer_ca) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    b.device_id.as_str(),
                    group.as_str(),
                    state.as_str(),
                    ms(tx.now),
                    enrolled,
                    b.manufacturer_ca.as_str(),
                ])?;
            insert_cert(tx, &b)?;
            tx.audit(
                actor,
                &AuditEvent::DeviceJitRegistered {
                    device_id: b.device_id.clone(),
                    group,
                    manufacturer_ca: b.manufacturer_ca.clone(),
                    state,
                    fingerprint: b.fingerprint.clone(),
                },
            )?;
            let device = rows::get_device(tx.conn, b.device_id.as_str())?
                .ok_or(StoreError::NotFound { what: "device" })?;
            Ok(Bound {
                device,
                kind: BindKind::Registered,
            })
        }
    }
}
