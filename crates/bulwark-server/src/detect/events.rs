//! The pipeline task: gateway events into the engine, the agent's reports
//! parsed, a short ring of recent events per device for evidence, and
//! findings turned into alerts with their bundle and planned actions; every
//! `summary_interval_secs`, the engine's period summaries handed to the
//! summary writer (`summaries.rs`) without waiting for it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bulwark_detect::{Engine, EntityRef, Finding, ObsKind, Observation, PeriodSummary, Proto};
use bulwark_gateway::{Gateway, GatewayEvent, ReportKind};
use bulwark_registry::Registry;
use bulwark_store::NewAlert;
use bulwark_types::{ActionKind, DeviceId, Severity};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tokio::sync::mpsc;

use super::{device_id, DetectSettings, DetectStats, Raise};

/// Recent events kept per device for its evidence bundle.
const RING: usize = 32;
/// Devices whose rings, groups and firmware versions are kept at most.
const MAX_DEVICES: usize = 200_000;

#[derive(Debug, Clone, Serialize)]
struct Recent {
    at_ms: u64,
    event: &'static str,
    detail: String,
}

/// The agent's posture report (`devices/{id}/posture`), as far as detection reads it.
#[derive(Debug, Deserialize)]
struct PostureReport {
    #[serde(default)]
    listening: Vec<Socket>,
    #[serde(default)]
    established: Vec<Connection>,
    #[serde(default)]
    process_count: u32,
}

#[derive(Debug, Deserialize)]
struct Socket {
    proto: String,
    addr: std::net::SocketAddr,
}

#[derive(Debug, Deserialize)]
struct Connection {
    remote: std::net::SocketAddr,
}

/// The agent's inventory report (`devices/{id}/inventory`).
#[derive(Debug, Deserialize)]
struct InventoryReport {
    firmware_version: String,
}

