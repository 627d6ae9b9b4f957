//! Manufacturer CAs ("bring your own CA") and just-in-time registration.
//!
//! An admin registers a manufacturer's CA certificate (strictly checked by
//! [`ManufacturerCaCert::validate_pem`]) with a target group and a
//! [`JitMode`]. From then on a device certificate that CA issued
//! identifies the device named by its subject CN:
//!
//! - the certificate's signature is verified with the CA's key (the issuer
//!   name alone proves nothing), it must be within its validity, and its CN
//!   a valid device id;
//! - the first time it is seen it is bound to the device (recorded by its
//!   SHA-256 fingerprint); a device enrolled through Bulwark's CA, or bound
//!   to another manufacturer CA, cannot be taken over (refused and
//!   audited); a new certificate from the same CA for a bound device is
//!   accepted and recorded (re-provisioning);
//! - an unknown device is refused (`off`), created `pending` until an
//!   operator activates it, or created `active` — in the CA's group,
//!   audited, and published on the bus.
//!
//! The registry keeps the registered CAs in a snapshot
//! ([`Registry::manufacturer_trust`]) that is replaced after every committed
//! change and before the change is answered, so the MQTT listener's
//! certificate verifier and identification agree with the store the
//! moment an operator's request returns.

use std::sync::Arc;

use bulwark_audit::{Actor, AuditEvent};
use bulwark_ca::{CaError, ManufacturerCaCert, ManufacturerLeaf};
use bulwark_store::{
    BindKind, ManufacturerBinding, ManufacturerCaRecord, NewManufacturerCa, StoreError,
};
use bulwark_types::{DeviceId, DeviceState, GroupId, JitMode, ManufacturerCa, ManufacturerCaName};
use time::OffsetDateTime;
use tokio::sync::{watch, Mutex, OnceCell};

use crate::auth::{Action, ClientIdentity, DeviceCredential, DeviceIdentity, Operator};
use crate::events::Event;
use crate::{Registry, RegistryError};

/// A registered manufacturer CA, parsed.
#[derive(Debug, Clone)]
pub struct TrustedCa {
    pub record: ManufacturerCa,
    pub cert: ManufacturerCaCert,
}

/// The manufacturer CAs registered now.
#[derive(Debug, Clone, Default)]
pub struct ManufacturerTrust {
    cas: Vec<TrustedCa>,
}

impl ManufacturerTrust {
    pub fn cas(&self) -> &[TrustedCa] {
        &self.cas
    }

    pub fn get(&self, name: &ManufacturerCaName) -> Option<&TrustedCa> {
        self.cas.iter().find(|c| c.record.name == *name)
    }

    /// The registered CA that issued `der`: among those whose subject is
    /// the certificate's issuer, the first whose key verifies it.
    fn issuer_of(&self, der: &[u8], now: OffsetDateTime) -> Issuer<'_> {
        let mut refused = Issuer::Unknown;
        for ca in self.cas.iter().filter(|c| c.cert.names_as_issuer(der)) {
            match ca.cert.verify_issued(der, now) {
                Ok(leaf) => return Issuer::Verified(ca, leaf),
                Err(e) => {
                    if matches!(refused, Issuer::Unknown) {
                        refused = Issuer::Refused(ca, e);
                    }
                }
            }
        }
        refused
    }
}

/// What the registered CAs say about a certificate.
enum Issuer<'a> {
    /// No registered CA has its issuer's name.
    Unknown,
    /// The first CA with that name refused it, for this reason.
    Refused(&'a TrustedCa, CaError),
    /// This CA issued it.
    Verified(&'a TrustedCa, ManufacturerLeaf),
}

/// The snapshot and its publisher.
pub(crate) struct TrustState {
    tx: watch::Sender<Arc<ManufacturerTrust>>,
    loaded: OnceCell<()>,
    /// Reloads run one at a time, each reading the store after taking it,
    /// so the last one published saw every committed change.
    reload: Mutex<()>,
}

impl TrustState {
    pub(crate) fn new() -> Self {
        Self {
            tx: watch::channel(Arc::new(ManufacturerTrust::default())).0,
            loaded: OnceCell::new(),
            reload: Mutex::new(()),
        }
    }
}

fn unauth(m: impl Into<String>) -> RegistryError {
    RegistryError::Unauthenticated(m.into())
}

/// At most 64 printable characters of untrusted text, for messages.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .take(64)
        .collect()
}

