//! Scheduled posture audits: every `[response] audit_interval_secs` the
//! fleet's configuration is checked and what is wrong becomes a finding
//! with detector `audit:<check>` and dedup key `audit:<check>:<entity>`,
//! so a standing problem stays one alert whose count grows.
//!
//! | check                 | about        | severity |
//! |-----------------------|--------------|----------|
//! | `cert-expiring`       | `device:ID`  | medium   |
//! | `cert-too-old`        | `device:ID`  | low      |
//! | `weak-key`            | `device:ID`  | high     |
//! | `revoked-but-connected` | `device:ID` | critical |
//! | `over-broad-policy`   | `policy:NAME`| high     |
//! | `silent-device`       | `device:ID`  | low      |
//! | `audit-chain`         | `fleet`      | critical |
//!
//! The checks are pure functions over plain records (the store's
//! `DevicePosture`, the registry's `PosturePolicy`, the audit verdict);
//! [`run`] gathers them a page of devices at a time and hands the findings
//! to the alerter, leaving a quarter of its channel to the real-time
//! pipeline.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bulwark_audit::{VerifyError, VerifyReport};
use bulwark_detect::Finding;
use bulwark_gateway::Gateway;
use bulwark_registry::{PosturePolicy, Registry};
use bulwark_store::{DevicePosture, NewAlert};
use bulwark_types::{DeviceId, DeviceState, PolicyTarget, Severity};
use serde_json::json;
use time::OffsetDateTime;
use tokio::sync::mpsc;
use x509_parser::oid_registry as oids;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;

use super::{planned_actions, DetectSettings, DetectStats, Raise};

/// The first audit runs this long after start (or after one interval, if
/// that is shorter).
const FIRST_RUN: Duration = Duration::from_secs(10);
/// Devices read per page.
const PAGE: u32 = 500;
/// A device found connected without a right to be is checked again this
/// much later before it is reported: the gateway cuts such sessions off
/// on its own, and a revocation read between its commit and the cut is
/// not a finding.
const CONFIRM_AFTER: Duration = Duration::from_secs(5);
/// Most such devices confirmed in one run (the rest wait for the next).
const MAX_CONFIRM: usize = 1000;
/// Smallest RSA modulus not reported, in bits.
const MIN_RSA_BITS: usize = 2048;

/// The thresholds of the checks (`[response]`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Thresholds {
    pub expiry_warn: time::Duration,
    pub max_age: time::Duration,
    pub silent: time::Duration,
}

impl Thresholds {
    pub(super) fn of(settings: &DetectSettings) -> Self {
        let days = |d: u32| time::Duration::days(i64::from(d));
        let r = &settings.response;
        Thresholds {
            expiry_warn: days(r.cert_expiry_warn_days),
            max_age: days(r.cert_max_age_days),
            silent: days(r.silent_days),
        }
    }
}

