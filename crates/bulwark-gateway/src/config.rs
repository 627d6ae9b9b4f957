//! The gateway's limits, with secure defaults. Validated by the server's
//! configuration loader before any port is bound.

use std::time::Duration;

/// Every bound the gateway enforces. Defaults are what a fleet of small
/// devices needs and no more; raise them per deployment.
#[derive(Debug, Clone)]
pub struct GatewayLimits {
    /// TLS handshake deadline (slowloris before TLS).
    pub handshake_timeout: Duration,
    /// Deadline for the CONNECT packet after the handshake.
    pub connect_timeout: Duration,
    /// Largest packet accepted before the client is authenticated.
    pub max_packet_size_unauthenticated: u32,
    /// Largest packet accepted from an authenticated client (advertised in
    /// CONNACK as Maximum Packet Size).
    pub max_packet_size: u32,
    /// Concurrent connections, all listeners together.
    pub max_connections: usize,
    /// Concurrent connections from one source address.
    pub max_connections_per_ip: u32,
    /// Subscriptions one session may hold.
    pub max_subscriptions: usize,
    /// Longest topic name or filter, in bytes.
    pub max_topic_len: usize,
    /// Most levels in a topic name or filter.
    pub max_topic_levels: usize,
    /// QoS 1/2 messages the server accepts from a client before their
    /// acknowledgement (advertised as Receive Maximum).
    pub receive_maximum: u16,
    /// QoS 1/2 messages sent to a client and not yet acknowledged, at most
    /// (the client's own Receive Maximum may lower it).
    pub max_inflight: u16,
    /// Messages waiting for a session (offline, or behind its window).
    pub max_queued: usize,
    /// Topic aliases a client may set up (advertised as Topic Alias Maximum).
    pub topic_alias_maximum: u16,
    /// Largest keepalive accepted; MQTT 5 clients asking for more (or 0)
    /// are told this value as Server Keep Alive.
    pub max_keepalive_secs: u16,
    /// Longest session expiry granted; also the expiry of MQTT 3.1.1
    /// persistent sessions, which have none of their own.
    pub max_session_expiry_secs: u32,
    /// Per-principal publish rate: sustained messages per second, and burst.
    pub publish_rate: f64,
    pub publish_burst: f64,
    /// Per-principal publish volume: sustained bytes per second, and burst.
    pub publish_bytes_rate: f64,
    pub publish_bytes_burst: f64,
    /// Failed authentications from one source address before it is made to
    /// wait; the wait doubles with each further failure, up to the maximum.
    pub auth_failures_before_backoff: u32,
    pub auth_backoff_max: Duration,
    /// Connects of one client id within `flap_window` before further
    /// connects are refused until the window passes.
    pub flap_max_connects: u32,
    pub flap_window: Duration,
    /// Retained messages kept, at most.
    pub max_retained: usize,
}

impl Default for GatewayLimits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            max_packet_size_unauthenticated: 16 * 1024,
            max_packet_size: 256 * 1024,
            max_connections: 100_000,
            max_connections_per_ip: 1_000,
            max_subscriptions: 64,
            max_topic_len: 256,
            max_topic_levels: 16,
            receive_maximum: 64,
            max_inflight: 32,
            max_queued: 1_000,
            topic_alias_maximum: 32,
            max_keepalive_secs: 1_200,
            max_session_expiry_secs: 7 * 24 * 3600,
            publish_rate: 100.0,
            publish_burst: 200.0,
            publish_bytes_rate: 1024.0 * 1024.0,
            publish_bytes_burst: 4.0 * 1024.0 * 1024.0,
            auth_failures_before_backoff: 5,
            auth_backoff_max: Duration::from_secs(60),
            flap_max_connects: 30,
            flap_window: Duration::from_secs(60),
            max_retained: 100_000,
        }
    }
}

impl GatewayLimits {
    /// Checks the relations between limits; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        let nonzero = [
            (
                "max_packet_size_unauthenticated",
                u64::from(self.max_packet_size_unauthenticated),
            ),
            ("max_packet_size", u64::from(self.max_packet_size)),
            ("max_connections", self.max_connections as u64),
            (
                "max_connections_per_ip",
                u64::from(self.max_connections_per_ip),
            ),
            ("max_subscriptions", self.max_subscriptions as u64),
            ("max_topic_len", self.max_topic_len as u64),
            ("max_topic_levels", self.max_topic_levels as u64),
            ("receive_maximum", u64::from(self.receive_maximum)),
            ("max_inflight", u64::from(self.max_inflight)),
            ("max_queued", self.max_queued as u64),
            ("flap_max_connects", u64::from(self.flap_max_connects)),
        ];
        if let Some((name, _)) = nonzero.iter().find(|(_, v)| *v == 0) {
            return Err(format!("mqtt.{name} must be greater than 0"));
        }
        if self.max_packet_size > bulwark_mqtt::MAX_PACKET_SIZE {
            return Err(format!(
                "mqtt.max_packet_size must be at most {}",
                bulwark_mqtt::MAX_PACKET_SIZE
            ));
        }
        if self.max_packet_size_unauthenticated > self.max_packet_size {
            return Err(
                "mqtt.max_packet_size_unauthenticated must not exceed mqtt.max_packet_size".into(),
            );
        }
        if self.max_topic_len > 65_535 {
            return Err("mqtt.max_topic_len must be at most 65535".into());
        }
        for (name, v) in [
            ("publish_rate", self.publish_rate),
            ("publish_burst", self.publish_burst),
            ("publish_bytes_rate", self.publish_bytes_rate),
            ("publish_bytes_burst", self.publish_bytes_burst),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("mqtt.{name} must be a positive number"));
            }
        }
        if self.publish_burst < 1.0 {
            return Err("mqtt.publish_burst must be at least 1".into());
        }
        if self.publish_bytes_burst < f64::from(self.max_packet_size) {
            return Err("mqtt.publish_bytes_burst must be at least mqtt.max_packet_size, or large messages could never be sent".into());
        }
        if self.handshake_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err("mqtt handshake and CONNECT timeouts must be greater than 0".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        GatewayLimits::default().validate().unwrap();
    }

    type Change = fn(&mut GatewayLimits);

    #[test]
    fn invalid_limits_name_the_field() {
        let cases: Vec<(Change, &str)> = vec![
            (|l| l.max_inflight = 0, "mqtt.max_inflight"),
            (
                |l| l.max_packet_size_unauthenticated = l.max_packet_size + 1,
                "max_packet_size_unauthenticated",
            ),
            (|l| l.publish_rate = f64::NAN, "mqtt.publish_rate"),
            (|l| l.publish_bytes_burst = 10.0, "mqtt.publish_bytes_burst"),
            (|l| l.max_packet_size = u32::MAX, "mqtt.max_packet_size"),
        ];
        for (change, field) in cases {
            let mut l = GatewayLimits::default();
            change(&mut l);
            let e = l.validate().unwrap_err();
            assert!(e.contains(field), "{e} should name {field}");
        }
    }
}
