//! `/v1/alerts`: the alerts detection raised, their lifecycle, response
//! actions (approve, refuse, release, escalate) and evidence bundles.

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use bulwark_api_types::{Alert, AlertList, AlertNote, AlertQuery, AlertState, Escalate};
use bulwark_audit::Actor;
use bulwark_registry::{alert_filter, ActionCommand, Responder};
use bulwark_types::DeviceId;

use super::{device_id, ApiQuery};
use crate::extract::{ApiJson, Authed, OptionalJson};
use crate::{ApiError, AppState};

/// The gateway's side of a response (throttle, disconnect); without a
/// gateway those actions find nothing to do.
#[derive(Clone)]
pub struct GatewayResponder(pub Option<bulwark_gateway::Gateway>);

#[async_trait]
impl Responder for GatewayResponder {
    async fn throttle(&self, device: &DeviceId, rate_per_sec: f64, burst: f64) -> bool {
        self.0
            .as_ref()
            .is_some_and(|g| g.throttle(device, rate_per_sec, burst))
    }

    async fn unthrottle(&self, device: &DeviceId) -> bool {
        self.0.as_ref().is_some_and(|g| g.unthrottle(device))
    }

    async fn disconnect(&self, device: &DeviceId) -> bool {
        match &self.0 {
            Some(g) => g.disconnect_device(device, Actor::System).await,
            None => false,
        }
    }

    async fn block_source(&self, source: std::net::IpAddr, duration: std::time::Duration) -> bool {
        self.0
            .as_ref()
            .is_some_and(|g| g.block_source(source, duration))
    }

    async fn unblock_source(&self, source: std::net::IpAddr) -> bool {
        self.0.as_ref().is_some_and(|g| g.unblock_source(source))
    }
}

fn responder(s: &AppState) -> GatewayResponder {
    GatewayResponder(s.gateway.clone())
}

/// Alerts, oldest first; `after` follows new ones.
#[utoipa::path(get, path = "/v1/alerts", tag = "alerts", params(AlertQuery),
    responses((status = 200, body = AlertList), (status = 400)), security(("bearer" = [])))]
pub(crate) async fn list_alerts(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    ApiQuery(q): ApiQuery<AlertQuery>,
) -> Result<Json<AlertList>, ApiError> {
    let device = q.device.map(device_id).transpose()?;
    let state = q
        .state
        .map(|st| {
            AlertState::parse(&st).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unknown alert state {st:?}: open, acknowledged or resolved"
                ))
            })
        })
        .transpose()?;
    let alerts = s
        .registry
        .alerts_list(&op, alert_filter(q.after, device, state, q.limit))
        .await?;
    Ok(Json(AlertList { alerts }))
}

/// One alert with its actions.
#[utoipa::path(get, path = "/v1/alerts/{id}", tag = "alerts",
    responses((status = 200, body = Alert), (status = 404)), security(("bearer" = [])))]
pub(crate) async fn get_alert(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(id): Path<i64>,
) -> Result<Json<Alert>, ApiError> {
    Ok(Json(s.registry.alert_get(&op, id).await?))
}

/// The evidence bundle captured when the alert opened (JSON; its SHA-256
/// is the alert's `bundle_sha256` and is in the audit log).
#[utoipa::path(get, path = "/v1/alerts/{id}/bundle", tag = "alerts",
    responses((status = 200, content_type = "application/json"), (status = 404)),
    security(("bearer" = [])))]
pub(crate) async fn alert_bundle(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    let body = s.registry.alert_bundle(&op, id).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body))
}

/// Acknowledge an open alert.
#[utoipa::path(post, path = "/v1/alerts/{id}/acknowledge", tag = "alerts",
    request_body = Option<AlertNote>,
    responses((status = 200, body = Alert), (status = 404), (status = 409)),
    security(("bearer" = [])))]
pub(crate) async fn acknowledge_alert(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(id): Path<i64>,
    OptionalJson(b): OptionalJson<AlertNote>,
) -> Result<Json<Alert>, ApiError> {
    let reason = b.and_then(|b| b.reason);
    Ok(Json(
        s.registry
            .alert_set_state(&op, id, AlertState::Acknowledged, reason)
            .await?,
    ))
}

/// Resolve an alert: actions still scheduled or awaiting approval are
/// cancelled; applied reversible ones stay until their release.
#[utoipa::path(post, path = "/v1/alerts/{id}/resolve", tag = "alerts",
    request_body = Option<AlertNote>,
    responses((status = 200, body = Alert), (status = 404), (status = 409)),
    security(("bearer" = [])))]
pub(crate) async fn resolve_alert(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(id): Path<i64>,
    OptionalJson(b): OptionalJson<AlertNote>,
) -> Result<Json<Alert>, ApiError> {
    let reason = b.and_then(|b| b.reason);
    Ok(Json(
        s.registry
            .alert_set_state(&op, id, AlertState::Resolved, reason)
            .await?,
    ))
}

/// Carry out an action on the alert's device now (an operator's decision:
/// no approval step).
#[utoipa::path(post, path = "/v1/alerts/{id}/escalate", tag = "alerts",
    request_body = Escalate,
    responses((status = 200, body = Alert), (status = 400), (status = 404), (status = 409)),
    security(("bearer" = [])))]
pub(crate) async fn escalate_alert(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(id): Path<i64>,
    ApiJson(b): ApiJson<Escalate>,
) -> Result<Json<Alert>, ApiError> {
    let alert = s
        .registry
        .alert_escalate(&op, id, b.action, b.release_after_secs, &responder(&s))
        .await?;
    tracing::warn!(
        alert = id,
        action = b.action.as_str(),
        "alert escalated by an operator"
    );
    Ok(Json(alert))
}

/// `approve` (an action awaiting approval runs now), `reject` (it never
/// runs) or `release` (an applied throttle or restriction is undone now).
#[utoipa::path(post, path = "/v1/alerts/{id}/actions/{action}/{command}", tag = "alerts",
    responses((status = 200, body = Alert), (status = 400), (status = 404), (status = 409)),
    security(("bearer" = [])))]
pub(crate) async fn alert_action(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path((id, action, command)): Path<(i64, i64, String)>,
) -> Result<Json<Alert>, ApiError> {
    let cmd = ActionCommand::parse(&command).ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown action command {command:?}: approve, reject or release"
        ))
    })?;
    let alert = s
        .registry
        .alert_action_command(&op, id, action, cmd, &responder(&s))
        .await?;
    tracing::warn!(alert = id, action, %command, "response action {command} by an operator");
    Ok(Json(alert))
}