fn ms(t: OffsetDateTime) -> u64 {
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A finding of check `check` about `entity`.
fn finding(
    check: &str,
    entity: String,
    device: Option<&bulwark_types::Device>,
    severity: Severity,
    title: String,
    evidence: serde_json::Value,
    now: OffsetDateTime,
) -> Finding {
    let detector = format!("audit:{check}");
    Finding {
        dedup_key: format!("{detector}:{entity}"),
        entity,
        device: device.map(|d| d.id.to_string()),
        group: device.map(|d| d.group.to_string()),
        detector,
        severity,
        title,
        evidence,
        at_ms: ms(now),
    }
}

fn device_finding(
    check: &str,
    d: &DevicePosture,
    severity: Severity,
    title: String,
    evidence: serde_json::Value,
    now: OffsetDateTime,
) -> Finding {
    let entity = format!("device:{}", d.device.id);
    finding(
        check,
        entity,
        Some(&d.device),
        severity,
        title,
        evidence,
        now,
    )
}

/// Whether the lifecycle state lets the device hold a session.
fn may_operate(state: DeviceState) -> bool {
    matches!(state, DeviceState::Active | DeviceState::Quarantined)
}

/// "in 3 days" / "2 days ago".
fn relative(from: OffsetDateTime, to: OffsetDateTime) -> String {
    let days = (to - from).whole_days();
    if to >= from {
        format!("in {days} days")
    } else {
        format!("{} days ago", -days)
    }
}

/// `audit:cert-expiring`: the device's newest unrevoked certificate (its
/// newest unrevoked manufacturer certificate, for a device bound to a
/// manufacturer CA) expires within `warn`, or has expired. Devices that
/// may not operate (pending, decommissioned) are left out. Medium.
pub(super) fn cert_expiring(
    d: &DevicePosture,
    now: OffsetDateTime,
    warn: time::Duration,
) -> Option<Finding> {
    if !may_operate(d.device.state) {
        return None;
    }
    let id = &d.device.id;
    let (serial, issuer, not_after) = match &d.device.manufacturer_ca {
        None => {
            let c = d
                .certificates
                .iter()
                .find(|c| c.info.revoked_at.is_none())?;
            (
                c.info.serial.to_hex(),
                "bulwark".to_owned(),
                c.info.not_after,
            )
        }
        Some(ca) => {
            let c = d
                .manufacturer_certificates
                .iter()
                .find(|c| c.revoked_at.is_none())?;
            (c.serial.clone(), format!("manufacturer:{ca}"), c.not_after)
        }
    };
    if not_after - now > warn {
        return None;
    }
    let when = if not_after > now {
        "expires"
    } else {
        "expired"
    };
    Some(device_finding(
        "cert-expiring",
        d,
        Severity::Medium,
        format!(
            "certificate {serial} of {id} {when} {}",
            relative(now, not_after)
        ),
        json!({
            "serial": serial,
            "issuer": issuer,
            "not_after": rfc3339(not_after),
            "expired": not_after <= now,
            "warn_days": warn.whole_days(),
        }),
        now,
    ))
}

/// `audit:cert-too-old`: the device's newest unrevoked Bulwark-issued
/// certificate was issued (its `notBefore`) more than `max_age` ago, so it
/// has not been renewed. Manufacturer certificates are left out: they are
/// long-lived by design and Bulwark cannot renew them. Low.
pub(super) fn cert_too_old(
    d: &DevicePosture,
    now: OffsetDateTime,
    max_age: time::Duration,
) -> Option<Finding> {
    if !may_operate(d.device.state) || d.device.manufacturer_ca.is_some() {
        return None;
    }
    let c = d
        .certificates
        .iter()
        .find(|c| c.info.revoked_at.is_none())?;
    let issued = c.info.not_before;
    if now - issued <= max_age {
        return None;
    }
    Some(device_finding(
        "cert-too-old",
        d,
        Severity::Medium,
        format!(
            "certificate {} of {} was issued {} and never renewed",
            c.info.serial.to_hex(),
            d.device.id,
            relative(now, issued)
        ),
        json!({
            "serial": c.info.serial.to_hex(),
            "issued_at": rfc3339(issued),
            "max_age_days": max_age.whole_days(),
        }),
        now,
    ))
}

/// What is weak about a certificate's key: `None` for RSA of at least 2048
/// bits, EC on P-256 or P-384, and Ed25519; a reason for anything else
/// (including a certificate that does not parse).
pub(super) fn key_weakness(der: &[u8]) -> Option<String> {
    let cert = match X509Certificate::from_der(der) {
        Ok((_, c)) => c,
        Err(_) => return Some("the certificate does not parse".into()),
    };
    let spki = cert.public_key();
    let alg = &spki.algorithm.algorithm;
    if *alg == oids::OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == oids::OID_EC_P256 || c == oids::OID_NIST_EC_P384 => None,
            Some(c) if c == oids::OID_NIST_EC_P521 => Some("ec key on curve P-521".into()),
            Some(c) => Some(format!("ec key on curve {c}")),
            None => Some("ec key without a named curve".into()),
        };
    }
    if *alg == oids::OID_SIG_ED25519 {
        return None;
    }
    if *alg == oids::OID_PKCS1_RSAENCRYPTION {
        return match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => {
                let bits = modulus_bits(rsa.modulus);
                (bits < MIN_RSA_BITS).then(|| format!("rsa key of {bits} bits"))
            }
            _ => Some("rsa key that does not parse".into()),
        };
    }
    Some(format!("{alg} key"))
}

