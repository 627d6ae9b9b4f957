//! The operator's view of the MQTT gateway: `/v1/mqtt/sessions` and the
//! Prometheus `/metrics`. The gateway owns the sessions; these handlers
//! only check the role (through the registry, so refusals are audited) and
//! render.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bulwark_api_types::{MqttCounters, MqttSession};
use bulwark_gateway::{Gateway, PrincipalSnapshot, SessionInfo};
use bulwark_registry::Action;
use serde::Deserialize;
use utoipa::IntoParams;

use super::ApiQuery;
use crate::extract::Authed;
use crate::{ApiError, AppState};

/// Media type of the Prometheus text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The session kinds [`SessionInfo::kind`] can be.
const KINDS: [&str; 3] = ["device", "service", "dev"];

fn gateway(s: &AppState) -> Result<&Gateway, ApiError> {
    s.gateway.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no-gateway",
            "this server runs no MQTT gateway",
        )
    })
}

fn session(s: SessionInfo) -> MqttSession {
    MqttSession {
        client_id: s.client_id,
        kind: s.kind.to_owned(),
        principal: s.principal,
        connected: s.connected,
        remote: s.remote,
        subscriptions: s.subscriptions,
        queued: s.queued as u64,
        inflight: s.inflight as u64,
    }
}

/// A device's or service's counters as the API shows them.
pub(crate) fn counters(p: PrincipalSnapshot) -> MqttCounters {
    MqttCounters {
        messages_in: p.messages_in,
        bytes_in: p.bytes_in,
        messages_out: p.messages_out,
        bytes_out: p.bytes_out,
        connects: p.connects,
        auth_failures: p.auth_failures,
        denials: p.denials,
    }
}

/// List the MQTT gateway's sessions: connected ones, and persistent ones
/// waiting for their client (`connected: false`), sorted by client id.
/// Roles that may read the inventory.
#[utoipa::path(get, path = "/v1/mqtt/sessions", tag = "mqtt",
    responses((status = 200, body = [MqttSession])), security(("bearer" = [])))]
pub(crate) async fn list_mqtt_sessions(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
) -> Result<Json<Vec<MqttSession>>, ApiError> {
    s.registry.authorize(&op, Action::ReadInventory).await?;
    let sessions = gateway(&s)?.sessions();
    Ok(Json(sessions.into_iter().map(session).collect()))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct DisconnectQuery {
    /// `device`, `service` or `dev`: needed only when the client id is in
    /// use by live sessions of several kinds.
    kind: Option<String>,
}

/// Disconnect a live MQTT session (admin, operator). An MQTT 5 client is
/// sent DISCONNECT with reason 0x98 (administrative action). A persistent
/// session keeps its state, and the client may connect again: to keep a
/// device out, quarantine or decommission it. Audited.
#[utoipa::path(delete, path = "/v1/mqtt/sessions/{client_id}", tag = "mqtt",
    params(("client_id" = String, Path, description = "the MQTT client identifier"), DisconnectQuery),
    responses((status = 204, description = "disconnected"),
        (status = 404, description = "no live session with this client id"),
        (status = 409, description = "several live sessions of different kinds have this client id")),
    security(("bearer" = [])))]
pub(crate) async fn disconnect_mqtt_session(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(client_id): Path<String>,
    ApiQuery(q): ApiQuery<DisconnectQuery>,
) -> Result<StatusCode, ApiError> {
    s.registry.authorize(&op, Action::ManageSessions).await?;
    if let Some(k) = &q.kind {
        if !KINDS.contains(&k.as_str()) {
            return Err(ApiError::bad_request(format!(
                "invalid kind {k:?}: expected device, service or dev"
            )));
        }
    }
    let gw = gateway(&s)?;
    let none = || {
        ApiError::not_found(format!(
            "no live MQTT session has the client id {client_id:?}"
        ))
    };
    let mut live: Vec<&'static str> = gw
        .sessions()
        .into_iter()
        .filter(|x| x.connected && x.client_id == client_id)
        .map(|x| x.kind)
        .filter(|k| q.kind.as_deref().is_none_or(|want| want == *k))
        .collect();
    live.sort_unstable();
    let kind = match live.as_slice() {
        [] => return Err(none()),
        [k] => *k,
        several => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "ambiguous-client-id",
                format!(
                    "the client id {client_id:?} is in use by live sessions of several kinds ({}); \
                     choose one with ?kind=",
                    several.join(", ")
                ),
            ))
        }
    };
    if gw.disconnect(kind, &client_id, op.actor()).await {
        tracing::info!(client_id, kind, "MQTT session disconnected by an operator");
        Ok(StatusCode::NO_CONTENT)
    } else {
        // It left between the look-up and the disconnect.
        Err(none())
    }
}

/// Prometheus metrics in the text exposition format (version 0.0.4): every
/// `bulwark_mqtt_*` counter of the gateway with gauges of its sessions,
/// subscriptions and retained messages, and the API's answers by status
/// class.
///
/// Access: metrics reveal fleet activity, so this endpoint is not public.
/// It needs an operator token whose role may read metrics (admin, operator
/// or auditor; an enroller's is refused), sent as `Authorization: Bearer`:
/// in Prometheus, `authorization: {credentials_file: ...}` in the scrape
/// config, with `scheme: https` and the Bulwark CA bundle as `tls_config.ca_file`.
/// A dedicated auditor token is the least privilege that works.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, description = "no or unknown operator token"),
        (status = 403, description = "the token's role may not read metrics")),
    security(("bearer" = [])))]
pub(crate) async fn metrics(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
) -> Result<Response, ApiError> {
    s.registry.authorize(&op, Action::ReadMetrics).await?;
    let mut out = String::with_capacity(8 * 1024);
    if let Some(gw) = &s.gateway {
        gw.render_metrics(&mut out);
    }
    for m in &s.extra_metrics {
        m.render_metrics(&mut out);
    }
    s.metrics.render_prometheus(&mut out);
    Ok(([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], out).into_response())
}
