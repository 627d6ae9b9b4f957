//! CONNECT admission: who is this client, may it connect, and under which
//! compiled policy. Every refusal carries the CONNACK reason code to send
//! and a reason an operator can act on.
//!
//! - TLS listener with a client certificate: the certificate must be one
//!   Bulwark issued (same DER), or a device certificate a registered
//!   manufacturer CA issued (bound to the device its CN names, or
//!   registering it just in time; see `bulwark_registry`), unexpired and
//!   unrevoked, and belong to a device that may connect (`active`, or
//!   `quarantined` under the quarantine policy; a `pending` one waits for
//!   an operator). The clientId must be the device id (an empty one is
//!   assigned it).
//! - TLS listener without a certificate: only a service principal with a
//!   username and password (argon2id-verified by the registry); anything
//!   else is refused, a client certificate being required.
//! - The loopback dev listener (dev mode only): anonymous clients under the
//!   permissive dev policy, in their own session namespace.

use std::sync::Arc;

use bulwark_mqtt::{Connect, ReasonCode};
use bulwark_policy::{dev_permissive_policy, Action, CompiledPolicy, Principal};
use bulwark_registry::{
    ClientIdentity, DeviceCredential, Registry, RegistryError, ServiceIdentity,
};
use bulwark_types::{CertSerial, DeviceId, DeviceState};
use time::OffsetDateTime;

use crate::admitted::{fingerprint, Admitted, KnownCert};
use crate::message::SessionKey;
use crate::session::Owner;

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realm {
    /// The mTLS listener.
    Tls,
    /// The plaintext loopback listener of dev mode.
    DevPlain,
}

/// An admitted client.
#[derive(Debug)]
pub struct Admission {
    pub key: SessionKey,
    pub owner: Owner,
    /// The effective client id (assigned when the client sent none).
    pub client_id: String,
    pub assigned: bool,
    pub policy: Arc<CompiledPolicy>,
    pub serial: Option<CertSerial>,
    /// The [`Admitted`] generation the registry's answers are valid as of
    /// (`None` on the dev listener, which asks the registry nothing).
    pub generation: Option<u64>,
    /// Admitted from [`Admitted`]'s memory, without asking the registry.
    pub remembered: bool,
}

/// A refused CONNECT.
#[derive(Debug)]
pub struct Refusal {
    pub code: ReasonCode,
    pub reason: String,
    /// The identity the certificate proved, when it proved one.
    pub device: Option<DeviceId>,
    /// Whether this counts as a failed authentication (for back-off).
    pub auth_failure: bool,
}

impl Refusal {
    fn auth(code: ReasonCode, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            device: None,
            auth_failure: true,
        }
    }

    fn of(mut self, device: &DeviceId) -> Self {
        self.device = Some(device.clone());
        self
    }
}

fn from_registry(e: RegistryError) -> Refusal {
    match e {
        RegistryError::Unauthenticated(m) => Refusal::auth(ReasonCode::NotAuthorized, m),
        other => {
            tracing::error!(error = %other, "admission failed on a registry error");
            Refusal {
                code: ReasonCode::ServerUnavailable,
                reason: "the server could not check this identity; try again".into(),
                device: None,
                auth_failure: false,
            }
        }
    }
}

