//! Counters: gateway-wide (Prometheus text at `/metrics`) and per
//! principal (shown on `GET /v1/devices/{id}`). Plain atomics: counting
//! never allocates or blocks on the message path.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

macro_rules! counters {
    ($($field:ident => $help:literal,)*) => {
        /// Gateway-wide counters.
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(pub $field: AtomicU64,)*
            per_principal: Mutex<HashMap<String, Arc<PrincipalCounters>>>,
        }

        impl Metrics {
            /// Prometheus text exposition format (version 0.0.4).
            pub fn render_prometheus(&self, out: &mut String) {
                $(
                    let name = concat!("bulwark_mqtt_", stringify!($field));
                    let _ = writeln!(out, "# HELP {name} {}", $help);
                    let kind = if name.ends_with("_total") { "counter" } else { "gauge" };
                    let _ = writeln!(out, "# TYPE {name} {kind}");
                    let _ = writeln!(out, "{name} {}", self.$field.load(Ordering::Relaxed));
                )*
            }
        }
    };
}

counters! {
    connections_accepted_total => "TCP connections accepted on the MQTT listeners.",
    connections_active => "MQTT connections open now.",
    connections_refused_total => "Connections refused before or at CONNECT (limits, TLS, authentication, policy).",
    tls_handshake_failures_total => "TLS handshakes that failed or timed out.",
    connect_timeouts_total => "Connections closed because CONNECT did not arrive in time.",
    auth_failures_total => "CONNECTs refused for identity reasons (certificate, password, state, clientId).",
    auth_backoff_refusals_total => "Connections refused because their source address is backing off after failed authentications.",
    flapping_refusals_total => "CONNECTs refused because the client id connected too often.",
    per_ip_limit_refusals_total => "Connections refused over the per-source-address limit.",
    connection_limit_refusals_total => "Connections refused over the global connection limit.",
    takeovers_total => "Sessions taken over by a second connection with the same identity.",
    admissions_remembered_total => "CONNECTs of devices admitted from remembered registry answers (no store read).",
    readmissions_total => "CONNECTs admitted again after attaching because the registry published a change meanwhile.",
    protocol_errors_total => "Connections closed for malformed packets or protocol violations.",
    oversized_packets_total => "Packets refused for exceeding the maximum packet size.",
    keepalive_timeouts_total => "Connections closed for missing their keepalive.",
    messages_received_total => "PUBLISH packets received from clients and accepted.",
    bytes_received_total => "Payload bytes of accepted PUBLISH packets.",
    messages_delivered_total => "PUBLISH packets sent to subscribers.",
    bytes_delivered_total => "Payload bytes sent to subscribers.",
    publish_denied_total => "PUBLISH packets refused by policy.",
    subscribe_denied_total => "Subscription filters refused by policy or limits.",
    receive_denied_total => "Deliveries withheld because the subscriber may not receive the topic.",
    will_denied_total => "CONNECTs refused for a will on a topic the client may not publish to.",
    rate_limited_total => "PUBLISH packets refused by the per-principal message or byte rate (including device throttles).",
    throttled_total => "PUBLISH packets refused by a device throttle (a response action; also in rate_limited_total).",
    queue_dropped_total => "Messages dropped because a session's queue was full.",
    expired_dropped_total => "Messages dropped because their message expiry passed before delivery.",
    too_large_dropped_total => "Messages not delivered because they exceed the subscriber's maximum packet size.",
    sessions_expired_total => "Persistent sessions removed after their expiry.",
    enforcement_disconnects_total => "Sessions disconnected by live enforcement (revocation, lifecycle, operator).",
    enforcement_rescopes_total => "Sessions whose policy was recompiled by live enforcement.",
    subscriptions_revoked_total => "Subscriptions removed because the policy no longer allows them.",
    wills_published_total => "Will messages published.",
    system_publishes_total => "Messages published by the server itself (e.g. OTA notifications).",
    system_publish_dropped_total => "Deliveries of server-published messages dropped because a connected subscriber's queue was full (also in queue_dropped_total).",
    events_dropped_total => "Gateway events dropped because the event bus was full.",
    device_reports_oversized_total => "Device inventory or posture reports too large to pass to the detection pipeline (routed as usual, not emitted as events).",
    persistence_errors_total => "Session-store writes that failed.",
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters of one principal (device id or `service:NAME`),
    /// created on first use.
    pub fn principal(&self, key: &str) -> Arc<PrincipalCounters> {
        let mut map = self
            .per_principal
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(c) = map.get(key) {
            return c.clone();
        }
        let c = Arc::new(PrincipalCounters::default());
        map.insert(key.to_owned(), c.clone());
        c
    }

    /// A principal's counters if it ever connected since start.
    pub fn principal_snapshot(&self, key: &str) -> Option<PrincipalSnapshot> {
        let map = self
            .per_principal
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(key).map(|c| c.snapshot())
    }
}

/// Counters kept per principal.
#[derive(Debug, Default)]
pub struct PrincipalCounters {
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub connects: AtomicU64,
    pub auth_failures: AtomicU64,
    pub denials: AtomicU64,
    /// When `last_seen_at` was last written (Unix seconds), so a device
    /// reconnecting often costs one registry write a minute, not one per
    /// connection.
    pub last_seen_written: AtomicU64,
}

impl PrincipalCounters {
    /// Whether "last seen" should be written now (at most once per
    /// `every_secs`); claims the slot when it returns true.
    pub fn claim_last_seen(&self, now_secs: u64, every_secs: u64) -> bool {
        let last = self.last_seen_written.load(Ordering::Relaxed);
        now_secs.saturating_sub(last) >= every_secs
            && self
                .last_seen_written
                .compare_exchange(last, now_secs, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    pub fn snapshot(&self) -> PrincipalSnapshot {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PrincipalSnapshot {
            messages_in: l(&self.messages_in),
            bytes_in: l(&self.bytes_in),
            messages_out: l(&self.messages_out),
            bytes_out: l(&self.bytes_out),
            connects: l(&self.connects),
            auth_failures: l(&self.auth_failures),
            denials: l(&self.denials),
        }
    }
}

/// A point-in-time copy of [`PrincipalCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrincipalSnapshot {
    pub messages_in: u64,
    pub bytes_in: u64,
    pub messages_out: u64,
    pub bytes_out: u64,
    pub connects: u64,
    pub auth_failures: u64,
    pub denials: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_help_type_and_value() {
        let m = Metrics::default();
        Metrics::inc(&m.takeovers_total);
        Metrics::inc(&m.takeovers_total);
        let mut out = String::new();
        m.render_prometheus(&mut out);
        assert!(out.contains("# TYPE bulwark_mqtt_takeovers_total counter\n"));
        assert!(out.contains("\nbulwark_mqtt_takeovers_total 2\n"));
        assert!(out.contains("# TYPE bulwark_mqtt_connections_active gauge\n"));
    }

    #[test]
    fn last_seen_is_claimed_at_most_once_per_interval() {
        let c = PrincipalCounters::default();
        assert!(c.claim_last_seen(1_000, 60));
        assert!(!c.claim_last_seen(1_030, 60));
        assert!(c.claim_last_seen(1_060, 60));
    }

    #[test]
    fn principal_counters_are_shared_per_key() {
        let m = Metrics::default();
        Metrics::inc(&m.principal("d1").messages_in);
        Metrics::inc(&m.principal("d1").messages_in);
        assert_eq!(m.principal_snapshot("d1").unwrap().messages_in, 2);
        assert!(m.principal_snapshot("d2").is_none());
    }
}
