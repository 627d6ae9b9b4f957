//! Stored policies, their attachments, and service principals: the bodies
//! of the `Store` operations (`ops.rs` runs each as one read or write job).
//!
//! Versions are immutable rows; the current version is the newest. A
//! deleted policy keeps its versions (only `deleted_at` is set), so a name
//! that is stored again continues its numbering.

use std::collections::BTreeMap;

use bulwark_audit::{Actor, AuditEvent};
use bulwark_types::{
    CertSerial, PolicyName, PolicySummary, PolicyTarget, PolicyVersion, RevocationReason, Service,
    ServiceName,
};
use rusqlite::{params, Connection, OptionalExtension};

use super::ops::{insert_cert, require_group, revoke_in};
use super::rows::{self, ms};
use super::writer::{rfc3339, WriteTx};
use crate::{
    NewCert, NewPolicyVersion, NewService, PolicyRecord, PolicyWrite, Result, ServiceRecord,
    StoreError, StoredPolicy,
};

/// `Some(deleted)` if a row for the name exists.
fn policy_row(conn: &Connection, name: &PolicyName) -> Result<Option<bool>> {
    Ok(conn
        .prepare_cached("SELECT deleted_at IS NOT NULL FROM policies WHERE name = ?1")?
        .query_row([name.as_str()], |r| r.get(0))
        .optional()?)
}

fn require_live_policy(conn: &Connection, name: &PolicyName) -> Result<()> {
    match policy_row(conn, name)? {
        Some(false) => Ok(()),
        _ => Err(StoreError::NotFound { what: "policy" }),
    }
}

fn require_service(conn: &Connection, name: &ServiceName) -> Result<()> {
    let exists = conn
        .prepare_cached("SELECT 1 FROM services WHERE name = ?1")?
        .exists([name.as_str()])?;
    if exists {
        Ok(())
    } else {
        Err(StoreError::NotFound { what: "service" })
    }
}

/// The newest version's number and hash.
fn current_version(conn: &Connection, name: &PolicyName) -> Result<Option<(u32, String)>> {
    Ok(conn
        .prepare_cached(
            "SELECT version, sha256 FROM policy_versions WHERE policy = ?1 \
             ORDER BY version DESC LIMIT 1",
        )?
        .query_row([name.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?)
}

pub(super) fn put(tx: &mut WriteTx<'_>, p: NewPolicyVersion, actor: &Actor) -> Result<PolicyWrite> {
    let existing = policy_row(tx.conn, &p.name)?;
    let current = current_version(tx.conn, &p.name)?;
    match existing {
        None => {
            tx.conn
                .prepare_cached("INSERT INTO policies (name, created_at) VALUES (?1, ?2)")?
                .execute(params![p.name.as_str(), ms(tx.now)])?;
        }
        Some(true) => {
            tx.conn
                .prepare_cached(
                    "UPDATE policies SET deleted_at = NULL, created_at = ?2 WHERE name = ?1",
                )?
                .execute(params![p.name.as_str(), ms(tx.now)])?;
        }
        Some(false) => {
            if let Some((version, sha)) = &current {
                if *sha == p.sha256 {
                    return Ok(PolicyWrite {
                        version: *version,
                        created: false,
                    });
                }
            }
        }
    }
    let version = current.map_or(1, |(v, _)| v + 1);
    tx.conn
        .prepare_cached(
            "INSERT INTO policy_versions (policy, version, document, sha256, created_at, \
             created_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            p.name.as_str(),
            version,
            p.document,
            p.sha256,
            ms(tx.now),
            actor.render()
        ])?;
    tx.audit(
        actor,
        &AuditEvent::PolicyVersionCreated {
            policy: p.name,
            version,
            sha256: p.sha256,
        },
    )?;
    Ok(PolicyWrite {
        version,
        created: true,
    })
}

/// Every attachment of every policy, by policy name, groups then services.
fn all_attachments(conn: &Connection) -> Result<BTreeMap<String, Vec<PolicyTarget>>> {
    let mut out: BTreeMap<String, Vec<PolicyTarget>> = BTreeMap::new();
    let mut st = conn.prepare_cached(
        "SELECT policy, 'group', group_name FROM group_policies \
         UNION ALL SELECT policy, 'service', service FROM service_policies \
         ORDER BY 1, 2, 3",
    )?;
    let rows = st.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
        ))
    })?;
    for row in rows {
        let (policy, kind, name) = row?;
        out.entry(policy).or_default().push(target(&kind, name)?);
    }
    Ok(out)
}

