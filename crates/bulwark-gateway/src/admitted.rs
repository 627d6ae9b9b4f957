//! Remembered admissions: what the registry answered for a device that
//! connected before, so a reconnect costs no store read and no thread hop.
//!
//! Two maps, both invalidated by the registry's bus:
//!
//! - certificates Bulwark issued to devices, by the SHA-256 of their DER:
//!   the device they identify, their serial and notAfter (revocation is the
//!   only change a certificate's record can see; expiry is checked at every
//!   hit). Manufacturer, service and claim certificates are never kept:
//!   they take the registry's path every time;
//! - devices not bound to a manufacturer CA that were admitted: the
//!   compiled policy their session got (state, group, labels and attached
//!   policies folded in). Sessions share it with the map.
//!
//! **Staleness.** The registry publishes an event after every committed
//! change and before it answers the operator. Every lookup and every fill
//! first applies the events published so far (`try_recv` on its own
//! receiver, under the map's lock), so a CONNECT that starts after a change
//! was answered never sees the entries it invalidates, and an entry read
//! from the store before a change is not inserted after it (a fill is
//! dropped when the generation moved since the read). A lagged receiver
//! empties both maps. What is left is the window between a commit and its
//! publication — the same a store read just before the commit has — and
//! the connection re-checks after attaching when the generation moved
//! since its admission (`conn::attach`), so the enforcement task's scan
//! cannot miss a session attached just after it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bulwark_policy::CompiledPolicy;
use bulwark_registry::Event;
use bulwark_types::{CertSerial, DeviceId};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::sync::broadcast::{self, error::TryRecvError};

/// SHA-256 of a certificate's DER.
pub(crate) type Fingerprint = [u8; 32];

pub(crate) fn fingerprint(der: &[u8]) -> Fingerprint {
    Sha256::digest(der).into()
}

/// Certificates remembered at most (about 150 bytes each), then emptied.
const CERTS_MAX: usize = 65_536;
/// Devices remembered at most (a compiled policy is about 1 KiB; a
/// connected device's is shared with its session), then emptied.
const DEVICES_MAX: usize = 16_384;

/// A certificate Bulwark issued to a device, as the registry identified it.
#[derive(Debug, Clone)]
pub(crate) struct KnownCert {
    pub device_id: DeviceId,
    pub serial: CertSerial,
    pub not_after: OffsetDateTime,
}

/// What a lookup found, valid as of `generation`.
#[derive(Debug)]
pub(crate) struct Lookup {
    pub generation: u64,
    pub cert: Option<KnownCert>,
    pub policy: Option<Arc<CompiledPolicy>>,
}

pub(crate) struct Admitted {
    inner: Mutex<Inner>,
}

struct Inner {
    rx: broadcast::Receiver<Event>,
    /// Counted up by every event applied.
    generation: u64,
    /// The bus is gone: nothing is remembered any more.
    closed: bool,
    certs: HashMap<Fingerprint, KnownCert>,
    devices: HashMap<DeviceId, Arc<CompiledPolicy>>,
}

impl std::fmt::Debug for Admitted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("Admitted")
            .field("generation", &inner.generation)
            .field("certs", &inner.certs.len())
            .field("devices", &inner.devices.len())
            .finish()
    }
}

impl Admitted {
    /// Follows the bus from `rx` on (subscribe before the first lookup).
    pub(crate) fn new(rx: broadcast::Receiver<Event>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                rx,
                generation: 0,
                closed: false,
                certs: HashMap::new(),
                devices: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The generation once every event published so far is applied.
    pub(crate) fn generation(&self) -> u64 {
        let mut inner = self.lock();
        inner.drain();
        inner.generation
    }

    /// The certificate and the policy of the device it identifies, if
    /// remembered and the certificate is unexpired at `now`.
    pub(crate) fn lookup(&self, fp: &Fingerprint, now: OffsetDateTime) -> Lookup {
        let mut inner = self.lock();
        inner.drain();
        let cert = inner.certs.get(fp).filter(|c| now < c.not_after).cloned();
        let policy = cert
            .as_ref()
            .and_then(|c| inner.devices.get(&c.device_id).cloned());
        Lookup {
            generation: inner.generation,
            cert,
            policy,
        }
    }

    /// Remembers a certificate read from the registry at `generation`
    /// (dropped if anything was published since).
    pub(crate) fn put_cert(&self, generation: u64, fp: Fingerprint, cert: KnownCert) {
        let mut inner = self.lock();
        if !inner.fresh(generation) {
            return;
        }
        if inner.certs.len() >= CERTS_MAX {
            inner.certs.clear();
        }
        inner.certs.insert(fp, cert);
    }

    /// Remembers an admitted device's policy, compiled from what the
    /// registry answered at `generation` (dropped if anything was
    /// published since).
    pub(crate) fn put_device(&self, generation: u64, id: DeviceId, policy: Arc<CompiledPolicy>) {
        let mut inner = self.lock();
        if !inner.fresh(generation) {
            return;
        }
        if inner.devices.len() >= DEVICES_MAX {
            inner.devices.clear();
        }
        inner.devices.insert(id, policy);
    }

    #[cfg(test)]
    pub(crate) fn sizes(&self) -> (usize, usize) {
        let inner = self.lock();
        (inner.certs.len(), inner.devices.len())
    }
}

impl Inner {
    fn fresh(&mut self, generation: u64) -> bool {
        self.drain();
        !self.closed && self.generation == generation
    }

