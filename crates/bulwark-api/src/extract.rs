//! Request extractors: connection facts, the authenticated operator, and
//! JSON bodies whose rejections become problem documents.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use bulwark_registry::Operator;
use serde::de::DeserializeOwned;

use crate::{ApiError, AppState};

/// Facts about the connection a request came in on, set by the listener.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// DER of the TLS client certificate, if one was presented and chained
    /// to Bulwark's CA (expiry and revocation are checked by the registry).
    pub client_cert: Option<Arc<Vec<u8>>>,
}

impl ConnInfo {
    pub(crate) fn from_parts(parts: &Parts) -> Result<&ConnInfo, ApiError> {
        parts
            .extensions
            .get::<ConnInfo>()
            .ok_or_else(|| ApiError::internal("connection info missing"))
    }
}

/// The `Authorization: Bearer` secret, if any.
pub(crate) fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// An authenticated, rate-limited operator.
pub struct Authed(pub Operator);

impl FromRequestParts<Arc<AppState>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let source = ConnInfo::from_parts(parts)?.remote.ip().to_string();
        let token = bearer(parts).ok_or_else(|| {
            ApiError::unauthenticated("an operator token is required (Authorization: Bearer …)")
        })?;
        let op = state.registry.authenticate_operator(token, &source).await?;
        state.limits.check_token(op.token_id())?;
        Ok(Authed(op))
    }
}

/// A JSON body; every rejection is a 4xx problem document.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    let status = r.status();
    let kind = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "body-too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        _ => "invalid-body",
    };
    let detail = match &r {
        JsonRejection::MissingJsonContentType(_) => {
            "expected a request body with Content-Type: application/json".to_string()
        }
        _ if status == StatusCode::PAYLOAD_TOO_LARGE => "request body is too large".to_string(),
        other => other.body_text(),
    };
    // Axum answers 422 for well-formed JSON of the wrong shape; keep it.
    ApiError::new(status, kind, detail)
}

/// An optional JSON body: an empty body is `None`; anything else must be
/// valid JSON of the right shape.
pub struct OptionalJson<T>(pub Option<T>);

impl<T, S> FromRequest<S> for OptionalJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = bytes::Bytes::from_request(req, state).await.map_err(|r| {
            let status = r.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(status, "body-too-large", "request body is too large")
            } else {
                ApiError::bad_request(r.body_text())
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        serde_json::from_slice(&bytes)
            .map(|v| OptionalJson(Some(v)))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid-body", e.to_string()))
    }
}
