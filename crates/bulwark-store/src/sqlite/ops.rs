//! `impl Store for SqliteStore`: each operation is one read or one write job.

use async_trait::async_trait;
use bulwark_audit::{
    Actor, AuditEvent, Checkpoint, EnrollMethod, Entry, VerifyError, VerifyReport,
};
use bulwark_types::{
    Alert, AlertAction, AlertState, CertKind, CertSerial, Certificate, Claim, Device, DeviceDetail,
    DeviceId, DeviceState, EnrollToken, Group, ManufacturerCaName, OperatorToken, OtaRelease,
    PolicyName, PolicySummary, PolicyTarget, RevocationReason, Rollout, RolloutDevice, Service,
    ServiceName, Severity,
};
use rusqlite::{params, OptionalExtension};

use super::rows::{self, ms};
use super::writer::{rfc3339, WriteTx};
use super::{alerts, manufacturer, ota, policies, posture, rollout, summaries};
use super::{audit_entry, read_checkpoints, SqliteStore};
use crate::{
    AlertActionChange, AlertFilter, Bound, CertRecord, DeviceFilter, DevicePosture,
    DeviceStepChange, DeviceUpdate, DueAlertAction, EnrollAuth, Enrollment, ManufacturerBinding,
    ManufacturerCaRecord, ManufacturerCertRecord, MetricSummary, NewAlert, NewAlertAction, NewCert,
    NewClaim, NewDevice, NewEnrollToken, NewGroup, NewManufacturerCa, NewOperatorToken,
    NewPolicyVersion, NewRollout, NewService, PolicyRecord, PolicyWrite, RaiseOutcome,
    Reenrollment, Result, RevokedCert, ServiceRecord, Store, StoreError, StoredPolicy,
    SummariesWritten, TokenHash, Transition,
};

pub(super) fn insert_cert(tx: &WriteTx<'_>, c: &NewCert) -> Result<()> {
    let n = tx
        .conn
        .prepare_cached(
            "INSERT INTO certificates (serial, kind, subject, fingerprint, der, not_before, \
             not_after, issued_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT(serial) DO NOTHING",
        )?
        .execute(params![
            c.serial.to_hex(),
            c.kind.as_str(),
            c.subject,
            c.fingerprint_sha256,
            c.der,
            ms(c.not_before),
            ms(c.not_after),
            ms(tx.now),
        ])?;
    if n == 0 {
        return Err(StoreError::AlreadyExists {
            what: "certificate serial",
        });
    }
    Ok(())
}

pub(super) fn require_group(tx: &WriteTx<'_>, group: &str) -> Result<()> {
    if rows::group_exists(tx.conn, group)? {
        Ok(())
    } else {
        Err(StoreError::NoSuchGroup(group.to_string()))
    }
}

fn load_device(tx: &WriteTx<'_>, id: &DeviceId) -> Result<Device> {
    rows::get_device(tx.conn, id.as_str())?.ok_or(StoreError::NotFound { what: "device" })
}

