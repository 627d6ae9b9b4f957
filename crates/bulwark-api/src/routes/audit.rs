//! `/v1/audit`: read, export (JSON lines) and verify the audit log.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bulwark_api_types::{AuditEntry, AuditVerification};
use serde::Deserialize;
use utoipa::IntoParams;

use super::ApiQuery;
use crate::extract::Authed;
use crate::{ApiError, AppState};

fn to_api(e: bulwark_audit::Entry) -> AuditEntry {
    AuditEntry {
        seq: e.seq,
        ts: e.ts,
        actor: e.actor,
        event: serde_json::from_str(&e.event).unwrap_or(serde_json::Value::String(e.event)),
        prev_hash: hex_encode(&e.prev_hash),
        hash: hex_encode(&e.hash),
    }
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditQuery {
    /// Entries after this sequence number.
    after: Option<u64>,
    /// At most this many (default 100, max 10000).
    limit: Option<u32>,
}

/// Audit entries in order.
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = [AuditEntry])), security(("bearer" = [])))]
pub(crate) async fn audit_entries(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let entries = s
        .registry
        .audit_entries(&op, q.after.unwrap_or(0), q.limit.unwrap_or(100))
        .await?;
    Ok(Json(entries.into_iter().map(to_api).collect()))
}

/// The whole audit log as JSON lines, streamed.
#[utoipa::path(get, path = "/v1/audit/export", tag = "audit",
    responses((status = 200, content_type = "application/x-ndjson", body = String)),
    security(("bearer" = [])))]
pub(crate) async fn audit_export(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
) -> Result<Response, ApiError> {
    // Authorize before streaming, so a refusal is a proper problem answer.
    s.registry.audit_entries(&op, 0, 1).await?;
    let stream = futures::stream::unfold(Some(0u64), move |after| {
        let s = s.clone();
        let op = op.clone();
        async move {
            let after = after?;
            match s.registry.audit_entries(&op, after, 1000).await {
                Ok(page) if page.is_empty() => None,
                Ok(page) => {
                    let next = page.last().map(|e| e.seq);
                    let mut buf = Vec::new();
                    for e in page {
                        if serde_json::to_writer(&mut buf, &to_api(e)).is_ok() {
                            buf.push(b'\n');
                        }
                    }
                    Some((Ok::<_, std::io::Error>(bytes::Bytes::from(buf)), next))
                }
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Verify the hash chain and the signed checkpoints.
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    responses((status = 200, body = AuditVerification)), security(("bearer" = [])))]
pub(crate) async fn audit_verify(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
) -> Result<Json<AuditVerification>, ApiError> {
    Ok(Json(match s.registry.audit_verify(&op).await? {
        Ok(r) => AuditVerification {
            ok: true,
            entries: r.entries,
            checkpoints: r.checkpoints,
            last_checkpoint: r.last_checkpoint,
            first_bad_entry: None,
            error: None,
        },
        Err(e) => AuditVerification {
            ok: false,
            entries: 0,
            checkpoints: 0,
            last_checkpoint: 0,
            first_bad_entry: Some(e.seq()),
            error: Some(e.to_string()),
        },
    }))
}
