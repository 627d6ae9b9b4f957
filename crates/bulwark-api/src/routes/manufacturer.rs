//! `/v1/manufacturer-cas`: manufacturer CAs whose device certificates the
//! MQTT gateway accepts ("bring your own CA", just-in-time registration).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use bulwark_api_types::{
    CreateManufacturerCa, DeletedManufacturerCa, ManufacturerCa, ManufacturerCaDetail,
};
use bulwark_store::ManufacturerCaRecord;
use bulwark_types::ManufacturerCaName;

use crate::extract::{ApiJson, Authed};
use crate::{ApiError, AppState};

fn ca_name(s: String) -> Result<ManufacturerCaName, ApiError> {
    ManufacturerCaName::new(s)
        .map_err(|e| ApiError::bad_request(format!("invalid manufacturer CA name: {e}")))
}

fn detail(rec: ManufacturerCaRecord) -> Result<ManufacturerCaDetail, ApiError> {
    let cert = bulwark_ca::ManufacturerCaCert::from_der(&rec.der).map_err(ApiError::internal)?;
    Ok(ManufacturerCaDetail {
        ca: rec.ca,
        certificate_pem: cert.pem(),
    })
}

/// List registered manufacturer CAs.
#[utoipa::path(get, path = "/v1/manufacturer-cas", tag = "manufacturer-cas",
    responses((status = 200, body = [ManufacturerCa])), security(("bearer" = [])))]
pub(crate) async fn list_manufacturer_cas(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
) -> Result<Json<Vec<ManufacturerCa>>, ApiError> {
    let cas = s.registry.list_manufacturer_cas(&op).await?;
    Ok(Json(cas.into_iter().map(|r| r.ca).collect()))
}

/// Register a manufacturer CA (admin only). Its certificate is checked
/// strictly: one PEM certificate, a CA (`basicConstraints` CA, `keyCertSign`
/// if `keyUsage` is present), valid now, not Bulwark's own CA, an accepted
/// key and signature algorithm. From then on the MQTT gateway accepts
/// device certificates it issued (CN = device id), registering unknown
/// devices as `jit` says.
#[utoipa::path(post, path = "/v1/manufacturer-cas", tag = "manufacturer-cas",
    request_body = CreateManufacturerCa,
    responses((status = 201, body = ManufacturerCaDetail),
        (status = 400, description = "not a usable CA certificate"),
        (status = 409, description = "the name or the certificate is registered already")),
    security(("bearer" = [])))]
pub(crate) async fn create_manufacturer_ca(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    ApiJson(b): ApiJson<CreateManufacturerCa>,
) -> Result<(StatusCode, Json<ManufacturerCaDetail>), ApiError> {
    let rec = s
        .registry
        .create_manufacturer_ca(&op, b.name, &b.certificate_pem, b.group, b.jit)
        .await?;
    Ok((StatusCode::CREATED, Json(detail(rec)?)))
}

/// A registered manufacturer CA with its certificate.
#[utoipa::path(get, path = "/v1/manufacturer-cas/{name}", tag = "manufacturer-cas",
    responses((status = 200, body = ManufacturerCaDetail)), security(("bearer" = [])))]
pub(crate) async fn get_manufacturer_ca(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(name): Path<String>,
) -> Result<Json<ManufacturerCaDetail>, ApiError> {
    let rec = s.registry.get_manufacturer_ca(&op, &ca_name(name)?).await?;
    Ok(Json(detail(rec)?))
}

/// Remove a manufacturer CA (admin only): its certificates stop
/// authenticating at once and the live MQTT sessions of the devices bound
/// to it are disconnected. The devices stay in the inventory; registering
/// the same certificate under the same name again restores them.
#[utoipa::path(delete, path = "/v1/manufacturer-cas/{name}", tag = "manufacturer-cas",
    responses((status = 200, body = DeletedManufacturerCa)), security(("bearer" = [])))]
pub(crate) async fn delete_manufacturer_ca(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(name): Path<String>,
) -> Result<Json<DeletedManufacturerCa>, ApiError> {
    let name = ca_name(name)?;
    let (_, devices) = s.registry.delete_manufacturer_ca(&op, name.clone()).await?;
    Ok(Json(DeletedManufacturerCa { name, devices }))
}
