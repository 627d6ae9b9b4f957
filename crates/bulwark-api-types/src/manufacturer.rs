//! `/v1/manufacturer-cas`: manufacturer CAs ("bring your own CA") whose
//! device certificates the MQTT gateway accepts, with just-in-time
//! registration of the devices they name.

use bulwark_types::{DeviceId, GroupId, JitMode, ManufacturerCa, ManufacturerCaName};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /v1/manufacturer-cas`: register a manufacturer CA (admin only).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateManufacturerCa {
    /// The name devices bound to the CA refer to it by.
    #[schema(value_type = String)]
    pub name: ManufacturerCaName,
    /// The CA certificate, PEM (one `CERTIFICATE` block, at most 16 KiB).
    /// It must issue device certificates directly, whose subject CN is the
    /// device id.
    pub certificate_pem: String,
    /// The group devices registered just in time join (required unless
    /// `jit` is `off`).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub group: Option<GroupId>,
    /// What a certificate for a device the inventory does not hold does:
    /// `off` (refused; the device must be registered with this CA first),
    /// `pending` (created pending, refused until an operator activates it)
    /// or `active` (created active). Default `off`.
    #[serde(default)]
    #[schema(value_type = String)]
    pub jit: JitMode,
}

/// A registered manufacturer CA with its certificate
/// (`GET /v1/manufacturer-cas/{name}`, and the answer to a registration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ManufacturerCaDetail {
    #[serde(flatten)]
    pub ca: ManufacturerCa,
    /// The CA certificate, PEM.
    pub certificate_pem: String,
}

/// The answer to `DELETE /v1/manufacturer-cas/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DeletedManufacturerCa {
    #[schema(value_type = String)]
    pub name: ManufacturerCaName,
    /// The devices bound to it: their certificates no longer authenticate
    /// and their live MQTT sessions were disconnected.
    #[schema(value_type = Vec<String>)]
    pub devices: Vec<DeviceId>,
}
