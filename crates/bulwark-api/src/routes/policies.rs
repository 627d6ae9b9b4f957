//! `/v1/policies`: stored MQTT policies, their attachments to groups and
//! services, effective policies and test decisions.
//!
//! Built-in policies (`default-device`, `quarantine`, `dev-permissive`)
//! appear in the list with `builtin: true` and are shown read-only by
//! `GET /v1/policies/{name}`; storing, deleting or attaching them is a 409.

use std::sync::Arc;

use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::Json;
use bulwark_api_types::{
    AppliedPolicy, DecidingStatement, EffectivePolicy, PolicyDecision, PolicyDetail, PolicyNote,
    PolicyRef, PolicySubject as WireSubject, PolicySummary, PolicyTest, PolicyTestResult,
    PolicyWritten,
};
use bulwark_policy::{NoteKind, PolicyDocument, Statement};
use bulwark_registry::{PolicySource, PolicySubject, PolicyView};
use bulwark_types::{GroupId, PolicyName, PolicyTarget, ServiceName};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{device_id, ApiQuery};
use crate::extract::{ApiJson, Authed};
use crate::{ApiError, AppState};

pub(crate) fn policy_name(s: String) -> Result<PolicyName, ApiError> {
    PolicyName::new(s).map_err(|e| ApiError::bad_request(format!("invalid policy name: {e}")))
}

pub(crate) fn group_name(s: String) -> Result<GroupId, ApiError> {
    GroupId::new(s).map_err(|e| ApiError::bad_request(format!("invalid group name: {e}")))
}

pub(crate) fn service_name(s: String) -> Result<ServiceName, ApiError> {
    ServiceName::new(s).map_err(|e| ApiError::bad_request(format!("invalid service name: {e}")))
}

fn document_json(doc: &PolicyDocument) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(doc).map_err(ApiError::internal)
}

fn policy_ref(source: &PolicySource) -> PolicyRef {
    PolicyRef {
        name: source.name.clone(),
        version: source.version,
        builtin: source.version.is_none(),
    }
}

fn detail(v: PolicyView) -> Result<PolicyDetail, ApiError> {
    Ok(PolicyDetail {
        document: document_json(&v.document)?,
        summary: v.summary,
        document_version: v.version,
        versions: v.versions,
    })
}

/// The request body, unparsed, so the policy engine's refusal can point at
/// the statement (and serde's line and column) of what the caller sent.
pub(crate) struct DocumentBody(bytes::Bytes);

impl<S: Send + Sync> FromRequest<S> for DocumentBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported-media-type",
                "expected a policy document with Content-Type: application/json",
            ));
        }
        let bytes = bytes::Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(r.status(), "body-too-large", "request body is too large")
            } else {
                ApiError::bad_request(r.body_text())
            }
        })?;
        Ok(DocumentBody(bytes))
    }
}

/// List policies: the built-in ones (flagged `builtin`), then the stored
/// ones with their current version and attachments.
#[utoipa::path(get, path = "/v1/policies", tag = "policies",
    responses((status = 200, body = [PolicySummary])), security(("bearer" = [])))]
pub(crate) async fn list_policies(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
) -> Result<Json<Vec<PolicySummary>>, ApiError> {
    Ok(Json(s.registry.list_policies(&op).await?))
}

/// Store a policy document: a new policy, or a new version of the policy of
/// that name (201). A document equal to the current version stores nothing
/// (200, `created: false`).
#[utoipa::path(post, path = "/v1/policies", tag = "policies",
    request_body(content = Object, content_type = "application/json",
        description = "a policy document: {\"version\": 1, \"name\": …, \"statements\": [{\"effect\": \"allow\", \"actions\": [\"publish\"], \"resources\": [\"devices/${device.id}/#\"]}]}"),
    responses((status = 201, body = PolicyWritten), (status = 200, body = PolicyWritten),
        (status = 400, description = "invalid document; the detail names the statement"),
        (status = 409, description = "a built-in or reserved name")),
    security(("bearer" = [])))]
