//! `/v1/ota`: artifact upload, releases, and the TUF repository.
//!
//! - `POST /v1/ota/artifacts` streams the body into the content-addressed
//!   store (never whole in memory; refused past the configured size).
//! - `POST /v1/ota/releases/prepare` gives the next targets metadata to sign
//!   offline; `POST /v1/ota/releases` publishes (signed offline, or by the
//!   dev-mode server).
//! - `POST /v1/ota/root/prepare` gives the next root (the current keys
//!   with some roles changed) to sign offline; `POST /v1/ota/root`
//!   publishes it (admins only); `GET /v1/ota/root` summarizes the newest.
//! - `GET /v1/ota/tuf/{path}` serves the repository in the standard layout
//!   to devices (their client certificate) and operators (a token). Only
//!   the repository's own file forms resolve; artifacts honour `Range`, so
//!   an interrupted download resumes, and at most
//!   `limits.max_concurrent_downloads` stream at once (others get 503 with
//!   `Retry-After`).

use std::io::Read;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bulwark_api_types::{
    ArtifactStored, CreateRelease, OtaRelease, OtaRoot, OtaRootRole, PreparedRelease, PreparedRoot,
    RootPublished, RootRoleChange, RotateRoot,
};
use bulwark_registry::{ClientIdentity, ReleaseRequest, RoleChange, RootChanges};
use bytes::Bytes;
use futures::StreamExt;
use tower::ServiceExt;

use crate::extract::{bearer, ApiJson, Authed, ConnInfo};
use crate::{ApiError, AppState};

/// Feeds request-body chunks from the async side to a blocking reader.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

/// Upload an artifact (the body, `application/octet-stream`).
#[utoipa::path(post, path = "/v1/ota/artifacts", tag = "ota",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = ArtifactStored),
        (status = 400, description = "larger than the server accepts"),
        (status = 413, description = "declared larger than the server accepts")),
    security(("bearer" = [])))]
pub(crate) async fn upload_artifact(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    req: Request,
) -> Result<(StatusCode, Json<ArtifactStored>), ApiError> {
    let max = s.registry.ota()?.max_artifact_bytes();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "artifact-too-large",
            format!("artifacts are at most {max} bytes"),
        ));
    }
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut body = req.into_body().into_data_stream();
    let pump = tokio::spawn(async move {
        while let Some(chunk) = body.next().await {
            let item = chunk.map_err(std::io::Error::other);
            let failed = item.is_err();
            if tx.send(item).await.is_err() || failed {
                break;
            }
        }
    });
    let reader = ChannelReader {
        rx,
        current: Bytes::new(),
    };
    let stored = s.registry.ota_store_artifact(&op, reader).await;
    pump.abort();
    let stored = stored?;
    tracing::info!(sha256 = %stored.sha256, length = stored.length, "artifact stored");
    Ok((
        StatusCode::CREATED,
        Json(ArtifactStored {
            sha256: stored.sha256.to_hex(),
            length: stored.length,
        }),
    ))
}

fn release_request(b: &CreateRelease) -> ReleaseRequest {
    ReleaseRequest {
        name: b.name.clone(),
        version: b.version.clone(),
        hardware: b.hardware.clone(),
        floor: b.floor.clone(),
        sha256: b.sha256.clone(),
        length: b.length,
    }
}

/// The next targets metadata with this release added, unsigned, for
/// `bulwark ota sign` on the machine that holds the targets key.
#[utoipa::path(post, path = "/v1/ota/releases/prepare", tag = "ota",
    request_body = CreateRelease, responses((status = 200, body = PreparedRelease)),
    security(("bearer" = [])))]
pub(crate) async fn prepare_release(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    ApiJson(b): ApiJson<CreateRelease>,
) -> Result<Json<PreparedRelease>, ApiError> {
    let bytes = s
        .registry
        .ota_prepare_release(&op, release_request(&b))
        .await?;
    let unsigned_targets = String::from_utf8(bytes).map_err(ApiError::internal)?;
    Ok(Json(PreparedRelease { unsigned_targets }))
}