/// Revokes one certificate inside a transaction and audits it.
pub(super) fn revoke_in(
    tx: &mut WriteTx<'_>,
    serial: &CertSerial,
    reason: RevocationReason,
    actor: &Actor,
) -> Result<Certificate> {
    let rec = rows::get_cert(tx.conn, serial)?.ok_or(StoreError::NotFound {
        what: "certificate",
    })?;
    if rec.info.revoked_at.is_some() {
        return Err(StoreError::AlreadyRevoked(serial.to_hex()));
    }
    tx.conn
        .prepare_cached(
            "UPDATE certificates SET revoked_at = ?2, revocation_reason = ?3 WHERE serial = ?1",
        )?
        .execute(params![serial.to_hex(), ms(tx.now), reason.as_str()])?;
    let device_id = (rec.info.kind == CertKind::Device)
        .then(|| DeviceId::new(rec.info.subject.clone()).ok())
        .flatten();
    tx.audit(
        actor,
        &AuditEvent::CertificateRevoked {
            serial: serial.clone(),
            reason,
            device_id,
        },
    )?;
    let mut info = rec.info;
    info.revoked_at = Some(tx.now);
    info.revocation_reason = Some(reason);
    Ok(info)
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_group(&self, g: NewGroup, actor: Actor) -> Result<Group> {
        self.write(move |tx| {
            let n = tx
                .conn
                .prepare_cached(
                    "INSERT INTO groups (name, description, created_at) VALUES (?1, ?2, ?3) \
                     ON CONFLICT(name) DO NOTHING",
                )?
                .execute(params![g.name.as_str(), g.description, ms(tx.now)])?;
            if n == 0 {
                return Err(StoreError::AlreadyExists { what: "group" });
            }
            tx.audit(
                &actor,
                &AuditEvent::GroupCreated {
                    group: g.name.clone(),
                },
            )?;
            Ok(Group {
                name: g.name,
                description: g.description,
                device_count: 0,
                created_at: tx.now,
            })
        })
        .await
    }

    async fn list_groups(&self) -> Result<Vec<Group>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT g.name, g.description, g.created_at, \
                 (SELECT COUNT(*) FROM devices d WHERE d.group_name = g.name) \
                 FROM groups g ORDER BY g.name",
            )?;
            let rows = st.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (name, description, created, count) = row?;
                out.push(Group {
                    name: bulwark_types::GroupId::new(name).map_err(StoreError::internal)?,
                    description,
                    device_count: count as u64,
                    created_at: rows::from_ms(created),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn create_device(&self, d: NewDevice, actor: Actor) -> Result<Device> {
        self.write(move |tx| {
            require_group(tx, d.group.as_str())?;
            if let Some(ca) = &d.manufacturer_ca {
                if manufacturer::get_ca(tx.conn, ca.as_str())?.is_none() {
                    return Err(StoreError::NotFound {
                        what: "manufacturer CA",
                    });
                }
            }
            let labels = serde_json::to_string(&d.labels).map_err(StoreError::internal)?;
            let n = tx
                .conn
                .prepare_cached(
                    "INSERT INTO devices (id, group_name, state, labels, hardware_model, \
                     created_at, manufacturer_ca) VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6) \
                     ON CONFLICT(id) DO NOTHING",
                )?
                .execute(params![
                    d.id.as_str(),
                    d.group.as_str(),
                    labels,
                    d.hardware_model,
                    ms(tx.now),
                    d.manufacturer_ca.as_ref().map(|c| c.as_str()),
                ])?;
            if n == 0 {
                return Err(StoreError::AlreadyExists { what: "device" });
            }
            tx.audit(
                &actor,
                &AuditEvent::DeviceRegistered {
                    device_id: d.id.clone(),
                    group: d.group.clone(),
                    manufacturer_ca: d.manufacturer_ca.clone(),
                },
            )?;
            load_device(tx, &d.id)
        })
        .await
    }

    async fn update_device(&self, id: DeviceId, u: DeviceUpdate, actor: Actor) -> Result<Device> {
        self.write(move |tx| {
            let dev = load_device(tx, &id)?;
            let fields = [
                ("labels", u.labels.is_some()),
                ("hardware_model", u.hardware_model.is_some()),
                ("firmware_version", u.firmware_version.is_some()),
            ]
            .into_iter()
            .filter(|(_, set)| *set)
            .map(|(name, _)| name.to_string())
            .collect();
            tx.audit(
                &actor,
                &AuditEvent::DeviceUpdated {
                    device_id: id.clone(),
                    fields,
                },
            )?;
            let labels = serde_json::to_string(u.labels.as_ref().unwrap_or(&dev.labels))
                .map_err(StoreError::internal)?;
            tx.conn
                .prepare_cached(
                    "UPDATE devices SET labels = ?2, hardware_model = ?3, firmware_version = ?4 \
                     WHERE id = ?1",
                )?
                .execute(params![
                    id.as_str(),
                    labels,
                    u.hardware_model.or(dev.hardware_model),
                    u.firmware_version.or(dev.firmware_version),
                ])?;
            load_device(tx, &id)
        })
        .await
    }

    async fn record_seen(&self, id: &DeviceId, at: time::OffsetDateTime) -> Result<()> {
        let id = id.clone();
        self.write(move |tx| {
            tx.conn
                .prepare_cached("UPDATE devices SET last_seen_at = ?2 WHERE id = ?1")?
                .execute(params![id.as_str(), rows::ms(at)])?;
            Ok(())
        })
        .await
    }

    async fn get_device(&self, id: &DeviceId) -> Result<Option<DeviceDetail>> {
        let id = id.clone();
        self.read(move |c| {
            let Some(device) = rows::get_device(c, id.as_str())? else {
                return Ok(None);
            };
            let certificates = rows::device_certs(c, id.as_str())?;
            let manufacturer_certificates = manufacturer::device_certs(c, id.as_str())?;
            Ok(Some(DeviceDetail {
                device,
                certificates,
                manufacturer_certificates,
            }))
        })
        .await
    }

    async fn get_device_with_group_policies(
        &self,
        id: &DeviceId,
    ) -> Result<Option<(Device, Vec<StoredPolicy>)>> {
        let id = id.clone();
        self.read(move |c| {
            let Some(device) = rows::get_device(c, id.as_str())? else {
                return Ok(None);
            };
            let attached = policies::attached(c, &PolicyTarget::Group(device.group.clone()))?;
            Ok(Some((device, attached)))
        })
        .await
    }

    async fn list_devices(&self, f: DeviceFilter) -> Result<Vec<Device>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {} FROM devices WHERE (?1 IS NULL OR group_name = ?1) \
                 AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR id > ?3) \
                 ORDER BY id LIMIT ?4",
                rows::DEVICE_COLS
            );
            let mut st = c.prepare_cached(&sql)?;
            let rows = st.query_map(
                params![
                    f.group.as_ref().map(|g| g.as_str()),
                    f.state.map(|s| s.as_str()),
                    f.after.as_ref().map(|a| a.as_str()),
                    f.limit.map(i64::from).unwrap_or(-1),
                ],
                rows::device,
            )?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn transition_device(
        &self,
        id: DeviceId,
        to: DeviceState,
        actor: Actor,
    ) -> Result<Transition> {
        self.write(move |tx| {
            let dev = load_device(tx, &id)?;
            let from = dev.state;
            // A device that holds a manufacturer certificate (registered
            // just in time, pending) has its certificate: an operator may
            // activate it. Any other pending device becomes active only by
            // enrolling.
            let activation = from == DeviceState::Pending && to == DeviceState::Active;
            if activation && manufacturer::holds_live_cert(tx.conn, id.as_str())? {
                from.transition(to)?;
                tx.conn
                    .prepare_cached("UPDATE devices SET enrolled_at = ?2 WHERE id = ?1")?
                    .execute(params![id.as_str(), ms(tx.now)])?;
            } else {
                from.operator_transition(to)?;
            }
            tx.conn
                .prepare_cached("UPDATE devices SET state = ?2 WHERE id = ?1")?
                .execute(params![id.as_str(), to.as_str()])?;
            tx.audit(
                &actor,
                &AuditEvent::DeviceStateChanged {
                    device_id: id.clone(),
                    from,
                    to,
                },
            )?;
            let mut revoked = Vec::new();
            if to == DeviceState::Decommissioned {
                let live: Vec<String> = {
                    let mut st = tx.conn.prepare_cached(
                        "SELECT serial FROM certificates WHERE kind = 'device' AND subject = ?1 \
                         AND revoked_at IS NULL",
                    )?;
                    let r = st.query_map([id.as_str()], |r| r.get(0))?;
                    r.collect::<rusqlite::Result<_>>()?
                };
                for s in live {
                    let serial = CertSerial::parse_hex(&s).map_err(StoreError::internal)?;
                    revoke_in(tx, &serial, RevocationReason::CessationOfOperation, &actor)?;
                    revoked.push(serial);
                }
                manufacturer::revoke_device_certs(
                    tx,
                    &id,
                    RevocationReason::CessationOfOperation,
                    &actor,
                )?;
            }
            Ok(Transition {
                from,
                device: load_device(tx, &id)?,
                revoked,
            })
        })
        .await
    }

    async fn get_certificate(&self, serial: &CertSerial) -> Result<Option<CertRecord>> {
        let serial = serial.clone();
        self.read(move |c| rows::get_cert(c, &serial)).await
    }

    async fn revoke_certificate(
        &self,
        serial: CertSerial,
        reason: RevocationReason,
        actor: Actor,
    ) -> Result<Certificate> {
        self.write(move |tx| revoke_in(tx, &serial, reason, &actor))
            .await
    }

    async fn revoked_certificates(&self) -> Result<Vec<RevokedCert>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {} FROM certificates WHERE revoked_at IS NOT NULL ORDER BY revoked_at",
                rows::CERT_COLS
            ))?;
            let r = st.query_map([], rows::certificate)?;
            let mut out = Vec::new();
            for c in r {
                let c = c?;
                if let Some(revoked_at) = c.revoked_at {
                    out.push(RevokedCert {
                        serial: c.serial,
                        revoked_at,
                        reason: c.revocation_reason.unwrap_or_default(),
                    });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn record_server_certificate(&self, cert: NewCert) -> Result<()> {
        self.write(move |tx| insert_cert(tx, &cert)).await
    }

    async fn next_crl_number(&self) -> Result<u64> {
        self.write(|tx| {
            let n: i64 = tx.conn.query_row(
                "UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'crl_number' \
                 RETURNING CAST(value AS INTEGER)",
                [],
                |r| r.get(0),
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn create_enroll_token(&self, t: NewEnrollToken, actor: Actor) -> Result<EnrollToken> {
        self.write(move |tx| {
            require_group(tx, t.group.as_str())?;
            tx.conn
                .prepare_cached(
                    "INSERT INTO enroll_tokens (id, hash, group_name, device_id, created_at, \
                     expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    t.id,
                    &t.hash[..],
                    t.group.as_str(),
                    t.device_id.as_ref().map(|d| d.as_str()),
                    ms(tx.now),
                    ms(t.expires_at)
                ])?;
            tx.audit(
                &actor,
                &AuditEvent::EnrollmentTokenCreated {
                    token_id: t.id.clone(),
                    group: t.group.clone(),
                    device_id: t.device_id.clone(),
                    expires_at: rfc3339(t.expires_at),
                },
            )?;
            Ok(EnrollToken {
                id: t.id,
                group: t.group,
                device_id: t.device_id,
                created_at: tx.now,
                expires_at: t.expires_at,
                used_at: None,
                used_by: None,
            })
        })
        .await
    }

    async fn list_enroll_tokens(&self) -> Result<Vec<EnrollToken>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {} FROM enroll_tokens ORDER BY created_at DESC LIMIT 10000",
                rows::ENROLL_TOKEN_COLS
            ))?;
            let r = st.query_map([], rows::enroll_token)?;
            Ok(r.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn find_enroll_token(&self, hash: &TokenHash) -> Result<Option<EnrollToken>> {
        let hash = *hash;
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {} FROM enroll_tokens WHERE hash = ?1",
                rows::ENROLL_TOKEN_COLS
            ))?
            .query_row([&hash[..]], rows::enroll_token)
            .optional()?)
        })
        .await
    }

    async fn commit_enrollment(&self, e: Enrollment) -> Result<Device> {
        self.write(move |tx| enroll_in(tx, e)).await
    }

    async fn commit_reenrollment(&self, r: Reenrollment) -> Result<Device> {
        self.write(move |tx| {
            let old = rows::get_cert(tx.conn, &r.old_serial)?.ok_or(StoreError::NotFound {
                what: "certificate",
            })?;
            if old.info.kind != CertKind::Device || old.info.subject != r.device_id.as_str() {
                return Err(StoreError::CertificateMismatch(r.old_serial.to_hex()));
            }
            if old.info.revoked_at.is_some() {
                return Err(StoreError::CertificateRevoked(r.old_serial.to_hex()));
            }
            if old.info.not_after <= tx.now {
                return Err(StoreError::CertificateExpired(r.old_serial.to_hex()));
            }
            let dev = load_device(tx, &r.device_id)?;
            if !matches!(dev.state, DeviceState::Active | DeviceState::Quarantined) {
                return Err(StoreError::DeviceState {
                    device: dev.id.to_string(),
                    state: dev.state.to_string(),
                });
            }
            insert_cert(tx, &r.cert)?;
            tx.audit(
                &Actor::Device {
                    device_id: r.device_id.clone(),
                },
                &AuditEvent::DeviceEnrolled {
                    device_id: r.device_id.clone(),
                    group: dev.group.clone(),
                    serial: r.cert.serial.clone(),
                    method: EnrollMethod::Reenroll,
                },
            )?;
            Ok(dev)
        })
        .await
    }

    async fn create_claim(&self, c: NewClaim, actor: Actor) -> Result<Claim> {
        self.write(move |tx| {
            require_group(tx, c.group.as_str())?;
            insert_cert(tx, &c.cert)?;
            let n = tx
                .conn
                .prepare_cached(
                    "INSERT INTO claims (id, group_name, serial, rate_per_minute, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT(id) DO NOTHING",
                )?
                .execute(params![
                    c.id,
                    c.group.as_str(),
                    c.cert.serial.to_hex(),
                    c.rate_per_minute,
                    ms(tx.now)
                ])?;
            if n == 0 {
                return Err(StoreError::AlreadyExists { what: "claim" });
            }
            tx.audit(
                &actor,
                &AuditEvent::ClaimCreated {
                    claim_id: c.id.clone(),
                    group: c.group.clone(),
                    serial: c.cert.serial.clone(),
                },
            )?;
            Ok(Claim {
                id: c.id,
                group: c.group,
                serial: c.cert.serial,
                rate_per_minute: c.rate_per_minute,
                enrollments: 0,
                created_at: tx.now,
            })
        })
        .await
    }

    async fn get_claim(&self, id: &str) -> Result<Option<Claim>> {
        let id = id.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {} FROM claims WHERE id = ?1",
                rows::CLAIM_COLS
            ))?
            .query_row([id], rows::claim)
            .optional()?)
        })
        .await
    }

    async fn list_claims(&self) -> Result<Vec<Claim>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {} FROM claims ORDER BY created_at DESC",
                rows::CLAIM_COLS
            ))?;
            let r = st.query_map([], rows::claim)?;
            Ok(r.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn create_operator_token(
        &self,
        t: NewOperatorToken,
        actor: Actor,
    ) -> Result<OperatorToken> {
        self.write(move |tx| {
            tx.conn
                .prepare_cached(
                    "INSERT INTO operator_tokens (id, hash, name, role, created_at, expires_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    t.id,
                    &t.hash[..],
                    t.name,
                    t.role.as_str(),
                    ms(tx.now),
                    ms(t.expires_at)
                ])?;
            tx.audit(
                &actor,
                &AuditEvent::OperatorTokenCreated {
                    token_id: t.id.clone(),
                    role: t.role,
                    name: t.name.clone(),
                    expires_at: rfc3339(t.expires_at),
                },
            )?;
            Ok(OperatorToken {
                id: t.id,
                name: t.name,
                role: t.role,
                created_at: tx.now,
                expires_at: t.expires_at,
                revoked_at: None,
            })
        })
        .await
    }

    async fn find_operator_token(&self, hash: &TokenHash) -> Result<Option<OperatorToken>> {
        let hash = *hash;
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {} FROM operator_tokens WHERE hash = ?1",
                rows::OPERATOR_TOKEN_COLS
            ))?
            .query_row([&hash[..]], rows::operator_token)
            .optional()?)
        })
        .await
    }

    async fn list_operator_tokens(&self) -> Result<Vec<OperatorToken>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {} FROM operator_tokens ORDER BY created_at",
                rows::OPERATOR_TOKEN_COLS
            ))?;
            let r = st.query_map([], rows::operator_token)?;
            Ok(r.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn revoke_operator_token(&self, id: String, actor: Actor) -> Result<OperatorToken> {
        self.write(move |tx| {
            let load = |tx: &WriteTx<'_>| -> Result<OperatorToken> {
                tx.conn
                    .prepare_cached(&format!(
                        "SELECT {} FROM operator_tokens WHERE id = ?1",
                        rows::OPERATOR_TOKEN_COLS
                    ))?
                    .query_row([&id], rows::operator_token)
                    .optional()?
                    .ok_or(StoreError::NotFound {
                        what: "operator token",
                    })
            };
            if load(tx)?.revoked_at.is_some() {
                return Err(StoreError::TokenAlreadyRevoked(id.clone()));
            }
            tx.conn
                .prepare_cached("UPDATE operator_tokens SET revoked_at = ?2 WHERE id = ?1")?
                .execute(params![id, ms(tx.now)])?;
            tx.audit(
                &actor,
                &AuditEvent::OperatorTokenRevoked {
                    token_id: id.clone(),
                },
            )?;
            load(tx)
        })
        .await
    }

    async fn put_policy(&self, p: NewPolicyVersion, actor: Actor) -> Result<PolicyWrite> {
        self.write(move |tx| policies::put(tx, p, &actor)).await
    }

    async fn list_policies(&self) -> Result<Vec<PolicySummary>> {
        self.read(policies::list).await
    }

    async fn get_policy(
        &self,
        name: &PolicyName,
        version: Option<u32>,
    ) -> Result<Option<PolicyRecord>> {
        let name = name.clone();
        self.read(move |c| policies::get(c, &name, version)).await
    }

    async fn delete_policy(&self, name: PolicyName, actor: Actor) -> Result<()> {
        self.write(move |tx| policies::delete(tx, name, &actor))
            .await
    }

    async fn attach_policy(
        &self,
        name: PolicyName,
        target: PolicyTarget,
        actor: Actor,
    ) -> Result<bool> {
        self.write(move |tx| policies::attach(tx, name, target, &actor))
            .await
    }

    async fn detach_policy(
        &self,
        name: PolicyName,
        target: PolicyTarget,
        actor: Actor,
    ) -> Result<()> {
        self.write(move |tx| policies::detach(tx, name, target, &actor))
            .await
    }

    async fn attached_policies(&self, target: &PolicyTarget) -> Result<Vec<StoredPolicy>> {
        let target = target.clone();
        self.read(move |c| policies::attached(c, &target)).await
    }

    async fn publish_ota_release(
        &self,
        release: OtaRelease,
        offline_signed: bool,
        actor: Actor,
    ) -> Result<OtaRelease> {
        self.write(move |tx| ota::publish_release(tx, release, offline_signed, &actor))
            .await
    }

    async fn ota_root_published(&self, version: u64, actor: Actor) -> Result<()> {
        self.write(move |tx| ota::root_published(tx, version, &actor))
            .await
    }

    async fn create_rollout(&self, r: NewRollout, actor: Actor) -> Result<Rollout> {
        self.write(move |tx| rollout::create(tx, r, &actor)).await
    }

    async fn get_rollout(&self, id: &str) -> Result<Option<Rollout>> {
        let id = id.to_owned();
        self.read(move |c| rollout::get(c, &id)).await
    }

    async fn list_rollouts(&self) -> Result<Vec<Rollout>> {
        self.read(rollout::list).await
    }

    async fn rollout_devices(&self, id: &str) -> Result<Vec<RolloutDevice>> {
        let id = id.to_owned();
        self.read(move |c| rollout::devices(c, &id)).await
    }

    async fn rollout_device(&self, id: &str, device: &DeviceId) -> Result<Option<RolloutDevice>> {
        let (id, device) = (id.to_owned(), device.clone());
        self.read(move |c| rollout::device(c, &id, &device)).await
    }

    async fn rollout_device_history(
        &self,
        id: &str,
        device: &DeviceId,
    ) -> Result<Vec<(String, Option<String>, time::OffsetDateTime)>> {
        let (id, device) = (id.to_owned(), device.clone());
        self.read(move |c| rollout::device_history(c, &id, &device))
            .await
    }

    async fn set_rollout_status(
        &self,
        id: &str,
        status: &str,
        reason: Option<String>,
        accept_failures: bool,
        actor: Actor,
    ) -> Result<Rollout> {
        let (id, status) = (id.to_owned(), status.to_owned());
        self.write(move |tx| rollout::set_status(tx, &id, &status, reason, accept_failures, &actor))
            .await
    }

    async fn start_rollout_phase(
        &self,
        id: &str,
        phase: u32,
        actor: Actor,
    ) -> Result<Vec<DeviceId>> {
        let id = id.to_owned();
        self.write(move |tx| rollout::start_phase(tx, &id, phase, &actor))
            .await
    }

    async fn set_rollout_soak(&self, id: &str, at: Option<time::OffsetDateTime>) -> Result<()> {
        let id = id.to_owned();
        self.write(move |tx| rollout::set_soak(tx, &id, at)).await
    }

    async fn set_rollout_device_step(
        &self,
        change: DeviceStepChange,
        actor: Actor,
    ) -> Result<bool> {
        self.write(move |tx| rollout::set_device_step(tx, change, &actor))
            .await
    }

    async fn list_ota_releases(&self) -> Result<Vec<OtaRelease>> {
        self.read(ota::list_releases).await
    }

    async fn get_ota_release(&self, name: &str) -> Result<Option<OtaRelease>> {
        let name = name.to_owned();
        self.read(move |c| ota::get_release(c, &name)).await
    }

    async fn create_service(&self, s: NewService, actor: Actor) -> Result<Service> {
        self.write(move |tx| policies::create_service(tx, s, &actor))
            .await
    }

    async fn list_services(&self) -> Result<Vec<Service>> {
        self.read(policies::list_services).await
    }

    async fn get_service(&self, name: &ServiceName) -> Result<Option<ServiceRecord>> {
        let name = name.clone();
        self.read(move |c| policies::get_service(c, &name)).await
    }

    async fn delete_service(&self, name: ServiceName, actor: Actor) -> Result<Vec<CertSerial>> {
        self.write(move |tx| policies::delete_service(tx, name, &actor))
            .await
    }

    async fn record_service_certificate(
        &self,
        name: ServiceName,
        cert: NewCert,
        actor: Actor,
    ) -> Result<()> {
        self.write(move |tx| policies::record_service_certificate(tx, name, cert, &actor))
            .await
    }

    async fn create_manufacturer_ca(
        &self,
        ca: NewManufacturerCa,
        actor: Actor,
    ) -> Result<ManufacturerCaRecord> {
        self.write(move |tx| manufacturer::create_ca(tx, ca, &actor))
            .await
    }

    async fn list_manufacturer_cas(&self) -> Result<Vec<ManufacturerCaRecord>> {
        self.read(manufacturer::list_cas).await
    }

    async fn get_manufacturer_ca(
        &self,
        name: &ManufacturerCaName,
    ) -> Result<Option<ManufacturerCaRecord>> {
        let name = name.clone();
        self.read(move |c| manufacturer::get_ca(c, name.as_str()))
            .await
    }

    async fn delete_manufacturer_ca(
        &self,
        name: ManufacturerCaName,
        actor: Actor,
    ) -> Result<(ManufacturerCaRecord, Vec<DeviceId>)> {
        self.write(move |tx| manufacturer::delete_ca(tx, name, &actor))
            .await
    }

    async fn get_manufacturer_certificate(
        &self,
        fingerprint: &str,
    ) -> Result<Option<ManufacturerCertRecord>> {
        let fingerprint = fingerprint.to_owned();
        self.read(move |c| manufacturer::get_cert(c, &fingerprint))
            .await
    }

    async fn bind_manufacturer_certificate(
        &self,
        binding: ManufacturerBinding,
        actor: Actor,
    ) -> Result<Bound> {
        self.write(move |tx| manufacturer::bind(tx, binding, &actor))
            .await
    }

    async fn append_audit(&self, actor: Actor, event: AuditEvent) -> Result<u64> {
        self.write(move |tx| tx.audit(&actor, &event)).await
    }

    async fn audit_entries(&self, after: u64, limit: u32) -> Result<Vec<Entry>> {
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT seq, ts, actor, event, prev_hash, hash FROM audit_log WHERE seq > ?1 \
                 ORDER BY seq LIMIT ?2",
            )?;
            let r = st.query_map(params![after as i64, limit], audit_entry)?;
            Ok(r.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>> {
        self.read(read_checkpoints).await
    }

    async fn checkpoint_now(&self) -> Result<()> {
        self.request_checkpoint().await
    }

    async fn raise_alert(&self, alert: NewAlert, actor: Actor) -> Result<RaiseOutcome> {
        self.write(move |tx| alerts::raise(tx, alert, &actor)).await
    }

    async fn get_alert(&self, id: i64) -> Result<Option<Alert>> {
        self.read(move |c| alerts::get(c, id)).await
    }

    async fn list_alerts(&self, filter: AlertFilter) -> Result<Vec<Alert>> {
        self.read(move |c| alerts::list(c, &filter)).await
    }

    async fn set_alert_state(
        &self,
        id: i64,
        to: AlertState,
        reason: Option<String>,
        actor: Actor,
    ) -> Result<Alert> {
        self.write(move |tx| alerts::set_state(tx, id, to, reason, &actor))
            .await
    }

    async fn change_alert_action(
        &self,
        change: AlertActionChange,
        actor: Actor,
    ) -> Result<(Alert, AlertAction)> {
        self.write(move |tx| alerts::change_action(tx, change, &actor))
            .await
    }

    async fn add_alert_action(
        &self,
        alert: i64,
        action: NewAlertAction,
        actor: Actor,
    ) -> Result<(Alert, AlertAction)> {
        self.write(move |tx| alerts::add_action(tx, alert, action, &actor))
            .await
    }

    async fn due_alert_actions(&self, now: time::OffsetDateTime) -> Result<Vec<DueAlertAction>> {
        self.read(move |c| alerts::due(c, now)).await
    }

    async fn applied_alert_actions(
        &self,
        kinds: Vec<bulwark_types::ActionKind>,
        limit: u32,
    ) -> Result<Vec<DueAlertAction>> {
        self.read(move |c| alerts::applied(c, &kinds, limit)).await
    }

    async fn alert_bundle(&self, id: i64) -> Result<Option<Vec<u8>>> {
        self.read(move |c| alerts::bundle(c, id)).await
    }

    async fn device_alerts_since(
        &self,
        device: &DeviceId,
        since: time::OffsetDateTime,
        min: Severity,
    ) -> Result<u64> {
        let device = device.clone();
        self.read(move |c| alerts::device_alerts_since(c, &device, since, min))
            .await
    }

    async fn record_metric_summaries(
        &self,
        batch: Vec<MetricSummary>,
        prune_before: time::OffsetDateTime,
    ) -> Result<SummariesWritten> {
        self.write(move |tx| summaries::record(tx, &batch, prune_before))
            .await
    }

    async fn metric_summaries(
        &self,
        entity: &str,
        since: time::OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<MetricSummary>> {
        let entity = entity.to_owned();
        self.read(move |c| summaries::list(c, &entity, since, limit))
            .await
    }

    async fn posture_devices(
        &self,
        after: Option<DeviceId>,
        limit: u32,
    ) -> Result<Vec<DevicePosture>> {
        self.read(move |c| posture::devices(c, after.as_ref().map(DeviceId::as_str), limit))
            .await
    }

    async fn verify_audit(
        &self,
        public_key: [u8; 32],
    ) -> Result<std::result::Result<VerifyReport, VerifyError>> {
        self.read(move |c| posture::verify_audit(c, &public_key))
            .await
    }
}

/// Consumes the credential, activates the device, records the certificate.
fn enroll_in(tx: &mut WriteTx<'_>, e: Enrollment) -> Result<Device> {
    let now = tx.now;
    let mut token_id = None;
    match &e.auth {
        EnrollAuth::Token(hash) => {
            let t = tx
                .conn
                .prepare_cached(&format!(
                    "SELECT {} FROM enroll_tokens WHERE hash = ?1",
                    rows::ENROLL_TOKEN_COLS
                ))?
                .query_row([&hash[..]], rows::enroll_token)
                .optional()?
                .ok_or(StoreError::TokenInvalid)?;
            if t.used_at.is_some() {
                return Err(StoreError::TokenUsed);
            }
            if t.expires_at <= now {
                return Err(StoreError::TokenExpired);
            }
            if t.group != e.group || t.device_id.as_ref().is_some_and(|d| *d != e.device_id) {
                return Err(StoreError::TokenInvalid);
            }
            tx.conn
                .prepare_cached(
                    "UPDATE enroll_tokens SET used_at = ?2, used_by = ?3 WHERE id = ?1",
                )?
                .execute(params![t.id, ms(now), e.device_id.as_str()])?;
            token_id = Some(t.id);
        }
        EnrollAuth::Claim(id) => {
            let n = tx
                .conn
                .prepare_cached("UPDATE claims SET enrollments = enrollments + 1 WHERE id = ?1")?
                .execute([id])?;
            if n == 0 {
                return Err(StoreError::NotFound { what: "claim" });
            }
        }
    }
    match rows::get_device(tx.conn, e.device_id.as_str())? {
        Some(Device {
            manufacturer_ca: Some(ca),
            ..
        }) => {
            return Err(StoreError::ManufacturerBinding(format!(
                "device {} is bound to manufacturer CA {ca}; it authenticates with that CA's \
                 certificates and cannot enroll",
                e.device_id
            )))
        }
        Some(d) if d.group != e.group => {
            return Err(StoreError::GroupMismatch {
                device: d.id.to_string(),
                expected: e.group.to_string(),
                actual: d.group.to_string(),
            })
        }
        Some(d) if d.state != DeviceState::Pending => {
            return Err(StoreError::AlreadyEnrolled(d.id.to_string()))
        }
        Some(_) => {
            tx.conn
                .prepare_cached(
                    "UPDATE devices SET state = 'active', enrolled_at = ?2 WHERE id = ?1",
                )?
                .execute(params![e.device_id.as_str(), ms(now)])?;
        }
        None => {
            require_group(tx, e.group.as_str())?;
            tx.conn
                .prepare_cached(
                    "INSERT INTO devices (id, group_name, state, created_at, enrolled_at) \
                     VALUES (?1, ?2, 'active', ?3, ?3)",
                )?
                .execute(params![e.device_id.as_str(), e.group.as_str(), ms(now)])?;
        }
    }
    insert_cert(tx, &e.cert)?;
    if let Some(token_id) = token_id {
        tx.audit(
            &e.actor,
            &AuditEvent::EnrollmentTokenUsed {
                token_id,
                device_id: e.device_id.clone(),
            },
        )?;
    }
    let method = match e.auth {
        EnrollAuth::Token(_) => EnrollMethod::EnrollmentToken,
        EnrollAuth::Claim(_) => EnrollMethod::ClaimCertificate,
    };
    tx.audit(
        &e.actor,
        &AuditEvent::DeviceEnrolled {
            device_id: e.device_id.clone(),
            group: e.group.clone(),
            serial: e.cert.serial.clone(),
            method,
        },
    )?;
    load_device(tx, &e.device_id)
}
