//! Schema and migrations, applied in order and tracked by `PRAGMA user_version`.
//!
//! Timestamps are INTEGER unix milliseconds (UTC) so they sort and compare
//! correctly; serials are upper-case hex TEXT.

use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE groups (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL
);
CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    group_name TEXT NOT NULL REFERENCES groups(name),
    state TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    hardware_model TEXT,
    firmware_version TEXT,
    created_at INTEGER NOT NULL,
    enrolled_at INTEGER,
    last_seen_at INTEGER
);
CREATE INDEX devices_group ON devices(group_name);
CREATE TABLE certificates (
    serial TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    der BLOB NOT NULL,
    not_before INTEGER NOT NULL,
    not_after INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,
    revoked_at INTEGER,
    revocation_reason TEXT
);
CREATE INDEX certificates_subject ON certificates(kind, subject);
CREATE INDEX certificates_revoked ON certificates(revoked_at) WHERE revoked_at IS NOT NULL;
CREATE TABLE enroll_tokens (
    id TEXT PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    group_name TEXT NOT NULL REFERENCES groups(name),
    device_id TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    used_by TEXT
);
CREATE TABLE claims (
    id TEXT PRIMARY KEY,
    group_name TEXT NOT NULL REFERENCES groups(name),
    serial TEXT NOT NULL REFERENCES certificates(serial),
    rate_per_minute INTEGER NOT NULL,
    enrollments INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL
);
CREATE TABLE operator_tokens (
    id TEXT PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    actor TEXT NOT NULL,
    event TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE TABLE audit_checkpoints (
    seq INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    ts TEXT NOT NULL,
    signature BLOB NOT NULL
);
INSERT INTO meta (key, value) VALUES ('crl_number', '0');
"#,
    r#"
-- Stored MQTT policies: one row per name, immutable versions beside it.
-- A deleted policy keeps its versions (deleted_at set) so a re-created one
-- continues the numbering and no version number ever means two documents.
CREATE TABLE policies (
    name TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    deleted_at INTEGER
);
CREATE TABLE policy_versions (
    policy TEXT NOT NULL REFERENCES policies(name),
    version INTEGER NOT NULL,
    document TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    PRIMARY KEY (policy, version)
) WITHOUT ROWID;
CREATE TABLE services (
    name TEXT PRIMARY KEY,
    password_hash TEXT,
    created_at INTEGER NOT NULL
);
CREATE TABLE group_policies (
    group_name TEXT NOT NULL REFERENCES groups(name),
    policy TEXT NOT NULL REFERENCES policies(name),
    attached_at INTEGER NOT NULL,
    PRIMARY KEY (group_name, policy)
) WITHOUT ROWID;
CREATE INDEX group_policies_policy ON group_policies(policy);
CREATE TABLE service_policies (
    service TEXT NOT NULL REFERENCES services(name),
    policy TEXT NOT NULL REFERENCES policies(name),
    attached_at INTEGER NOT NULL,
    PRIMARY KEY (service, policy)
) WITHOUT ROWID;
CREATE INDEX service_policies_policy ON service_policies(policy);
"#,
    r#"
-- Manufacturer CAs ("bring your own CA"). Devices are bound to a CA by
-- name, so a removed CA keeps its row (removed_at set): its name never
-- stands for another certificate, and registering the same certificate
-- again under it restores the bindings.
CREATE TABLE manufacturer_cas (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    subject TEXT NOT NULL,
    der BLOB NOT NULL,
    group_name TEXT REFERENCES groups(name),
    jit TEXT NOT NULL,
    not_before INTEGER NOT NULL,
    not_after INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    removed_at INTEGER
);
ALTER TABLE devices ADD COLUMN manufacturer_ca TEXT REFERENCES manufacturer_cas(name);
CREATE INDEX devices_manufacturer_ca ON devices(manufacturer_ca)
    WHERE manufacturer_ca IS NOT NULL;
-- Certificates manufacturer CAs issued, bound to a device at its first
-- connection. Keyed by SHA-256 fingerprint: a foreign serial may collide
-- with one of ours or another manufacturer's.
CREATE TABLE manufacturer_certificates (
    fingerprint TEXT PRIMARY KEY,
    manufacturer_ca TEXT NOT NULL REFERENCES manufacturer_cas(name),
    device_id TEXT NOT NULL REFERENCES devices(id),
    serial TEXT NOT NULL,
    subject TEXT NOT NULL,
    not_before INTEGER NOT NULL,
    not_after INTEGER NOT NULL,
    bound_at INTEGER NOT NULL,
    revoked_at INTEGER,
    revocation_reason TEXT
) WITHOUT ROWID;
CREATE INDEX manufacturer_certificates_device ON manufacturer_certificates(device_id);
"#,
    r#"
-- OTA releases (the TUF repository itself is files: <data-dir>/ota).
CREATE TABLE ota_releases (
    name TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    hardware TEXT NOT NULL,
    floor TEXT,
    sha256 TEXT NOT NULL,
    length INTEGER NOT NULL,
    targets_version INTEGER NOT NULL,
    published_at INTEGER NOT NULL
) WITHOUT ROWID;
"#,
    r#"
-- Rollouts of OTA releases: the plan, where it is, one row per device and
-- the timestamped history of every device's steps.
CREATE TABLE ota_rollouts (
    id TEXT PRIMARY KEY,
    release TEXT NOT NULL REFERENCES ota_releases(name),
    plan TEXT NOT NULL,
    selector TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'paused', 'completed', 'cancelled')),
    reason TEXT,
    phase INTEGER,
    soak_started_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE ota_rollout_devices (
    rollout TEXT NOT NULL REFERENCES ota_rollouts(id),
    device TEXT NOT NULL,
    phase INTEGER NOT NULL,
    step TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT,
    flagged TEXT,
    notified_at INTEGER,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (rollout, device)
) WITHOUT ROWID;
CREATE INDEX ota_rollout_devices_device ON ota_rollout_devices(device);
CREATE TABLE ota_rollout_history (
    rollout TEXT NOT NULL,
    device TEXT NOT NULL,
    step TEXT NOT NULL,
    reason TEXT,
    at INTEGER NOT NULL
);
CREATE INDEX ota_rollout_history_device ON ota_rollout_history(rollout, device);
"#,
    r#"