pub(crate) async fn put_policy(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    DocumentBody(body): DocumentBody,
) -> Result<(StatusCode, Json<PolicyWritten>), ApiError> {
    let stored = s.registry.put_policy(&op, &body).await?;
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(PolicyWritten {
            created: stored.created,
            policy: detail(stored.policy)?,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct VersionQuery {
    /// Show this version instead of the current one.
    version: Option<u32>,
}

/// A policy: its current document (or `?version=N`) and its version list.
#[utoipa::path(get, path = "/v1/policies/{name}", tag = "policies", params(VersionQuery),
    responses((status = 200, body = PolicyDetail), (status = 404, description = "no such policy or version")),
    security(("bearer" = [])))]
pub(crate) async fn get_policy(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> Result<Json<PolicyDetail>, ApiError> {
    let v = s
        .registry
        .get_policy(&op, &policy_name(name)?, q.version)
        .await?;
    Ok(Json(detail(v)?))
}

/// Delete a policy; refused (409) while it is attached to a group or service.
#[utoipa::path(delete, path = "/v1/policies/{name}", tag = "policies",
    responses((status = 204), (status = 409, description = "attached, or built in")),
    security(("bearer" = [])))]
pub(crate) async fn delete_policy(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    s.registry.delete_policy(&op, policy_name(name)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn attach(
    s: Arc<AppState>,
    op: bulwark_registry::Operator,
    name: String,
    target: PolicyTarget,
    on: bool,
) -> Result<Json<PolicySummary>, ApiError> {
    let name = policy_name(name)?;
    let summary = if on {
        s.registry.attach_policy(&op, name, target).await?
    } else {
        s.registry.detach_policy(&op, name, target).await?
    };
    Ok(Json(summary))
}

/// Attach a policy to a group: its devices get it on top of `default-device`.
#[utoipa::path(put, path = "/v1/groups/{group}/policies/{name}", tag = "policies",
    responses((status = 200, body = PolicySummary)), security(("bearer" = [])))]
pub(crate) async fn attach_group_policy(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path((group, name)): Path<(String, String)>,
) -> Result<Json<PolicySummary>, ApiError> {
    let target = PolicyTarget::Group(group_name(group)?);
    attach(s, op, name, target, true).await
}

/// Detach a policy from a group.
#[utoipa::path(delete, path = "/v1/groups/{group}/policies/{name}", tag = "policies",
    responses((status = 200, body = PolicySummary), (status = 404, description = "not attached")),
    security(("bearer" = [])))]
pub(crate) async fn detach_group_policy(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path((group, name)): Path<(String, String)>,
) -> Result<Json<PolicySummary>, ApiError> {
    let target = PolicyTarget::Group(group_name(group)?);
    attach(s, op, name, target, false).await
}

/// Attach a policy to a service principal.
#[utoipa::path(put, path = "/v1/services/{service}/policies/{name}", tag = "policies",
    responses((status = 200, body = PolicySummary)), security(("bearer" = [])))]
pub(crate) async fn attach_service_policy(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path((service, name)): Path<(String, String)>,
) -> Result<Json<PolicySummary>, ApiError> {
    let target = PolicyTarget::Service(service_name(service)?);
    attach(s, op, name, target, true).await
}

/// Detach a policy from a service principal.
#[utoipa::path(delete, path = "/v1/services/{service}/policies/{name}", tag = "policies",
    responses((status = 200, body = PolicySummary), (status = 404, description = "not attached")),
    security(("bearer" = [])))]
pub(crate) async fn detach_service_policy(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path((service, name)): Path<(String, String)>,
) -> Result<Json<PolicySummary>, ApiError> {
    let target = PolicyTarget::Service(service_name(service)?);
    attach(s, op, name, target, false).await
}

