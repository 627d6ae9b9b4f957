//! The API's own counters for `/metrics`: answers by status class, counted
//! by a middleware around every route (limiter refusals included).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;

use crate::AppState;

/// Status classes counted, in order.
const CLASSES: [&str; 4] = ["2xx", "3xx", "4xx", "5xx"];

/// Counters of the HTTPS API. Plain atomics: counting never blocks.
#[derive(Debug, Default)]
pub struct ApiMetrics {
    responses: [AtomicU64; 4],
}

impl ApiMetrics {
    fn count(&self, status: StatusCode) {
        // The API never answers 1xx; were it to, it would count as 2xx.
        let i = usize::from(status.as_u16() / 100).clamp(2, 5) - 2;
        self.responses[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render_prometheus(&self, out: &mut String) {
        let name = "bulwark_api_responses_total";
        let _ = writeln!(
            out,
            "# HELP {name} HTTP answers of the operator API and EST, by status class.\n\
             # TYPE {name} counter"
        );
        for (class, n) in CLASSES.iter().zip(&self.responses) {
            let n = n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}{{class=\"{class}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP bulwark_build_info The version of the running server.\n\
             # TYPE bulwark_build_info gauge\n\
             bulwark_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
    }
}

/// Middleware: counts every answer.
pub(crate) async fn count(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let resp = next.run(req).await;
    state.metrics.count(resp.status());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_by_class() {
        let m = ApiMetrics::default();
        m.count(StatusCode::OK);
        m.count(StatusCode::NO_CONTENT);
        m.count(StatusCode::FORBIDDEN);
        m.count(StatusCode::SERVICE_UNAVAILABLE);
        let mut out = String::new();
        m.render_prometheus(&mut out);
        for line in [
            "# TYPE bulwark_api_responses_total counter",
            "bulwark_api_responses_total{class=\"2xx\"} 2",
            "bulwark_api_responses_total{class=\"3xx\"} 0",
            "bulwark_api_responses_total{class=\"4xx\"} 1",
            "bulwark_api_responses_total{class=\"5xx\"} 1",
            "# TYPE bulwark_build_info gauge",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "{line:?} missing from {out}"
            );
        }
    }
}
