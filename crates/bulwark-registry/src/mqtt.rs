//! What the MQTT gateway asks of the registry: may this device connect, and
//! under which policy documents is its session compiled.

use bulwark_policy::{default_device_policy, quarantine_policy, PolicyDocument, Principal};
use bulwark_store::StoreError;
use bulwark_types::{Device, DeviceId, DeviceState};

use crate::{Registry, RegistryError};

/// A device as the gateway sees it at CONNECT (and again whenever the bus
/// says something about it changed).
#[derive(Debug, Clone)]
pub struct DeviceAccess {
    pub device: Device,
    /// The documents its policy is compiled from. A quarantined device gets
    /// the quarantine policy alone, whatever else is attached to its group.
    pub documents: Vec<PolicyDocument>,
}

impl DeviceAccess {
    /// Whether the lifecycle state lets the device hold an MQTT session.
    pub fn may_connect(&self) -> bool {
        matches!(
            self.device.state,
            DeviceState::Active | DeviceState::Quarantined
        )
    }

    /// The policy subject: id, group, and labels as `${device.attr.NAME}`.
    pub fn principal(&self) -> Principal {
        let mut p = Principal::new(self.device.id.clone()).with_group(self.device.group.clone());
        for (k, v) in &self.device.labels {
            p = p.with_attribute(k.clone(), v.clone());
        }
        p
    }
}

impl Registry {
    /// The device's record and the policy documents that apply to it.
    pub async fn device_access(&self, id: &DeviceId) -> Result<DeviceAccess, RegistryError> {
        let device = self
            .store()
            .get_device(id)
            .await?
            .ok_or(RegistryError::Store(StoreError::NotFound { what: "device" }))?
            .device;
        let documents = match device.state {
            DeviceState::Quarantined => vec![quarantine_policy()],
            _ => vec![default_device_policy()],
        };
        Ok(DeviceAccess { device, documents })
    }
}
