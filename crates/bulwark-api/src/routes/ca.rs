//! Public CA material and health: no authentication needed.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bulwark_api_types::Health;
use time::OffsetDateTime;

use crate::{ApiError, AppState};

/// Liveness and version.
#[utoipa::path(get, path = "/v1/health", tag = "meta", responses((status = 200, body = Health)))]
pub(crate) async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        now: OffsetDateTime::now_utc(),
    })
}

/// This OpenAPI document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, content_type = "application/json", body = Object)))]
pub(crate) async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        crate::openapi::openapi_json(),
    )
        .into_response()
}

/// The issuing CA and the root, PEM.
#[utoipa::path(get, path = "/v1/ca/chain.pem", tag = "ca",
    responses((status = 200, content_type = "application/pem-certificate-chain", body = String)))]
pub(crate) async fn chain_pem(State(s): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/pem-certificate-chain")],
        s.registry.ca().chain_pem(),
    )
        .into_response()
}

/// The current CRL of the issuing CA, DER.
#[utoipa::path(get, path = "/v1/ca/crl", tag = "ca",
    responses((status = 200, content_type = "application/pkix-crl", body = Vec<u8>)))]
pub(crate) async fn crl_der(State(s): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let der = s.registry.crl_der().await?;
    Ok(([(header::CONTENT_TYPE, "application/pkix-crl")], der).into_response())
}

/// The current CRL of the issuing CA, PEM.
#[utoipa::path(get, path = "/v1/ca/crl.pem", tag = "ca",
    responses((status = 200, content_type = "application/x-pem-file", body = String)))]
pub(crate) async fn crl_pem(State(s): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let der = s.registry.crl_der().await?;
    let pem = crl_to_pem(&der);
    Ok(([(header::CONTENT_TYPE, "application/x-pem-file")], pem).into_response())
}

fn crl_to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN X509 CRL-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END X509 CRL-----\n");
    out
}
