//! The detection and response pipeline: gateway events in, alerts,
//! response actions and notices to the sinks out.
//!
//! ```text
//! gateway ──GatewayEvent (bounded; full = dropped, counted)──▶ pipeline task
//!   observe() each event, keep a short ring of recent events per device,
//!   parse the agent's posture/inventory reports, tick() every window
//!        │ findings + evidence bundles (bounded channel)
//!        ▼
//! alerter task ── Registry::alerts_raise (store: de-dup, audit, schedule)
//!        │          then alerts_run_due (throttle/disconnect via the
//!        │          gateway, restrict/revoke/decommission via the registry)
//!        ▼
//! bulwark-sinks Dispatcher (webhook, syslog, JSON lines, NATS)
//! ```
//!
//! The pipeline task never waits on the store: findings go to the alerter
//! through a bounded channel. A timer task runs due actions (delayed
//! steps, timed releases) twice a second. The posture audit task
//! (`audits`) checks the fleet's configuration every
//! `[response] audit_interval_secs` and sends its findings to the same
//! alerter.

mod audits;
mod events;
pub mod playbook;
mod summaries;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bulwark_api::GatewayResponder;
use bulwark_detect::{DetectConfig, Engine};
use bulwark_gateway::Gateway;
use bulwark_registry::{Event, Registry};
use bulwark_sinks::{Dispatcher, Notice, SinkConfig};
use bulwark_store::{NewAlert, RaiseOutcome};
use bulwark_types::{DeviceId, Severity};
use serde::Deserialize;
use time::OffsetDateTime;

use self::events::Pipeline;
use self::playbook::Playbook;

/// `[detect]` and `[response]` of the server's configuration, with the
/// top-level `[[playbooks]]` and `[[sinks]]`.
#[derive(Debug, Clone)]
pub struct DetectSettings {
    pub engine: DetectConfig,
    pub playbooks: Vec<Playbook>,
    pub sinks: Vec<SinkConfig>,
    pub response: ResponseFile,
}

/// `[response]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponseFile {
    /// Whether the detection and response pipeline runs at all.
    pub enabled: bool,
    /// Findings below this severity are not recorded as alerts (they are
    /// counted). Default medium: low findings (a topic or source address
    /// never seen before, peer outliers) are context, not alarms.
    pub min_alert_severity: Severity,
    /// After an alert is resolved, the same finding stays quiet this long.
    pub suppress_secs: u64,
    /// Gateway events buffered for the pipeline; more are dropped and counted.
    pub event_buffer: usize,
    /// Devices reporting a firmware version below this raise an alert.
    pub firmware_floor: Option<String>,
    /// Seconds between scheduled posture audits (the first runs 10 s after
    /// start, or sooner if this is shorter); 0 turns the audits off.
    pub audit_interval_secs: u64,
    /// `audit:cert-expiring` when a device's newest certificate expires
    /// within this many days.
    pub cert_expiry_warn_days: u32,
    /// `audit:cert-too-old` when it was issued more than this many days ago.
    pub cert_max_age_days: u32,
    /// `audit:silent-device` when an active device was last seen more than
    /// this many days ago.
    pub silent_days: u32,
    /// Seconds between summaries of detection's window metrics written to
    /// the store (`GET /v1/devices/{id}/metrics`); 0 turns them off. Each
    /// is one row per entity (device, source address, service) active in
    /// the interval, so the volume is about `active entities × 86400 /
    /// interval` rows a day: at the default 60 s, 1,440 per always-active
    /// device; a 1,000,000-device fleet is capped by `[detect]
    /// max_entities` (default 200,000) at ~290 million rows (tens of GB) a
    /// day, so a fleet that large wants 900 s or more, or a shorter
    /// retention. Written in chunks beside the pipeline, which never waits
    /// for them: a period the store cannot keep up with is dropped and
    /// counted.
    pub summary_interval_secs: u64,
    /// Summaries whose period ended longer ago than this many days are
    /// deleted (as new ones are written).
    pub summary_retention_days: u32,
}

