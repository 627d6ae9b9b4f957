//! The registry service: operators, inventory, lifecycle, revocation, CRL.

use std::sync::{Arc, Mutex};

use bulwark_audit::{Actor, AuditEvent};
use bulwark_ca::{Ca, RevokedEntry};
use bulwark_store::{
    CertRecord, DeviceFilter, DeviceUpdate, NewDevice, NewEnrollToken, NewGroup, NewOperatorToken,
    Store, StoreError,
};
use bulwark_types::{
    CertKind, CertSerial, Certificate, Claim, Device, DeviceDetail, DeviceId, DeviceState,
    EnrollToken, Group, GroupId, OperatorToken, RevocationReason, Role, ServiceName,
};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::auth::{
    Action, ClaimIdentity, ClientIdentity, DeviceCredential, DeviceIdentity, Operator,
    ServiceIdentity,
};
use crate::enroll::ClaimLimiters;
use crate::events::{Event, EventBus};
use crate::manufacturer::TrustState;
use crate::secrets::{hash_secret, new_secret, SecretKind};
use crate::RegistryError;

/// Tunables of the identity domain.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Lifetime of device certificates.
    pub device_cert_lifetime: Duration,
    /// Default and maximum lifetime of enrollment tokens.
    pub enroll_token_ttl: Duration,
    pub enroll_token_max_ttl: Duration,
    /// Default and maximum lifetime of operator tokens.
    pub operator_token_ttl: Duration,
    pub operator_token_max_ttl: Duration,
    /// How long a published CRL is valid (nextUpdate - thisUpdate).
    pub crl_validity: Duration,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            device_cert_lifetime: Duration::days(30),
            enroll_token_ttl: Duration::hours(1),
            enroll_token_max_ttl: Duration::days(30),
            operator_token_ttl: Duration::days(90),
            operator_token_max_ttl: Duration::days(365),
            crl_validity: Duration::days(1),
        }
    }
}

struct CrlCache {
    der: Vec<u8>,
    built: OffsetDateTime,
}