/// Decides a CONNECT. A device certificate seen before may be answered
/// from `admitted` (see there for why that is as fresh as the store).
pub async fn admit(
    registry: &Registry,
    admitted: &Admitted,
    realm: Realm,
    connect: &Connect,
    cert: Option<&[u8]>,
    source: &str,
) -> Result<Admission, Refusal> {
    if connect.properties.authentication_method.is_some() {
        return Err(Refusal::auth(
            ReasonCode::BadAuthenticationMethod,
            "enhanced authentication is not supported; authenticate with a client certificate",
        ));
    }
    match realm {
        Realm::DevPlain => admit_dev(connect),
        Realm::Tls => match (cert, &connect.username, &connect.password) {
            (Some(der), _, _) => admit_certificate(registry, admitted, connect, der).await,
            (None, Some(user), Some(pass)) => {
                let generation = admitted.generation();
                let pass = std::str::from_utf8(pass).map_err(|_| {
                    Refusal::auth(ReasonCode::BadUserNameOrPassword, "bad service name or password")
                })?;
                let identity = registry
                    .authenticate_service_password(user, pass, source)
                    .await
                    .map_err(|e| match e {
                        // One answer for every failure: no oracle for names.
                        RegistryError::Unauthenticated(_) => Refusal::auth(
                            ReasonCode::BadUserNameOrPassword,
                            "bad service name or password",
                        ),
                        other => from_registry(other),
                    })?;
                admit_service(registry, connect, identity, generation).await
            }
            (None, _, _) => Err(Refusal::auth(
                ReasonCode::NotAuthorized,
                "a client certificate issued by this server or a registered manufacturer CA is required (or, for a service, a username and password)",
            )),
        },
    }
}

async fn admit_certificate(
    registry: &Registry,
    admitted: &Admitted,
    connect: &Connect,
    der: &[u8],
) -> Result<Admission, Refusal> {
    let fp = fingerprint(der);
    let known = admitted.lookup(&fp, OffsetDateTime::now_utc());
    let generation = known.generation;
    let (id, serial) = match known.cert {
        Some(c) => (c.device_id, Some(c.serial)),
        None => {
            let identity = registry
                .identify_mqtt_client(der)
                .await
                .map_err(from_registry)?;
            let device = match identity {
                ClientIdentity::Device(d) => d,
                ClientIdentity::Service(s) => {
                    return admit_service(registry, connect, s, generation).await
                }
                ClientIdentity::Claim(_) => {
                    return Err(Refusal::auth(
                        ReasonCode::NotAuthorized,
                        "a claim certificate may only enroll; it cannot connect to MQTT",
                    ))
                }
            };
            if let DeviceCredential::Bulwark(serial) = device.credential() {
                let cert = KnownCert {
                    device_id: device.device_id().clone(),
                    serial: serial.clone(),
                    not_after: device.not_after(),
                };
                admitted.put_cert(generation, fp, cert);
            }
            (device.device_id().clone(), device.serial().cloned())
        }
    };
    if let Some(policy) = known.policy {
        // Admitted before, and nothing about it published since.
        let (client_id, assigned) = device_client_id(connect, &id)?;
        if policy.check(Action::Connect, &client_id).is_allowed() {
            return Ok(Admission {
                key: SessionKey::from(id.as_str()),
                owner: Owner::Device(id),
                client_id,
                assigned,
                policy,
                serial,
                generation: Some(generation),
                remembered: true,
            });
        }
    }
    let access = registry
        .device_access(&id)
        .await
        .map_err(|e| from_registry(e).of(&id))?;
    if !access.may_connect() {
        let state = access.device.state;
        let (code, reason) = match state {
            DeviceState::Decommissioned => (
                ReasonCode::Banned,
                format!("device {id} is {state} and may not connect"),
            ),
            DeviceState::Pending => (
                ReasonCode::NotAuthorized,
                format!(
                    "device {id} is pending: an operator must activate it before it may connect \
                     (bulwark device activate {id})"
                ),
            ),
            _ if !access.credential_trusted => (
                ReasonCode::NotAuthorized,
                format!("the manufacturer CA device {id} is bound to is no longer registered"),
            ),
            _ => (
                ReasonCode::NotAuthorized,
                format!("device {id} is {state} and may not connect"),
            ),
        };
        return Err(Refusal::auth(code, reason).of(&id));
    }
    let (client_id, assigned) = device_client_id(connect, &id)?;
    let policy = compile(&access.documents, &access.principal())?;
    if !policy.check(Action::Connect, &client_id).is_allowed() {
        return Err(Refusal::auth(
            ReasonCode::NotAuthorized,
            format!("the policy of device {id} does not allow it to connect"),
        )
        .of(&id));
    }
    if access.device.manufacturer_ca.is_none() {
        admitted.put_device(generation, id.clone(), policy.clone());
    }
    Ok(Admission {
        key: SessionKey::from(id.as_str()),
        owner: Owner::Device(id),
        client_id,
        assigned,
        policy,
        serial,
        generation: Some(generation),
        remembered: false,
    })
}