impl Registry {
    /// Re-reads the registered CAs from the store and publishes them.
    async fn reload_trust(&self) -> Result<Arc<ManufacturerTrust>, RegistryError> {
        let _one_at_a_time = self.trust.reload.lock().await;
        let mut cas = Vec::new();
        for rec in self.store.list_manufacturer_cas().await? {
            match ManufacturerCaCert::from_der(&rec.der) {
                Ok(cert) => cas.push(TrustedCa {
                    record: rec.ca,
                    cert,
                }),
                // It passed validation when registered; a stored one that
                // no longer parses is skipped (trusting less), not fatal.
                Err(e) => {
                    tracing::error!(name = %rec.ca.name, error = %e, "a stored manufacturer CA does not parse; it is not trusted")
                }
            }
        }
        let trust = Arc::new(ManufacturerTrust { cas });
        self.trust.tx.send_replace(trust.clone());
        Ok(trust)
    }

    /// The current snapshot, loaded from the store the first time.
    async fn trust_now(&self) -> Result<Arc<ManufacturerTrust>, RegistryError> {
        self.trust
            .loaded
            .get_or_try_init(|| async { self.reload_trust().await.map(|_| ()) })
            .await?;
        Ok(self.trust.tx.borrow().clone())
    }

    /// The registered manufacturer CAs, as a watch that changes after every
    /// committed registration or removal (before the operator's request is
    /// answered). The MQTT listener's client-certificate verifier follows it.
    pub async fn manufacturer_trust(
        &self,
    ) -> Result<watch::Receiver<Arc<ManufacturerTrust>>, RegistryError> {
        self.trust_now().await?;
        Ok(self.trust.tx.subscribe())
    }

    /// Whether `name` is a registered manufacturer CA now.
    pub(crate) async fn manufacturer_ca_registered(
        &self,
        name: &ManufacturerCaName,
    ) -> Result<bool, RegistryError> {
        Ok(self.trust_now().await?.get(name).is_some())
    }

    /// Registers a manufacturer CA from its PEM certificate (admin only).
    pub async fn create_manufacturer_ca(
        &self,
        op: &Operator,
        name: ManufacturerCaName,
        certificate_pem: &str,
        group: Option<GroupId>,
        jit: JitMode,
    ) -> Result<ManufacturerCaRecord, RegistryError> {
        self.allow(op, Action::ManageManufacturerCas).await?;
        if jit != JitMode::Off && group.is_none() {
            return Err(RegistryError::Invalid(format!(
                "just-in-time registration ({jit}) needs a target group for the devices it creates"
            )));
        }
        let own = [self.ca.root_der(), self.ca.issuing_der()];
        let cert =
            ManufacturerCaCert::validate_pem(certificate_pem, OffsetDateTime::now_utc(), &own)
                .map_err(|e| RegistryError::Invalid(e.to_string()))?;
        // Load the snapshot before the change, so the reload below is the
        // one that publishes it.
        self.trust_now().await?;
        let rec = self
            .store
            .create_manufacturer_ca(
                NewManufacturerCa {
                    name: name.clone(),
                    fingerprint: cert.fingerprint().to_owned(),
                    subject: cert.subject().to_owned(),
                    der: cert.der().to_vec(),
                    group,
                    jit,
                    not_before: cert.not_before(),
                    not_after: cert.not_after(),
                },
                op.actor(),
            )
            .await?;
        self.reload_trust().await?;
        tracing::info!(%name, sha256 = %rec.ca.fingerprint_sha256, %jit, "manufacturer CA registered");
        self.bus.publish(Event::ManufacturerCaAdded { name });
        Ok(rec)
    }

