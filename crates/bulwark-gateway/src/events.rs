//! Gateway events for the detection pipeline: connections, authentication,
//! authorization and message metadata (never payloads).
//!
//! The sink is a bounded channel created when a consumer subscribes; until
//! then events cost nothing. A full channel drops the event and counts it
//! (`bulwark_mqtt_events_dropped_total`): the gateway never waits for, or
//! buffers without bound for, a slow consumer.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bulwark_types::DeviceId;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// Something the gateway saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayEvent {
    Connected {
        client_id: String,
        principal: String,
        source: SocketAddr,
    },
    Disconnected {
        client_id: String,
        principal: String,
        source: SocketAddr,
        normal: bool,
    },
    ConnectRefused {
        source: SocketAddr,
        client_id: String,
        device: Option<DeviceId>,
        reason: String,
    },
    SessionTakenOver {
        client_id: String,
        previous: String,
        source: SocketAddr,
    },
    Denied {
        principal: String,
        action: &'static str,
        topic: String,
    },
    Published {
        principal: String,
        topic: String,
        bytes: usize,
        qos: u8,
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
}