/// The identity domain. Cheap to share behind an `Arc`.
pub struct Registry {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) ca: Arc<Ca>,
    pub(crate) bus: EventBus,
    pub(crate) config: RegistryConfig,
    pub(crate) claim_limiters: ClaimLimiters,
    crl: tokio::sync::Mutex<Option<CrlCache>>,
    crl_dirty: Mutex<bool>,
    /// The registered manufacturer CAs (see `manufacturer`).
    pub(crate) trust: TrustState,
    /// The update service (see `ota`), when the server runs one.
    pub(crate) ota: Option<Arc<crate::Ota>>,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, ca: Arc<Ca>, bus: EventBus, config: RegistryConfig) -> Self {
        Self {
            store,
            ca,
            bus,
            config,
            claim_limiters: ClaimLimiters::default(),
            crl: tokio::sync::Mutex::new(None),
            crl_dirty: Mutex::new(true),
            trust: TrustState::new(),
            ota: None,
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    pub fn bus(&self) -> &EventBus {
        &self.bus
    }

    // --- authentication ---------------------------------------------------

    /// Checks a bearer token. Failures are audited with the caller's address.
    pub async fn authenticate_operator(
        &self,
        bearer: &str,
        source: &str,
    ) -> Result<Operator, RegistryError> {
        let found = self.store.find_operator_token(&hash_secret(bearer)).await?;
        let now = OffsetDateTime::now_utc();
        let refusal = match &found {
            None => Some("unknown operator token"),
            Some(t) if t.revoked_at.is_some() => Some("operator token revoked"),
            Some(t) if t.expires_at <= now => Some("operator token expired"),
            Some(_) => None,
        };
        if let Some(reason) = refusal {
            self.store
                .append_audit(
                    Actor::Anonymous {
                        source: source.to_string(),
                    },
                    AuditEvent::AuthenticationFailed {
                        reason: reason.to_string(),
                    },
                )
                .await?;
            return Err(RegistryError::Unauthenticated(reason.to_string()));
        }
        let t = found.ok_or_else(|| RegistryError::Unauthenticated("no token".into()))?;
        Ok(Operator {
            token_id: t.id,
            role: t.role,
        })
    }

    /// Checks the operator's role for an action carried out outside the
    /// registry (the MQTT gateway's sessions, metrics); a refusal is
    /// audited like every other.
    pub async fn authorize(&self, op: &Operator, action: Action) -> Result<(), RegistryError> {
        self.allow(op, action).await
    }

    /// Checks the operator's role; a refusal is audited as a security event.
    pub(crate) async fn allow(&self, op: &Operator, action: Action) -> Result<(), RegistryError> {
        let refused = match op.require(action) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let r = self
            .store
            .append_audit(
                op.actor(),
                AuditEvent::AuthorizationDenied {
                    action: action.as_str().to_string(),
                },
            )
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "could not audit a refused action");
        }
        Err(refused)
    }

    /// Identifies the holder of a TLS client certificate that chained to our
    /// CA. The certificate must be one this server issued (same DER), and
    /// must be unexpired and unrevoked.
    pub async fn identify_client(&self, cert_der: &[u8]) -> Result<ClientIdentity, RegistryError> {
        match self.our_certificate(cert_der).await? {
            Some(rec) => self.identify_ours(rec).await,
            None => Err(RegistryError::Unauthenticated(
                "client certificate was not issued by this server".into(),
            )),
        }
    }

    /// The record of `cert_der` if this server issued it (same DER).
    pub(crate) async fn our_certificate(
        &self,
        cert_der: &[u8],
    ) -> Result<Option<CertRecord>, RegistryError> {
        let (_, cert) = X509Certificate::from_der(cert_der).map_err(|_| {
            RegistryError::Unauthenticated("client certificate could not be parsed".into())
        })?;
        // A serial we could not have issued (zero, over 20 octets) is not ours.
        let Ok(serial) = CertSerial::from_bytes(cert.raw_serial()) else {
            return Ok(None);
        };
        Ok(self
            .store
            .get_certificate(&serial)
            .await?
            .filter(|r| r.der == cert_der))
    }

    pub(crate) async fn identify_ours(
        &self,
        rec: CertRecord,
    ) -> Result<ClientIdentity, RegistryError> {
        let unauth = |m: &str| RegistryError::Unauthenticated(m.to_string());
        let serial = rec.info.serial.clone();
        if rec.info.revoked_at.is_some() {
            return Err(unauth(&format!("client certificate {serial} is revoked")));
        }
        if rec.info.not_after <= OffsetDateTime::now_utc() {
            return Err(unauth(&format!("client certificate {serial} has expired")));
        }
        match rec.info.kind {
            CertKind::Device => Ok(ClientIdentity::Device(DeviceIdentity {
                device_id: DeviceId::new(rec.info.subject)
                    .map_err(|_| unauth("certificate subject is not a device id"))?,
                credential: DeviceCredential::Bulwark(serial),
                not_after: rec.info.not_after,
            })),
            CertKind::Claim => {
                let claim = self
                    .store
                    .get_claim(&rec.info.subject)
                    .await?
                    .ok_or_else(|| unauth("claim is not registered"))?;
                Ok(ClientIdentity::Claim(ClaimIdentity {
                    claim_id: claim.id,
                    group: claim.group,
                    rate_per_minute: claim.rate_per_minute,
                    serial,
                }))
            }
            CertKind::Service => {
                let name = ServiceName::new(rec.info.subject)
                    .map_err(|_| unauth("certificate subject is not a service name"))?;
                if self.store.get_service(&name).await?.is_none() {
                    return Err(unauth(&format!("service {name} no longer exists")));
                }
                Ok(ClientIdentity::Service(ServiceIdentity {
                    name,
                    serial: Some(serial),
                }))
            }
            CertKind::Server => Err(unauth("a server certificate cannot authenticate a client")),
        }
    }

    // --- operator tokens --------------------------------------------------

    /// Creates an operator token; returns the secret (shown once) and record.
    pub async fn create_operator_token(
        &self,
        op: &Operator,
        name: String,
        role: Role,
        ttl: Option<Duration>,
    ) -> Result<(String, OperatorToken), RegistryError> {
        self.allow(op, Action::ManageTokens).await?;
        if name.is_empty() || name.len() > 128 || name.chars().any(char::is_control) {
            return Err(RegistryError::Invalid(
                "token name must be 1 to 128 printable characters".into(),
            ));
        }
        let ttl = bounded_ttl(
            ttl,
            self.config.operator_token_ttl,
            self.config.operator_token_max_ttl,
        )?;
        let (secret, id) = new_secret(SecretKind::Operator);
        let rec = self
            .store
            .create_operator_token(
                NewOperatorToken {
                    id,
                    hash: hash_secret(&secret),
                    name,
                    role,
                    expires_at: OffsetDateTime::now_utc() + ttl,
                },
                op.actor(),
            )
            .await?;
        Ok((secret, rec))
    }

    /// The first admin token, created by the server itself on first start.
    pub async fn bootstrap_admin_token(&self, name: &str) -> Result<String, RegistryError> {
        let (secret, _) = self
            .create_operator_token(
                &Operator::system_admin(),
                name.to_string(),
                Role::Admin,
                None,
            )
            .await?;
        Ok(secret)
    }

    pub async fn list_operator_tokens(
        &self,
        op: &Operator,
    ) -> Result<Vec<OperatorToken>, RegistryError> {
        self.allow(op, Action::ManageTokens).await?;
        Ok(self.store.list_operator_tokens().await?)
    }

    pub async fn revoke_operator_token(
        &self,
        op: &Operator,
        id: String,
    ) -> Result<OperatorToken, RegistryError> {
        self.allow(op, Action::ManageTokens).await?;
        let t = self.store.revoke_operator_token(id, op.actor()).await?;
        self.bus.publish(Event::OperatorTokenRevoked {
            token_id: t.id.clone(),
        });
        Ok(t)
    }

    // --- groups and devices -----------------------------------------------

    pub async fn create_group(
        &self,
        op: &Operator,
        name: GroupId,
        description: String,
    ) -> Result<Group, RegistryError> {
        self.allow(op, Action::ManageGroups).await?;
        if description.len() > 1024 {
            return Err(RegistryError::Invalid(
                "description is longer than 1024 bytes".into(),
            ));
        }
        Ok(self
            .store
            .create_group(NewGroup { name, description }, op.actor())
            .await?)
    }

    pub async fn list_groups(&self, op: &Operator) -> Result<Vec<Group>, RegistryError> {
        self.allow(op, Action::ReadGroups).await?;
        Ok(self.store.list_groups().await?)
    }

    pub async fn create_device(
        &self,
        op: &Operator,
        device: NewDevice,
    ) -> Result<Device, RegistryError> {
        self.allow(op, Action::ManageDevices).await?;
        validate_labels(&device.labels)?;
        Ok(self.store.create_device(device, op.actor()).await?)
    }

    pub async fn update_device(
        &self,
        op: &Operator,
        id: DeviceId,
        update: DeviceUpdate,
    ) -> Result<Device, RegistryError> {
        self.allow(op, Action::ManageDevices).await?;
        if let Some(l) = &update.labels {
            validate_labels(l)?;
        }
        let device = self.store.update_device(id, update, op.actor()).await?;
        self.bus.publish(Event::DeviceUpdated {
            device_id: device.id.clone(),
        });
        Ok(device)
    }

    pub async fn get_device(
        &self,
        op: &Operator,
        id: &DeviceId,
    ) -> Result<DeviceDetail, RegistryError> {
        self.allow(op, Action::ReadInventory).await?;
        self.store
            .get_device(id)
            .await?
            .ok_or(RegistryError::Store(StoreError::NotFound {
                what: "device",
            }))
    }

    pub async fn list_devices(
        &self,
        op: &Operator,
        filter: DeviceFilter,
    ) -> Result<Vec<Device>, RegistryError> {
        self.allow(op, Action::ReadInventory).await?;
        Ok(self.store.list_devices(filter).await?)
    }

    /// Moves a device through its lifecycle and tells the bus.
    pub async fn transition(
        &self,
        op: &Operator,
        id: DeviceId,
        to: DeviceState,
    ) -> Result<Device, RegistryError> {
        self.allow(op, Action::ManageDevices).await?;
        let t = self.store.transition_device(id, to, op.actor()).await?;
        self.bus.publish(Event::DeviceStateChanged {
            device_id: t.device.id.clone(),
            from: t.from,
            to,
        });
        for serial in t.revoked {
            self.revoked(serial, Some(t.device.id.clone()));
        }
        Ok(t.device)
    }

    // --- certificates -----------------------------------------------------

    pub async fn get_certificate(
        &self,
        op: &Operator,
        serial: &CertSerial,
    ) -> Result<Certificate, RegistryError> {
        self.allow(op, Action::ReadInventory).await?;
        Ok(self
            .store
            .get_certificate(serial)
            .await?
            .ok_or(StoreError::NotFound {
                what: "certificate",
            })?
            .info)
    }

    pub async fn revoke_certificate(
        &self,
        op: &Operator,
        serial: CertSerial,
        reason: RevocationReason,
    ) -> Result<Certificate, RegistryError> {
        self.allow(op, Action::RevokeCertificate).await?;
        let c = self
            .store
            .revoke_certificate(serial, reason, op.actor())
            .await?;
        let device = (c.kind == CertKind::Device)
            .then(|| DeviceId::new(c.subject.clone()).ok())
            .flatten();
        self.revoked(c.serial.clone(), device);
        Ok(c)
    }

    /// Marks the CRL for rebuilding and tells the bus.
    pub(crate) fn revoked(&self, serial: CertSerial, device_id: Option<DeviceId>) {
        if let Ok(mut d) = self.crl_dirty.lock() {
            *d = true;
        }
        self.bus
            .publish(Event::CertificateRevoked { serial, device_id });
    }

    /// The current CRL (DER), rebuilt after a revocation or when half its
    /// validity has passed.
    pub async fn crl_der(&self) -> Result<Vec<u8>, RegistryError> {
        let mut cache = self.crl.lock().await;
        let now = OffsetDateTime::now_utc();
        let dirty = self
            .crl_dirty
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or(true);
        let stale = cache
            .as_ref()
            .is_none_or(|c| now - c.built > self.config.crl_validity / 2);
        if dirty || stale {
            let built = async {
                let entries: Vec<RevokedEntry> = self
                    .store
                    .revoked_certificates()
                    .await?
                    .into_iter()
                    .map(|r| RevokedEntry {
                        serial: r.serial,
                        revoked_at: r.revoked_at,
                        reason: r.reason,
                    })
                    .collect();
                let number = self.store.next_crl_number().await?;
                Ok::<_, RegistryError>(self.ca.crl(number, &entries, self.config.crl_validity)?)
            }
            .await;
            match built {
                Ok(der) => *cache = Some(CrlCache { der, built: now }),
                Err(e) => {
                    // Rebuild on the next request rather than serve a CRL
                    // that misses a revocation.
                    if let Ok(mut d) = self.crl_dirty.lock() {
                        *d = true;
                    }
                    return Err(e);
                }
            }
        }
        Ok(cache.as_ref().map(|c| c.der.clone()).unwrap_or_default())
    }

    // --- enrollment tokens and claims -------------------------------------

    pub async fn create_enroll_token(
        &self,
        op: &Operator,
        group: GroupId,
        device_id: Option<DeviceId>,
        ttl: Option<Duration>,
    ) -> Result<(String, EnrollToken), RegistryError> {
        self.allow(op, Action::CreateEnrollToken).await?;
        let ttl = bounded_ttl(
            ttl,
            self.config.enroll_token_ttl,
            self.config.enroll_token_max_ttl,
        )?;
        let (secret, id) = new_secret(SecretKind::Enrollment);
        let rec = self
            .store
            .create_enroll_token(
                NewEnrollToken {
                    id,
                    hash: hash_secret(&secret),
                    group,
                    device_id,
                    expires_at: OffsetDateTime::now_utc() + ttl,
                },
                op.actor(),
            )
            .await?;
        Ok((secret, rec))
    }

    pub async fn list_enroll_tokens(
        &self,
        op: &Operator,
    ) -> Result<Vec<EnrollToken>, RegistryError> {
        self.allow(op, Action::ReadInventory).await?;
        Ok(self.store.list_enroll_tokens().await?)
    }

    pub async fn list_claims(&self, op: &Operator) -> Result<Vec<Claim>, RegistryError> {
        self.allow(op, Action::ReadInventory).await?;
        Ok(self.store.list_claims().await?)
    }

    // --- audit ------------------------------------------------------------

    pub async fn audit_entries(
        &self,
        op: &Operator,
        after: u64,
        limit: u32,
    ) -> Result<Vec<bulwark_audit::Entry>, RegistryError> {
        self.allow(op, Action::ReadAudit).await?;
        Ok(self.store.audit_entries(after, limit.min(10_000)).await?)
    }

    /// Verifies the whole audit log against its signed checkpoints.
    pub async fn audit_verify(
        &self,
        op: &Operator,
    ) -> Result<Result<bulwark_audit::VerifyReport, bulwark_audit::VerifyError>, RegistryError>
    {
        self.allow(op, Action::ReadAudit).await?;
        self.store.checkpoint_now().await?;
        let checkpoints = self.store.audit_checkpoints().await?;
        let mut entries = Vec::new();
        let mut after = 0;
        loop {
            let page = self.store.audit_entries(after, 10_000).await?;
            let Some(last) = page.last() else { break };
            after = last.seq;
            entries.extend(page);
        }
        Ok(bulwark_audit::verify(
            entries,
            &checkpoints,
            &self.ca.audit_public_key(),
        ))
    }
}

fn bounded_ttl(
    ttl: Option<Duration>,
    default: Duration,
    max: Duration,
) -> Result<Duration, RegistryError> {
    let ttl = ttl.unwrap_or(default);
    if ttl <= Duration::ZERO || ttl > max {
        return Err(RegistryError::Invalid(format!(
            "ttl must be between 1 second and {} seconds",
            max.whole_seconds()
        )));
    }
    Ok(ttl)
}

fn validate_labels(
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<(), RegistryError> {
    if labels.len() > 64 {
        return Err(RegistryError::Invalid("at most 64 labels".into()));
    }
    for (k, v) in labels {
        bulwark_types::Label::new(k.clone())
            .map_err(|e| RegistryError::Invalid(format!("label key {k:?}: {e}")))?;
        if v.len() > 256 || v.chars().any(char::is_control) {
            return Err(RegistryError::Invalid(format!(
                "label {k:?}: value must be at most 256 printable characters"
            )));
        }
    }
    Ok(())
}
