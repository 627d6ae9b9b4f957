//! Manufacturer CAs with a real SQLite store and CA, below the TLS layer:
//! `identify_mqtt_client` verifies the signature (never the issuer name
//! alone), binds certificates by fingerprint, registers devices just in
//! time, refuses takeovers (audited), and follows registration, removal,
//! activation and decommissioning.

use bulwark_registry::{ClientIdentity, DeviceCredential, Event, RegistryError};
use bulwark_store::{NewDevice, StoreError};
use bulwark_types::{DeviceId, DeviceState, GroupId, JitMode, ManufacturerCaName, Role};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

mod common;

use common::Fixture;

/// The shared fixture with the group `sensors`.
async fn fixture() -> Fixture {
    let f = common::fixture().await;
    f.registry
        .create_group(&f.admin, GroupId::new("sensors").unwrap(), String::new())
        .await
        .unwrap();
    f
}

/// A manufacturer's CA: PEM, parameters and key.
struct Mfr {
    pem: String,
    params: CertificateParams,
    key: KeyPair,
}

impl Mfr {
    fn new(cn: &str) -> Mfr {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        p.not_before = OffsetDateTime::now_utc() - Duration::days(1);
        p.not_after = OffsetDateTime::now_utc() + Duration::days(365);
        let key = KeyPair::generate().unwrap();
        let pem = p.self_signed(&key).unwrap().pem();
        Mfr {
            pem,
            params: p,
            key,
        }
    }

    /// A device certificate with subject CN `cn` (DER).
    fn device(&self, cn: &str) -> Vec<u8> {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        p.signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .unwrap()
            .der()
            .to_vec()
    }
}

fn name(s: &str) -> ManufacturerCaName {
    ManufacturerCaName::new(s).unwrap()
}

fn id(s: &str) -> DeviceId {
    DeviceId::new(s).unwrap()
}

impl Fixture {
    async fn register(&self, n: &str, mfr: &Mfr, jit: JitMode) {
        let group = (jit != JitMode::Off).then(|| GroupId::new("sensors").unwrap());
        self.registry
            .create_manufacturer_ca(&self.admin, name(n), &mfr.pem, group, jit)
            .await
            .unwrap();
    }

    async fn refused(&self, der: &[u8], expect: &str) {
        match self.registry.identify_mqtt_client(der).await {
            Ok(i) => panic!("identified {i:?}, expected a refusal with {expect:?}"),
            Err(RegistryError::Unauthenticated(m)) => {
                assert!(m.contains(expect), "{m:?} lacks {expect:?}")
            }
            Err(e) => panic!("unexpected error {e}"),
        }
    }

    async fn device(&self, d: &str) -> bulwark_types::DeviceDetail {
        self.registry.get_device(&self.admin, &id(d)).await.unwrap()
    }

    async fn audit_types(&self) -> Vec<String> {
        self.registry
            .audit_entries(&self.admin, 0, 10_000)
            .await
            .unwrap()
            .iter()
            .map(|e| {
                let v: serde_json::Value = serde_json::from_str(&e.event).unwrap();
                v["type"].as_str().unwrap().to_owned()
            })
            .collect()
    }
}

#[tokio::test]
async fn the_signature_decides_not_the_issuer_name() {
    let f = fixture().await;
    let acme = Mfr::new("Acme Devices CA");
    f.register("acme", &acme, JitMode::Active).await;
    let mut bus = f.registry.bus().subscribe();

    // An impostor CA with the same name, and a certificate it signed.
    let impostor = Mfr::new("Acme Devices CA");
    f.refused(&impostor.device("acme-1"), "does not verify")
        .await;
    // A CA nobody registered.
    f.refused(
        &Mfr::new("Other").device("acme-1"),
        "registered manufacturer CA",
    )
    .await;
    assert!(
        f.registry
            .get_device(&f.admin, &id("acme-1"))
            .await
            .is_err(),
        "nothing was registered"
    );

    // The real one: registered just in time, active, in the CA's group.
    let der = acme.device("acme-1");
    match f.registry.identify_mqtt_client(&der).await.unwrap() {
        ClientIdentity::Device(d) => {
            assert_eq!(d.device_id().as_str(), "acme-1");
            assert!(d.serial().is_none());
            assert!(matches!(
                d.credential(),
                DeviceCredential::Manufacturer { ca, .. } if ca.as_str() == "acme"
            ));
        }
        other => panic!("{other:?}"),
    }
    let detail = f.device("acme-1").await;
    assert_eq!(detail.device.state, DeviceState::Active);
    assert_eq!(detail.device.group.as_str(), "sensors");
    assert_eq!(detail.device.manufacturer_ca, Some(name("acme")));
    assert_eq!(detail.manufacturer_certificates.len(), 1);
    assert_eq!(
        bus.try_recv().unwrap(),
        Event::DeviceJitRegistered {
            device_id: id("acme-1"),
            manufacturer_ca: name("acme"),
            state: DeviceState::Active,
        }
    );
    // Seen again: the same identity, nothing written.
    let audited = f.audit_types().await.len();
    f.registry.identify_mqtt_client(&der).await.unwrap();
    assert_eq!(f.audit_types().await.len(), audited);
    // Re-provisioned: a new certificate from the same CA is bound too.
    f.registry
        .identify_mqtt_client(&acme.device("acme-1"))
        .await
        .unwrap();
    assert_eq!(f.device("acme-1").await.manufacturer_certificates.len(), 2);
    let types = f.audit_types().await;
    assert!(types.contains(&"device_jit_registered".to_owned()));
    assert!(types.contains(&"manufacturer_certificate_bound".to_owned()));
}