fn modulus_bits(modulus: &[u8]) -> usize {
    let m = match modulus.iter().position(|&b| b != 0) {
        Some(i) => &modulus[i..],
        None => return 0,
    };
    m.len() * 8 - m[0].leading_zeros() as usize
}

/// `audit:weak-key`: a usable (unrevoked, unexpired) Bulwark-issued
/// certificate of a device that is not decommissioned carries a key
/// [`key_weakness`] objects to. One finding per device, listing each such
/// certificate. Manufacturer certificates are not checked: their DER is
/// not stored. High.
pub(super) fn weak_key(d: &DevicePosture, now: OffsetDateTime) -> Option<Finding> {
    if d.device.state == DeviceState::Decommissioned {
        return None;
    }
    let weak: Vec<serde_json::Value> = d
        .certificates
        .iter()
        .filter(|c| c.info.revoked_at.is_none() && c.info.not_after > now && !c.der.is_empty())
        .filter_map(|c| {
            key_weakness(&c.der)
                .map(|why| json!({ "serial": c.info.serial.to_hex(), "weakness": why }))
        })
        .collect();
    let first = weak.first()?;
    Some(device_finding(
        "weak-key",
        d,
        Severity::High,
        format!(
            "{} holds a certificate with a weak key ({})",
            d.device.id,
            first["weakness"].as_str().unwrap_or("weak key")
        ),
        json!({ "certificates": weak }),
        now,
    ))
}

/// `audit:revoked-but-connected`: the device has a live MQTT session but
/// no right to one: it is decommissioned or pending, or (not being bound
/// to a manufacturer CA) it has no unrevoked certificate, or only expired
/// ones. Critical.
pub(super) fn revoked_but_connected(
    d: &DevicePosture,
    live: bool,
    now: OffsetDateTime,
) -> Option<Finding> {
    if !live {
        return None;
    }
    let unrevoked = || {
        d.certificates
            .iter()
            .filter(|c| c.info.revoked_at.is_none())
    };
    let reason = match d.device.state {
        DeviceState::Decommissioned => "it is decommissioned",
        DeviceState::Pending => "it is still pending",
        _ if d.device.manufacturer_ca.is_some() => return None,
        _ if unrevoked().next().is_none() => "every certificate of it is revoked",
        _ if unrevoked().all(|c| c.info.not_after <= now) => "every certificate of it has expired",
        _ => return None,
    };
    Some(device_finding(
        "revoked-but-connected",
        d,
        Severity::Critical,
        format!("{} holds a live MQTT session but {reason}", d.device.id),
        json!({
            "state": d.device.state.as_str(),
            "reason": reason,
            "certificates": d.certificates.iter().map(|c| json!({
                "serial": c.info.serial.to_hex(),
                "not_after": rfc3339(c.info.not_after),
                "revoked_at": c.info.revoked_at.map(rfc3339),
            })).collect::<Vec<_>>(),
        }),
        now,
    ))
}

/// When the device was last known to be around: the newest of its
/// persisted `last_seen_at` (written when it connects, at most once a
/// minute), `observed` (when an earlier audit run saw it connected: a
/// device that held one session for days connected long before it left),
/// its newest certificate's issuance (Bulwark's or a manufacturer
/// certificate's binding), its enrollment and its creation.
///
/// An approximation: Bulwark does not persist disconnect times, so a
/// device whose session ended between two audit runs, long after it
/// connected, counts from the last run that saw it (or, after a restart,
/// from its last connect).
pub(super) fn last_activity(d: &DevicePosture, observed: Option<OffsetDateTime>) -> OffsetDateTime {
    let dev = &d.device;
    [
        dev.last_seen_at,
        observed,
        d.certificates.iter().map(|c| c.info.not_before).max(),
        d.manufacturer_certificates.iter().map(|c| c.bound_at).max(),
        dev.enrolled_at,
    ]
    .into_iter()
    .flatten()
    .fold(dev.created_at, OffsetDateTime::max)
}

