//! `/v1/devices`: inventory and lifecycle.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use bulwark_api_types::{
    CreateDevice, Device, DeviceMetrics, DeviceView, LifecycleAction, MetricPeriod, MetricsQuery,
    UpdateDevice,
};
use bulwark_store::{DeviceFilter, DeviceUpdate, NewDevice};
use bulwark_types::{DeviceState, GroupId};
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use utoipa::IntoParams;

use super::{device_id, ApiQuery};
use crate::extract::{ApiJson, Authed, OptionalJson};
use crate::{ApiError, AppState};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeviceQuery {
    /// Only devices of this group.
    group: Option<String>,
    /// Only devices in this state.
    state: Option<String>,
    /// Keyset pagination: only ids after this one.
    after: Option<String>,
    /// At most this many (default 1000, max 10000).
    limit: Option<u32>,
}

/// List devices.
#[utoipa::path(get, path = "/v1/devices", tag = "devices", params(DeviceQuery),
    responses((status = 200, body = [Device])), security(("bearer" = [])))]
pub(crate) async fn list_devices(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    ApiQuery(q): ApiQuery<DeviceQuery>,
) -> Result<Json<Vec<Device>>, ApiError> {
    let filter = DeviceFilter {
        group: q
            .group
            .map(GroupId::new)
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("invalid group: {e}")))?,
        state: q
            .state
            .map(|st| {
                DeviceState::parse(&st).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "invalid state {st:?}: expected pending, active, quarantined or decommissioned"
                    ))
                })
            })
            .transpose()?,
        after: q.after.map(device_id).transpose()?,
        limit: Some(q.limit.unwrap_or(1000).min(10_000)),
    };
    Ok(Json(s.registry.list_devices(&op, filter).await?))
}

/// Pre-register a device (state `pending`). With `manufacturer_ca`, the
/// device is bound to that registered manufacturer CA: it authenticates
/// with that CA's certificates and becomes active with the first one.
#[utoipa::path(post, path = "/v1/devices", tag = "devices", request_body = CreateDevice,
    responses((status = 201, body = Device)), security(("bearer" = [])))]
pub(crate) async fn create_device(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    ApiJson(b): ApiJson<CreateDevice>,
) -> Result<(StatusCode, Json<Device>), ApiError> {
    let d = s
        .registry
        .create_device(
            &op,
            NewDevice {
                id: b.id,
                group: b.group,
                labels: b.labels,
                hardware_model: b.hardware_model,
                manufacturer_ca: b.manufacturer_ca,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(d)))
}

/// A device with its certificate history and its MQTT counters since the
/// server started.
#[utoipa::path(get, path = "/v1/devices/{id}", tag = "devices",
    responses((status = 200, body = DeviceView)), security(("bearer" = [])))]
pub(crate) async fn get_device(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(id): Path<String>,
) -> Result<Json<DeviceView>, ApiError> {
    let id = device_id(id)?;
    let detail = s.registry.get_device(&op, &id).await?;
    let mqtt = s
        .gateway
        .as_ref()
        .map(|g| super::mqtt::counters(g.principal_counters(id.as_str()).unwrap_or_default()));
    Ok(Json(DeviceView::new(detail, mqtt)))
}

/// Detection's metric summaries of a device, newest first: one per summary
/// period (`[response] summary_interval_secs`) in which the device was
/// active, kept `summary_retention_days`. Needs the permission to read
/// alerts.
#[utoipa::path(get, path = "/v1/devices/{id}/metrics", tag = "devices", params(MetricsQuery),
    responses((status = 200, body = DeviceMetrics), (status = 400), (status = 403),
        (status = 404)),
    security(("bearer" = [])))]
pub(crate) async fn device_metrics(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<MetricsQuery>,
) -> Result<Json<DeviceMetrics>, ApiError> {
    let id = device_id(id)?;
    let since = match q.since {
        None => time::OffsetDateTime::UNIX_EPOCH,
        Some(t) => time::OffsetDateTime::parse(&t, &Rfc3339).map_err(|_| {
            ApiError::bad_request(format!(
                "invalid since {t:?}: expected an RFC 3339 time such as 2025-01-31T12:00:00Z \
                 (a '+' offset must be sent as %2B)"
            ))
        })?,
    };
    let max = bulwark_registry::MAX_SUMMARIES;
    let limit = q.limit.unwrap_or(100);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "invalid limit {limit}: must be between 1 and {max}"
        )));
    }
    let summaries = s
        .registry
        .device_metrics(&op, &id, since, limit)
        .await?
        .into_iter()
        .map(|m| MetricPeriod {
            start: m.period_start,
            end: m.period_end,
            active_windows: m.active_windows,
            metrics: m.metrics,
        })
        .collect();
    Ok(Json(DeviceMetrics {
        device: id,
        summaries,
    }))
}

