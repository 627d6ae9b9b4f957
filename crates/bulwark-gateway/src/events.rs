//! Gateway events for the detection pipeline: connections, TLS handshake
//! failures and shed connection bursts, authentication, authorization,
//! subscriptions, message metadata in (per PUBLISH) and out (per output
//! batch), and the agent's inventory and posture reports (the only
//! payloads that leave the gateway this way).
//!
//! The sink is a bounded channel created when a consumer subscribes; until
//! then events cost nothing: every call site on the message path checks
//! [`EventSink::enabled`] (one atomic load) before building an event, so
//! nothing is allocated or locked per message. A full channel drops the
//! event and counts it (`bulwark_mqtt_events_dropped_total`): the gateway
//! never waits for, or buffers without bound for, a slow consumer.
//!
//! Identities: `principal` is the principal's counter key, the device id
//! for a device, `service:NAME` for a service, `dev` for an anonymous
//! client of the dev listener; `device` is `Some` exactly when the
//! principal is a device (and then equals `principal`).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bulwark_types::DeviceId;
use bytes::Bytes;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// The largest inventory or posture report passed on as a
/// [`GatewayEvent::DeviceReport`]; larger ones are routed as usual but
/// only counted (`bulwark_mqtt_device_reports_oversized_total`).
pub const MAX_DEVICE_REPORT: usize = 64 * 1024;

/// Which agent report a [`GatewayEvent::DeviceReport`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportKind {
    /// Published to `devices/{id}/inventory`.
    Inventory,
    /// Published to `devices/{id}/posture`.
    Posture,
}

impl ReportKind {
    /// The report a device publishing to `topic` sends, if `topic` is one
    /// of its own report topics (`devices/{device}/inventory` or
    /// `devices/{device}/posture`). No allocation.
    pub fn of_topic(device: &DeviceId, topic: &str) -> Option<ReportKind> {
        let rest = topic
            .strip_prefix("devices/")?
            .strip_prefix(device.as_str())?
            .strip_prefix('/')?;
        match rest {
            "inventory" => Some(ReportKind::Inventory),
            "posture" => Some(ReportKind::Posture),
            _ => None,
        }
    }
}

/// Something the gateway saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayEvent {
    /// A session was attached (CONNACK queued).
    Connected {
        client_id: String,
        principal: String,
        device: Option<DeviceId>,
        source: SocketAddr,
    },
    /// A connection ended; `normal` when the client sent DISCONNECT.
    Disconnected {
        client_id: String,
        principal: String,
        device: Option<DeviceId>,
        source: SocketAddr,
        normal: bool,
    },
    /// A CONNECT was refused (identity, state, policy, will); `device` when
    /// the certificate proved one.
    ConnectRefused {
        source: SocketAddr,
        client_id: String,
        device: Option<DeviceId>,
        reason: String,
    },
    /// A connection ended before MQTT: its TLS handshake failed (bad or
    /// untrusted client certificate, garbage bytes, protocol mismatch) or
    /// timed out (`reason: "timeout"`), or it was shed at accept because
    /// its source address is backing off after failed authentications
    /// (`"backoff"`), is over its connection limit (`"per_ip_limit"`) or
    /// the gateway is full (`"connection_limit"`). Credential stuffing
    /// with certificates the CA never issued shows up only here.
    HandshakeFailed { source: SocketAddr, reason: String },
    /// A second connection with the same identity took the session over.
    SessionTakenOver {
        client_id: String,
        previous: String,
        source: SocketAddr,
    },
    /// The policy refused `action` (`"publish"` or `"subscribe"`) on
    /// `topic` (a topic name, or a filter for subscribe).
    Denied {
        principal: String,
        device: Option<DeviceId>,
        action: &'static str,
        topic: String,
    },
    /// A subscription was granted (SUBACK with a success code).
    Subscribed {
        principal: String,
        device: Option<DeviceId>,
        filter: String,
    },
    /// A PUBLISH from a client was accepted and routed.
    Published {
        principal: String,
        device: Option<DeviceId>,
        topic: String,
        /// Payload bytes.
        bytes: usize,
        qos: u8,
        retain: bool,
    },
    /// A PUBLISH refused by the rate limit or a throttle (the message
    /// attempt still counts for detection).
    RateLimited {
        principal: String,
        device: Option<DeviceId>,
        topic: String,
        bytes: usize,
    },
    /// Messages written to a client, aggregated per output batch (one
    /// event per write to the socket, not per message); payload bytes.
    Delivered {
        principal: String,
        device: Option<DeviceId>,
        messages: u32,
        bytes: u64,
    },
    /// A device published an accepted report to its own report topic
    /// (`devices/{device}/inventory` or `…/posture`): the payload as sent
    /// (JSON from the agent, unchecked here), at most
    /// [`MAX_DEVICE_REPORT`] bytes.
    DeviceReport {
        device: DeviceId,
        kind: ReportKind,
        payload: Bytes,
    },
}

#[derive(Debug)]
pub struct EventSink {
    tx: OnceLock<mpsc::Sender<GatewayEvent>>,
    metrics: Arc<Metrics>,
}

impl EventSink {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            tx: OnceLock::new(),
            metrics,
        }
    }

    /// Whether anyone listens (so callers can skip building an event).
    pub fn enabled(&self) -> bool {
        self.tx.get().is_some()
    }

    pub fn emit(&self, e: GatewayEvent) {
        if let Some(tx) = self.tx.get() {
            if tx.try_send(e).is_err() {
                Metrics::inc(&self.metrics.events_dropped_total);
            }
        }
    }

    /// The one consumer's receiver; `None` if one already subscribed.
    pub fn subscribe(&self, capacity: usize) -> Option<mpsc::Receiver<GatewayEvent>> {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        self.tx.set(tx).ok().map(|()| rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(n: usize) -> GatewayEvent {
        GatewayEvent::Denied {
            principal: format!("d{n}"),
            device: None,
            action: "publish",
            topic: "t".into(),
        }
    }

    #[test]
    fn full_sink_drops_and_counts() {
        let metrics = Arc::new(Metrics::default());
        let sink = EventSink::new(metrics.clone());
        sink.emit(denied(0)); // nobody listens: nothing happens
        assert_eq!(
            metrics
                .events_dropped_total
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
        let mut rx = sink.subscribe(2).unwrap();
        assert!(sink.subscribe(2).is_none());
        for n in 1..=5 {
            sink.emit(denied(n));
        }
        assert_eq!(
            metrics
                .events_dropped_total
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
        assert_eq!(rx.try_recv().unwrap(), denied(1));
        assert_eq!(rx.try_recv().unwrap(), denied(2));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn report_topics_are_the_devices_own() {
        let d = DeviceId::new("d1").unwrap();
        for (topic, expect) in [
            ("devices/d1/inventory", Some(ReportKind::Inventory)),
            ("devices/d1/posture", Some(ReportKind::Posture)),
            ("devices/d2/inventory", None),
            ("devices/d10/inventory", None),
            ("devices/d1/inventory/x", None),
            ("devices/d1/posturex", None),
            ("devices/d1", None),
            ("sites/d1/inventory", None),
        ] {
            assert_eq!(ReportKind::of_topic(&d, topic), expect, "{topic}");
        }
    }
}
