//! What the MQTT gateway asks of the registry: may this device or service
//! connect, and under which policy documents is its session compiled.
//!
//! - a device: the built-in `default-device` policy plus the current
//!   version of every policy attached to its group; a quarantined device
//!   gets the built-in `quarantine` policy alone;
//! - a service: the current versions of the policies attached to it, and
//!   nothing else (a service with no policy may do nothing).

use bulwark_policy::{default_device_policy, quarantine_policy, PolicyDocument, Principal};
use bulwark_store::{StoreError, StoredPolicy};
use bulwark_types::{
    Device, DeviceId, DeviceState, PolicyName, PolicyTarget, Service, ServiceName,
};

use crate::{Registry, RegistryError};

/// Where one of the documents a session is compiled from came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    pub name: PolicyName,
    /// The stored version; `None` for a built-in policy.
    pub version: Option<u32>,
}

impl PolicySource {
    pub(crate) fn builtin(doc: &PolicyDocument) -> Self {
        Self {
            name: PolicyName::new(doc.name())
                .expect("built-in policy names are valid policy names (tested)"),
            version: None,
        }
    }
}

/// A device as the gateway sees it at CONNECT (and again whenever the bus
/// says something about it changed).
#[derive(Debug, Clone)]
pub struct DeviceAccess {
    pub device: Device,
    /// The documents its policy is compiled from. A quarantined device gets
    /// the quarantine policy alone, whatever else is attached to its group.
    pub documents: Vec<PolicyDocument>,
    /// Where each document came from, in the same order as `documents`.
    pub sources: Vec<PolicySource>,
    /// False when the device is bound to a manufacturer CA that is no
    /// longer registered: it holds no certificate the gateway accepts.
    pub credential_trusted: bool,
}

impl DeviceAccess {
    /// Whether the lifecycle state lets the device hold an MQTT session
    /// (and its manufacturer CA, if it has one, is still registered).
    pub fn may_connect(&self) -> bool {
        self.credential_trusted
            && matches!(
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

/// A service principal as the gateway sees it at CONNECT (and again when
/// the bus says its policies or the service changed).
#[derive(Debug, Clone)]
pub struct ServiceAccess {
    pub service: Service,
    /// The current versions of the policies attached to it; empty means
    /// it may do nothing.
    pub documents: Vec<PolicyDocument>,
    /// Where each document came from, in the same order as `documents`.
    pub sources: Vec<PolicySource>,
}

impl ServiceAccess {
    /// The policy subject: the service's name, and no `${device.*}` values.
    pub fn principal(&self) -> Principal {
        Principal::service(self.service.name.clone())
    }
}

/// Parses stored documents. They were validated when stored; one that no
/// longer parses is a corrupt store, never the caller's mistake.
fn parse_stored(
    stored: Vec<StoredPolicy>,
    documents: &mut Vec<PolicyDocument>,
    sources: &mut Vec<PolicySource>,
) -> Result<(), RegistryError> {
    for p in stored {
        let doc = PolicyDocument::from_json(&p.document).map_err(|e| {
            StoreError::Internal(format!(
                "stored policy {} version {} does not parse: {e}",
                p.name, p.version
            ))
        })?;
        documents.push(doc);
        sources.push(PolicySource {
            name: p.name,
            version: Some(p.version),
        });
    }
    Ok(())
}

impl Registry {
    /// The device's record and the policy documents that apply to it.
    pub async fn device_access(&self, id: &DeviceId) -> Result<DeviceAccess, RegistryError> {
        // One reader job: the device row and its group's policies.
        let (device, attached) = self
            .store()
            .get_device_with_group_policies(id)
            .await?
            .ok_or(RegistryError::Store(StoreError::NotFound {
                what: "device",
            }))?;
        let (mut documents, mut sources) = (Vec::new(), Vec::new());
        if device.state == DeviceState::Quarantined {
            let q = quarantine_policy();
            sources.push(PolicySource::builtin(&q));
            documents.push(q);
        } else {
            let d = default_device_policy();
            sources.push(PolicySource::builtin(&d));
            documents.push(d);
            parse_stored(attached, &mut documents, &mut sources)?;
        }
        let credential_trusted = match &device.manufacturer_ca {
            Some(ca) => self.manufacturer_ca_registered(ca).await?,
            None => true,
        };
        Ok(DeviceAccess {
            device,
            documents,
            sources,
            credential_trusted,
        })
    }

    /// The service's record and the policy documents attached to it.
    pub async fn service_access(&self, name: &ServiceName) -> Result<ServiceAccess, RegistryError> {
        let service = self
            .store()
            .get_service(name)
            .await?
            .ok_or(RegistryError::Store(StoreError::NotFound {
                what: "service",
            }))?
            .service;
        let (mut documents, mut sources) = (Vec::new(), Vec::new());
        let attached = self
            .store()
            .attached_policies(&PolicyTarget::Service(name.clone()))
            .await?;
        parse_stored(attached, &mut documents, &mut sources)?;
        Ok(ServiceAccess {
            service,
            documents,
            sources,
        })
    }
}