    fn drain(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(e) => self.apply(&e),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Lagged(_)) => {
                    self.generation += 1;
                    self.clear();
                }
                Err(TryRecvError::Closed) => {
                    if !self.closed {
                        self.generation += 1;
                        self.closed = true;
                        self.clear();
                    }
                    return;
                }
            }
        }
    }

    fn clear(&mut self) {
        self.certs.clear();
        self.devices.clear();
    }

    fn apply(&mut self, e: &Event) {
        if matches!(e, Event::AlertChanged { .. }) {
            // Alerts are not admissions (containment reaches the gateway
            // as device and certificate events).
            return;
        }
        self.generation += 1;
        match e {
            Event::CertificateRevoked { serial, .. } => {
                self.certs.retain(|_, c| c.serial != *serial);
            }
            Event::DeviceStateChanged { device_id, .. }
            | Event::DeviceUpdated { device_id }
            | Event::DeviceEnrolled { device_id, .. }
            | Event::DeviceJitRegistered { device_id, .. } => {
                self.devices.remove(device_id);
            }
            // Anything attached to a group, or a manufacturer CA (and the
            // devices bound to it) gone: start over.
            Event::PoliciesChanged | Event::ManufacturerCaRemoved { .. } => self.clear(),
            // Services and manufacturer certificates are never remembered;
            // tokens are the API's.
            Event::ServiceChanged { .. }
            | Event::ManufacturerCaAdded { .. }
            | Event::OperatorTokenRevoked { .. }
            | Event::AlertChanged { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_policy::{default_device_policy, Principal};
    use bulwark_registry::EventBus;

    fn policy(id: &DeviceId) -> Arc<CompiledPolicy> {
        Arc::new(
            CompiledPolicy::compile(&[default_device_policy()], &Principal::new(id.clone()))
                .unwrap(),
        )
    }

    fn cert(id: &DeviceId, serial: &str, not_after: OffsetDateTime) -> KnownCert {
        KnownCert {
            device_id: id.clone(),
            serial: serial.parse().unwrap(),
            not_after,
        }
    }

    #[test]
    fn events_invalidate_and_stale_fills_are_dropped() {
        let bus = EventBus::new(4);
        let a = Admitted::new(bus.subscribe());
        let now = OffsetDateTime::now_utc();
        let later = now + time::Duration::hours(1);
        let (d1, d2) = (DeviceId::new("d1").unwrap(), DeviceId::new("d2").unwrap());
        let (f1, f2) = (fingerprint(b"one"), fingerprint(b"two"));

        let g = a.lookup(&f1, now).generation;
        a.put_cert(g, f1, cert(&d1, "0a", later));
        a.put_device(g, d1.clone(), policy(&d1));
        a.put_cert(g, f2, cert(&d2, "0b", later));
        a.put_device(g, d2.clone(), policy(&d2));
        let hit = a.lookup(&f1, now);
        assert!(hit.cert.is_some() && hit.policy.is_some());
        // Expired: not returned.
        assert!(a.lookup(&f1, later).cert.is_none());

        // A device's change forgets its policy, not its certificate.
        bus.publish(Event::DeviceUpdated {
            device_id: d1.clone(),
        });
        let hit = a.lookup(&f1, now);
        assert!(hit.cert.is_some() && hit.policy.is_none());
        assert!(a.lookup(&f2, now).policy.is_some());
        // A fill read before that event is dropped.
        a.put_device(g, d1.clone(), policy(&d1));
        assert!(a.lookup(&f1, now).policy.is_none());

        // Revocation forgets the certificate.
        bus.publish(Event::CertificateRevoked {
            serial: "0a".parse().unwrap(),
            device_id: Some(d1.clone()),
        });
        assert!(a.lookup(&f1, now).cert.is_none());
        assert!(a.lookup(&f2, now).cert.is_some());

        // A policy change forgets everything.
        let g = a.generation();
        bus.publish(Event::PoliciesChanged);
        assert_ne!(a.generation(), g);
        assert_eq!(a.sizes(), (0, 0));

        // A lagged receiver forgets everything too.
        let g = a.generation();
        a.put_cert(g, f2, cert(&d2, "0b", later));
        for _ in 0..6 {
            bus.publish(Event::OperatorTokenRevoked {
                token_id: "t".into(),
            });
        }
        assert!(a.lookup(&f2, now).cert.is_none());
    }
}