    pub async fn list_manufacturer_cas(
        &self,
        op: &Operator,
    ) -> Result<Vec<ManufacturerCaRecord>, RegistryError> {
        self.allow(op, Action::ReadManufacturerCas).await?;
        Ok(self.store.list_manufacturer_cas().await?)
    }

    pub async fn get_manufacturer_ca(
        &self,
        op: &Operator,
        name: &ManufacturerCaName,
    ) -> Result<ManufacturerCaRecord, RegistryError> {
        self.allow(op, Action::ReadManufacturerCas).await?;
        self.store
            .get_manufacturer_ca(name)
            .await?
            .ok_or(RegistryError::Store(StoreError::NotFound {
                what: "manufacturer CA",
            }))
    }

    /// Removes a manufacturer CA (admin only): its certificates stop
    /// authenticating at once (new handshakes and CONNECTs are refused) and
    /// the bus tells the gateway to cut the sessions of its devices.
    /// Returns the CA and the devices bound to it.
    pub async fn delete_manufacturer_ca(
        &self,
        op: &Operator,
        name: ManufacturerCaName,
    ) -> Result<(ManufacturerCaRecord, Vec<DeviceId>), RegistryError> {
        self.allow(op, Action::ManageManufacturerCas).await?;
        self.trust_now().await?;
        let (rec, devices) = self
            .store
            .delete_manufacturer_ca(name.clone(), op.actor())
            .await?;
        if let Err(e) = self.reload_trust().await {
            // The removal is committed: stop trusting the CA regardless.
            tracing::error!(error = %e, "cannot reload the manufacturer CAs; dropping the removed one from memory");
            let _one_at_a_time = self.trust.reload.lock().await;
            self.trust.tx.send_modify(|t| {
                *t = Arc::new(ManufacturerTrust {
                    cas: t
                        .cas
                        .iter()
                        .filter(|c| c.record.name != name)
                        .cloned()
                        .collect(),
                })
            });
        }
        tracing::info!(%name, devices = devices.len(), "manufacturer CA removed");
        self.bus.publish(Event::ManufacturerCaRemoved {
            name,
            devices: devices.clone(),
        });
        Ok((rec, devices))
    }

    /// Identifies the holder of a TLS client certificate at the MQTT
    /// gateway: as [`Registry::identify_client`] for a certificate Bulwark
    /// issued; otherwise a device certificate of a registered manufacturer
    /// CA, bound (or registered just in time) as the module docs describe.
    pub async fn identify_mqtt_client(
        &self,
        cert_der: &[u8],
    ) -> Result<ClientIdentity, RegistryError> {
        match self.our_certificate(cert_der).await? {
            Some(rec) => self.identify_ours(rec).await,
            None => self.identify_manufacturer_device(cert_der).await,
        }
    }