pub(super) struct Pipeline {
    engine: Engine,
    settings: DetectSettings,
    gateway: Gateway,
    stats: Arc<DetectStats>,
    raise: mpsc::Sender<Raise>,
    recent: HashMap<String, VecDeque<Recent>>,
    groups: HashMap<String, Option<String>>,
    firmware: HashMap<String, semver::Version>,
    floor: Option<semver::Version>,
    pending_groups: HashSet<String>,
    /// Findings made outside the engine (takeovers, reports), raised at the next tick.
    extra: Vec<Finding>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Pipeline {
    pub(super) fn new(
        engine: Engine,
        settings: DetectSettings,
        gateway: Gateway,
        stats: Arc<DetectStats>,
        raise: mpsc::Sender<Raise>,
    ) -> Self {
        let floor = settings
            .response
            .firmware_floor
            .as_deref()
            .and_then(|f| semver::Version::parse(f).ok());
        Pipeline {
            engine,
            settings,
            gateway,
            stats,
            raise,
            recent: HashMap::new(),
            groups: HashMap::new(),
            firmware: HashMap::new(),
            floor,
            pending_groups: HashSet::new(),
            extra: Vec::new(),
        }
    }

    pub(super) async fn run(
        mut self,
        mut events: mpsc::Receiver<GatewayEvent>,
        registry: Arc<Registry>,
    ) {
        let window = Duration::from_millis(self.engine.config().window_ms.max(100));
        let mut tick = tokio::time::interval(window);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Period summaries go to their writer beside the loop, which never
        // waits on the store.
        let every = self.settings.response.summary_interval_secs;
        let summaries_on = every > 0;
        let period = Duration::from_secs(every.max(1));
        let mut summarise = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        summarise.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (summary_tx, summary_rx) =
            mpsc::channel::<Vec<PeriodSummary>>(super::summaries::SUMMARY_QUEUE);
        if summaries_on {
            tokio::spawn(super::summaries::write(
                summary_rx,
                registry.clone(),
                self.stats.clone(),
                self.settings.response.summary_retention_days,
            ));
        } else {
            tracing::warn!(
                "detection metric summaries are off ([response] summary_interval_secs = 0)"
            );
            self.engine.set_summaries(false);
        }
        // Group lookups run beside the loop, which never waits on the store.
        let (want_tx, mut want_rx) = mpsc::channel::<String>(4096);
        let (group_tx, mut group_rx) = mpsc::channel::<(String, Option<String>)>(4096);
        tokio::spawn(async move {
            while let Some(id) = want_rx.recv().await {
                let group = match DeviceId::new(id.clone()) {
                    Ok(d) => registry
                        .device_access(&d)
                        .await
                        .ok()
                        .map(|a| a.device.group.to_string()),
                    Err(_) => None,
                };
                if group_tx.send((id, group)).await.is_err() {
                    return;
                }
            }
        });
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => self.on_event(ev, &want_tx),
                    None => return,
                },
                Some((id, group)) = group_rx.recv() => {
                    self.pending_groups.remove(&id);
                    if self.groups.len() >= MAX_DEVICES {
                        self.groups.clear();
                    }
                    self.groups.insert(id, group);
                }
                _ = tick.tick() => self.on_tick(),
                _ = summarise.tick(), if summaries_on => self.on_summary(&summary_tx),
            }
        }
    }

    fn group_of(&mut self, device: &str, want: &mpsc::Sender<String>) -> Option<String> {
        match self.groups.get(device) {
            Some(g) => g.clone(),
            None => {
                if self.pending_groups.len() < 4096
                    && self.pending_groups.insert(device.to_owned())
                    && want.try_send(device.to_owned()).is_err()
                {
                    self.pending_groups.remove(device);
                }
                None
            }
        }
    }

    fn remember(&mut self, device: &str, at_ms: u64, event: &'static str, detail: String) {
        if !self.recent.contains_key(device) && self.recent.len() >= MAX_DEVICES {
            // Bounded: forget everyone's history rather than grow.
            self.recent.clear();
        }
        let ring = self.recent.entry(device.to_owned()).or_default();
        if ring.len() == RING {
            ring.pop_front();
        }
        ring.push_back(Recent {
            at_ms,
            event,
            detail,
        });
    }

    fn on_event(&mut self, ev: GatewayEvent, want: &mpsc::Sender<String>) {
        self.stats.events.fetch_add(1, Ordering::Relaxed);
        let at_ms = now_ms();
        match ev {
            GatewayEvent::Published {
                device: Some(d),
                topic,
                bytes,
                ..
            }
            | GatewayEvent::RateLimited {
                device: Some(d),
                topic,
                bytes,
                ..
            } => {
                self.observe_device(
                    d.as_str(),
                    want,
                    at_ms,
                    ObsKind::MessageIn {
                        topic: &topic,
                        bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
                    },
                );
                self.remember(d.as_str(), at_ms, "publish", format!("{topic} ({bytes} B)"));
            }
            GatewayEvent::Published {
                principal,
                topic,
                bytes,
                ..
            } => {
                if let Some(name) = principal.strip_prefix("service:") {
                    self.engine.observe(&Observation {
                        entity: EntityRef::Service(name),
                        at_ms,
                        kind: ObsKind::MessageIn {
                            topic: &topic,
                            bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
                        },
                    });
                }
            }
            GatewayEvent::Delivered {
                device: Some(d),
                messages,
                bytes,
                ..
            } => {
                self.observe_device(
                    d.as_str(),
                    want,
                    at_ms,
                    ObsKind::MessageOut { messages, bytes },
                );
            }
            GatewayEvent::Connected {
                device: Some(d),
                source,
                ..
            } => {
                self.observe_device(
                    d.as_str(),
                    want,
                    at_ms,
                    ObsKind::Connect {
                        source: source.ip(),
                    },
                );
                self.remember(d.as_str(), at_ms, "connect", source.to_string());
            }
            GatewayEvent::Disconnected {
                device: Some(d),
                source,
                normal,
                ..
            } => {
                self.observe_device(d.as_str(), want, at_ms, ObsKind::Disconnect { normal });
                let how = if normal { "normal" } else { "abnormal" };
                self.remember(d.as_str(), at_ms, "disconnect", format!("{source} ({how})"));
            }
            GatewayEvent::ConnectRefused {
                source,
                device,
                reason,
                ..
            } => {
                let source_ip = source.ip();
                match &device {
                    Some(d) => {
                        self.observe_device(
                            d.as_str(),
                            want,
                            at_ms,
                            ObsKind::AuthFailure { source: source_ip },
                        );
                        self.remember(d.as_str(), at_ms, "refused", format!("{source}: {reason}"));
                    }
                    None => self.source_failure(source_ip, at_ms),
                }
            }
            GatewayEvent::HandshakeFailed { source, .. } => self.source_failure(source.ip(), at_ms),
            GatewayEvent::Denied {
                device: Some(d),
                action,
                topic,
                ..
            } => {
                self.observe_device(
                    d.as_str(),
                    want,
                    at_ms,
                    ObsKind::Denied {
                        action,
                        topic: &topic,
                    },
                );
                self.remember(d.as_str(), at_ms, "denied", format!("{action} {topic}"));
            }
            GatewayEvent::Subscribed {
                device: Some(d),
                filter,
                ..
            } => {
                self.observe_device(
                    d.as_str(),
                    want,
                    at_ms,
                    ObsKind::Subscribe { filter: &filter },
                );
                self.remember(d.as_str(), at_ms, "subscribe", filter);
            }
            GatewayEvent::SessionTakenOver {
                client_id,
                previous,
                source,
            } => self.takeover(client_id, &previous, source, at_ms),
            GatewayEvent::DeviceReport {
                device,
                kind,
                payload,
            } => {
                let group = self.group_of(device.as_str(), want);
                match kind {
                    ReportKind::Posture => self.posture(&device, group.as_deref(), &payload, at_ms),
                    ReportKind::Inventory => self.inventory(&device, group, &payload, at_ms),
                }
            }
            _ => {}
        }
    }

    fn observe_device(
        &mut self,
        device: &str,
        want: &mpsc::Sender<String>,
        at_ms: u64,
        kind: ObsKind<'_>,
    ) {
        let group = self.group_of(device, want);
        self.engine.observe(&Observation {
            entity: EntityRef::Device {
                id: device,
                group: group.as_deref(),
            },
            at_ms,
            kind,
        });
    }

    fn source_failure(&mut self, source: IpAddr, at_ms: u64) {
        self.engine.observe(&Observation {
            entity: EntityRef::Source(source),
            at_ms,
            kind: ObsKind::AuthFailure { source },
        });
    }

    /// A second connection with the same identity took the session over:
    /// from another address it is the signature of a cloned certificate.
    fn takeover(
        &mut self,
        client_id: String,
        previous: &str,
        source: std::net::SocketAddr,
        at_ms: u64,
    ) {
        let previous_ip = previous
            .parse::<std::net::SocketAddr>()
            .map(|a| a.ip())
            .ok();
        self.remember(
            &client_id,
            at_ms,
            "takeover",
            format!("{previous} -> {source}"),
        );
        if previous_ip == Some(source.ip()) {
            return; // a reconnect from the same place (a half-open link)
        }
        let Some(device) = device_id(&client_id) else {
            return;
        };
        self.extra.push(Finding {
            entity: format!("device:{device}"),
            device: Some(device.to_string()),
            group: self.groups.get(device.as_str()).cloned().flatten(),
            detector: "rule:session-takeover".into(),
            severity: Severity::High,
            title: format!(
                "session of {device} taken over from another address ({previous} -> {source}): a cloned certificate?"
            ),
            dedup_key: format!("rule:session-takeover:device:{device}"),
            evidence: serde_json::json!({ "previous_source": previous, "new_source": source.to_string() }),
            at_ms,
        });
    }

    fn posture(&mut self, device: &DeviceId, group: Option<&str>, payload: &[u8], at_ms: u64) {
        let report: PostureReport = match serde_json::from_slice(payload) {
            Ok(r) => r,
            Err(e) => {
                self.stats.bad_reports.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%device, error = %e, "unreadable posture report");
                return;
            }
        };
        let mut ports: Vec<(Proto, u16)> = report
            .listening
            .iter()
            .filter_map(|s| {
                let proto = match s.proto.as_str() {
                    "tcp" => Proto::Tcp,
                    "udp" => Proto::Udp,
                    _ => return None,
                };
                Some((proto, s.addr.port()))
            })
            .collect();
        ports.sort_unstable_by_key(|&(p, port)| (p == Proto::Udp, port));
        ports.dedup();
        let mut destinations: Vec<IpAddr> =
            report.established.iter().map(|c| c.remote.ip()).collect();
        destinations.sort_unstable();
        destinations.dedup();
        self.engine.observe(&Observation {
            entity: EntityRef::Device {
                id: device.as_str(),
                group,
            },
            at_ms,
            kind: ObsKind::Posture {
                listening_ports: &ports,
                destinations: &destinations,
                established: u32::try_from(report.established.len()).unwrap_or(u32::MAX),
                processes: report.process_count,
            },
        });
        self.remember(
            device.as_str(),
            at_ms,
            "posture",
            format!(
                "{} listening, {} established, {} processes",
                ports.len(),
                report.established.len(),
                report.process_count
            ),
        );
    }

    fn inventory(&mut self, device: &DeviceId, group: Option<String>, payload: &[u8], at_ms: u64) {
        let version = match serde_json::from_slice::<InventoryReport>(payload)
            .ok()
            .and_then(|r| semver::Version::parse(r.firmware_version.trim()).ok())
        {
            Some(v) => v,
            None => {
                self.stats.bad_reports.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        self.remember(
            device.as_str(),
            at_ms,
            "inventory",
            format!("firmware {version}"),
        );
        let finding = |detector: &str, severity, title: String, evidence| Finding {
            entity: format!("device:{device}"),
            device: Some(device.to_string()),
            group: group.clone(),
            detector: detector.into(),
            severity,
            title,
            dedup_key: format!("{detector}:device:{device}"),
            evidence,
            at_ms,
        };
        if let Some(previous) = self.firmware.get(device.as_str()) {
            if version < *previous {
                self.extra.push(finding(
                    "rule:firmware-downgrade",
                    Severity::High,
                    format!("{device} went from firmware {previous} down to {version}"),
                    serde_json::json!({ "previous": previous.to_string(), "reported": version.to_string() }),
                ));
            }
        }
        if let Some(floor) = &self.floor {
            if version < *floor {
                self.extra.push(finding(
                    "audit:firmware-below-floor",
                    Severity::Medium,
                    format!("{device} runs firmware {version}, below the floor {floor}"),
                    serde_json::json!({ "reported": version.to_string(), "floor": floor.to_string() }),
                ));
            }
        }
        if !self.firmware.contains_key(device.as_str()) && self.firmware.len() >= MAX_DEVICES {
            self.firmware.clear();
        }
        self.firmware.insert(device.to_string(), version);
    }

    fn on_tick(&mut self) {
        let mut findings = self.engine.tick(now_ms());
        findings.append(&mut self.extra);
        let min = self.settings.response.min_alert_severity;
        for f in findings {
            if f.severity < min {
                self.stats
                    .findings_below_min
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            self.stats.findings.fetch_add(1, Ordering::Relaxed);
            let alert = self.alert(f);
            if self.raise.try_send(Raise { alert }).is_err() {
                self.stats.findings_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Hands the period's summaries to the writer; if it is still busy
    /// with earlier ones, the period is dropped and counted.
    fn on_summary(&mut self, writer: &mpsc::Sender<Vec<PeriodSummary>>) {
        let batch = self.engine.take_summaries();
        if !batch.is_empty() && writer.try_send(batch).is_err() {
            self.stats
                .summary_batches_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The alert for a finding: its evidence bundle (the finding, the
    /// entity's recent windows and baselines, the device's recent events
    /// and live connections) and the steps of every matching playbook.
    fn alert(&self, f: Finding) -> NewAlert {
        let now = OffsetDateTime::now_utc();
        let device = f.device.as_deref().and_then(device_id);
        let bundle = serde_json::json!({
            "captured_at": now.format(&time::format_description::well_known::Rfc3339).ok(),
            "finding": &f,
            "summary": self.engine.summary(&f.entity),
            "recent_events": device.as_ref().and_then(|d| self.recent.get(d.as_str())),
            "live_connections": device
                .as_ref()
                .map(|d| self.gateway.device_sources(d).iter().map(ToString::to_string).collect::<Vec<_>>()),
        });
        let bundle = serde_json::to_vec(&bundle).ok();
        // An alert about an address (no device) takes only the steps that
        // apply to one: notify and block.
        let actions = self
            .settings
            .playbooks
            .iter()
            .filter(|p| p.matches(&f.detector, f.severity))
            .flat_map(|p| p.plan(now))
            .filter(|a| {
                device.is_some() || matches!(a.action, ActionKind::Notify | ActionKind::Block)
            })
            .collect();
        let mut evidence = f.evidence;
        if let (Some(b), Some(obj)) = (&bundle, evidence.as_object_mut()) {
            obj.insert(
                "bundle_bytes".into(),
                serde_json::Value::from(b.len() as u64),
            );
        }
        NewAlert {
            dedup: f.dedup_key,
            device,
            entity: f.entity,
            detector: f.detector,
            severity: f.severity,
            title: f.title,
            evidence,
            suppress_for: Duration::from_secs(self.settings.response.suppress_secs),
            bundle,
            actions,
        }
    }
}
