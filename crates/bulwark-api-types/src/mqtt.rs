//! The operator's view of the MQTT gateway: live sessions and per-device
//! counters.

use bulwark_types::{Certificate, Device, DeviceDetail, ManufacturerCertificate};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One MQTT session held by the gateway (`GET /v1/mqtt/sessions`):
/// connected now, or persistent and waiting for its client to return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MqttSession {
    /// The MQTT client identifier.
    pub client_id: String,
    /// `device`, `service` or `dev` (the plaintext dev listener). The same
    /// client id can be in use under two kinds.
    pub kind: String,
    /// The device id, the service name, or `dev`.
    pub principal: String,
    /// Whether a connection is attached now.
    pub connected: bool,
    /// The connection's source address, when connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// Subscribed topic filters, sorted.
    pub subscriptions: Vec<String>,
    /// Messages queued for delivery.
    pub queued: u64,
    /// QoS 1/2 deliveries sent and not yet acknowledged.
    pub inflight: u64,
}

/// A principal's MQTT counters since the server started (they are kept in
/// memory only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MqttCounters {
    /// PUBLISH packets it sent that were accepted.
    pub messages_in: u64,
    /// Payload bytes of those.
    pub bytes_in: u64,
    /// PUBLISH packets delivered to it.
    pub messages_out: u64,
    /// Payload bytes of those.
    pub bytes_out: u64,
    /// Successful CONNECTs.
    pub connects: u64,
    /// CONNECTs refused for identity reasons.
    pub auth_failures: u64,
    /// Publishes, subscriptions and deliveries refused by policy or limits.
    pub denials: u64,
}

/// `GET /v1/devices/{id}`: the device, its certificates (newest first)
/// and its MQTT counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeviceView {
    #[serde(flatten)]
    pub device: Device,
    pub certificates: Vec<Certificate>,
    /// Certificates of its manufacturer CA it connected with, newest first
    /// (absent for a device enrolled through Bulwark's CA).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manufacturer_certificates: Vec<ManufacturerCertificate>,
    /// MQTT counters since the server started: zeros for a device that has
    /// not connected since; absent when the server runs no MQTT gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<MqttCounters>,
}

impl DeviceView {
    pub fn new(detail: DeviceDetail, mqtt: Option<MqttCounters>) -> Self {
        Self {
            device: detail.device,
            certificates: detail.certificates,
            manufacturer_certificates: detail.manufacturer_certificates,
            mqtt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The device's fields stay at the top level, as before `mqtt` existed.
    #[test]
    fn device_view_keeps_the_device_fields_flat() {
        let device: Device = serde_json::from_value(serde_json::json!({
            "id": "d1", "group": "g", "state": "active", "labels": {},
            "hardware_model": null, "firmware_version": null,
            "created_at": "2025-01-31T12:00:00Z", "enrolled_at": null, "last_seen_at": null
        }))
        .unwrap();
        let view = DeviceView {
            device,
            certificates: Vec::new(),
            manufacturer_certificates: Vec::new(),
            mqtt: Some(MqttCounters {
                messages_in: 2,
                ..MqttCounters::default()
            }),
        };
        let v = serde_json::to_value(&view).unwrap();
        assert_eq!(v["id"], "d1");
        assert_eq!(v["state"], "active");
        assert_eq!(v["mqtt"]["messages_in"], 2);
        assert_eq!(serde_json::from_value::<DeviceView>(v).unwrap(), view);
    }
}
