//! Who is calling, proven: operators by bearer token, devices, claims and
//! services by client certificate (devices also by a registered
//! manufacturer CA's certificate), services also by password. The
//! constructors are private to this crate.

use bulwark_audit::Actor;
use bulwark_types::{CertSerial, DeviceId, GroupId, ManufacturerCaName, Role, ServiceName};
use time::OffsetDateTime;

use crate::RegistryError;

/// Things an operator may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ReadGroups,
    ReadInventory,
    ManageGroups,
    ManageDevices,
    CreateEnrollToken,
    RevokeCertificate,
    ManageClaims,
    ManageTokens,
    ReadAudit,
    /// Store, delete, attach and detach MQTT policies.
    ManagePolicies,
    /// Read policies, effective policies, and test decisions.
    ReadPolicies,
    /// Create and delete service principals and issue their certificates.
    ManageServices,
    /// Disconnect live MQTT sessions.
    ManageSessions,
    /// Read the Prometheus metrics (they reveal fleet activity).
    ReadMetrics,
    /// Register and remove manufacturer CAs: whatever such a CA signs may
    /// speak for a device, so this is an admin's decision.
    ManageManufacturerCas,
    /// List and show registered manufacturer CAs.
    ReadManufacturerCas,
    /// Upload OTA artifacts and publish releases (what devices will run).
    ManageReleases,
    /// List releases and rollouts.
    ReadOta,
    /// Pause, resume and cancel rollouts.
    ControlRollouts,
    /// List alerts, their actions and evidence bundles.
    ReadAlerts,
    /// Acknowledge and resolve alerts; approve, refuse, release and
    /// escalate response actions.
    ManageAlerts,
    /// Publish a new root of the update repository (rotate the keys that
    /// decide what devices trust): an admin's decision.
    RotateOtaRoot,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadGroups => "read groups",
            Self::ReadInventory => "read the inventory",
            Self::ManageGroups => "manage groups",
            Self::ManageDevices => "manage devices",
            Self::CreateEnrollToken => "create enrollment tokens",
            Self::RevokeCertificate => "revoke certificates",
            Self::ManageClaims => "manage claim certificates",
            Self::ManageTokens => "manage operator tokens",
            Self::ReadAudit => "read the audit log",
            Self::ManagePolicies => "manage policies",
            Self::ReadPolicies => "read policies",
            Self::ManageServices => "manage service principals",
            Self::ManageSessions => "manage MQTT sessions",
            Self::ReadMetrics => "read metrics",
            Self::ManageManufacturerCas => "manage manufacturer CAs",
            Self::ReadManufacturerCas => "read manufacturer CAs",
            Self::ManageReleases => "manage OTA releases",
            Self::ReadOta => "read OTA releases and rollouts",
            Self::ControlRollouts => "pause, resume and cancel rollouts",
            Self::ReadAlerts => "read alerts",
            Self::ManageAlerts => "manage alerts and response actions",
            Self::RotateOtaRoot => "rotate the OTA root",
        }
    }

    /// The role matrix. Admin may do everything; the others are narrow.
    pub fn allowed_for(self, role: Role) -> bool {
        use Action::*;
        match role {
            Role::Admin => true,
            Role::Operator => !matches!(
                self,
                ManageTokens
                    | ReadAudit
                    | ManageServices
                    | ManageManufacturerCas
                    | ManageReleases
                    | RotateOtaRoot
            ),
            Role::Auditor => matches!(
                self,
                ReadGroups
                    | ReadInventory
                    | ReadAudit
                    | ReadPolicies
                    | ReadMetrics
                    | ReadManufacturerCas
                    | ReadOta
                    | ReadAlerts
            ),
            Role::Enroller => matches!(self, ReadGroups | CreateEnrollToken),
            Role::ReleaseManager => {
                matches!(
                    self,
                    ReadGroups | ReadInventory | ManageReleases | ReadOta | ControlRollouts
                )
            }
        }
    }
}

/// An authenticated operator. Only [`crate::Registry::authenticate_operator`]
/// builds one.
#[derive(Debug, Clone)]
pub struct Operator {
    pub(crate) token_id: String,
    pub(crate) role: Role,
}

impl Operator {
    pub fn token_id(&self) -> &str {
        &self.token_id
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn actor(&self) -> Actor {
        Actor::Operator {
            token_id: self.token_id.clone(),
            role: self.role,
        }
    }

    /// Refuses unless the role allows `action`.
    pub fn require(&self, action: Action) -> Result<(), RegistryError> {
        if action.allowed_for(self.role) {
            Ok(())
        } else {
            Err(RegistryError::Forbidden {
                role: self.role.to_string(),
                action: action.as_str(),
            })
        }
    }

    /// For the bootstrap path inside the server process (dev mode, first
    /// start): an admin acting as the system itself.
    pub(crate) fn system_admin() -> Self {
        Self {
            token_id: "bootstrap".into(),
            role: Role::Admin,
        }
    }
}

/// The certificate a device authenticated with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceCredential {
    /// One Bulwark issued to it.
    Bulwark(CertSerial),
    /// One a registered manufacturer CA issued, recorded by its SHA-256
    /// fingerprint (its serial is the manufacturer's, and may collide).
    Manufacturer {
        ca: ManufacturerCaName,
        fingerprint: String,
    },
}

