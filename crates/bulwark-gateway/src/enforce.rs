//! Live enforcement: committed registry changes reach connected sessions.
//!
//! The registry publishes on its bus only after a change is committed. For
//! each event this task finds the affected sessions and either disconnects
//! them (MQTT 5 gets the reason code) when the principal may no longer
//! connect, or recompiles their policy and drops the subscriptions it no
//! longer allows. Queued and in-flight deliveries are re-checked against the
//! new policy when they are sent. A lagging receiver re-evaluates every
//! session, so nothing is missed.

use std::sync::Arc;

use bulwark_mqtt::ReasonCode;
use bulwark_policy::Action;
use bulwark_registry::{Event, RegistryError};
use bulwark_store::StoreError;
use tokio::sync::broadcast::error::RecvError;

use crate::auth::compile;
use crate::metrics::Metrics;
use crate::session::{Control, Owner, Session};
use crate::Shared;

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut rx = shared.registry.bus().subscribe();
    loop {
        let targets: Vec<Arc<Session>> = match rx.recv().await {
            Ok(Event::CertificateRevoked { serial, .. }) => {
                for s in shared.broker.sessions() {
                    let holds = s
                        .lock()
                        .link
                        .as_ref()
                        .is_some_and(|l| l.serial.as_ref() == Some(&serial));
                    if holds {
                        kick(
                            &shared,
                            &s,
                            ReasonCode::NotAuthorized,
                            "the certificate of this connection was revoked",
                        );
                    }
                }
                continue;
            }
            Ok(
                Event::DeviceStateChanged { device_id, .. } | Event::DeviceUpdated { device_id },
            ) => shared
                .broker
                .session(device_id.as_str())
                .into_iter()
                .collect(),
            Ok(Event::PoliciesChanged) | Err(RecvError::Lagged(_)) => shared.broker.sessions(),
            Ok(Event::ServiceChanged { name }) => shared
                .broker
                .sessions()
                .into_iter()
                .filter(|s| matches!(&s.owner, Owner::Service(n) if *n == name))
                .collect(),
            Ok(Event::DeviceEnrolled { .. } | Event::OperatorTokenRevoked { .. }) => continue,
            Err(RecvError::Closed) => return,
        };
        for s in targets {
            reevaluate(&shared, &s).await;
        }
    }
}

/// Tells the attached connection to leave; a session with no connection
/// keeps its state (it will be re-admitted, or not, at its next CONNECT).
pub(crate) fn kick(
    shared: &Shared,
    s: &Session,
    reason: ReasonCode,
    message: &'static str,
) -> bool {
    let st = s.lock();
    let Some(link) = &st.link else {
        return false;
    };
    let sent = link
        .control
        .try_send(Control::Disconnect { reason, message })
        .is_ok();
    drop(st);
    if sent {
        tracing::info!(key = %s.key, ?reason, message, "disconnecting an MQTT session");
    }
    let _ = shared;
    sent
}

/// Re-admits a session's principal against the registry as it is now.
async fn reevaluate(shared: &Shared, s: &Arc<Session>) {
    let (documents, principal, client) = match &s.owner {
        Owner::Device(id) => match shared.registry.device_access(id).await {
            Ok(a) if a.may_connect() => (a.documents.clone(), a.principal(), id.to_string()),
            Ok(_) => {
                kick(
                    shared,
                    s,
                    ReasonCode::NotAuthorized,
                    "the device may no longer connect",
                );
                return;
            }
            Err(e) => return gone(shared, s, &e),
        },
        Owner::Service(name) => {
            let Ok(name) = bulwark_types::ServiceName::new(name.as_str()) else {
                return;
            };
            match shared.registry.service_access(&name).await {
                Ok(a) => {
                    let client = s.key.strip_prefix("service:").unwrap_or(&s.key).to_owned();
                    (a.documents.clone(), a.principal(), client)
                }
                Err(e) => return gone(shared, s, &e),
            }
        }
        // Dev sessions have a fixed policy.
        Owner::Dev => return,
    };
    let Ok(policy) = compile(&documents, &principal) else {
        kick(
            shared,
            s,
            ReasonCode::ImplementationSpecificError,
            "the policy for this client does not compile",
        );
        return;
    };
    let may_connect = policy.check(Action::Connect, &client).is_allowed();
    let dropped = shared.broker.rescope(s, policy);
    Metrics::inc(&shared.broker.metrics.enforcement_rescopes_total);
    if !may_connect {
        kick(
            shared,
            s,
            ReasonCode::NotAuthorized,
            "the policy no longer allows this client to connect",
        );
    } else if !dropped.is_empty() {
        tracing::info!(key = %s.key, filters = ?dropped, "subscriptions revoked by a policy change");
    }
}

/// The compiled policy of a restored session's owner, if it may still
/// connect.
pub(crate) async fn policy_for(
    shared: &Shared,
    owner: &Owner,
    key: &str,
) -> Option<Arc<bulwark_policy::CompiledPolicy>> {
    let (documents, principal, client) = match owner {
        Owner::Device(id) => match shared.registry.device_access(id).await {
            Ok(a) if a.may_connect() => (a.documents.clone(), a.principal(), id.to_string()),
            _ => return None,
        },
        Owner::Service(name) => {
            let name = bulwark_types::ServiceName::new(name.as_str()).ok()?;
            let a = shared.registry.service_access(&name).await.ok()?;
            let client = key.strip_prefix("service:").unwrap_or(key).to_owned();
            (a.documents.clone(), a.principal(), client)
        }
        Owner::Dev => {
            let p = bulwark_types::DeviceId::new("dev-anonymous").ok()?;
            let doc = bulwark_policy::dev_permissive_policy();
            return compile(&[doc], &bulwark_policy::Principal::new(p)).ok();
        }
    };
    let policy = compile(&documents, &principal).ok()?;
    policy
        .check(Action::Connect, &client)
        .is_allowed()
        .then_some(policy)
}

/// The principal could not be looked up: gone, or the store failed.
fn gone(shared: &Shared, s: &Session, e: &RegistryError) {
    if let RegistryError::Store(StoreError::NotFound { .. }) = e {
        kick(
            shared,
            s,
            ReasonCode::NotAuthorized,
            "the principal no longer exists",
        );
    } else {
        tracing::error!(error = %e, key = %s.key, "cannot re-evaluate a session; disconnecting it");
        kick(
            shared,
            s,
            ReasonCode::UnspecifiedError,
            "the server could not re-check this session",
        );
    }
}