/// A device's clientId must be its id; an empty one is assigned it.
fn device_client_id(connect: &Connect, id: &DeviceId) -> Result<(String, bool), Refusal> {
    if connect.client_id.is_empty() {
        Ok((id.to_string(), true))
    } else if connect.client_id == id.as_str() {
        Ok((connect.client_id.clone(), false))
    } else {
        Err(Refusal::auth(
            ReasonCode::ClientIdentifierNotValid,
            format!("the certificate is for device {id}; the clientId must be {id} (or empty)"),
        )
        .of(id))
    }
}

/// Compiles a principal's documents; a document that no longer compiles
/// is a server-side fault, not the client's.
pub fn compile(
    documents: &[bulwark_policy::PolicyDocument],
    principal: &Principal,
) -> Result<Arc<CompiledPolicy>, Refusal> {
    CompiledPolicy::compile(documents, principal)
        .map(Arc::new)
        .map_err(|e| {
            tracing::error!(error = %e, principal = %principal.name(), "policy does not compile");
            Refusal {
                code: ReasonCode::ImplementationSpecificError,
                reason: "the policy for this client does not compile; an operator must fix it"
                    .into(),
                device: None,
                auth_failure: false,
            }
        })
}

/// A backend application: its client id is its name, or its name followed
/// by `-` and anything (several instances); its policies are only those
/// attached to it, so a service with none may not even connect.
async fn admit_service(
    registry: &Registry,
    connect: &Connect,
    identity: ServiceIdentity,
    generation: u64,
) -> Result<Admission, Refusal> {
    let name = identity.name().clone();
    let access = registry
        .service_access(&name)
        .await
        .map_err(from_registry)?;
    let (client_id, assigned) = if connect.client_id.is_empty() {
        (name.to_string(), true)
    } else if service_client_id_ok(name.as_str(), &connect.client_id) {
        (connect.client_id.clone(), false)
    } else {
        return Err(Refusal::auth(
            ReasonCode::ClientIdentifierNotValid,
            format!("service {name} must use the clientId {name} or {name}-<instance>"),
        ));
    };
    let policy = compile(&access.documents, &access.principal())?;
    if !policy.check(Action::Connect, &client_id).is_allowed() {
        return Err(Refusal::auth(
            ReasonCode::NotAuthorized,
            format!("no policy attached to service {name} allows it to connect as {client_id}"),
        ));
    }
    Ok(Admission {
        key: SessionKey::from(format!("service:{client_id}")),
        owner: Owner::Service(name.to_string()),
        client_id,
        assigned,
        policy,
        serial: identity.serial().cloned(),
        generation: Some(generation),
        remembered: false,
    })
}

fn service_client_id_ok(name: &str, client_id: &str) -> bool {
    client_id == name
        || client_id
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|instance| !instance.is_empty())
}

/// The policy of every dev-listener client.
pub fn dev_policy() -> Result<Arc<CompiledPolicy>, Refusal> {
    let principal = DeviceId::new("dev-anonymous")
        .map(Principal::new)
        .map_err(|_| Refusal::auth(ReasonCode::UnspecifiedError, "dev principal"))?;
    compile(&[dev_permissive_policy()], &principal)
}

fn admit_dev(connect: &Connect) -> Result<Admission, Refusal> {
    let (client_id, assigned) = if connect.client_id.is_empty() {
        let n: u64 = rand_id();
        (format!("dev-{n:016x}"), true)
    } else {
        (connect.client_id.clone(), false)
    };
    let policy = dev_policy()?;
    Ok(Admission {
        key: SessionKey::from(format!("dev:{client_id}")),
        owner: Owner::Dev,
        client_id,
        assigned,
        policy,
        serial: None,
        generation: None,
        remembered: false,
    })
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}