/// A device authenticated by a certificate Bulwark issued to it, or one a
/// registered manufacturer CA issued.
#[derive(Debug, Clone)]
pub struct DeviceIdentity {
    pub(crate) device_id: DeviceId,
    pub(crate) credential: DeviceCredential,
    pub(crate) not_after: OffsetDateTime,
}

impl DeviceIdentity {
    pub fn device_id(&self) -> &DeviceId {
        &self.device_id
    }
    /// The serial of the Bulwark certificate it presented; `None` for a
    /// manufacturer certificate.
    pub fn serial(&self) -> Option<&CertSerial> {
        match &self.credential {
            DeviceCredential::Bulwark(s) => Some(s),
            DeviceCredential::Manufacturer { .. } => None,
        }
    }
    pub fn credential(&self) -> &DeviceCredential {
        &self.credential
    }
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }
}

/// A factory claim certificate: may only enroll, into its group.
#[derive(Debug, Clone)]
pub struct ClaimIdentity {
    pub(crate) claim_id: String,
    pub(crate) group: GroupId,
    pub(crate) rate_per_minute: u32,
    pub(crate) serial: CertSerial,
}

impl ClaimIdentity {
    pub fn claim_id(&self) -> &str {
        &self.claim_id
    }
    pub fn serial(&self) -> &CertSerial {
        &self.serial
    }
}

/// A service principal, authenticated by a certificate Bulwark issued to
/// it or by its password. Only the registry builds one.
#[derive(Debug, Clone)]
pub struct ServiceIdentity {
    pub(crate) name: ServiceName,
    /// The certificate it presented; `None` when it used its password.
    pub(crate) serial: Option<CertSerial>,
}

impl ServiceIdentity {
    pub fn name(&self) -> &ServiceName {
        &self.name
    }

    /// The serial of the certificate it authenticated with, if any.
    pub fn serial(&self) -> Option<&CertSerial> {
        self.serial.as_ref()
    }
}

/// What a TLS client certificate proved.
#[derive(Debug, Clone)]
pub enum ClientIdentity {
    Device(DeviceIdentity),
    Claim(ClaimIdentity),
    Service(ServiceIdentity),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole matrix, spelled out:
    /// (action, admin, operator, auditor, enroller, release manager).
    #[test]
    fn role_matrix() {
        use Action::*;
        let table = [
            (ReadGroups, true, true, true, true, true),
            (ReadInventory, true, true, true, false, true),
            (ManageGroups, true, true, false, false, false),
            (ManageDevices, true, true, false, false, false),
            (CreateEnrollToken, true, true, false, true, false),
            (RevokeCertificate, true, true, false, false, false),
            (ManageClaims, true, true, false, false, false),
            (ManageTokens, true, false, false, false, false),
            (ReadAudit, true, false, true, false, false),
            (ManagePolicies, true, true, false, false, false),
            (ReadPolicies, true, true, true, false, false),
            (ManageServices, true, false, false, false, false),
            (ManageSessions, true, true, false, false, false),
            (ReadMetrics, true, true, true, false, false),
            (ManageManufacturerCas, true, false, false, false, false),
            (ReadManufacturerCas, true, true, true, false, false),
            (ManageReleases, true, false, false, false, true),
            (ReadOta, true, true, true, false, true),
            (ControlRollouts, true, true, false, false, true),
            (ReadAlerts, true, true, true, false, false),
            (ManageAlerts, true, true, false, false, false),
            (RotateOtaRoot, true, false, false, false, false),
        ];
        for (action, admin, operator, auditor, enroller, release) in table {
            for (role, expect) in [
                (Role::Admin, admin),
                (Role::Operator, operator),
                (Role::Auditor, auditor),
                (Role::Enroller, enroller),
                (Role::ReleaseManager, release),
            ] {
                assert_eq!(action.allowed_for(role), expect, "{role} / {action:?}");
            }
        }
    }

    #[test]
    fn refusal_names_role_and_action() {
        let op = Operator {
            token_id: "t".into(),
            role: Role::Auditor,
        };
        let e = op.require(Action::ManageDevices).unwrap_err();
        assert_eq!(e.to_string(), "role auditor may not manage devices");
    }
}