/// `audit:silent-device`: an active device with no live session whose
/// [`last_activity`] is more than `silent` ago. Low.
pub(super) fn silent_device(
    d: &DevicePosture,
    live: bool,
    observed: Option<OffsetDateTime>,
    now: OffsetDateTime,
    silent: time::Duration,
) -> Option<Finding> {
    if live || d.device.state != DeviceState::Active {
        return None;
    }
    let last = last_activity(d, observed);
    if now - last <= silent {
        return None;
    }
    Some(device_finding(
        "silent-device",
        d,
        Severity::Medium,
        format!("{} has not been seen {}", d.device.id, relative(now, last)),
        json!({
            "last_activity": rfc3339(last),
            "last_seen_at": d.device.last_seen_at.map(rfc3339),
            "silent_days": silent.whole_days(),
        }),
        now,
    ))
}

/// How a topic filter reaches too far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Breadth {
    /// Wildcards only, ending in `#`: `#`, `+/#`.
    Everything,
    /// Wildcards only, without `#`: `+`, `+/+`.
    WildcardsOnly,
    /// Every device's topics: `devices/+/cmd`, `devices/#`.
    OtherDevices,
}

impl Breadth {
    pub(super) fn why(self) -> &'static str {
        match self {
            Self::Everything => "matches every topic",
            Self::WildcardsOnly => "has only wildcard levels",
            Self::OtherDevices => "reaches every device's topics",
        }
    }
}

/// Whether a topic filter reaches too far: a filter of wildcards only
/// (also behind `$share/NAME/`), or one under `devices/` whose device
/// level is a wildcard and that does not name the principal's own id.
pub(super) fn filter_breadth(resource: &str) -> Option<Breadth> {
    let filter = match resource.strip_prefix("$share/") {
        Some(rest) => rest.split_once('/').map_or("", |(_, f)| f),
        None => resource,
    };
    let levels: Vec<&str> = filter.split('/').collect();
    if levels.iter().all(|l| matches!(*l, "+" | "#")) {
        return Some(if levels.last() == Some(&"#") {
            Breadth::Everything
        } else {
            Breadth::WildcardsOnly
        });
    }
    let other_devices = levels.first() == Some(&"devices")
        && matches!(levels.get(1), Some(&"+" | &"#"))
        && !resource.contains("${device.id}");
    other_devices.then_some(Breadth::OtherDevices)
}

/// `audit:over-broad-policy`: a stored policy allows `publish` or
/// `subscribe` on a filter [`filter_breadth`] objects to. The `devices/+`
/// rule is not applied to a policy attached only to services (back ends
/// read every device's telemetry by design); the wildcard-only rule is
/// applied to every policy. One finding per policy, with each offending
/// statement. High.
pub(super) fn over_broad_policy(p: &PosturePolicy, now: OffsetDateTime) -> Option<Finding> {
    let services_only = !p.attachments.is_empty()
        && p.attachments
            .iter()
            .all(|t| matches!(t, PolicyTarget::Service(_)));
    let mut offences = Vec::new();
    for s in p.statements.iter().filter(|s| s.allow) {
        let acts: Vec<&str> = s
            .actions
            .iter()
            .copied()
            .filter(|a| matches!(*a, "publish" | "subscribe"))
            .collect();
        if acts.is_empty() {
            continue;
        }
        for r in &s.resources {
            match filter_breadth(r) {
                Some(Breadth::OtherDevices) if services_only => {}
                Some(b) => offences.push((s, acts.clone(), r.as_str(), b.why())),
                None => {}
            }
        }
    }
    let (_, acts, resource, why) = offences.first()?;
    let more = match offences.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    Some(finding(
        "over-broad-policy",
        format!("policy:{}", p.name),
        None,
        Severity::High,
        format!(
            "policy {} allows {} on {resource}, which {why}{more}",
            p.name,
            acts.join(" and ")
        ),
        json!({
            "policy": p.name.as_str(),
            "version": p.version,
            "attachments": p.attachments,
            "statements": offences.iter().map(|(s, _, r, why)| json!({
                "statement": s.index,
                "effect": "allow",
                "actions": s.actions,
                "resources": s.resources,
                "resource": r,
                "why": why,
            })).collect::<Vec<_>>(),
        }),
        now,
    ))
}

