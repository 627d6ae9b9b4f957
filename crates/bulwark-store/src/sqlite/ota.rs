//! OTA releases: the bodies of the `Store` operations (`ops.rs` runs each
//! as one read or write job).
//!
//! The TUF repository itself (metadata and artifacts) is files, owned by
//! `bulwark-ota`; the store keeps the release records operators list and
//! rollouts point at, each committed with its audit entry.

use bulwark_audit::{Actor, AuditEvent};
use bulwark_types::OtaRelease;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::rows::{self, ms};
use super::writer::WriteTx;
use crate::{Result, StoreError};

const RELEASE_COLS: &str =
    "name, version, hardware, floor, sha256, length, targets_version, published_at";

fn release_row(r: &Row) -> rusqlite::Result<OtaRelease> {
    let hardware: String = r.get(2)?;
    Ok(OtaRelease {
        name: r.get(0)?,
        version: r.get(1)?,
        hardware: serde_json::from_str(&hardware).map_err(|e| rows::bad(2, e))?,
        floor: r.get(3)?,
        sha256: r.get(4)?,
        length: r.get::<_, i64>(5)? as u64,
        targets_version: r.get::<_, i64>(6)? as u64,
        published_at: rows::from_ms(r.get(7)?),
    })
}

pub(super) fn publish_release(
    tx: &mut WriteTx<'_>,
    release: OtaRelease,
    offline_signed: bool,
    actor: &Actor,
) -> Result<OtaRelease> {
    let hardware = serde_json::to_string(&release.hardware).map_err(StoreError::internal)?;
    let n = tx
        .conn
        .prepare_cached(&format!(
            "INSERT INTO ota_releases ({RELEASE_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT(name) DO NOTHING"
        ))?
        .execute(params![
            release.name,
            release.version,
            hardware,
            release.floor,
            release.sha256,
            release.length as i64,
            release.targets_version as i64,
            ms(tx.now),
        ])?;
    if n == 0 {
        return Err(StoreError::AlreadyExists { what: "release" });
    }
    tx.audit(
        actor,
        &AuditEvent::OtaReleasePublished {
            name: release.name.clone(),
            version: release.version.clone(),
            hardware: release.hardware.clone(),
            floor: release.floor.clone(),
            sha256: release.sha256.clone(),
            length: release.length,
            targets_version: release.targets_version,
            offline_signed,
        },
    )?;
    Ok(OtaRelease {
        // As stored (milliseconds), so a read gives back the same value.
        published_at: rows::from_ms(ms(tx.now)),
        ..release
    })
}

/// Audits a new root of the repository (created or rotated).
pub(super) fn root_published(tx: &mut WriteTx<'_>, version: u64, actor: &Actor) -> Result<()> {
    tx.audit(actor, &AuditEvent::OtaRootPublished { version })?;
    Ok(())
}

pub(super) fn list_releases(conn: &Connection) -> Result<Vec<OtaRelease>> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {RELEASE_COLS} FROM ota_releases ORDER BY published_at, name"
    ))?;
    let rows = st.query_map([], release_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn get_release(conn: &Connection, name: &str) -> Result<Option<OtaRelease>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {RELEASE_COLS} FROM ota_releases WHERE name = ?1"
        ))?
        .query_row([name], release_row)
        .optional()?)
}