#[tokio::test]
async fn certificates_that_claim_other_devices_or_bad_names_are_refused() {
    let f = fixture().await;
    let acme = Mfr::new("Acme Devices CA");
    let other = Mfr::new("Other Devices CA");
    f.register("acme", &acme, JitMode::Active).await;
    f.register("other", &other, JitMode::Active).await;
    // A device an operator registered for Bulwark's own enrollment.
    f.registry
        .create_device(
            &f.admin,
            NewDevice {
                id: id("door-1"),
                group: GroupId::new("sensors").unwrap(),
                labels: Default::default(),
                hardware_model: None,
                manufacturer_ca: None,
            },
        )
        .await
        .unwrap();
    f.refused(&acme.device("door-1"), "cannot take it over")
        .await;
    // A device bound to acme cannot be claimed by another CA's certificate.
    f.registry
        .identify_mqtt_client(&acme.device("acme-1"))
        .await
        .unwrap();
    f.refused(&other.device("acme-1"), "bound to manufacturer CA acme")
        .await;
    assert_eq!(
        f.audit_types()
            .await
            .iter()
            .filter(|t| *t == "manufacturer_certificate_refused")
            .count(),
        2,
        "takeover attempts are audited"
    );
    f.refused(&acme.device("has space"), "not a valid device id")
        .await;
    f.refused(&acme.device("a/b"), "not a valid device id")
        .await;
}

#[tokio::test]
async fn jit_off_and_pending_wait_for_an_operator() {
    let f = fixture().await;
    let acme = Mfr::new("Acme Devices CA");
    f.register("acme", &acme, JitMode::Off).await;
    f.refused(&acme.device("acme-1"), "is not registered").await;
    assert!(f
        .registry
        .get_device(&f.admin, &id("acme-1"))
        .await
        .is_err());
    // Pre-registered for the CA: its first certificate activates it.
    f.registry
        .create_device(
            &f.admin,
            NewDevice {
                id: id("acme-1"),
                group: GroupId::new("sensors").unwrap(),
                labels: Default::default(),
                hardware_model: None,
                manufacturer_ca: Some(name("acme")),
            },
        )
        .await
        .unwrap();
    f.registry
        .identify_mqtt_client(&acme.device("acme-1"))
        .await
        .unwrap();
    assert_eq!(f.device("acme-1").await.device.state, DeviceState::Active);

    // Pending: created pending, activated by an operator.
    let beta = Mfr::new("Beta CA");
    f.register("beta", &beta, JitMode::Pending).await;
    f.registry
        .identify_mqtt_client(&beta.device("beta-1"))
        .await
        .unwrap();
    let access = f.registry.device_access(&id("beta-1")).await.unwrap();
    assert_eq!(access.device.state, DeviceState::Pending);
    assert!(!access.may_connect());
    let op = f
        .registry
        .transition(&f.admin, id("beta-1"), DeviceState::Active)
        .await
        .unwrap();
    assert_eq!(op.state, DeviceState::Active);
    assert!(f.device("beta-1").await.device.enrolled_at.is_some());
    // A pending device without a certificate still becomes active only by
    // enrolling.
    f.registry
        .create_device(
            &f.admin,
            NewDevice {
                id: id("plain"),
                group: GroupId::new("sensors").unwrap(),
                labels: Default::default(),
                hardware_model: None,
                manufacturer_ca: None,
            },
        )
        .await
        .unwrap();
    let e = f
        .registry
        .transition(&f.admin, id("plain"), DeviceState::Active)
        .await
        .unwrap_err();
    assert!(
        matches!(e, RegistryError::Store(StoreError::Transition(_))),
        "{e}"
    );
}