/// `audit:audit-chain`: the audit log's hash chain or its signed
/// checkpoints fail to verify. Critical, about the `fleet`.
pub(super) fn audit_chain(
    verdict: &Result<VerifyReport, VerifyError>,
    now: OffsetDateTime,
) -> Option<Finding> {
    let e = verdict.as_ref().err()?;
    Some(finding(
        "audit-chain",
        "fleet".into(),
        None,
        Severity::Critical,
        format!("the audit log fails verification: {e}"),
        json!({ "error": e.to_string(), "first_bad_entry": e.seq() }),
        now,
    ))
}

/// The alert for an audit finding: a small bundle (the finding and when
/// it was made) and the steps of matching playbooks, as for the pipeline.
fn alert(settings: &DetectSettings, f: Finding, now: OffsetDateTime) -> NewAlert {
    let device = f.device.as_deref().and_then(super::device_id);
    let actions = planned_actions(
        &settings.playbooks,
        &f.detector,
        f.severity,
        device.as_ref(),
        now,
    );
    let bundle = serde_json::to_vec(&json!({ "captured_at": rfc3339(now), "finding": &f })).ok();
    NewAlert {
        dedup: f.dedup_key,
        device,
        entity: f.entity,
        detector: f.detector,
        severity: f.severity,
        title: f.title,
        evidence: f.evidence,
        suppress_for: Duration::from_secs(settings.response.suppress_secs),
        bundle,
        actions,
    }
}

/// Devices with a live (connected) MQTT session.
fn live_devices(gateway: &Gateway) -> HashSet<DeviceId> {
    gateway
        .sessions()
        .into_iter()
        .filter(|s| s.kind == "device" && s.connected)
        .filter_map(|s| DeviceId::new(s.principal).ok())
        .collect()
}

/// The audit task's memory between runs.
struct Auditor {
    registry: Arc<Registry>,
    gateway: Gateway,
    thresholds: Thresholds,
    /// When a run last saw each device connected.
    observed: HashMap<DeviceId, OffsetDateTime>,
}

/// What one run looked at.
#[derive(Debug, Default)]
struct RunCounts {
    devices: usize,
    policies: usize,
}