    async fn identify_manufacturer_device(
        &self,
        der: &[u8],
    ) -> Result<ClientIdentity, RegistryError> {
        let trust = self.trust_now().await?;
        let now = OffsetDateTime::now_utc();
        let (ca, leaf) = match trust.issuer_of(der, now) {
            Issuer::Unknown => {
                return Err(unauth(
                    "client certificate was not issued by this server or by a registered manufacturer CA",
                ))
            }
            Issuer::Refused(ca, e) => {
                return Err(unauth(format!("manufacturer CA {}: {e}", ca.record.name)))
            }
            Issuer::Verified(ca, leaf) => (ca, leaf),
        };
        let name = &ca.record.name;
        let cn = leaf.common_name.as_deref().ok_or_else(|| {
            unauth(format!(
                "the certificate from manufacturer CA {name} has no subject CN; its CN must be the device id"
            ))
        })?;
        let device_id = DeviceId::new(cn).map_err(|e| {
            unauth(format!(
                "the CN {:?} of the certificate from manufacturer CA {name} is not a valid device id: {e}",
                printable(cn)
            ))
        })?;
        let identity = ClientIdentity::Device(DeviceIdentity {
            device_id: device_id.clone(),
            credential: DeviceCredential::Manufacturer {
                ca: name.clone(),
                fingerprint: leaf.fingerprint.clone(),
            },
            not_after: leaf.not_after,
        });
        // The common case, a certificate seen before: one read, no write.
        if let Some(known) = self
            .store
            .get_manufacturer_certificate(&leaf.fingerprint)
            .await?
        {
            if known.cert.revoked_at.is_some() {
                return Err(unauth(format!(
                    "the manufacturer certificate of device {device_id} is revoked"
                )));
            }
            if known.device_id == device_id && known.cert.manufacturer_ca == *name {
                return Ok(identity);
            }
        }
        let jit = match (ca.record.jit, &ca.record.group) {
            (JitMode::Pending, Some(g)) => Some((g.clone(), DeviceState::Pending)),
            (JitMode::Active, Some(g)) => Some((g.clone(), DeviceState::Active)),
            _ => None,
        };
        let binding = ManufacturerBinding {
            device_id: device_id.clone(),
            manufacturer_ca: name.clone(),
            ca_fingerprint: ca.record.fingerprint_sha256.clone(),
            fingerprint: leaf.fingerprint.clone(),
            serial: leaf.serial_hex.clone(),
            subject: leaf.subject.clone(),
            not_before: leaf.not_before,
            not_after: leaf.not_after,
            jit,
        };
        let actor = Actor::Device {
            device_id: device_id.clone(),
        };
        match self
            .store
            .bind_manufacturer_certificate(binding, actor)
            .await
        {
            Ok(bound) => {
                match bound.kind {
                    BindKind::Registered => {
                        tracing::info!(device = %device_id, manufacturer_ca = %name, state = %bound.device.state, "device registered just in time");
                        self.bus.publish(Event::DeviceJitRegistered {
                            device_id,
                            manufacturer_ca: name.clone(),
                            state: bound.device.state,
                        });
                    }
                    BindKind::Added { activated } => {
                        tracing::info!(device = %device_id, manufacturer_ca = %name, activated, "manufacturer certificate bound");
                        if activated {
                            self.bus.publish(Event::DeviceStateChanged {
                                device_id,
                                from: DeviceState::Pending,
                                to: DeviceState::Active,
                            });
                        }
                    }
                    BindKind::Known => {}
                }
                Ok(identity)
            }
            Err(StoreError::ManufacturerBinding(reason)) => {
                let event = AuditEvent::ManufacturerCertificateRefused {
                    device_id: device_id.clone(),
                    manufacturer_ca: name.clone(),
                    fingerprint: leaf.fingerprint.clone(),
                    reason: reason.clone(),
                };
                let source = Actor::Anonymous {
                    source: format!("certificate of manufacturer CA {name}"),
                };
                if let Err(e) = self.store.append_audit(source, event).await {
                    tracing::error!(error = %e, "could not audit a refused manufacturer certificate");
                }
                Err(unauth(reason))
            }
            Err(StoreError::NotFound { what: "device" }) => Err(unauth(format!(
                "device {device_id} is not registered, and manufacturer CA {name} does not \
                 register devices just in time; an operator must register it first \
                 (bulwark device create {device_id} --group GROUP --manufacturer-ca {name})"
            ))),
            Err(StoreError::NotFound {
                what: "manufacturer CA",
            }) => Err(unauth(format!("manufacturer CA {name} was removed"))),
            Err(StoreError::CertificateRevoked(_)) => Err(unauth(format!(
                "the manufacturer certificate of device {device_id} is revoked"
            ))),
            Err(StoreError::DeviceState { device, state }) => Err(unauth(format!(
                "device {device} is {state} and may not connect"
            ))),
            Err(e) => Err(e.into()),
        }
    }
}
