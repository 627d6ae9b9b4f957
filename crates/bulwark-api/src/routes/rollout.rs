//! `/v1/ota/rollouts` and `/v1/ota/reports`: rollouts of releases over the
//! fleet, operator control, and the devices' step reports (mTLS; a report
//! is answered only once recorded).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use bulwark_api_types::{CreateRollout, DeviceReport, Rollout, RolloutCommand, RolloutDevice};
use bulwark_registry::ClientIdentity;

use crate::extract::{ApiJson, Authed, ConnInfo, OptionalJson};
use crate::{ApiError, AppState};

/// Create a rollout: the active devices the selector matches, in phases.
#[utoipa::path(post, path = "/v1/ota/rollouts", tag = "ota", request_body = CreateRollout,
    responses((status = 201, body = Rollout), (status = 400), (status = 404, description = "no such release")),
    security(("bearer" = [])))]
pub(crate) async fn create_rollout(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    ApiJson(b): ApiJson<CreateRollout>,
) -> Result<(StatusCode, Json<Rollout>), ApiError> {
    let r = s
        .registry
        .ota_create_rollout(&op, b.release, b.selector, b.plan)
        .await?;
    tracing::info!(rollout = %r.id, release = %r.release, "rollout created");
    Ok((StatusCode::CREATED, Json(r)))
}

/// Rollouts with their progress.
#[utoipa::path(get, path = "/v1/ota/rollouts", tag = "ota",
    responses((status = 200, body = [Rollout])), security(("bearer" = [])))]
pub(crate) async fn list_rollouts(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
) -> Result<Json<Vec<Rollout>>, ApiError> {
    Ok(Json(s.registry.ota_rollouts(&op).await?))
}

/// One rollout with per-phase counts.
#[utoipa::path(get, path = "/v1/ota/rollouts/{id}", tag = "ota",
    responses((status = 200, body = Rollout), (status = 404)), security(("bearer" = [])))]
pub(crate) async fn get_rollout(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(id): Path<String>,
) -> Result<Json<Rollout>, ApiError> {
    Ok(Json(s.registry.ota_rollout(&op, &id).await?))
}

/// Every device of a rollout with its step, attempts and reason.
#[utoipa::path(get, path = "/v1/ota/rollouts/{id}/devices", tag = "ota",
    responses((status = 200, body = [RolloutDevice]), (status = 404)), security(("bearer" = [])))]
pub(crate) async fn rollout_devices(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(id): Path<String>,
) -> Result<Json<Vec<RolloutDevice>>, ApiError> {
    Ok(Json(s.registry.ota_rollout_devices(&op, &id).await?))
}

/// Pause, resume or cancel a rollout (operators, release managers, admins).
#[utoipa::path(post, path = "/v1/ota/rollouts/{id}/{command}", tag = "ota",
    request_body = Option<RolloutCommand>,
    responses((status = 200, body = Rollout), (status = 409, description = "not in a state that allows it")),
    security(("bearer" = [])))]
pub(crate) async fn control_rollout(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path((id, command)): Path<(String, String)>,
    OptionalJson(b): OptionalJson<RolloutCommand>,
) -> Result<Json<Rollout>, ApiError> {
    let reason = b.and_then(|b| b.reason);
    let r = s
        .registry
        .ota_control_rollout(&op, &id, &command, reason)
        .await?;
    tracing::info!(rollout = %r.id, status = %r.status, "rollout {command}");
    Ok(Json(r))
}

/// A device reports a step of its update (its client certificate is its
/// identity). 409 when the report does not advance it (stale, replayed).
#[utoipa::path(post, path = "/v1/ota/reports", tag = "ota", request_body = DeviceReport,
    responses((status = 204), (status = 401), (status = 404), (status = 409)))]
pub(crate) async fn device_report(
    State(s): State<Arc<AppState>>,
    Extension(conn): Extension<ConnInfo>,
    ApiJson(b): ApiJson<DeviceReport>,
) -> Result<StatusCode, ApiError> {
    let Some(cert) = conn.client_cert else {
        return Err(ApiError::unauthenticated(
            "a device certificate is required to report",
        ));
    };
    let ClientIdentity::Device(device) = s.registry.identify_client(&cert).await? else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "not-a-device",
            "only devices report update steps",
        ));
    };
    s.registry
        .ota_device_report(&device, &b.rollout, &b.release, &b.step, b.reason)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
