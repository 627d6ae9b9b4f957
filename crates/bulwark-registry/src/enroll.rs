//! Enrollment: first certificates (by token or claim) and renewals.
//!
//! The identity in an issued certificate comes from what authorized the
//! request (the token's bound device id, a fresh id, or the renewing
//! device's own id), never from the CSR, whose subject, SANs and extensions
//! are ignored. The server never generates a device key.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use bulwark_audit::{Actor, AuditEvent};
use bulwark_ca::{random_serial, verify_csr, IssuedCert, Subject, VerifiedCsr};
use bulwark_store::{EnrollAuth, Enrollment, NewCert, NewClaim, Reenrollment, StoreError};
use bulwark_types::{CertKind, DeviceId, GroupId};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use time::{Duration, OffsetDateTime};

use crate::auth::{Action, ClaimIdentity, DeviceIdentity, Operator};
use crate::events::Event;
use crate::secrets::{hash_secret, new_device_id};
use crate::{Registry, RegistryError};

/// A certificate handed to an enrolling device.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub device_id: DeviceId,
    pub cert: IssuedCert,
}

/// One rate limiter per claim certificate, built on first use.
#[derive(Default)]
pub(crate) struct ClaimLimiters(Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>);

impl ClaimLimiters {
    fn check(&self, claim: &ClaimIdentity) -> Result<(), RegistryError> {
        let limiter = {
            let mut map = self
                .0
                .lock()
                .map_err(|_| RegistryError::Invalid("rate limiter unavailable".into()))?;
            map.entry(claim.claim_id.clone())
                .or_insert_with(|| {
                    let per_min =
                        NonZeroU32::new(claim.rate_per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
                    Arc::new(RateLimiter::direct(Quota::per_minute(per_min)))
                })
                .clone()
        };
        limiter
            .check()
            .map_err(|not_until| RegistryError::RateLimited {
                retry_after_secs: not_until
                    .wait_time_from(governor::clock::Clock::now(
                        &governor::clock::DefaultClock::default(),
                    ))
                    .as_secs()
                    .max(1),
            })
    }
}

pub(crate) fn new_cert(kind: CertKind, subject: &str, c: &IssuedCert) -> NewCert {
    NewCert {
        serial: c.serial.clone(),
        kind,
        subject: subject.to_string(),
        der: c.der.clone(),
        fingerprint_sha256: c.sha256_fingerprint(),
        not_before: c.not_before,
        not_after: c.not_after,
    }
}

pub(crate) fn csr(der: &[u8]) -> Result<VerifiedCsr, RegistryError> {
    verify_csr(der).map_err(|e| RegistryError::Invalid(format!("certificate request refused: {e}")))
}

impl Registry {
    async fn refuse(
        &self,
        actor: Actor,
        device_id: Option<DeviceId>,
        e: RegistryError,
    ) -> RegistryError {
        let r = self
            .store
            .append_audit(
                actor,
                AuditEvent::EnrollmentRefused {
                    reason: e.to_string(),
                    device_id,
                },
            )
            .await;
        if let Err(ae) = r {
            tracing::error!(error = %ae, "could not audit a refused enrollment");
        }
        e
    }

    /// EST `simpleenroll` authorized by an enrollment token.
    pub async fn enroll_with_token(
        &self,
        token: &str,
        csr_der: &[u8],
        source: &str,
    ) -> Result<Enrolled, RegistryError> {
        let actor = Actor::Anonymous {
            source: source.to_string(),
        };
        let hash = hash_secret(token);
        let t = match self.store.find_enroll_token(&hash).await? {
            Some(t) => t,
            None => {
                let e = RegistryError::Unauthenticated("enrollment token is not valid".into());
                return Err(self.refuse(actor, None, e).await);
            }
        };
        // Early, clear refusals; the store checks again atomically.
        let early = if t.used_at.is_some() {
            Some(StoreError::TokenUsed)
        } else if t.expires_at <= OffsetDateTime::now_utc() {
            Some(StoreError::TokenExpired)
        } else {
            None
        };
        if let Some(e) = early {
            return Err(self.refuse(actor, t.device_id.clone(), e.into()).await);
        }
        let csr = match csr(csr_der) {
            Ok(c) => c,
            Err(e) => return Err(self.refuse(actor, t.device_id.clone(), e).await),
        };
        let device_id = t.device_id.clone().unwrap_or_else(new_device_id);
        self.issue_and_commit(EnrollAuth::Token(hash), device_id, t.group, &csr, actor)
            .await
    }

