//! Every failure, mapped to HTTP once: an RFC 9457 problem document with a
//! status that names the caller's mistake, never an internal detail.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bulwark_api_types::{Problem, PROBLEM_JSON};
use bulwark_registry::RegistryError;
use bulwark_store::StoreError;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub detail: String,
    pub retry_after: Option<u64>,
    pub www_authenticate: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
            retry_after: None,
            www_authenticate: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid-request", detail)
    }

    pub fn unauthenticated(detail: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", detail);
        e.www_authenticate = Some("Bearer realm=\"bulwark\"");
        e
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", detail)
    }

    pub fn rate_limited(retry_after: u64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            format!("too many requests; retry after {retry_after} s"),
        );
        e.retry_after = Some(retry_after);
        e
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server could not complete the request; see its log",
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        use StatusCode as S;
        let (status, kind) = match &e {
            StoreError::NotFound { .. } => (S::NOT_FOUND, "not-found"),
            StoreError::AlreadyExists { .. } => (S::CONFLICT, "already-exists"),
            StoreError::NoSuchGroup(_) => (S::UNPROCESSABLE_ENTITY, "no-such-group"),
            StoreError::TokenInvalid | StoreError::TokenUsed | StoreError::TokenExpired => {
                let mut a = ApiError::unauthenticated(e.to_string());
                a.kind = "enrollment-token-refused";
                return a;
            }
            StoreError::GroupMismatch { .. } => (S::FORBIDDEN, "group-mismatch"),
            StoreError::AlreadyEnrolled(_) => (S::CONFLICT, "already-enrolled"),
            StoreError::DeviceState { .. } => (S::FORBIDDEN, "device-state"),
            StoreError::Transition(_) => (S::CONFLICT, "invalid-transition"),
            StoreError::CertificateRevoked(_)
            | StoreError::CertificateExpired(_)
            | StoreError::CertificateMismatch(_) => (S::UNAUTHORIZED, "certificate-refused"),
            StoreError::AlreadyRevoked(_) | StoreError::TokenAlreadyRevoked(_) => {
                (S::CONFLICT, "already-revoked")
            }
            StoreError::PolicyInUse { .. } => (S::CONFLICT, "policy-in-use"),
            StoreError::Conflict(_) => (S::CONFLICT, "conflict"),
            StoreError::ManufacturerBinding(_) => (S::CONFLICT, "manufacturer-binding"),
            StoreError::Unavailable => (S::SERVICE_UNAVAILABLE, "unavailable"),
            StoreError::Internal(_) | StoreError::Sqlite(_) => return ApiError::internal(e),
        };
        ApiError::new(status, kind, e.to_string())
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Unauthenticated(m) => ApiError::unauthenticated(m),
            RegistryError::Forbidden { .. } => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
            }
            RegistryError::RateLimited { retry_after_secs } => {
                ApiError::rate_limited(retry_after_secs)
            }
            RegistryError::Invalid(m) => ApiError::bad_request(m),
            RegistryError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            RegistryError::Store(s) => s.into(),
            RegistryError::Ca(c) => ApiError::internal(c),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self
            .status
            .canonical_reason()
            .unwrap_or("Error")
            .to_string();
        let problem = Problem {
            type_: format!("urn:bulwark:problem:{}", self.kind),
            title,
            status: self.status.as_u16(),
            detail: Some(self.detail),
            instance: None,
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut resp = (self.status, body).into_response();
        let h = resp.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(w) = self.www_authenticate {
            h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(w));
        }
        resp
    }
}