/// Publish a release: devices may be told to install it from now on.
#[utoipa::path(post, path = "/v1/ota/releases", tag = "ota",
    request_body = CreateRelease,
    responses((status = 201, body = OtaRelease),
        (status = 400, description = "invalid fields, or signed metadata refused (with the reason)"),
        (status = 404, description = "no such artifact"),
        (status = 409, description = "a release of that name exists")),
    security(("bearer" = [])))]
pub(crate) async fn create_release(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    ApiJson(b): ApiJson<CreateRelease>,
) -> Result<(StatusCode, Json<OtaRelease>), ApiError> {
    let signed = b.signed_targets.clone().map(String::into_bytes);
    let rel = s
        .registry
        .ota_publish_release(&op, release_request(&b), signed)
        .await?;
    tracing::info!(name = %rel.name, version = %rel.version, "release published");
    Ok((StatusCode::CREATED, Json(rel)))
}

/// Published releases, oldest first.
#[utoipa::path(get, path = "/v1/ota/releases", tag = "ota",
    responses((status = 200, body = [OtaRelease])), security(("bearer" = [])))]
pub(crate) async fn list_releases(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
) -> Result<Json<Vec<OtaRelease>>, ApiError> {
    Ok(Json(s.registry.ota_releases(&op).await?))
}

/// One release.
#[utoipa::path(get, path = "/v1/ota/releases/{name}", tag = "ota",
    responses((status = 200, body = OtaRelease), (status = 404)), security(("bearer" = [])))]
pub(crate) async fn get_release(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(name): Path<String>,
) -> Result<Json<OtaRelease>, ApiError> {
    Ok(Json(s.registry.ota_release(&op, &name).await?))
}

fn role_change(c: &Option<RootRoleChange>) -> RoleChange {
    c.as_ref()
        .map(|c| RoleChange {
            keys: c.keys.clone(),
            threshold: c.threshold,
        })
        .unwrap_or_default()
}

fn root_changes(b: &RotateRoot) -> RootChanges {
    RootChanges {
        root: role_change(&b.root),
        targets: role_change(&b.targets),
        snapshot: role_change(&b.snapshot),
        timestamp: role_change(&b.timestamp),
    }
}

/// The newest root of the update repository: version, expiry, and each
/// role's threshold and key ids.
#[utoipa::path(get, path = "/v1/ota/root", tag = "ota",
    responses((status = 200, body = OtaRoot)), security(("bearer" = [])))]
pub(crate) async fn get_root(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
) -> Result<Json<OtaRoot>, ApiError> {
    let summary = s.registry.ota_root(&op).await?;
    Ok(Json(OtaRoot {
        version: summary.version,
        expires: summary.expires.into(),
        roles: summary
            .roles
            .into_iter()
            .map(|r| OtaRootRole {
                role: r.role.to_string(),
                threshold: r.threshold,
                key_ids: r.key_ids.iter().map(ToString::to_string).collect(),
            })
            .collect(),
    }))
}

/// The next root, unsigned: the current keys and thresholds with the
/// given roles replaced, version N+1, to be signed offline by a threshold
/// of the current root keys and of the new ones (`bulwark ota root rotate`).
#[utoipa::path(post, path = "/v1/ota/root/prepare", tag = "ota",
    request_body = RotateRoot,
    responses((status = 200, body = PreparedRoot),
        (status = 400, description = "malformed keys, a threshold above the keys, or snapshot/timestamp keys the server does not hold"),
        (status = 403, description = "not an admin")),
    security(("bearer" = [])))]
pub(crate) async fn prepare_root(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    ApiJson(b): ApiJson<RotateRoot>,
) -> Result<Json<PreparedRoot>, ApiError> {
    if b.signed_root.is_some() {
        return Err(ApiError::bad_request(
            "signed_root belongs to POST /v1/ota/root, not to prepare",
        ));
    }
    let bytes = s.registry.ota_prepare_root(&op, root_changes(&b)).await?;
    let unsigned_root = String::from_utf8(bytes).map_err(ApiError::internal)?;
    Ok(Json(PreparedRoot { unsigned_root }))
}

