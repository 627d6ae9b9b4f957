//! Stored MQTT policies: versions, attachments, the effective policy of a
//! device or service, and test decisions.
//!
//! A document is validated by `bulwark-policy` and stored in its canonical
//! JSON form. Storing a name again makes a new, immutable version; the
//! newest is current. The built-in policies (`default-device`,
//! `quarantine`, `dev-permissive`) are listed and shown read-only; their
//! names, and `test` (the path of `POST /v1/policies/test`), cannot be
//! stored. Every change publishes [`Event::PoliciesChanged`] after commit.

use bulwark_policy::{
    default_device_policy, dev_permissive_policy, quarantine_policy, Action as PolicyAction,
    CompiledPolicy, Decision, DenyReason, PolicyDocument, PolicyError, Principal, Statement,
    StatementRef,
};
use bulwark_store::{NewPolicyVersion, PolicyRecord, StoreError};
use bulwark_types::{
    Device, DeviceId, PolicyName, PolicySummary, PolicyTarget, PolicyVersion, Service, ServiceName,
};
use sha2::{Digest, Sha256};

use crate::auth::{Action, Operator};
use crate::events::Event;
use crate::mqtt::{DeviceAccess, PolicySource, ServiceAccess};
use crate::{Registry, RegistryError};

/// Names that can never be stored: the built-in policies, and `test`.
const RESERVED: &str = "test";

/// The built-in policy called `name`, if there is one.
pub fn builtin_policy(name: &str) -> Option<PolicyDocument> {
    builtin_policies().into_iter().find(|d| d.name() == name)
}

fn builtin_policies() -> [PolicyDocument; 3] {
    [
        default_device_policy(),
        quarantine_policy(),
        dev_permissive_policy(),
    ]
}

/// A policy as shown: one version's document and what is known about it.
#[derive(Debug, Clone)]
pub struct PolicyView {
    pub summary: PolicySummary,
    /// The version shown; `None` for a built-in policy.
    pub version: Option<u32>,
    pub document: PolicyDocument,
    /// Every stored version, oldest first (empty for a built-in policy).
    pub versions: Vec<PolicyVersion>,
}

/// The answer to storing a document.
#[derive(Debug, Clone)]
pub struct PolicyStored {
    /// False when the document equals the current version (nothing stored).
    pub created: bool,
    pub policy: PolicyView,
}

/// Whose policy: a device or a service principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySubject {
    Device(DeviceId),
    Service(ServiceName),
}

/// A device's or service's access, as the gateway loads it.
#[derive(Debug, Clone)]
pub enum Access {
    Device(DeviceAccess),
    Service(ServiceAccess),
}

impl Access {
    pub fn documents(&self) -> &[PolicyDocument] {
        match self {
            Self::Device(a) => &a.documents,
            Self::Service(a) => &a.documents,
        }
    }

    pub fn sources(&self) -> &[PolicySource] {
        match self {
            Self::Device(a) => &a.sources,
            Self::Service(a) => &a.sources,
        }
    }

    pub fn principal(&self) -> Principal {
        match self {
            Self::Device(a) => a.principal(),
            Self::Service(a) => a.principal(),
        }
    }

    /// Whether the gateway lets it hold a session at all (a device's
    /// lifecycle state; a service that exists always may).
    pub fn may_connect(&self) -> bool {
        match self {
            Self::Device(a) => a.may_connect(),
            Self::Service(_) => true,
        }
    }

    pub fn device(&self) -> Option<&Device> {
        match self {
            Self::Device(a) => Some(&a.device),
            Self::Service(_) => None,
        }
    }

    pub fn service(&self) -> Option<&Service> {
        match self {
            Self::Service(a) => Some(&a.service),
            Self::Device(_) => None,
        }
    }
}

/// The documents that apply to a principal, compiled as the gateway would.
#[derive(Debug, Clone)]
pub struct EffectivePolicy {
    pub access: Access,
    pub compiled: CompiledPolicy,
}