fn wire_effective(e: &bulwark_registry::EffectivePolicy) -> Result<EffectivePolicy, ApiError> {
    let sources = e.access.sources();
    let documents = e
        .access
        .documents()
        .iter()
        .zip(sources)
        .map(|(doc, source)| {
            Ok(AppliedPolicy {
                policy: policy_ref(source),
                document: document_json(doc)?,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let notes = e
        .compiled
        .notes()
        .iter()
        .filter_map(|n| {
            let (source, statement) = e.statement(n.origin)?;
            Some(PolicyNote {
                policy: policy_ref(source),
                statement: n.origin.statement as u32,
                resource: n.resource as u32,
                template: statement
                    .resources()
                    .get(n.resource)
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                kind: match n.kind {
                    NoteKind::AllowDropped => "allow_dropped",
                    NoteKind::DenyWidened => "deny_widened",
                }
                .to_owned(),
            })
        })
        .collect();
    let (subject, state, group) = match (e.access.device(), e.access.service()) {
        (Some(d), _) => (
            WireSubject::Device(d.id.clone()),
            Some(d.state),
            Some(d.group.clone()),
        ),
        (None, Some(svc)) => (WireSubject::Service(svc.name.clone()), None, None),
        (None, None) => return Err(ApiError::internal("access without a principal")),
    };
    Ok(EffectivePolicy {
        subject,
        state,
        group,
        may_connect: e.access.may_connect(),
        documents,
        notes,
        rule_count: e.compiled.rule_count() as u64,
    })
}

/// What the gateway compiles for a device: `default-device` plus the
/// policies attached to its group (`quarantine` alone when quarantined),
/// with the resources that could not be substituted for it.
#[utoipa::path(get, path = "/v1/devices/{id}/effective-policy", tag = "policies",
    responses((status = 200, body = EffectivePolicy)), security(("bearer" = [])))]
pub(crate) async fn device_effective_policy(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(id): Path<String>,
) -> Result<Json<EffectivePolicy>, ApiError> {
    let subject = PolicySubject::Device(device_id(id)?);
    let e = s.registry.effective_policy(&op, &subject).await?;
    Ok(Json(wire_effective(&e)?))
}

/// What the gateway compiles for a service: the policies attached to it.
#[utoipa::path(get, path = "/v1/services/{service}/effective-policy", tag = "policies",
    responses((status = 200, body = EffectivePolicy)), security(("bearer" = [])))]
pub(crate) async fn service_effective_policy(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    Path(service): Path<String>,
) -> Result<Json<EffectivePolicy>, ApiError> {
    let subject = PolicySubject::Service(service_name(service)?);
    let e = s.registry.effective_policy(&op, &subject).await?;
    Ok(Json(wire_effective(&e)?))
}

fn deciding(source: &PolicySource, index: usize, st: &Statement) -> DecidingStatement {
    DecidingStatement {
        policy: policy_ref(source),
        index: index as u32,
        effect: st.effect().as_str().to_owned(),
        actions: st.actions().iter().map(|a| a.as_str().to_owned()).collect(),
        resources: st.resources().iter().map(ToString::to_string).collect(),
    }
}

/// Decide an action for a device or service exactly as the gateway would:
/// its lifecycle state, then the policy compiled from its documents.
#[utoipa::path(post, path = "/v1/policies/test", tag = "policies", request_body = PolicyTest,
    responses((status = 200, body = PolicyTestResult)), security(("bearer" = [])))]
pub(crate) async fn test_policy(
    State(s): State<Arc<AppState>>,
    Authed(op): Authed,
    ApiJson(b): ApiJson<PolicyTest>,
) -> Result<Json<PolicyTestResult>, ApiError> {
    let subject = match (b.device, b.service) {
        (Some(d), None) => PolicySubject::Device(d),
        (None, Some(svc)) => PolicySubject::Service(svc),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of \"device\" and \"service\"",
            ))
        }
    };
    let action = bulwark_policy::Action::from_name(b.action.as_str())
        .ok_or_else(|| ApiError::internal("MQTT action names out of sync"))?;
    let outcome = s
        .registry
        .test_policy(&op, &subject, action, &b.topic)
        .await?;
    let statement = outcome.statement.and_then(|r| {
        outcome
            .effective
            .statement(r)
            .map(|(source, st)| deciding(source, r.statement, st))
    });
    Ok(Json(PolicyTestResult {
        decision: if outcome.allowed {
            PolicyDecision::Allow
        } else {
            PolicyDecision::Deny
        },
        reason: outcome.reason,
        statement,
        policies: outcome
            .effective
            .access
            .sources()
            .iter()
            .map(policy_ref)
            .collect(),
    }))
}