impl Default for ResponseFile {
    fn default() -> Self {
        ResponseFile {
            enabled: true,
            min_alert_severity: Severity::Medium,
            suppress_secs: 600,
            event_buffer: 1 << 16,
            firmware_floor: None,
            audit_interval_secs: 300,
            cert_expiry_warn_days: 7,
            cert_max_age_days: 400,
            silent_days: 7,
            summary_interval_secs: 60,
            summary_retention_days: 7,
        }
    }
}

impl DetectSettings {
    pub fn validate(&self) -> Result<()> {
        Engine::new(self.engine.clone()).context("[detect]")?;
        playbook::validate(&self.playbooks).context("[[playbooks]]")?;
        SinkConfig::check(&self.sinks).context("[[sinks]]")?;
        if !(1024..=1 << 22).contains(&self.response.event_buffer) {
            anyhow::bail!("[response] event_buffer must be between 1024 and 4194304");
        }
        if let Some(f) = &self.response.firmware_floor {
            semver::Version::parse(f)
                .with_context(|| format!("[response] firmware_floor {f:?} is not a version"))?;
        }
        let r = &self.response;
        if r.audit_interval_secs > 7 * 86_400 {
            anyhow::bail!(
                "[response] audit_interval_secs must be at most 604800 (0 turns the audits off)"
            );
        }
        if r.summary_interval_secs > 86_400 {
            anyhow::bail!(
                "[response] summary_interval_secs must be at most 86400 (0 turns the summaries off)"
            );
        }
        for (key, value, max) in [
            ("cert_expiry_warn_days", r.cert_expiry_warn_days, 3650),
            ("cert_max_age_days", r.cert_max_age_days, 36_500),
            ("silent_days", r.silent_days, 3650),
            ("summary_retention_days", r.summary_retention_days, 3650),
        ] {
            if !(1..=max).contains(&value) {
                anyhow::bail!("[response] {key} must be between 1 and {max}");
            }
        }
        Ok(())
    }
}

/// Counters of the pipeline (logged every minute).
#[derive(Debug, Default)]
pub struct DetectStats {
    pub events: AtomicU64,
    pub findings: AtomicU64,
    pub findings_dropped: AtomicU64,
    /// Findings below `min_alert_severity` (not alerts).
    pub findings_below_min: AtomicU64,
    pub alerts_opened: AtomicU64,
    pub alerts_updated: AtomicU64,
    pub alerts_suppressed: AtomicU64,
    pub bad_reports: AtomicU64,
    /// Metric summary rows written to the store.
    pub summary_rows: AtomicU64,
    /// Summary periods dropped because the store was still writing
    /// earlier ones.
    pub summary_batches_dropped: AtomicU64,
    /// Summary writes (one chunk of a period each) the store refused.
    pub summary_batches_failed: AtomicU64,
}