impl EffectivePolicy {
    /// Where statement `r` came from, and the statement.
    pub fn statement(&self, r: StatementRef) -> Option<(&PolicySource, &Statement)> {
        let source = self.access.sources().get(r.document)?;
        let statement = self
            .access
            .documents()
            .get(r.document)?
            .statements()
            .get(r.statement)?;
        Some((source, statement))
    }
}

/// What a test decision found.
#[derive(Debug, Clone)]
pub struct PolicyTestOutcome {
    pub allowed: bool,
    /// A sentence for people.
    pub reason: String,
    /// The statement that decided, when one did.
    pub statement: Option<StatementRef>,
    pub effective: EffectivePolicy,
}

/// The refusal text of a document: `PolicyError`'s message (which names
/// the statement and resource) and, for malformed JSON, serde's words.
fn describe(e: &PolicyError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn builtin_summary(doc: &PolicyDocument) -> PolicySummary {
    PolicySummary {
        name: PolicySource::builtin(doc).name,
        builtin: true,
        version: None,
        created_at: None,
        updated_at: None,
        attachments: Vec::new(),
    }
}

fn builtin_refusal(name: &PolicyName, what: &str) -> Option<RegistryError> {
    if builtin_policy(name.as_str()).is_some() {
        Some(RegistryError::Conflict(format!(
            "policy {name} is built in and cannot be {what}"
        )))
    } else {
        None
    }
}

/// "statement 1 of policy p (version 2)" or "… (built in)".
pub fn statement_origin(source: &PolicySource, statement: usize) -> String {
    match source.version {
        Some(v) => format!(
            "statement {statement} of policy {} (version {v})",
            source.name
        ),
        None => format!("statement {statement} of policy {} (built in)", source.name),
    }
}

fn view(record: PolicyRecord) -> Result<PolicyView, RegistryError> {
    let document = PolicyDocument::from_json(&record.selected.document).map_err(|e| {
        StoreError::Internal(format!(
            "stored policy {} version {} does not parse: {e}",
            record.selected.name, record.selected.version
        ))
    })?;
    Ok(PolicyView {
        summary: record.summary,
        version: Some(record.selected.version),
        document,
        versions: record.versions,
    })
}

impl Registry {
    /// Stores a policy document (JSON) as a new version of its name; a
    /// document equal to the current version is answered without storing.
    pub async fn put_policy(
        &self,
        op: &Operator,
        document_json: &[u8],
    ) -> Result<PolicyStored, RegistryError> {
        self.allow(op, Action::ManagePolicies).await?;
        let doc = PolicyDocument::from_json_slice(document_json)
            .map_err(|e| RegistryError::Invalid(format!("policy refused: {}", describe(&e))))?;
        let name = PolicyName::new(doc.name())
            .map_err(|e| RegistryError::Invalid(format!("policy refused: {e}")))?;
        if let Some(e) = builtin_refusal(&name, "replaced") {
            return Err(e);
        }
        if name.as_str() == RESERVED {
            return Err(RegistryError::Conflict(format!(
                "policy name {RESERVED} is reserved"
            )));
        }
        let document = doc.to_json();
        let sha256 = sha256_hex(&document);
        let write = self
            .store
            .put_policy(
                NewPolicyVersion {
                    name: name.clone(),
                    document,
                    sha256,
                },
                op.actor(),
            )
            .await?;
        if write.created {
            self.bus.publish(Event::PoliciesChanged);
        }
        let record = self
            .store
            .get_policy(&name, Some(write.version))
            .await?
            .ok_or(StoreError::NotFound { what: "policy" })?;
        Ok(PolicyStored {
            created: write.created,
            policy: view(record)?,
        })
    }

    /// The built-in policies (flagged `builtin`), then the stored ones, by name.
    pub async fn list_policies(&self, op: &Operator) -> Result<Vec<PolicySummary>, RegistryError> {
        self.allow(op, Action::ReadPolicies).await?;
        let mut out: Vec<PolicySummary> = builtin_policies().iter().map(builtin_summary).collect();
        out.extend(self.store.list_policies().await?);
        Ok(out)
    }

    /// A policy's current version (or `version`), with its version list. A
    /// built-in policy is shown read-only and has no versions.
    pub async fn get_policy(
        &self,
        op: &Operator,
        name: &PolicyName,
        version: Option<u32>,
    ) -> Result<PolicyView, RegistryError> {
        self.allow(op, Action::ReadPolicies).await?;
        if let Some(document) = builtin_policy(name.as_str()) {
            if version.is_some() {
                return Err(RegistryError::Invalid(format!(
                    "policy {name} is built in and has no versions"
                )));
            }
            return Ok(PolicyView {
                summary: builtin_summary(&document),
                version: None,
                document,
                versions: Vec::new(),
            });
        }
        let record = self
            .store
            .get_policy(name, version)
            .await?
            .ok_or(StoreError::NotFound { what: "policy" })?;
        view(record)
    }

    /// Deletes a policy; refused while it is attached anywhere.
    pub async fn delete_policy(
        &self,
        op: &Operator,
        name: PolicyName,
    ) -> Result<(), RegistryError> {
        self.allow(op, Action::ManagePolicies).await?;
        if let Some(e) = builtin_refusal(&name, "deleted") {
            return Err(e);
        }
        self.store.delete_policy(name, op.actor()).await?;
        self.bus.publish(Event::PoliciesChanged);
        Ok(())
    }

    /// Attaches a stored policy to a group or service (nothing changes if it
    /// already is); returns the policy's summary.
    pub async fn attach_policy(
        &self,
        op: &Operator,
        name: PolicyName,
        target: PolicyTarget,
    ) -> Result<PolicySummary, RegistryError> {
        self.allow(op, Action::ManagePolicies).await?;
        if let Some(e) = builtin_refusal(&name, "attached") {
            return Err(e);
        }
        if self
            .store
            .attach_policy(name.clone(), target, op.actor())
            .await?
        {
            self.bus.publish(Event::PoliciesChanged);
        }
        self.summary(&name).await
    }

    /// Detaches a policy from a group or service; returns its summary.
    pub async fn detach_policy(
        &self,
        op: &Operator,
        name: PolicyName,
        target: PolicyTarget,
    ) -> Result<PolicySummary, RegistryError> {
        self.allow(op, Action::ManagePolicies).await?;
        if let Some(e) = builtin_refusal(&name, "detached") {
            return Err(e);
        }
        self.store
            .detach_policy(name.clone(), target, op.actor())
            .await?;
        self.bus.publish(Event::PoliciesChanged);
        self.summary(&name).await
    }

    async fn summary(&self, name: &PolicyName) -> Result<PolicySummary, RegistryError> {
        Ok(self
            .store
            .get_policy(name, None)
            .await?
            .ok_or(StoreError::NotFound { what: "policy" })?
            .summary)
    }

    /// The documents that apply to a device or service, compiled for it
    /// exactly as the gateway compiles them.
    pub async fn effective_policy(
        &self,
        op: &Operator,
        subject: &PolicySubject,
    ) -> Result<EffectivePolicy, RegistryError> {
        self.allow(op, Action::ReadPolicies).await?;
        self.effective(subject).await
    }

    async fn effective(&self, subject: &PolicySubject) -> Result<EffectivePolicy, RegistryError> {
        let access = match subject {
            PolicySubject::Device(id) => Access::Device(self.device_access(id).await?),
            PolicySubject::Service(name) => Access::Service(self.service_access(name).await?),
        };
        let compiled = CompiledPolicy::compile(access.documents(), &access.principal())
            .map_err(|e| RegistryError::Conflict(format!("the policies do not compile: {e}")))?;
        Ok(EffectivePolicy { access, compiled })
    }

    /// Decides `action` on `resource` for a device or service as the
    /// gateway would: its lifecycle state first, then its compiled policy.
    pub async fn test_policy(
        &self,
        op: &Operator,
        subject: &PolicySubject,
        action: PolicyAction,
        resource: &str,
    ) -> Result<PolicyTestOutcome, RegistryError> {
        self.allow(op, Action::ReadPolicies).await?;
        if resource.len() > 65_535 {
            return Err(RegistryError::Invalid(
                "topic is longer than 65535 bytes".into(),
            ));
        }
        let effective = self.effective(subject).await?;
        Ok(decide(effective, action, resource))
    }
}

/// The decision and its explanation.
fn decide(effective: EffectivePolicy, action: PolicyAction, resource: &str) -> PolicyTestOutcome {
    let outcome = |allowed, reason, statement, effective| PolicyTestOutcome {
        allowed,
        reason,
        statement,
        effective,
    };
    if let Some(d) = effective.access.device() {
        if !effective.access.may_connect() {
            let reason = format!(
                "device {} is {}: it may not hold an MQTT session",
                d.id, d.state
            );
            return outcome(false, reason, None, effective);
        }
    }
    let origin = |r: StatementRef| {
        effective
            .statement(r)
            .map(|(source, _)| statement_origin(source, r.statement))
            .unwrap_or_else(|| format!("statement {}", r.statement))
    };
    let verb = action.as_str();
    let (allowed, reason, statement) = match effective.compiled.check(action, resource) {
        Decision::Allow => match effective.compiled.allowed_by(action, resource) {
            Some(r) => (true, format!("allowed by {}", origin(r)), Some(r)),
            None => (
                true,
                "allowed: every topic the filter can match is granted by the allow statements \
                 for subscribe together"
                    .to_owned(),
                None,
            ),
        },
        Decision::Deny(DenyReason::ExplicitDeny(r)) => {
            (false, format!("denied by {}", origin(r)), Some(r))
        }
        Decision::Deny(DenyReason::InvalidResource) => {
            let what = if action == PolicyAction::Subscribe {
                "topic filter"
            } else {
                "topic name"
            };
            (false, format!("{resource:?} is not a valid {what}"), None)
        }
        Decision::Deny(DenyReason::NoMatchingAllow) => {
            let mut reason = if action == PolicyAction::Subscribe {
                format!(
                    "denied by default: not every topic {resource:?} can match is granted for \
                     subscribe"
                )
            } else {
                format!("denied by default: no allow statement grants {verb} on {resource:?}")
            };
            if effective.access.documents().is_empty() {
                reason.push_str(" (no policy is attached to this service)");
            }
            (false, reason, None)
        }
    };
    outcome(allowed, reason, statement, effective)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names_are_policy_names() {
        for doc in builtin_policies() {
            assert!(PolicyName::new(doc.name()).is_ok(), "{}", doc.name());
            assert!(builtin_policy(doc.name()).is_some());
        }
        assert!(builtin_policy("mine").is_none());
    }

    #[test]
    fn malformed_documents_are_described_with_serde_words() {
        let e = PolicyDocument::from_json("{\"version\":1}").unwrap_err();
        let text = describe(&e);
        assert!(text.starts_with("malformed policy document: "), "{text}");
        assert!(text.contains("missing field"), "{text}");
        let e = PolicyDocument::from_json(
            r#"{"version":1,"name":"p","statements":[{"effect":"allow","actions":["fly"],"resources":["a"]}]}"#,
        )
        .unwrap_err();
        assert!(describe(&e).starts_with("statement 0: unknown action"));
    }

    #[test]
    fn origins() {
        let s = PolicySource {
            name: PolicyName::new("p").unwrap(),
            version: Some(2),
        };
        assert_eq!(
            statement_origin(&s, 1),
            "statement 1 of policy p (version 2)"
        );
        let b = PolicySource::builtin(&default_device_policy());
        assert_eq!(
            statement_origin(&b, 0),
            "statement 0 of policy default-device (built in)"
        );
    }
}
