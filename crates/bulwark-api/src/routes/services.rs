//! `/v1/services`: service principals (backend applications).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bulwark_api_types::{CreateService, CreatedService, DeletedService, Service};
use serde::Deserialize;
use time::Duration;
use utoipa::IntoParams;

use super::policies::service_name;
use super::ApiQuery;
use crate::extract::{ApiJson, Authed};
use crate::{ApiError, AppState};

/// List service principals with their attached policies.
#[utoipa::path(get, path = "/v1/services", tag = "services",
    responses((status = 200, body = [Service])), security(("bearer" = [])))]
pub(crate) async fn list_services(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
) -> Result<Json<Vec<Service>>, ApiError> {
    Ok(Json(s.registry.list_services(&op).await?))
}

/// Create a service principal (admin only). With `"password": true` the
/// server generates a password, shown in this answer only.
#[utoipa::path(post, path = "/v1/services", tag = "services", request_body = CreateService,
    responses((status = 201, body = CreatedService), (status = 409, description = "exists")),
    security(("bearer" = [])))]
pub(crate) async fn create_service(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    ApiJson(b): ApiJson<CreateService>,
) -> Result<(StatusCode, Json<CreatedService>), ApiError> {
    let (record, generated_password) = s.registry.create_service(&op, b.name, b.password).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedService {
            generated_password,
            record,
        }),
    ))
}

/// Delete a service principal (admin only): its certificates are revoked
/// and its policies detached.
#[utoipa::path(delete, path = "/v1/services/{service}", tag = "services",
    responses((status = 200, body = DeletedService)), security(("bearer" = [])))]
pub(crate) async fn delete_service(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(name): Path<String>,
) -> Result<Json<DeletedService>, ApiError> {
    let name = service_name(name)?;
    let revoked = s.registry.delete_service(&op, name.clone()).await?;
    Ok(Json(DeletedService {
        name,
        revoked_certificates: revoked,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct CertQuery {
    /// Certificate lifetime in seconds (default: the device certificate
    /// lifetime; at most 365 days).
    ttl_seconds: Option<u64>,
}

/// Issue a client certificate for a service (admin only) from its PEM
/// PKCS#10 request; only the request's public key is used. The answer is
/// the PEM certificate (`CN=<service>`, SAN `urn:bulwark:service:<service>`).
#[utoipa::path(post, path = "/v1/services/{service}/certificate", tag = "services",
    params(CertQuery),
    request_body(content = String, content_type = "application/x-pem-file",
        description = "PEM PKCS#10 certificate request"),
    responses((status = 200, content_type = "application/x-pem-file", body = String)),
    security(("bearer" = [])))]
pub(crate) async fn service_certificate(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<CertQuery>,
    body: bytes::Bytes,
) -> Result<Response, ApiError> {
    let name = service_name(name)?;
    let der = bulwark_ca::decode_base64_body(&body)
        .map_err(|e| ApiError::bad_request(format!("certificate request: {e}")))?;
    let lifetime = q
        .ttl_seconds
        .map(|secs| {
            i64::try_from(secs)
                .map(Duration::seconds)
                .map_err(|_| ApiError::bad_request("ttl_seconds is too large"))
        })
        .transpose()?;
    let cert = s
        .registry
        .issue_service_certificate(&op, name.clone(), &der, lifetime)
        .await?;
    tracing::info!(service = %name, serial = %cert.serial, "service certificate issued");
    Ok((
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        cert.pem(),
    )
        .into_response())
}