impl bulwark_api::RenderMetrics for DetectStats {
    fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let counters: [(&str, &AtomicU64, &str); 11] = [
            (
                "events_total",
                &self.events,
                "Gateway events and device reports the detection pipeline consumed.",
            ),
            (
                "findings_total",
                &self.findings,
                "Findings raised as alerts (at or above min_alert_severity).",
            ),
            (
                "findings_dropped_total",
                &self.findings_dropped,
                "Findings dropped because the alert queue was full.",
            ),
            (
                "findings_below_min_total",
                &self.findings_below_min,
                "Findings below min_alert_severity (counted, not alerts).",
            ),
            ("alerts_opened_total", &self.alerts_opened, "Alerts opened."),
            (
                "alerts_updated_total",
                &self.alerts_updated,
                "Findings folded into an open alert (de-duplication).",
            ),
            (
                "alerts_suppressed_total",
                &self.alerts_suppressed,
                "Findings suppressed after their alert was resolved.",
            ),
            (
                "bad_reports_total",
                &self.bad_reports,
                "Device posture or inventory reports that did not parse.",
            ),
            (
                "summary_rows_total",
                &self.summary_rows,
                "Metric summary rows written to the store.",
            ),
            (
                "summary_batches_dropped_total",
                &self.summary_batches_dropped,
                "Metric summary periods dropped while the store was busy.",
            ),
            (
                "summary_batches_failed_total",
                &self.summary_batches_failed,
                "Metric summary writes the store refused.",
            ),
        ];
        for (name, value, help) in counters {
            let _ = writeln!(
                out,
                "# HELP bulwark_detect_{name} {help}\n# TYPE bulwark_detect_{name} counter\nbulwark_detect_{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
    }
}

/// A finding on its way to the store.
struct Raise {
    alert: NewAlert,
}

/// Enforces again the throttles and address blocks a restart lifted, then
/// starts the pipeline, the alerter and the action timer (call it before
/// the gateway accepts connections). Returns `None` when detection is
/// disabled.
pub async fn spawn(
    settings: DetectSettings,
    registry: Arc<Registry>,
    gateway: Gateway,
) -> Result<Option<Arc<DetectStats>>> {
    if !settings.response.enabled {
        tracing::warn!("detection and response are disabled ([response] enabled = false)");
        return Ok(None);
    }
    let engine = Engine::new(settings.engine.clone()).context("[detect]")?;
    let dispatcher = Arc::new(Dispatcher::start(settings.sinks.clone()).context("[[sinks]]")?);
    let Some(events) = gateway.subscribe_events(settings.response.event_buffer) else {
        anyhow::bail!("the gateway's events already have a consumer");
    };
    let stats = Arc::new(DetectStats::default());
    let responder = GatewayResponder(Some(gateway.clone()));
    // Throttles and address blocks live in the gateway's memory: a restart
    // must not lift them.
    match registry.alerts_reapply(&responder).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(restored = n, "throttles and address blocks enforced again"),
        Err(e) => tracing::error!(error = %e, "cannot restore throttles and address blocks"),
    }
    let (raise_tx, raise_rx) = tokio::sync::mpsc::channel::<Raise>(4096);
    if settings.response.audit_interval_secs == 0 {
        tracing::warn!("scheduled posture audits are off ([response] audit_interval_secs = 0)");
    } else {
        tokio::spawn(audits::run(
            settings.clone(),
            registry.clone(),
            gateway.clone(),
            stats.clone(),
            raise_tx.clone(),
        ));
    }
    let pipeline = Pipeline::new(engine, settings.clone(), gateway, stats.clone(), raise_tx);
    tokio::spawn(pipeline.run(events, registry.clone()));
    tokio::spawn(alerter(
        raise_rx,
        registry.clone(),
        responder.clone(),
        dispatcher.clone(),
        stats.clone(),
    ));
    tokio::spawn(operator_notices(
        registry.bus().subscribe(),
        registry.clone(),
        dispatcher.clone(),
    ));
    tokio::spawn(action_timer(registry, responder, dispatcher, stats.clone()));
    tracing::info!(
        playbooks = settings.playbooks.len(),
        sinks = settings.sinks.len(),
        "detection and response running"
    );
    Ok(Some(stats))
}