impl Auditor {
    /// Runs every check once.
    async fn run_audits(&mut self) -> (Vec<Finding>, RunCounts) {
        let now = OffsetDateTime::now_utc();
        let mut out = Vec::new();
        let mut counts = RunCounts::default();
        match self.registry.posture_policies().await {
            Ok(policies) => {
                counts.policies = policies.len();
                out.extend(policies.iter().filter_map(|p| over_broad_policy(p, now)));
            }
            Err(e) => tracing::warn!(error = %e, "posture audit: cannot read the policies"),
        }
        match self.registry.audit_verify_system().await {
            Ok(verdict) => out.extend(audit_chain(&verdict, now)),
            Err(e) => tracing::warn!(error = %e, "posture audit: cannot read the audit log"),
        }
        let live = live_devices(&self.gateway);
        let mut observed = HashMap::with_capacity(self.observed.len());
        let mut suspects = Vec::new();
        let mut after: Option<DeviceId> = None;
        loop {
            let page = match self.registry.posture_devices(after.as_ref(), PAGE).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "posture audit: cannot read the devices");
                    break;
                }
            };
            let Some(last) = page.last() else { break };
            after = Some(last.device.id.clone());
            counts.devices += page.len();
            for d in &page {
                let id = &d.device.id;
                let is_live = live.contains(id);
                let seen = if is_live {
                    Some(now)
                } else {
                    self.observed.get(id).copied()
                };
                if let Some(t) = seen {
                    observed.insert(id.clone(), t);
                }
                let th = self.thresholds;
                out.extend(cert_expiring(d, now, th.expiry_warn));
                out.extend(cert_too_old(d, now, th.max_age));
                out.extend(weak_key(d, now));
                out.extend(silent_device(d, is_live, seen, now, th.silent));
                if revoked_but_connected(d, is_live, now).is_some() && suspects.len() < MAX_CONFIRM
                {
                    suspects.push(id.clone());
                }
            }
            if page.len() < PAGE as usize {
                break;
            }
        }
        self.observed = observed;
        out.extend(self.confirm(suspects).await);
        (out, counts)
    }

    /// Devices found connected without a right to be, read again after
    /// [`CONFIRM_AFTER`]: reported only if they still are.
    async fn confirm(&self, suspects: Vec<DeviceId>) -> Vec<Finding> {
        if suspects.is_empty() {
            return Vec::new();
        }
        tokio::time::sleep(CONFIRM_AFTER).await;
        let live = live_devices(&self.gateway);
        let now = OffsetDateTime::now_utc();
        let mut out = Vec::new();
        for id in suspects.iter().filter(|id| live.contains(*id)) {
            match self.registry.posture_device(id).await {
                Ok(Some(d)) => out.extend(revoked_but_connected(&d, true, now)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, device = %id, "posture audit: cannot read a device")
                }
            }
        }
        out
    }
}

/// Hands an alert to the alerter, waiting while less than a quarter of its
/// channel is free (that quarter is the real-time pipeline's). False when
/// the alerter is gone.
async fn send(raise: &mpsc::Sender<Raise>, alert: NewAlert) -> bool {
    let reserve = raise.max_capacity() / 4;
    let mut item = Raise { alert };
    loop {
        if raise.capacity() > reserve {
            match raise.try_send(item) {
                Ok(()) => return true,
                Err(mpsc::error::TrySendError::Full(r)) => item = r,
                Err(mpsc::error::TrySendError::Closed(_)) => return false,
            }
        } else if raise.is_closed() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The audit task: runs the checks every `audit_interval_secs` and raises
/// their findings (at or above `min_alert_severity`).
pub(super) async fn run(
    settings: DetectSettings,
    registry: Arc<Registry>,
    gateway: Gateway,
    stats: Arc<DetectStats>,
    raise: mpsc::Sender<Raise>,
) {
    let interval = Duration::from_secs(settings.response.audit_interval_secs.max(1));
    let start = tokio::time::Instant::now() + FIRST_RUN.min(interval);
    let mut every = tokio::time::interval_at(start, interval);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut auditor = Auditor {
        registry,
        gateway,
        thresholds: Thresholds::of(&settings),
        observed: HashMap::new(),
    };
    let min = settings.response.min_alert_severity;
    loop {
        every.tick().await;
        let started = std::time::Instant::now();
        let (findings, counts) = auditor.run_audits().await;
        let now = OffsetDateTime::now_utc();
        let mut raised = 0usize;
        for f in findings.into_iter().filter(|f| f.severity >= min) {
            stats.findings.fetch_add(1, Ordering::Relaxed);
            if !send(&raise, alert(&settings, f, now)).await {
                return;
            }
            raised += 1;
        }
        tracing::info!(
            devices = counts.devices,
            policies = counts.policies,
            findings = raised,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "posture audit"
        );
    }
}

#[cfg(test)]
#[path = "audits_tests.rs"]
mod tests;
