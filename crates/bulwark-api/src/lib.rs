//! Bulwark's HTTPS API: the operator API under `/v1` and EST (RFC 7030)
//! under `/.well-known/est/`.
//!
//! This crate parses requests, authenticates callers, enforces rate and size
//! limits and renders answers. Decisions live in `bulwark-registry`. Errors
//! become RFC 9457 problem documents in one place ([`error::ApiError`]).

mod error;
mod extract;
mod limits;
mod metrics;
mod mqtt_tls;
mod openapi;
mod routes;
mod tls;

use std::sync::Arc;

use axum::Router;
use bulwark_registry::Registry;

pub use error::ApiError;
pub use extract::ConnInfo;
pub use limits::{LimitConfig, Limits};
pub use metrics::ApiMetrics;
pub use mqtt_tls::{mqtt_tls_config, LiveClientVerifier};
pub use openapi::openapi_json;
pub use routes::GatewayResponder;
pub use tls::{serve, server_tls_config, ServeConfig};

/// Shared state of every handler.
pub struct AppState {
    pub registry: Arc<Registry>,
    pub limits: Limits,
    /// The MQTT gateway, for the operator's view of it (sessions, per-device
    /// counters, metrics); `None` when the server runs none.
    pub gateway: Option<bulwark_gateway::Gateway>,
    /// The API's own counters, shown at `/metrics`.
    pub metrics: ApiMetrics,
    /// More counters for `/metrics` (the detection pipeline's).
    pub extra_metrics: Vec<Arc<dyn RenderMetrics>>,
}

/// Something with counters to show at `/metrics`, in the Prometheus text
/// format (version 0.0.4), `# HELP` and `# TYPE` lines included.
pub trait RenderMetrics: Send + Sync {
    fn render_metrics(&self, out: &mut String);
}

/// The whole API router.
pub fn router(state: Arc<AppState>) -> Router {
    routes::router(state)
}