    /// Issues a device certificate and commits the enrollment; only a
    /// committed certificate is returned (and announced on the bus).
    async fn issue_and_commit(
        &self,
        auth: EnrollAuth,
        device_id: DeviceId,
        group: GroupId,
        csr: &VerifiedCsr,
        actor: Actor,
    ) -> Result<Enrolled, RegistryError> {
        let cert = self.ca.issue_client(
            csr,
            &Subject::Device(device_id.clone()),
            &random_serial(),
            self.config.device_cert_lifetime,
        )?;
        let enrollment = Enrollment {
            auth,
            device_id: device_id.clone(),
            group,
            cert: new_cert(CertKind::Device, device_id.as_str(), &cert),
            actor: actor.clone(),
        };
        if let Err(e) = self.store.commit_enrollment(enrollment).await {
            return Err(self.refuse(actor, Some(device_id), e.into()).await);
        }
        self.bus.publish(Event::DeviceEnrolled {
            device_id: device_id.clone(),
            serial: cert.serial.clone(),
        });
        Ok(Enrolled { device_id, cert })
    }

    /// EST `simpleenroll` authorized by a factory claim certificate.
    pub async fn enroll_with_claim(
        &self,
        claim: &ClaimIdentity,
        csr_der: &[u8],
    ) -> Result<Enrolled, RegistryError> {
        let actor = Actor::Claim {
            claim_id: claim.claim_id.clone(),
        };
        if let Err(e) = self.claim_limiters.check(claim) {
            return Err(self.refuse(actor, None, e).await);
        }
        let csr = match csr(csr_der) {
            Ok(c) => c,
            Err(e) => return Err(self.refuse(actor, None, e).await),
        };
        self.issue_and_commit(
            EnrollAuth::Claim(claim.claim_id.clone()),
            new_device_id(),
            claim.group.clone(),
            &csr,
            actor,
        )
        .await
    }

    /// EST `simplereenroll`: a new certificate (a new key is allowed) for
    /// the same identity, authorized by the current certificate.
    pub async fn reenroll(
        &self,
        device: &DeviceIdentity,
        csr_der: &[u8],
    ) -> Result<Enrolled, RegistryError> {
        let actor = Actor::Device {
            device_id: device.device_id.clone(),
        };
        let Some(old_serial) = device.serial().cloned() else {
            let e = RegistryError::Unauthenticated(
                "a device that authenticates with a manufacturer certificate cannot re-enroll"
                    .into(),
            );
            return Err(self.refuse(actor, Some(device.device_id.clone()), e).await);
        };
        let csr = match csr(csr_der) {
            Ok(c) => c,
            Err(e) => return Err(self.refuse(actor, Some(device.device_id.clone()), e).await),
        };
        let cert = self.ca.issue_client(
            &csr,
            &Subject::Device(device.device_id.clone()),
            &random_serial(),
            self.config.device_cert_lifetime,
        )?;
        let renewal = Reenrollment {
            device_id: device.device_id.clone(),
            old_serial,
            cert: new_cert(CertKind::Device, device.device_id.as_str(), &cert),
        };
        if let Err(e) = self.store.commit_reenrollment(renewal).await {
            return Err(self
                .refuse(actor, Some(device.device_id.clone()), e.into())
                .await);
        }
        self.bus.publish(Event::DeviceEnrolled {
            device_id: device.device_id.clone(),
            serial: cert.serial.clone(),
        });
        Ok(Enrolled {
            device_id: device.device_id.clone(),
            cert,
        })
    }

    /// Issues a claim certificate for a factory batch from the batch key's CSR.
    pub async fn create_claim(
        &self,
        op: &Operator,
        group: GroupId,
        csr_der: &[u8],
        lifetime: Option<Duration>,
        rate_per_minute: Option<u32>,
    ) -> Result<(IssuedCert, bulwark_types::Claim), RegistryError> {
        self.allow(op, Action::ManageClaims).await?;
        let lifetime = lifetime.unwrap_or(Duration::days(365));
        if lifetime <= Duration::ZERO || lifetime > Duration::days(3650) {
            return Err(RegistryError::Invalid(
                "claim lifetime must be between 1 second and 10 years".into(),
            ));
        }
        let rate = rate_per_minute.unwrap_or(60);
        if rate == 0 || rate > 100_000 {
            return Err(RegistryError::Invalid(
                "rate_per_minute must be between 1 and 100000".into(),
            ));
        }
        let csr = csr(csr_der)?;
        let (_, id) = crate::secrets::new_secret(crate::secrets::SecretKind::Enrollment);
        let claim_id = format!("claim-{id}");
        let cert = self.ca.issue_client(
            &csr,
            &Subject::Claim(claim_id.clone()),
            &random_serial(),
            lifetime,
        )?;
        let claim = self
            .store
            .create_claim(
                NewClaim {
                    id: claim_id.clone(),
                    group,
                    rate_per_minute: rate,
                    cert: new_cert(CertKind::Claim, &claim_id, &cert),
                },
                op.actor(),
            )
            .await?;
        Ok((cert, claim))
    }
}