/// Records findings, notifies the sinks, and carries out the actions that
/// are due at once (containment does not wait for the timer).
async fn alerter(
    mut rx: tokio::sync::mpsc::Receiver<Raise>,
    registry: Arc<Registry>,
    responder: GatewayResponder,
    dispatcher: Arc<Dispatcher>,
    stats: Arc<DetectStats>,
) {
    while let Some(Raise { alert }) = rx.recv().await {
        let detector = alert.detector.clone();
        match registry.alerts_raise(alert).await {
            Ok(RaiseOutcome::Opened(a)) => {
                stats.alerts_opened.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(alert = a.id, entity = %a.entity, detector = %a.detector, severity = %a.severity, "{}", a.title);
                let has_actions = !a.actions.is_empty();
                dispatcher.dispatch(Notice::Alert(a));
                if has_actions {
                    run_due(&registry, &responder, &dispatcher).await;
                }
            }
            Ok(RaiseOutcome::Updated(_)) => {
                stats.alerts_updated.fetch_add(1, Ordering::Relaxed);
            }
            Ok(RaiseOutcome::Suppressed) => {
                stats.alerts_suppressed.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::error!(%detector, error = %e, "cannot record an alert"),
        }
    }
}

/// Tells the sinks what operators did to alerts (acknowledge, resolve,
/// approve, refuse, release, escalate), from the registry's bus.
async fn operator_notices(
    mut bus: tokio::sync::broadcast::Receiver<Event>,
    registry: Arc<Registry>,
    dispatcher: Arc<Dispatcher>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let (id, action) = match bus.recv().await {
            Ok(Event::AlertChanged { id, action }) => (id, action),
            Ok(_) => continue,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "the alert sinks missed {n} registry events (operator changes to alerts among them)"
                );
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let alert = match registry.alert_for_notice(id).await {
            Ok(Some(a)) => a,
            Ok(None) => continue,
            Err(e) => {
                tracing::error!(alert = id, error = %e, "cannot read an alert for the sinks");
                continue;
            }
        };
        let notice = match action.and_then(|a| alert.actions.iter().find(|x| x.id == a).cloned()) {
            Some(action) => Notice::Action { alert, action },
            None => Notice::Alert(alert),
        };
        dispatcher.dispatch(notice);
    }
}

async fn run_due(registry: &Registry, responder: &GatewayResponder, dispatcher: &Dispatcher) {
    match registry
        .alerts_run_due(responder, OffsetDateTime::now_utc())
        .await
    {
        Ok(done) => {
            for (alert, action) in done {
                dispatcher.dispatch(Notice::Action { alert, action });
            }
        }
        Err(e) => tracing::error!(error = %e, "response actions failed"),
    }
}

/// Delayed steps and timed releases.
async fn action_timer(
    registry: Arc<Registry>,
    responder: GatewayResponder,
    dispatcher: Arc<Dispatcher>,
    stats: Arc<DetectStats>,
) {
    let mut every = tokio::time::interval(Duration::from_millis(500));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n = 0u64;
    loop {
        every.tick().await;
        run_due(&registry, &responder, &dispatcher).await;
        n += 1;
        if n.is_multiple_of(120) {
            let s = &stats;
            tracing::info!(
                events = s.events.load(Ordering::Relaxed),
                findings = s.findings.load(Ordering::Relaxed),
                findings_dropped = s.findings_dropped.load(Ordering::Relaxed),
                findings_below_min = s.findings_below_min.load(Ordering::Relaxed),
                alerts_opened = s.alerts_opened.load(Ordering::Relaxed),
                alerts_updated = s.alerts_updated.load(Ordering::Relaxed),
                alerts_suppressed = s.alerts_suppressed.load(Ordering::Relaxed),
                bad_reports = s.bad_reports.load(Ordering::Relaxed),
                summary_rows = s.summary_rows.load(Ordering::Relaxed),
                summary_batches_dropped = s.summary_batches_dropped.load(Ordering::Relaxed),
                summary_batches_failed = s.summary_batches_failed.load(Ordering::Relaxed),
                "detection"
            );
        }
    }
}

fn device_id(s: &str) -> Option<DeviceId> {
    DeviceId::new(s).ok()
}

/// The steps of every configured playbook that matches a finding of the
/// posture audits: all of them for a finding about a device; for one about
/// a policy or the fleet, only `notify` (there is no device to act on and
/// no address to block).
fn planned_actions(
    playbooks: &[Playbook],
    detector: &str,
    severity: Severity,
    device: Option<&DeviceId>,
    now: OffsetDateTime,
) -> Vec<bulwark_store::NewAlertAction> {
    playbooks
        .iter()
        .filter(|p| p.matches(detector, severity))
        .flat_map(|p| p.plan(now))
        .filter(|a| device.is_some() || a.action == bulwark_types::ActionKind::Notify)
        .collect()
}