fn target(kind: &str, name: String) -> Result<PolicyTarget> {
    Ok(match kind {
        "group" => PolicyTarget::Group(name.parse().map_err(StoreError::internal)?),
        _ => PolicyTarget::Service(name.parse().map_err(StoreError::internal)?),
    })
}

fn attachments_of(conn: &Connection, name: &PolicyName) -> Result<Vec<PolicyTarget>> {
    let mut st = conn.prepare_cached(
        "SELECT 'group', group_name FROM group_policies WHERE policy = ?1 \
         UNION ALL SELECT 'service', service FROM service_policies WHERE policy = ?1 \
         ORDER BY 1, 2",
    )?;
    let rows = st.query_map([name.as_str()], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (kind, n) = row?;
        out.push(target(&kind, n)?);
    }
    Ok(out)
}

const SUMMARY_SQL: &str = "SELECT p.name, p.created_at, v.version, v.created_at \
     FROM policies p JOIN policy_versions v ON v.policy = p.name \
     AND v.version = (SELECT MAX(version) FROM policy_versions WHERE policy = p.name) \
     WHERE p.deleted_at IS NULL";

fn summary_row(r: &rusqlite::Row) -> rusqlite::Result<(String, i64, u32, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn summary(
    (name, created, version, updated): (String, i64, u32, i64),
    attachments: Vec<PolicyTarget>,
) -> Result<PolicySummary> {
    Ok(PolicySummary {
        name: PolicyName::new(name).map_err(StoreError::internal)?,
        builtin: false,
        version: Some(version),
        created_at: Some(rows::from_ms(created)),
        updated_at: Some(rows::from_ms(updated)),
        attachments,
    })
}

pub(super) fn list(conn: &Connection) -> Result<Vec<PolicySummary>> {
    let mut attachments = all_attachments(conn)?;
    let mut st = conn.prepare_cached(&format!("{SUMMARY_SQL} ORDER BY p.name"))?;
    let rows = st.query_map([], summary_row)?;
    let mut out = Vec::new();
    for row in rows {
        let row = row?;
        let attached = attachments.remove(&row.0).unwrap_or_default();
        out.push(summary(row, attached)?);
    }
    Ok(out)
}

pub(super) fn get(
    conn: &Connection,
    name: &PolicyName,
    version: Option<u32>,
) -> Result<Option<PolicyRecord>> {
    let row = conn
        .prepare_cached(&format!("{SUMMARY_SQL} AND p.name = ?1"))?
        .query_row([name.as_str()], summary_row)
        .optional()?;
    let Some(row) = row else {
        return Ok(None);
    };
    let current = row.2;
    let summary = summary(row, attachments_of(conn, name)?)?;
    let mut st = conn.prepare_cached(
        "SELECT version, created_at, created_by, sha256 FROM policy_versions \
         WHERE policy = ?1 ORDER BY version",
    )?;
    let versions = st
        .query_map([name.as_str()], |r| {
            Ok(PolicyVersion {
                version: r.get(0)?,
                created_at: rows::from_ms(r.get(1)?),
                created_by: r.get(2)?,
                sha256: r.get(3)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let wanted = version.unwrap_or(current);
    let selected = conn
        .prepare_cached(
            "SELECT document, created_at FROM policy_versions WHERE policy = ?1 AND version = ?2",
        )?
        .query_row(params![name.as_str(), wanted], |r| {
            Ok(StoredPolicy {
                name: name.clone(),
                version: wanted,
                document: r.get(0)?,
                created_at: rows::from_ms(r.get(1)?),
            })
        })
        .optional()?
        .ok_or(StoreError::NotFound {
            what: "policy version",
        })?;
    Ok(Some(PolicyRecord {
        summary,
        selected,
        versions,
    }))
}

pub(super) fn delete(tx: &mut WriteTx<'_>, name: PolicyName, actor: &Actor) -> Result<()> {
    require_live_policy(tx.conn, &name)?;
    let attached = attachments_of(tx.conn, &name)?;
    if !attached.is_empty() {
        let list: Vec<String> = attached.iter().map(ToString::to_string).collect();
        return Err(StoreError::PolicyInUse {
            policy: name.to_string(),
            attachments: list.join(", "),
        });
    }
    tx.conn
        .prepare_cached("UPDATE policies SET deleted_at = ?2 WHERE name = ?1")?
        .execute(params![name.as_str(), ms(tx.now)])?;
    tx.audit(actor, &AuditEvent::PolicyDeleted { policy: name })?;
    Ok(())
}

pub(super) fn attach(
    tx: &mut WriteTx<'_>,
    name: PolicyName,
    target: PolicyTarget,
    actor: &Actor,
) -> Result<bool> {
    require_live_policy(tx.conn, &name)?;
    let sql = match &target {
        PolicyTarget::Group(g) => {
            require_group(tx, g.as_str())?;
            "INSERT INTO group_policies (group_name, policy, attached_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT DO NOTHING"
        }
        PolicyTarget::Service(s) => {
            require_service(tx.conn, s)?;
            "INSERT INTO service_policies (service, policy, attached_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT DO NOTHING"
        }
    };
    let n =
        tx.conn
            .prepare_cached(sql)?
            .execute(params![target.name(), name.as_str(), ms(tx.now)])?;
    if n == 0 {
        return Ok(false);
    }
    tx.audit(
        actor,
        &AuditEvent::PolicyAttached {
            policy: name,
            target,
        },
    )?;
    Ok(true)
}

pub(super) fn detach(
    tx: &mut WriteTx<'_>,
    name: PolicyName,
    target: PolicyTarget,
    actor: &Actor,
) -> Result<()> {
    let sql = match &target {
        PolicyTarget::Group(_) => {
            "DELETE FROM group_policies WHERE group_name = ?1 AND policy = ?2"
        }
        PolicyTarget::Service(_) => {
            "DELETE FROM service_policies WHERE service = ?1 AND policy = ?2"
        }
    };
    let n = tx
        .conn
        .prepare_cached(sql)?
        .execute(params![target.name(), name.as_str()])?;
    if n == 0 {
        return Err(StoreError::NotFound {
            what: "policy attachment",
        });
    }
    tx.audit(
        actor,
        &AuditEvent::PolicyDetached {
            policy: name,
            target,
        },
    )?;
    Ok(())
}

pub(super) fn attached(conn: &Connection, target: &PolicyTarget) -> Result<Vec<StoredPolicy>> {
    let (table, column) = match target {
        PolicyTarget::Group(_) => ("group_policies", "group_name"),
        PolicyTarget::Service(_) => ("service_policies", "service"),
    };
    let sql = format!(
        "SELECT v.policy, v.version, v.document, v.created_at FROM {table} a \
         JOIN policies p ON p.name = a.policy AND p.deleted_at IS NULL \
         JOIN policy_versions v ON v.policy = a.policy \
         AND v.version = (SELECT MAX(version) FROM policy_versions WHERE policy = a.policy) \
         WHERE a.{column} = ?1 ORDER BY a.policy"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map([target.name()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, u32>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (name, version, document, created) = row?;
        out.push(StoredPolicy {
            name: PolicyName::new(name).map_err(StoreError::internal)?,
            version,
            document,
            created_at: rows::from_ms(created),
        });
    }
    Ok(out)
}

// --- services -----------------------------------------------------------

pub(super) fn create_service(
    tx: &mut WriteTx<'_>,
    s: NewService,
    actor: &Actor,
) -> Result<Service> {
    let n = tx
        .conn
        .prepare_cached(
            "INSERT INTO services (name, password_hash, created_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT(name) DO NOTHING",
        )?
        .execute(params![s.name.as_str(), s.password_hash, ms(tx.now)])?;
    if n == 0 {
        return Err(StoreError::AlreadyExists { what: "service" });
    }
    let password = s.password_hash.is_some();
    tx.audit(
        actor,
        &AuditEvent::ServiceCreated {
            service: s.name.clone(),
            password,
        },
    )?;
    Ok(Service {
        name: s.name,
        password,
        created_at: tx.now,
        policies: Vec::new(),
    })
}

fn service_policies(conn: &Connection, name: &str) -> Result<Vec<PolicyName>> {
    let mut st = conn
        .prepare_cached("SELECT policy FROM service_policies WHERE service = ?1 ORDER BY policy")?;
    let rows = st.query_map([name], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for p in rows {
        out.push(PolicyName::new(p?).map_err(StoreError::internal)?);
    }
    Ok(out)
}

fn service_record(
    conn: &Connection,
    (name, hash, created): (String, Option<String>, i64),
) -> Result<ServiceRecord> {
    let policies = service_policies(conn, &name)?;
    Ok(ServiceRecord {
        service: Service {
            name: ServiceName::new(name).map_err(StoreError::internal)?,
            password: hash.is_some(),
            created_at: rows::from_ms(created),
            policies,
        },
        password_hash: hash,
    })
}

type ServiceRow = (String, Option<String>, i64);

fn service_row(r: &rusqlite::Row) -> rusqlite::Result<ServiceRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

pub(super) fn list_services(conn: &Connection) -> Result<Vec<Service>> {
    let raw: Vec<ServiceRow> = {
        let mut st = conn
            .prepare_cached("SELECT name, password_hash, created_at FROM services ORDER BY name")?;
        let r = st.query_map([], service_row)?;
        r.collect::<rusqlite::Result<_>>()?
    };
    raw.into_iter()
        .map(|row| service_record(conn, row).map(|r| r.service))
        .collect()
}

pub(super) fn get_service(conn: &Connection, name: &ServiceName) -> Result<Option<ServiceRecord>> {
    let row = conn
        .prepare_cached("SELECT name, password_hash, created_at FROM services WHERE name = ?1")?
        .query_row([name.as_str()], service_row)
        .optional()?;
    row.map(|row| service_record(conn, row)).transpose()
}

pub(super) fn delete_service(
    tx: &mut WriteTx<'_>,
    name: ServiceName,
    actor: &Actor,
) -> Result<Vec<CertSerial>> {
    require_service(tx.conn, &name)?;
    let live: Vec<String> = {
        let mut st = tx.conn.prepare_cached(
            "SELECT serial FROM certificates WHERE kind = 'service' AND subject = ?1 \
             AND revoked_at IS NULL ORDER BY serial",
        )?;
        let r = st.query_map([name.as_str()], |r| r.get(0))?;
        r.collect::<rusqlite::Result<_>>()?
    };
    let mut revoked = Vec::with_capacity(live.len());
    for s in live {
        let serial = CertSerial::parse_hex(&s).map_err(StoreError::internal)?;
        revoke_in(tx, &serial, RevocationReason::CessationOfOperation, actor)?;
        revoked.push(serial);
    }
    for policy in service_policies(tx.conn, name.as_str())? {
        detach(tx, policy, PolicyTarget::Service(name.clone()), actor)?;
    }
    tx.conn
        .prepare_cached("DELETE FROM services WHERE name = ?1")?
        .execute([name.as_str()])?;
    tx.audit(actor, &AuditEvent::ServiceDeleted { service: name })?;
    Ok(revoked)
}

pub(super) fn record_service_certificate(
    tx: &mut WriteTx<'_>,
    name: ServiceName,
    cert: NewCert,
    actor: &Actor,
) -> Result<()> {
    require_service(tx.conn, &name)?;
    insert_cert(tx, &cert)?;
    tx.audit(
        actor,
        &AuditEvent::ServiceCertificateIssued {
            service: name,
            serial: cert.serial.clone(),
            not_after: rfc3339(cert.not_after),
        },
    )?;
    Ok(())
}