/// Publish the next root: signed offline (`signed_root`), or, on a dev
/// server holding the root key, built from the role changes and signed by
/// the server. Devices chain to it from any earlier root.
#[utoipa::path(post, path = "/v1/ota/root", tag = "ota",
    request_body = RotateRoot,
    responses((status = 201, body = RootPublished),
        (status = 400, description = "malformed, not the next version, expired, or not signed by a threshold of the old and of the new root keys (with the reason)"),
        (status = 403, description = "not an admin")),
    security(("bearer" = [])))]
pub(crate) async fn publish_root(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    ApiJson(b): ApiJson<RotateRoot>,
) -> Result<(StatusCode, Json<RootPublished>), ApiError> {
    let changes = root_changes(&b);
    let version = match &b.signed_root {
        Some(signed) => {
            if b.root.is_some()
                || b.targets.is_some()
                || b.snapshot.is_some()
                || b.timestamp.is_some()
            {
                return Err(ApiError::bad_request(
                    "send either signed_root or the role changes, not both: the signed root \
                     already says what changes",
                ));
            }
            s.registry.ota_accept_root(&op, signed.as_bytes()).await?
        }
        None => s.registry.ota_sign_root(&op, changes).await?,
    };
    Ok((StatusCode::CREATED, Json(RootPublished { version })))
}

/// A device (its client certificate) or an operator (a token with read
/// access to OTA) may read the repository.
async fn may_read_repository(
    s: &AppState,
    conn: ConnInfo,
    headers: axum::http::HeaderMap,
) -> Result<(), ApiError> {
    if let Some(cert) = &conn.client_cert {
        return match s.registry.identify_client(cert).await? {
            ClientIdentity::Device(_) => Ok(()),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "not-a-device",
                "only device certificates may read the update repository",
            )),
        };
    }
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.headers = headers;
    let Some(token) = bearer(&parts) else {
        return Err(ApiError::unauthenticated(
            "a device certificate or an operator token is required",
        ));
    };
    let source = conn.remote.ip().to_string();
    let op = s.registry.authenticate_operator(token, &source).await?;
    s.limits.check_token(op.token_id())?;
    Ok(s.registry.ota_may_read(&op).await?)
}

/// The TUF repository: `N.root.json`, `timestamp.json`,
/// `N.snapshot.json`, `N.targets.json`, `targets/<sha256>.<name>`.
#[utoipa::path(get, path = "/v1/ota/tuf/{path}", tag = "ota",
    responses((status = 200), (status = 206, description = "a byte range of an artifact"),
        (status = 404), (status = 503, description = "too many downloads; retry")))]
pub(crate) async fn tuf_file(
    State(s): State<Arc<AppState>>,
    Path(path): Path<String>,
    req: Request,
) -> Result<Response, ApiError> {
    let conn = req
        .extensions()
        .get::<ConnInfo>()
        .cloned()
        .ok_or_else(|| ApiError::internal("connection info missing"))?;
    may_read_repository(&s, conn, req.headers().clone()).await?;
    let ota = s.registry.ota()?.clone();
    let file = ota
        .repository()
        .resolve(&path)
        .map_err(|_| ApiError::not_found("no such file in the update repository"))?;
    let is_target = path.starts_with("targets/");
    let permit = if is_target {
        match s.limits.downloads.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                let mut e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too-many-downloads",
                    "the server is serving as many downloads as it allows; retry shortly",
                );
                e.retry_after = Some(5);
                return Err(e);
            }
        }
    } else {
        None
    };
    let mut resp = tower_http::services::ServeFile::new(file)
        .oneshot(req)
        .await
        .map_err(ApiError::internal)?
        .map(Body::new);
    let content_type = if is_target {
        "application/octet-stream"
    } else {
        "application/json"
    };
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if !is_target {
        // Metadata changes under the same name (timestamp.json).
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if let Some(permit) = permit {
        // The permit lives as long as the body streams.
        let (parts, body) = resp.into_parts();
        let stream = body.into_data_stream().map(move |chunk| {
            let _held = &permit;
            chunk
        });
        return Ok(Response::from_parts(parts, Body::from_stream(stream)));
    }
    Ok(resp.into_response())
}
