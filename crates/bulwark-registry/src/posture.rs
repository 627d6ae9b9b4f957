//! System-level reads for the scheduled posture audits: the fleet's
//! devices with their certificates (a page at a time), the stored MQTT
//! policies in plain form, and the audit log's verification.
//!
//! These take no [`crate::Operator`]: the server's own audit task calls
//! them, they change no state and sign nothing, and what they return goes
//! only into alerts (which operators read through the usual role checks).

use bulwark_audit::{VerifyError, VerifyReport};
use bulwark_policy::{Effect, PolicyDocument};
use bulwark_store::{CertRecord, DevicePosture};
use bulwark_types::{DeviceId, PolicyName, PolicyTarget};

use crate::{Registry, RegistryError};

/// Most devices read in one page.
pub const MAX_POSTURE_PAGE: u32 = 1000;

/// One statement of a policy, in plain words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostureStatement {
    /// Position in the document, from 0.
    pub index: usize,
    pub allow: bool,
    /// `connect`, `publish`, `subscribe`, `receive`.
    pub actions: Vec<&'static str>,
    /// Resource templates as written (`devices/${device.id}/#`).
    pub resources: Vec<String>,
}

/// A policy's current document and where it is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PosturePolicy {
    pub name: PolicyName,
    /// `None` for a built-in policy.
    pub version: Option<u32>,
    pub attachments: Vec<PolicyTarget>,
    pub statements: Vec<PostureStatement>,
}

impl PosturePolicy {
    /// The plain form of `document`.
    pub fn from_document(
        name: PolicyName,
        version: Option<u32>,
        attachments: Vec<PolicyTarget>,
        document: &PolicyDocument,
    ) -> Self {
        let statements = document
            .statements()
            .iter()
            .enumerate()
            .map(|(index, s)| PostureStatement {
                index,
                allow: s.effect() == Effect::Allow,
                actions: s.actions().iter().map(|a| a.as_str()).collect(),
                resources: s.resources().iter().map(ToString::to_string).collect(),
            })
            .collect();
        PosturePolicy {
            name,
            version,
            attachments,
            statements,
        }
    }
}

impl Registry {
    /// Devices with ids greater than `after`, by id, at most `limit` (capped
    /// at [`MAX_POSTURE_PAGE`]), with their certificates.
    pub async fn posture_devices(
        &self,
        after: Option<&DeviceId>,
        limit: u32,
    ) -> Result<Vec<DevicePosture>, RegistryError> {
        Ok(self
            .store
            .posture_devices(after.cloned(), limit.clamp(1, MAX_POSTURE_PAGE))
            .await?)
    }

    /// One device with its certificates, read afresh (to confirm a finding
    /// before raising it). The certificates come without their DER.
    pub async fn posture_device(
        &self,
        id: &DeviceId,
    ) -> Result<Option<DevicePosture>, RegistryError> {
        Ok(self.store.get_device(id).await?.map(|d| DevicePosture {
            device: d.device,
            certificates: d
                .certificates
                .into_iter()
                .map(|info| CertRecord {
                    info,
                    der: Vec::new(),
                })
                .collect(),
            manufacturer_certificates: d.manufacturer_certificates,
        }))
    }

    /// The current version of every stored (not built-in) policy, with its
    /// attachments. A stored document that no longer parses is logged and
    /// left out (the gateway refuses it the same way).
    pub async fn posture_policies(&self) -> Result<Vec<PosturePolicy>, RegistryError> {
        let mut out = Vec::new();
        for summary in self.store.list_policies().await? {
            if summary.builtin {
                continue;
            }
            let Some(record) = self.store.get_policy(&summary.name, None).await? else {
                continue; // deleted since it was listed
            };
            match PolicyDocument::from_json(&record.selected.document) {
                Ok(doc) => out.push(PosturePolicy::from_document(
                    summary.name,
                    Some(record.selected.version),
                    summary.attachments,
                    &doc,
                )),
                Err(e) => tracing::warn!(
                    policy = %summary.name,
                    version = record.selected.version,
                    error = %e,
                    "stored policy does not parse; left out of the posture audit"
                ),
            }
        }
        Ok(out)
    }

    /// Verifies the whole audit log against its signed checkpoints, as the
    /// system: like [`Registry::audit_verify`] without an operator, and
    /// without signing a checkpoint first (entries after the last
    /// checkpoint are verified by the chain alone).
    pub async fn audit_verify_system(
        &self,
    ) -> Result<Result<VerifyReport, VerifyError>, RegistryError> {
        Ok(self.store.verify_audit(self.ca.audit_public_key()).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_device_policy_in_plain_form() {
        let doc = crate::builtin_policy("default-device").unwrap();
        let p = PosturePolicy::from_document(
            PolicyName::new("default-device").unwrap(),
            None,
            Vec::new(),
            &doc,
        );
        assert_eq!(p.statements.len(), 3);
        assert_eq!(
            p.statements[1],
            PostureStatement {
                index: 1,
                allow: true,
                actions: vec!["publish"],
                resources: vec!["devices/${device.id}/#".into()],
            }
        );
    }
}