#[tokio::test]
async fn removal_and_decommissioning_stop_the_certificates() {
    let f = fixture().await;
    let acme = Mfr::new("Acme Devices CA");
    f.register("acme", &acme, JitMode::Active).await;
    let (a1, a2) = (acme.device("acme-1"), acme.device("acme-2"));
    f.registry.identify_mqtt_client(&a1).await.unwrap();
    f.registry.identify_mqtt_client(&a2).await.unwrap();
    let trust = f.registry.manufacturer_trust().await.unwrap();
    assert_eq!(trust.borrow().cas().len(), 1);

    // Decommissioning revokes the device's manufacturer certificates.
    f.registry
        .transition(&f.admin, id("acme-2"), DeviceState::Decommissioned)
        .await
        .unwrap();
    f.refused(&a2, "revoked").await;
    let revoked = &f.device("acme-2").await.manufacturer_certificates[0];
    assert!(revoked.revoked_at.is_some());

    // Removal: the snapshot changes before the call returns, the bus names
    // the bound devices, identification and device access refuse.
    let mut bus = f.registry.bus().subscribe();
    let (_, devices) = f
        .registry
        .delete_manufacturer_ca(&f.admin, name("acme"))
        .await
        .unwrap();
    assert_eq!(devices, vec![id("acme-1"), id("acme-2")]);
    assert!(trust.borrow().cas().is_empty());
    assert!(matches!(
        bus.try_recv().unwrap(),
        Event::ManufacturerCaRemoved { devices, .. } if devices.len() == 2
    ));
    f.refused(&a1, "registered manufacturer CA").await;
    assert!(!f
        .registry
        .device_access(&id("acme-1"))
        .await
        .unwrap()
        .may_connect());

    // The name stays reserved for its certificate; the certificate may
    // come back under it, and its devices with it.
    let other = Mfr::new("Other CA");
    let e = f
        .registry
        .create_manufacturer_ca(&f.admin, name("acme"), &other.pem, None, JitMode::Off)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("another CA certificate"), "{e}");
    f.register("acme", &acme, JitMode::Active).await;
    f.registry.identify_mqtt_client(&a1).await.unwrap();
}

#[tokio::test]
async fn registration_is_checked_and_admin_only() {
    let f = fixture().await;
    let acme = Mfr::new("Acme Devices CA");
    let (secret, _) = f
        .registry
        .create_operator_token(&f.admin, "op".into(), Role::Operator, None)
        .await
        .unwrap();
    let op = f
        .registry
        .authenticate_operator(&secret, "test")
        .await
        .unwrap();
    let e = f
        .registry
        .create_manufacturer_ca(&op, name("acme"), &acme.pem, None, JitMode::Off)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Forbidden { .. }), "{e}");
    assert!(f
        .registry
        .list_manufacturer_cas(&op)
        .await
        .unwrap()
        .is_empty());

    let e = f
        .registry
        .create_manufacturer_ca(&f.admin, name("acme"), &acme.pem, None, JitMode::Active)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("needs a target group"), "{e}");
    let e = f
        .registry
        .create_manufacturer_ca(&f.admin, name("acme"), "junk", None, JitMode::Off)
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::Invalid(_)), "{e}");
    let own = f.registry.ca().root_pem();
    let e = f
        .registry
        .create_manufacturer_ca(&f.admin, name("ours"), &own, None, JitMode::Off)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("Bulwark's own CA"), "{e}");

    f.register("acme", &acme, JitMode::Off).await;
    for (n, expect) in [
        ("acme", "already registered"),
        ("acme-2", "already registered as manufacturer CA acme"),
    ] {
        let e = f
            .registry
            .create_manufacturer_ca(&f.admin, name(n), &acme.pem, None, JitMode::Off)
            .await
            .unwrap_err();
        assert!(
            matches!(&e, RegistryError::Store(StoreError::Conflict(m)) if m.contains(expect)),
            "{e}"
        );
    }
    assert_eq!(
        f.registry.list_manufacturer_cas(&op).await.unwrap().len(),
        1
    );
}
