//! EST (RFC 7030) under `/.well-known/est/`.
//!
//! Requests carry a base64 DER PKCS#10 (`application/pkcs10`); answers are
//! base64 DER PKCS#7 certs-only (`application/pkcs7-mime;
//! smime-type=certs-only`, `Content-Transfer-Encoding: base64`), so curl +
//! openssl and standard EST clients interoperate.
//!
//! `simpleenroll` is authorized by an enrollment token (Bearer, or the
//! password of HTTP Basic) or by a claim certificate; `simplereenroll` only
//! by the device's current certificate over TLS.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bulwark_registry::{ClientIdentity, Enrolled};

use crate::extract::{bearer, ConnInfo};
use crate::{ApiError, AppState};

const PKCS7: &str = "application/pkcs7-mime; smime-type=certs-only";

fn pkcs7_response(ders: &[&[u8]]) -> Result<Response, ApiError> {
    let p7 = bulwark_ca::certs_only_pkcs7(ders).map_err(ApiError::internal)?;
    let mut resp = (StatusCode::OK, bulwark_ca::encode_base64_body(&p7)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PKCS7));
    h.insert(
        "content-transfer-encoding",
        HeaderValue::from_static("base64"),
    );
    Ok(resp)
}

fn enrolled(e: Enrolled) -> Result<Response, ApiError> {
    tracing::info!(device_id = %e.device_id, serial = %e.cert.serial, "certificate issued");
    pkcs7_response(&[&e.cert.der])
}

/// The CA certificates a device should trust: issuing CA and root.
#[utoipa::path(get, path = "/.well-known/est/cacerts", tag = "est",
    responses((status = 200, content_type = "application/pkcs7-mime", body = String)))]
pub(crate) async fn est_cacerts(State(s): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let ca = s.registry.ca();
    pkcs7_response(&[ca.issuing_der(), ca.root_der()])
}

/// Reads and decodes an EST request body: content type, size, base64.
async fn csr_body(req: Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    let ct = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    if ct.as_deref() != Some("application/pkcs10") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "expected Content-Type: application/pkcs10 with a base64 DER certificate request",
        ));
    }
    let body = axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body-too-large",
                format!("certificate request is larger than {limit} bytes"),
            )
        })?;
    bulwark_ca::decode_base64_body(&body).map_err(|e| {
        ApiError::bad_request(format!("certificate request is not valid base64 DER: {e}"))
    })
}

/// The enrollment token from `Authorization: Bearer` or Basic's password.
fn token(parts: &Parts) -> Option<String> {
    if let Some(b) = bearer(parts) {
        return Some(b.to_string());
    }
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (_, password) = text.split_once(':')?;
    (!password.is_empty()).then(|| password.to_string())
}

fn est_unauthenticated(detail: impl Into<String>) -> ApiError {
    let mut e = ApiError::unauthenticated(detail);
    e.www_authenticate = Some("Basic realm=\"bulwark-est\", Bearer realm=\"bulwark-est\"");
    e
}

/// Enroll: the first certificate of a device.
#[utoipa::path(post, path = "/.well-known/est/simpleenroll", tag = "est",
    request_body(content = String, content_type = "application/pkcs10",
        description = "base64 DER PKCS#10"),
    responses((status = 200, content_type = "application/pkcs7-mime", body = String),
        (status = 401, description = "token or claim refused")))]
pub(crate) async fn est_simpleenroll(
    State(s): State<Arc<AppState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let conn = ConnInfo::from_parts(&parts)?.clone();
    let token = token(&parts);
    let csr = csr_body(
        Request::from_parts(parts, body),
        s.limits.config.max_est_body_bytes,
    )
    .await?;
    if let Some(t) = token {
        let source = conn.remote.ip().to_string();
        return enrolled(s.registry.enroll_with_token(&t, &csr, &source).await?);
    }
    let Some(cert) = conn.client_cert else {
        return Err(est_unauthenticated(
            "an enrollment token (Bearer or Basic password) or a claim certificate is required",
        ));
    };
    match s.registry.identify_client(&cert).await? {
        ClientIdentity::Claim(claim) => enrolled(s.registry.enroll_with_claim(&claim, &csr).await?),
        ClientIdentity::Device(d) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "already-enrolled",
            format!(
                "device {} already has a certificate; renew it with simplereenroll",
                d.device_id()
            ),
        )),
        ClientIdentity::Service(svc) => Err(service_refused(&svc)),
    }
}

/// A service certificate is not a device's: EST is for devices only.
fn service_refused(svc: &bulwark_registry::ServiceIdentity) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        format!(
            "service {} may not enroll or renew over EST; an operator issues service \
             certificates with POST /v1/services/{{name}}/certificate",
            svc.name()
        ),
    )
}

/// Re-enroll: renew a device's certificate (a new key is allowed).
#[utoipa::path(post, path = "/.well-known/est/simplereenroll", tag = "est",
    request_body(content = String, content_type = "application/pkcs10",
        description = "base64 DER PKCS#10"),
    responses((status = 200, content_type = "application/pkcs7-mime", body = String),
        (status = 401, description = "client certificate refused")))]
pub(crate) async fn est_simplereenroll(
    State(s): State<Arc<AppState>>,
    req: Request,
) -> Result<Response, ApiError> {
    let conn = req
        .extensions()
        .get::<ConnInfo>()
        .cloned()
        .ok_or_else(|| ApiError::internal("connection info missing"))?;
    let Some(cert) = conn.client_cert else {
        return Err(ApiError::unauthenticated(
            "simplereenroll requires the device's current certificate as the TLS client certificate",
        ));
    };
    let identity = s.registry.identify_client(&cert).await?;
    let csr = csr_body(req, s.limits.config.max_est_body_bytes).await?;
    match identity {
        ClientIdentity::Device(d) => enrolled(s.registry.reenroll(&d, &csr).await?),
        ClientIdentity::Claim(_) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a claim certificate may only call simpleenroll",
        )),
        ClientIdentity::Service(svc) => Err(service_refused(&svc)),
    }
}