/// Change a device's labels, hardware model or firmware version.
#[utoipa::path(patch, path = "/v1/devices/{id}", tag = "devices", request_body = UpdateDevice,
    responses((status = 200, body = Device)), security(("bearer" = [])))]
pub(crate) async fn update_device(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(id): Path<String>,
    ApiJson(b): ApiJson<UpdateDevice>,
) -> Result<Json<Device>, ApiError> {
    for (name, v) in [
        ("hardware_model", &b.hardware_model),
        ("firmware_version", &b.firmware_version),
    ] {
        if v.as_ref()
            .is_some_and(|v| v.len() > 128 || v.chars().any(char::is_control))
        {
            return Err(ApiError::bad_request(format!(
                "{name} must be at most 128 printable characters"
            )));
        }
    }
    let u = DeviceUpdate {
        labels: b.labels,
        hardware_model: b.hardware_model,
        firmware_version: b.firmware_version,
    };
    Ok(Json(
        s.registry.update_device(&op, device_id(id)?, u).await?,
    ))
}

async fn lifecycle(
    s: Arc<AppState>,
    op: bulwark_registry::Operator,
    id: String,
    to: DeviceState,
    body: OptionalJson<LifecycleAction>,
) -> Result<Json<Device>, ApiError> {
    if let OptionalJson(Some(b)) = &body {
        if b.reason.as_ref().is_some_and(|r| r.len() > 1024) {
            return Err(ApiError::bad_request("reason is longer than 1024 bytes"));
        }
    }
    Ok(Json(s.registry.transition(&op, device_id(id)?, to).await?))
}

/// Activate a pending device that connected with a manufacturer CA's
/// certificate and was registered just in time as `pending`
/// (pending -> active). Any other pending device becomes active only by
/// enrolling.
#[utoipa::path(post, path = "/v1/devices/{id}/activate", tag = "devices",
    request_body(content = LifecycleAction, description = "optional"),
    responses((status = 200, body = Device), (status = 409, description = "invalid transition")),
    security(("bearer" = [])))]
pub(crate) async fn activate(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(id): Path<String>,
    body: OptionalJson<LifecycleAction>,
) -> Result<Json<Device>, ApiError> {
    let id = device_id(id)?;
    let current = s.registry.get_device(&op, &id).await?.device.state;
    if current != DeviceState::Pending {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "invalid-transition",
            format!("device {id} is {current}; only a pending device can be activated"),
        ));
    }
    lifecycle(s, op, id.to_string(), DeviceState::Active, body).await
}

/// Quarantine a device (active -> quarantined).
#[utoipa::path(post, path = "/v1/devices/{id}/quarantine", tag = "devices",
    request_body(content = LifecycleAction, description = "optional"),
    responses((status = 200, body = Device), (status = 409, description = "invalid transition")),
    security(("bearer" = [])))]
pub(crate) async fn quarantine(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(id): Path<String>,
    body: OptionalJson<LifecycleAction>,
) -> Result<Json<Device>, ApiError> {
    lifecycle(s, op, id, DeviceState::Quarantined, body).await
}

/// Release a device from quarantine (quarantined -> active).
#[utoipa::path(post, path = "/v1/devices/{id}/release", tag = "devices",
    responses((status = 200, body = Device), (status = 409, description = "invalid transition")),
    security(("bearer" = [])))]
pub(crate) async fn release(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(id): Path<String>,
    body: OptionalJson<LifecycleAction>,
) -> Result<Json<Device>, ApiError> {
    lifecycle(s, op, id, DeviceState::Active, body).await
}

/// Decommission a device: terminal, revokes every certificate it has.
#[utoipa::path(post, path = "/v1/devices/{id}/decommission", tag = "devices",
    responses((status = 200, body = Device), (status = 409, description = "invalid transition")),
    security(("bearer" = [])))]
pub(crate) async fn decommission(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(id): Path<String>,
    body: OptionalJson<LifecycleAction>,
) -> Result<Json<Device>, ApiError> {
    lifecycle(s, op, id, DeviceState::Decommissioned, body).await
}
