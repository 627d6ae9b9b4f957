//! Row <-> record conversions.

use bulwark_types::{
    CertKind, CertSerial, Certificate, Claim, Device, DeviceId, DeviceState, EnrollToken, GroupId,
    ManufacturerCaName, OperatorToken, RevocationReason, Role,
};
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row};
use time::OffsetDateTime;

use crate::{CertRecord, Result};

pub(crate) fn ms(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(crate) fn from_ms(v: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(v as i128 * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

pub(crate) fn opt_time(v: Option<i64>) -> Option<OffsetDateTime> {
    v.map(from_ms)
}

pub(crate) fn bad(
    idx: usize,
    e: impl std::error::Error + Send + Sync + 'static,
) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e))
}

#[derive(Debug, thiserror::Error)]
#[error("unknown value {0:?} in the database")]
struct Unknown(String);

pub(crate) fn parse<T>(
    idx: usize,
    s: String,
    f: impl FnOnce(&str) -> Option<T>,
) -> rusqlite::Result<T> {
    f(&s).ok_or_else(|| bad(idx, Unknown(s)))
}

pub(crate) fn device_id(row: &Row, idx: usize) -> rusqlite::Result<DeviceId> {
    DeviceId::new(row.get::<_, String>(idx)?).map_err(|e| bad(idx, e))
}

pub(crate) fn group_id(row: &Row, idx: usize) -> rusqlite::Result<GroupId> {
    GroupId::new(row.get::<_, String>(idx)?).map_err(|e| bad(idx, e))
}

fn serial(row: &Row, idx: usize) -> rusqlite::Result<CertSerial> {
    CertSerial::parse_hex(&row.get::<_, String>(idx)?).map_err(|e| bad(idx, e))
}

pub(crate) const DEVICE_COLS: &str = "id, group_name, state, labels, hardware_model, \
     firmware_version, created_at, enrolled_at, last_seen_at, manufacturer_ca";

pub(crate) fn device(row: &Row) -> rusqlite::Result<Device> {
    let labels: String = row.get(3)?;
    Ok(Device {
        id: device_id(row, 0)?,
        group: group_id(row, 1)?,
        state: parse(2, row.get(2)?, DeviceState::parse)?,
        labels: serde_json::from_str(&labels).map_err(|e| bad(3, e))?,
        hardware_model: row.get(4)?,
        firmware_version: row.get(5)?,
        created_at: from_ms(row.get(6)?),
        enrolled_at: opt_time(row.get(7)?),
        last_seen_at: opt_time(row.get(8)?),
        manufacturer_ca: row
            .get::<_, Option<String>>(9)?
            .map(ManufacturerCaName::new)
            .transpose()
            .map_err(|e| bad(9, e))?,
    })
}

pub(crate) const CERT_COLS: &str = "serial, kind, subject, fingerprint, not_before, not_after, \
     revoked_at, revocation_reason, der";

pub(crate) fn certificate(row: &Row) -> rusqlite::Result<Certificate> {
    let reason: Option<String> = row.get(7)?;
    Ok(Certificate {
        serial: serial(row, 0)?,
        kind: parse(1, row.get(1)?, CertKind::parse)?,
        subject: row.get(2)?,
        fingerprint_sha256: row.get(3)?,
        not_before: from_ms(row.get(4)?),
        not_after: from_ms(row.get(5)?),
        revoked_at: opt_time(row.get(6)?),
        revocation_reason: match reason {
            Some(r) => Some(parse(7, r, RevocationReason::parse)?),
            None => None,
        },
    })
}

pub(crate) fn cert_record(row: &Row) -> rusqlite::Result<CertRecord> {
    Ok(CertRecord {
        info: certificate(row)?,
        der: row.get(8)?,
    })
}

pub(crate) fn get_device(conn: &Connection, id: &str) -> Result<Option<Device>> {
    let sql = format!("SELECT {DEVICE_COLS} FROM devices WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([id], device)
        .optional()?)
}

pub(crate) fn get_cert(conn: &Connection, serial: &CertSerial) -> Result<Option<CertRecord>> {
    let sql = format!("SELECT {CERT_COLS} FROM certificates WHERE serial = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row([serial.to_hex()], cert_record)
        .optional()?)
}

pub(crate) fn device_certs(conn: &Connection, id: &str) -> Result<Vec<Certificate>> {
    let sql = format!(
        "SELECT {CERT_COLS} FROM certificates WHERE kind = 'device' AND subject = ?1 \
         ORDER BY issued_at DESC, serial"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map([id], certificate)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(crate) const ENROLL_TOKEN_COLS: &str =
    "id, group_name, device_id, created_at, expires_at, used_at, used_by";

pub(crate) fn enroll_token(row: &Row) -> rusqlite::Result<EnrollToken> {
    let dev: Option<String> = row.get(2)?;
    let used_by: Option<String> = row.get(6)?;
    Ok(EnrollToken {
        id: row.get(0)?,
        group: group_id(row, 1)?,
        device_id: dev.map(DeviceId::new).transpose().map_err(|e| bad(2, e))?,
        created_at: from_ms(row.get(3)?),
        expires_at: from_ms(row.get(4)?),
        used_at: opt_time(row.get(5)?),
        used_by: used_by
            .map(DeviceId::new)
            .transpose()
            .map_err(|e| bad(6, e))?,
    })
}

pub(crate) const OPERATOR_TOKEN_COLS: &str = "id, name, role, created_at, expires_at, revoked_at";

pub(crate) fn operator_token(row: &Row) -> rusqlite::Result<OperatorToken> {
    Ok(OperatorToken {
        id: row.get(0)?,
        name: row.get(1)?,
        role: parse(2, row.get(2)?, Role::parse)?,
        created_at: from_ms(row.get(3)?),
        expires_at: from_ms(row.get(4)?),
        revoked_at: opt_time(row.get(5)?),
    })
}

pub(crate) const CLAIM_COLS: &str =
    "id, group_name, serial, rate_per_minute, enrollments, created_at";

pub(crate) fn claim(row: &Row) -> rusqlite::Result<Claim> {
    Ok(Claim {
        id: row.get(0)?,
        group: group_id(row, 1)?,
        serial: serial(row, 2)?,
        rate_per_minute: row.get(3)?,
        enrollments: row.get(4)?,
        created_at: from_ms(row.get(5)?),
    })
}

pub(crate) fn group_exists(conn: &Connection, name: &str) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM groups WHERE name = ?1")?
        .exists([name])?)
}
