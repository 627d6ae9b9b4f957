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

use crate::auth::{compile, dev_policy};
use crate::metrics::Metrics;
use crate::session::{Control, Owner, Session};
use crate::Shared;
use bulwark_policy::CompiledPolicy;

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
            Ok(Event::ManufacturerCaRemoved { devices, .. }) => {
                // A device bound to a manufacturer CA authenticates only
                // with that CA's certificates.
                for id in devices {
                    if let Some(s) = shared.broker.session(id.as_str()) {
                        kick(
                            &s,
                            ReasonCode::NotAuthorized,
                            "the manufacturer CA that issued this device's certificate was removed",
                        );
                    }
                }
                continue;
            }
            Ok(
                Event::DeviceEnrolled { .. }
                | Event::OperatorTokenRevoked { .. }
                | Event::DeviceJitRegistered { .. }
                | Event::ManufacturerCaAdded { .. }
                | Event::AlertChanged { .. },
            ) => continue,
            Err(RecvError::Closed) => return,
        };
        for s in targets {
            reevaluate(&shared, &s).await;
        }
    }
}

/// Tells the attached connection to leave; a session with no connection
/// keeps its state (it will be re-admitted, or not, at its next CONNECT).
pub(crate) fn kick(s: &Session, reason: ReasonCode, message: &'static str) -> bool {
    let mut st = s.lock();
    let Some(link) = st.link.as_mut() else {
        return false;
    };
    // Only the first order reaches the connection; it is leaving anyway.
    let sent = link
        .control
        .take()
        .is_some_and(|tx| tx.send(Control::Disconnect { reason, message }).is_ok());
    drop(st);
    if sent {
        tracing::info!(key = %s.key, ?reason, message, "disconnecting an MQTT session");
    }
    sent
}

/// A session owner's standing, re-read from the registry.
enum Standing {
    /// Its current compiled policy, and whether that still lets it connect.
    Policy(Arc<CompiledPolicy>, bool),
    /// It may no longer connect, or cannot be checked: disconnect with this.
    Barred(ReasonCode, &'static str),
}

async fn standing(shared: &Shared, owner: &Owner, key: &str) -> Standing {
    let looked_up = match owner {
        Owner::Device(id) => match shared.registry.device_access(id).await {
            Ok(a) if !a.may_connect() => {
                return Standing::Barred(
                    ReasonCode::NotAuthorized,
                    "the device may no longer connect",
                )
            }
            Ok(a) => {
                let principal = a.principal();
                Ok((a.documents, principal, id.to_string()))
            }
            Err(e) => Err(e),
        },
        Owner::Service(name) => {
            let Ok(name) = bulwark_types::ServiceName::new(name.as_str()) else {
                return Standing::Barred(
                    ReasonCode::NotAuthorized,
                    "the principal no longer exists",
                );
            };
            let client = key.strip_prefix("service:").unwrap_or(key).to_owned();
            shared
                .registry
                .service_access(&name)
                .await
                .map(|a| (a.documents.clone(), a.principal(), client))
        }
        Owner::Dev => {
            return match dev_policy() {
                Ok(p) => Standing::Policy(p, true),
                Err(_) => Standing::Barred(
                    ReasonCode::ImplementationSpecificError,
                    "the dev policy does not compile",
                ),
            }
        }
    };
    let (documents, principal, client) = match looked_up {
        Ok(x) => x,
        Err(RegistryError::Store(StoreError::NotFound { .. })) => {
            return Standing::Barred(ReasonCode::NotAuthorized, "the principal no longer exists")
        }
        Err(e) => {
            tracing::error!(error = %e, %key, "cannot re-evaluate a session");
            return Standing::Barred(
                ReasonCode::UnspecifiedError,
                "the server could not re-check this session",
            );
        }
    };
    match compile(&documents, &principal) {
        Ok(policy) => {
            let may_connect = policy.check(Action::Connect, &client).is_allowed();
            Standing::Policy(policy, may_connect)
        }
        Err(_) => Standing::Barred(
            ReasonCode::ImplementationSpecificError,
            "the policy for this client does not compile",
        ),
    }
}

/// Re-admits a session's principal against the registry as it is now:
/// disconnect it, or install the recompiled policy and drop the
/// subscriptions it no longer allows.
pub(crate) async fn reevaluate(shared: &Shared, s: &Arc<Session>) {
    if s.owner == Owner::Dev {
        return; // a fixed policy
    }
    match standing(shared, &s.owner, &s.key).await {
        Standing::Barred(reason, message) => {
            kick(s, reason, message);
        }
        Standing::Policy(policy, may_connect) => {
            let dropped = shared.broker.rescope(s, policy);
            Metrics::inc(&shared.broker.metrics.enforcement_rescopes_total);
            if !may_connect {
                kick(
                    s,
                    ReasonCode::NotAuthorized,
                    "the policy no longer allows this client to connect",
                );
            } else if !dropped.is_empty() {
                tracing::info!(key = %s.key, filters = ?dropped, "subscriptions revoked by a policy change");
            }
        }
    }
}

/// The compiled policy of a restored session's owner, if it may still
/// connect.
pub(crate) async fn policy_for(
    shared: &Shared,
    owner: &Owner,
    key: &str,
) -> Option<Arc<CompiledPolicy>> {
    match standing(shared, owner, key).await {
        Standing::Policy(policy, true) => Some(policy),
        _ => None,
    }
}
