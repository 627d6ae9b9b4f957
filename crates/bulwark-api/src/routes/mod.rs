//! The route table, the per-address limiter and the fallback.

mod alerts;
mod audit;
mod ca;
mod devices;
mod est;
mod fleet;
mod manufacturer;
mod mqtt;
mod ota;
mod policies;
mod rollout;
mod services;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use axum::Router;
use bulwark_types::{CertSerial, DeviceId};

use crate::extract::ConnInfo;
use crate::{ApiError, AppState};

pub use alerts::GatewayResponder;
pub(crate) use alerts::*;
pub(crate) use audit::*;
pub(crate) use ca::*;
pub(crate) use devices::*;
pub(crate) use est::*;
pub(crate) use fleet::*;
pub(crate) use manufacturer::*;
pub(crate) use mqtt::*;
pub(crate) use ota::*;
pub(crate) use policies::*;
pub(crate) use rollout::*;
pub(crate) use services::*;

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let limits = state.limits.config;
    let v1 = Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
        .route("/ca/chain.pem", get(chain_pem))
        .route("/ca/crl", get(crl_der))
        .route("/ca/crl.pem", get(crl_pem))
        .route("/devices", get(list_devices).post(create_device))
        .route("/devices/{id}", get(get_device).patch(update_device))
        .route("/devices/{id}/activate", post(activate))
        .route("/devices/{id}/quarantine", post(quarantine))
        .route("/devices/{id}/release", post(release))
        .route("/devices/{id}/decommission", post(decommission))
        .route("/devices/{id}/metrics", get(device_metrics))
        .route(
            "/devices/{id}/effective-policy",
            get(device_effective_policy),
        )
        .route("/groups", get(list_groups).post(create_group))
        .route(
            "/groups/{group}/policies/{name}",
            put(attach_group_policy).delete(detach_group_policy),
        )
        .route("/policies", get(list_policies).post(put_policy))
        .route("/policies/test", post(test_policy))
        .route("/policies/{name}", get(get_policy).delete(delete_policy))
        .route(
            "/manufacturer-cas",
            get(list_manufacturer_cas).post(create_manufacturer_ca),
        )
        .route(
            "/manufacturer-cas/{name}",
            get(get_manufacturer_ca).delete(delete_manufacturer_ca),
        )
        .route("/services", get(list_services).post(create_service))
        .route("/services/{service}", delete(delete_service))
        .route("/services/{service}/certificate", post(service_certificate))
        .route(
            "/services/{service}/effective-policy",
            get(service_effective_policy),
        )
        .route(
            "/services/{service}/policies/{name}",
            put(attach_service_policy).delete(detach_service_policy),
        )
        .route(
            "/enroll-tokens",
            get(list_enroll_tokens).post(create_enroll_token),
        )
        .route("/certificates/{serial}", get(get_certificate))
        .route("/certificates/{serial}/revoke", post(revoke_certificate))
        .route("/claims", get(list_claims).post(create_claim))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}/revoke", post(revoke_token))
        .route("/audit", get(audit_entries))
        .route("/audit/export", get(audit_export))
        .route("/audit/verify", get(audit_verify))
        .route("/mqtt/sessions", get(list_mqtt_sessions))
        .route(
            "/mqtt/sessions/{client_id}",
            delete(disconnect_mqtt_session),
        )
        .route("/ota/artifacts", post(upload_artifact))
        .route("/ota/releases", get(list_releases).post(create_release))
        .route("/ota/releases/prepare", post(prepare_release))
        .route("/ota/releases/{name}", get(get_release))
        .route("/ota/tuf/{*path}", get(tuf_file))
        .route("/ota/root", get(get_root).post(publish_root))
        .route("/ota/root/prepare", post(prepare_root))
        .route("/ota/rollouts", get(list_rollouts).post(create_rollout))
        .route("/ota/rollouts/{id}", get(get_rollout))
        .route("/ota/rollouts/{id}/devices", get(rollout_devices))
        .route("/ota/rollouts/{id}/{command}", post(control_rollout))
        .route("/ota/reports", post(device_report))
        .route("/alerts", get(list_alerts))
        .route("/alerts/{id}", get(get_alert))
        .route("/alerts/{id}/bundle", get(alert_bundle))
        .route("/alerts/{id}/acknowledge", post(acknowledge_alert))
        .route("/alerts/{id}/resolve", post(resolve_alert))
        .route("/alerts/{id}/escalate", post(escalate_alert))
        .route(
            "/alerts/{id}/actions/{action}/{command}",
            post(alert_action),
        )
        .layer(DefaultBodyLimit::max(limits.max_body_bytes));
    let est = Router::new()
        .route("/cacerts", get(est_cacerts))
        .route("/simpleenroll", post(est_simpleenroll))
        .route("/simplereenroll", post(est_simplereenroll))
        .layer(DefaultBodyLimit::max(limits.max_est_body_bytes));
    Router::new()
        .route("/metrics", get(metrics))
        .nest("/v1", v1)
        .nest("/.well-known/est", est)
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), per_ip_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::count,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

async fn per_ip_limit(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(c) = req.extensions().get::<ConnInfo>() {
        state.limits.check_ip(c.remote.ip())?;
    }
    Ok(next.run(req).await)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    let status = axum::http::StatusCode::METHOD_NOT_ALLOWED;
    ApiError::new(
        status,
        "method-not-allowed",
        "this endpoint does not allow that method",
    )
}

pub(crate) fn device_id(s: String) -> Result<DeviceId, ApiError> {
    DeviceId::new(s).map_err(|e| ApiError::bad_request(format!("invalid device id: {e}")))
}

pub(crate) fn serial(s: &str) -> Result<CertSerial, ApiError> {
    CertSerial::parse_hex(s).map_err(|e| ApiError::bad_request(format!("invalid serial: {e}")))
}

/// Query strings whose rejections are problem documents.
pub(crate) struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|r| ApiError::bad_request(r.body_text()))
    }
}