-- What an operator's resume accepted: the abort policy counts only later
-- failures (JSON of bulwark_types::AcceptedFailures).
ALTER TABLE ota_rollouts ADD COLUMN accepted TEXT;
"#,
    r#"
-- Alerts raised by detection, their response actions and evidence bundles.
-- At most one unresolved alert per de-duplication key.
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup TEXT NOT NULL,
    device TEXT,
    entity TEXT NOT NULL,
    detector TEXT NOT NULL,
    severity TEXT NOT NULL,
    title TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
    count INTEGER NOT NULL,
    evidence TEXT NOT NULL,
    bundle_sha256 TEXT,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    resolved_at INTEGER
);
CREATE UNIQUE INDEX alerts_unresolved ON alerts(dedup) WHERE state != 'resolved';
CREATE INDEX alerts_dedup ON alerts(dedup, resolved_at);
CREATE INDEX alerts_device ON alerts(device, first_seen);
CREATE TABLE alert_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    alert INTEGER NOT NULL REFERENCES alerts(id),
    playbook TEXT,
    step INTEGER NOT NULL,
    action TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    params TEXT NOT NULL,
    due_at INTEGER,
    release_at INTEGER,
    applied_at INTEGER,
    updated_at INTEGER NOT NULL
);
CREATE INDEX alert_actions_alert ON alert_actions(alert);
CREATE INDEX alert_actions_due ON alert_actions(state, due_at);
CREATE INDEX alert_actions_release ON alert_actions(state, release_at);
CREATE TABLE alert_bundles (
    alert INTEGER PRIMARY KEY REFERENCES alerts(id),
    body BLOB NOT NULL
);
"#,
    r#"
-- Detection's window metrics summarised per entity and period: one row per
-- entity active in the period. Times are unix milliseconds; metrics is a
-- JSON object of metric name to number.
CREATE TABLE metric_summaries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    entity TEXT NOT NULL,
    device TEXT,
    period_start INTEGER NOT NULL,
    period_end INTEGER NOT NULL,
    active_windows INTEGER NOT NULL,
    metrics TEXT NOT NULL CHECK (json_valid(metrics))
);
CREATE INDEX metric_summaries_device ON metric_summaries(device, period_start);
CREATE INDEX metric_summaries_entity ON metric_summaries(entity, period_start);
CREATE INDEX metric_summaries_end ON metric_summaries(period_end);
"#,
];

/// Connection settings every connection gets.
pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before it returns, so acknowledged data
    // survives a crash or power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Brings the schema up to date.
pub(crate) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: usize = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i + 1)?;
        tx.commit()?;
    }
    Ok(())
}
