//! Groups, enrollment tokens, certificates, claims and operator tokens.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use bulwark_api_types::{
    Certificate, Claim, CreateClaim, CreateEnrollToken, CreateGroup, CreateOperatorToken,
    CreatedClaim, CreatedEnrollToken, CreatedOperatorToken, EnrollToken, Group, OperatorToken,
    RevokeCertificate,
};
use time::Duration;

use super::serial;
use crate::extract::{ApiJson, Authed, OptionalJson};
use crate::{ApiError, AppState};

fn ttl(secs: Option<u64>) -> Result<Option<Duration>, ApiError> {
    secs.map(|s| {
        i64::try_from(s)
            .map(Duration::seconds)
            .map_err(|_| ApiError::bad_request("ttl_seconds is too large"))
    })
    .transpose()
}

/// List groups.
#[utoipa::path(get, path = "/v1/groups", tag = "groups",
    responses((status = 200, body = [Group])), security(("bearer" = [])))]
pub(crate) async fn list_groups(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
) -> Result<Json<Vec<Group>>, ApiError> {
    Ok(Json(s.registry.list_groups(&op).await?))
}

/// Create a group.
#[utoipa::path(post, path = "/v1/groups", tag = "groups", request_body = CreateGroup,
    responses((status = 201, body = Group), (status = 409, description = "exists")),
    security(("bearer" = [])))]
pub(crate) async fn create_group(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    ApiJson(b): ApiJson<CreateGroup>,
) -> Result<(StatusCode, Json<Group>), ApiError> {
    let g = s.registry.create_group(&op, b.name, b.description).await?;
    Ok((StatusCode::CREATED, Json(g)))
}

/// Create a single-use enrollment token; the secret is in this answer only.
#[utoipa::path(post, path = "/v1/enroll-tokens", tag = "enrollment",
    request_body = CreateEnrollToken,
    responses((status = 201, body = CreatedEnrollToken)), security(("bearer" = [])))]
pub(crate) async fn create_enroll_token(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    ApiJson(b): ApiJson<CreateEnrollToken>,
) -> Result<(StatusCode, Json<CreatedEnrollToken>), ApiError> {
    let (token, record) = s
        .registry
        .create_enroll_token(&op, b.group, b.device_id, ttl(b.ttl_seconds)?)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedEnrollToken { token, record }),
    ))
}

/// List enrollment tokens (never their secrets).
#[utoipa::path(get, path = "/v1/enroll-tokens", tag = "enrollment",
    responses((status = 200, body = [EnrollToken])), security(("bearer" = [])))]
pub(crate) async fn list_enroll_tokens(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
) -> Result<Json<Vec<EnrollToken>>, ApiError> {
    Ok(Json(s.registry.list_enroll_tokens(&op).await?))
}

/// One certificate, by serial (hex; case and colons ignored).
#[utoipa::path(get, path = "/v1/certificates/{serial}", tag = "certificates",
    responses((status = 200, body = Certificate)), security(("bearer" = [])))]
pub(crate) async fn get_certificate(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(sn): Path<String>,
) -> Result<Json<Certificate>, ApiError> {
    Ok(Json(s.registry.get_certificate(&op, &serial(&sn)?).await?))
}

/// Revoke a certificate; the CRL and connected sessions follow.
#[utoipa::path(post, path = "/v1/certificates/{serial}/revoke", tag = "certificates",
    request_body(content = RevokeCertificate, description = "optional"),
    responses((status = 200, body = Certificate), (status = 409, description = "already revoked")),
    security(("bearer" = [])))]
pub(crate) async fn revoke_certificate(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(sn): Path<String>,
    OptionalJson(b): OptionalJson<RevokeCertificate>,
) -> Result<Json<Certificate>, ApiError> {
    let reason = b.and_then(|b| b.reason).unwrap_or_default();
    Ok(Json(
        s.registry
            .revoke_certificate(&op, serial(&sn)?, reason)
            .await?,
    ))
}

/// Issue a claim certificate for a factory batch from the batch key's CSR.
#[utoipa::path(post, path = "/v1/claims", tag = "enrollment", request_body = CreateClaim,
    responses((status = 201, body = CreatedClaim)), security(("bearer" = [])))]
pub(crate) async fn create_claim(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    ApiJson(b): ApiJson<CreateClaim>,
) -> Result<(StatusCode, Json<CreatedClaim>), ApiError> {
    let der = bulwark_ca::decode_base64_body(b.csr_pem.as_bytes())
        .map_err(|e| ApiError::bad_request(format!("csr_pem: {e}")))?;
    let (cert, record) = s
        .registry
        .create_claim(&op, b.group, &der, ttl(b.ttl_seconds)?, b.rate_per_minute)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedClaim {
            certificate_pem: cert.pem(),
            record,
        }),
    ))
}

/// List claim certificates.
#[utoipa::path(get, path = "/v1/claims", tag = "enrollment",
    responses((status = 200, body = [Claim])), security(("bearer" = [])))]
pub(crate) async fn list_claims(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
) -> Result<Json<Vec<Claim>>, ApiError> {
    Ok(Json(s.registry.list_claims(&op).await?))
}

/// Create an operator token (admin only); the secret is in this answer only.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = CreateOperatorToken,
    responses((status = 201, body = CreatedOperatorToken)), security(("bearer" = [])))]
pub(crate) async fn create_token(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    ApiJson(b): ApiJson<CreateOperatorToken>,
) -> Result<(StatusCode, Json<CreatedOperatorToken>), ApiError> {
    let (token, record) = s
        .registry
        .create_operator_token(&op, b.name, b.role, ttl(b.ttl_seconds)?)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedOperatorToken { token, record }),
    ))
}

/// List operator tokens (admin only; never their secrets).
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    responses((status = 200, body = [OperatorToken])), security(("bearer" = [])))]
pub(crate) async fn list_tokens(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
) -> Result<Json<Vec<OperatorToken>>, ApiError> {
    Ok(Json(s.registry.list_operator_tokens(&op).await?))
}

/// Revoke an operator token (admin only).
#[utoipa::path(post, path = "/v1/tokens/{id}/revoke", tag = "tokens",
    responses((status = 200, body = OperatorToken)), security(("bearer" = [])))]
pub(crate) async fn revoke_token(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(id): Path<String>,
) -> Result<Json<OperatorToken>, ApiError> {
    if id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(ApiError::bad_request("invalid token id"));
    }
    Ok(Json(s.registry.revoke_operator_token(&op, id).await?))
}
