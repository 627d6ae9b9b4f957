//! The internal event bus: committed state changes, for live enforcement
//! (the MQTT gateway), detection and anything else that must react.
//!
//! Events are published only after the change is durably committed. The bus
//! is a bounded broadcast channel: a subscriber that falls behind sees
//! `Lagged` and must resynchronise from the store; it never grows memory.

use bulwark_types::{CertSerial, DeviceId, DeviceState, ManufacturerCaName};
use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    DeviceEnrolled {
        device_id: DeviceId,
        serial: CertSerial,
    },
    DeviceStateChanged {
        device_id: DeviceId,
        from: DeviceState,
        to: DeviceState,
    },
    CertificateRevoked {
        serial: CertSerial,
        device_id: Option<DeviceId>,
    },
    OperatorTokenRevoked {
        token_id: String,
    },
    /// A device's group or labels changed: its MQTT policy must be
    /// recompiled.
    DeviceUpdated {
        device_id: DeviceId,
    },
    /// A policy document or a policy attachment changed: every MQTT
    /// session's policy must be recompiled.
    PoliciesChanged,
    /// A service principal changed or was removed.
    ServiceChanged {
        name: String,
    },
    /// A device unknown to the inventory connected with a certificate of a
    /// registered manufacturer CA and was created (`pending` or `active`).
    DeviceJitRegistered {
        device_id: DeviceId,
        manufacturer_ca: ManufacturerCaName,
        state: DeviceState,
    },
    /// A manufacturer CA was registered: its certificates authenticate
    /// from now on (the registry's trust snapshot already has it).
    ManufacturerCaAdded {
        name: ManufacturerCaName,
    },
    /// A manufacturer CA was removed: the sessions of the devices bound to
    /// it must be cut (the trust snapshot no longer has it).
    ManufacturerCaRemoved {
        name: ManufacturerCaName,
        devices: Vec<DeviceId>,
    },
    /// An operator acknowledged, resolved or escalated alert `id`, or
    /// approved, refused or released its `action`: the alert sinks hear of
    /// it. (The detection pipeline's own changes reach them directly.)
    AlertChanged {
        id: i64,
        action: Option<i64>,
    },
}

/// Publisher handle; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventBus(broadcast::Sender<Event>);

impl EventBus {
    pub fn new(capacity: usize) -> Self {
        Self(broadcast::channel(capacity).0)
    }

    pub fn publish(&self, e: Event) {
        // No subscriber is not an error.
        let _ = self.0.send(e);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.0.subscribe()
    }
}
