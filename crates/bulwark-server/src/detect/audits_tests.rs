//! Unit tests of the posture checks: each with a case it must report and
//! one it must leave alone.

use bulwark_registry::{builtin_policy, PosturePolicy, PostureStatement};
use bulwark_store::CertRecord;
use bulwark_types::{
    CertKind, CertSerial, Certificate, Device, GroupId, ManufacturerCaName,
    ManufacturerCertificate, PolicyName, RevocationReason, ServiceName,
};
use time::macros::datetime;

use super::*;

const NOW: OffsetDateTime = datetime!(2025-06-01 12:00 UTC);

fn days(n: i64) -> time::Duration {
    time::Duration::days(n)
}

/// A 1024-bit RSA certificate (`openssl req -x509 -newkey rsa:1024`).
const RSA_1024_PEM: &str = "-----BEGIN CERTIFICATE-----
MIICADCCAWmgAwIBAgIUJWG1V9xQoI62yFCBQFYtViuC7u8wDQYJKoZIhvcNAQEL
BQAwETEPMA0GA1UEAwwGd2Vhay0xMCAXDTI2MTEyMzAzMzA1NloYDzIxMjYxMDMw
MDMzMDU2WjARMQ8wDQYDVQQDDAZ3ZWFrLTEwgZ8wDQYJKoZIhvcNAQEBBQADgY0A
MIGJAoGBANU0GUYV2tdxC/P9IQGJ3OFGyn4e9Iz/RfNtlB/FEKAWGxmaY5qrSGZq
YwNiTq3yFEPPF0z6bGqhUeJNT44MWg0tv7+BLn3dhbiv6ksqOwOL/IGmhVAjO0VZ
dS97TU5hRCktg8vBtKYmezr65BOAebenqXRJy4FQ9DfKmPAKypf/AgMBAAGjUzBR
MB0GA1UdDgQWBBRiwR953Odk5G8O40xqVq406NgDPzAfBgNVHSMEGDAWgBRiwR95
3Odk5G8O40xqVq406NgDPzAPBgNVHRMBAf8EBTADAQH/MA0GCSqGSIb3DQEBCwUA
A4GBAFn3JXUCVMDrJ+Xnb5wnW38t2QLzMUGYNEjqzJ7jkVH+y35+Ag2x34tyMeqZ
JSmbTLL0HGCYxnczRxRCIs/13JAoOMmucsvwFWR1Q1DjOtEZD7mLqNPC2JfCtl3D
3+0+HEX3DRVG/XDkRH5NCoyLehSOJfp2vJr8NzY7syNB7u8V
-----END CERTIFICATE-----
";

fn rsa_1024_der() -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(RSA_1024_PEM.as_bytes()).unwrap();
    pem.contents
}

fn rcgen_der(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(alg).unwrap();
    rcgen::CertificateParams::new(vec!["d1".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap()
        .der()
        .to_vec()
}

fn device(state: DeviceState) -> Device {
    Device {
        id: DeviceId::new("d1").unwrap(),
        group: GroupId::new("g").unwrap(),
        state,
        labels: Default::default(),
        hardware_model: None,
        firmware_version: None,
        created_at: NOW - days(100),
        enrolled_at: Some(NOW - days(100)),
        last_seen_at: None,
        manufacturer_ca: None,
    }
}

/// A certificate issued `age` days before NOW, valid `lifetime` days.
fn cert(serial: u8, age: i64, lifetime: i64, revoked: bool, der: Vec<u8>) -> CertRecord {
    let not_before = NOW - days(age);
    CertRecord {
        info: Certificate {
            serial: CertSerial::from_bytes(&[serial]).unwrap(),
            kind: CertKind::Device,
            subject: "d1".into(),
            fingerprint_sha256: String::new(),
            not_before,
            not_after: not_before + days(lifetime),
            revoked_at: revoked.then_some(NOW - days(1)),
            revocation_reason: revoked.then_some(RevocationReason::KeyCompromise),
        },
        der,
    }
}

fn posture(state: DeviceState, certificates: Vec<CertRecord>) -> DevicePosture {
    DevicePosture {
        device: device(state),
        certificates,
        manufacturer_certificates: Vec::new(),
    }
}

fn manufacturer_bound(not_after: OffsetDateTime) -> DevicePosture {
    let ca = ManufacturerCaName::new("acme").unwrap();
    let mut d = posture(DeviceState::Active, Vec::new());
    d.device.manufacturer_ca = Some(ca.clone());
    d.manufacturer_certificates = vec![ManufacturerCertificate {
        fingerprint_sha256: "ab".into(),
        manufacturer_ca: ca,
        serial: "0A".into(),
        subject: "CN=d1".into(),
        not_before: NOW - days(1000),
        not_after,
        bound_at: NOW - days(3),
        revoked_at: None,
        revocation_reason: None,
    }];
    d
}

#[test]
fn cert_expiring_within_the_warning_only() {
    let warn = days(7);
    // The newest unrevoked certificate decides: 25 of its 30 days are gone.
    let d = posture(
        DeviceState::Active,
        vec![
            cert(2, 25, 30, false, Vec::new()),
            cert(1, 50, 30, true, Vec::new()),
        ],
    );
    let f = cert_expiring(&d, NOW, warn).expect("expires in 5 days");
    assert_eq!(f.detector, "audit:cert-expiring");
    assert_eq!(f.entity, "device:d1");
    assert_eq!(f.dedup_key, "audit:cert-expiring:device:d1");
    assert_eq!(f.severity, Severity::Medium);
    assert_eq!(f.group.as_deref(), Some("g"));
    assert!(f.title.contains("expires in 5 days"), "{}", f.title);

    let fresh = posture(DeviceState::Active, vec![cert(1, 2, 30, false, Vec::new())]);
    assert!(cert_expiring(&fresh, NOW, warn).is_none(), "28 days left");
    // A renewed certificate hides the old one about to expire.
    let renewed = posture(
        DeviceState::Active,
        vec![
            cert(2, 1, 30, false, Vec::new()),
            cert(1, 29, 30, false, Vec::new()),
        ],
    );
    assert!(cert_expiring(&renewed, NOW, warn).is_none());
    let expired = posture(
        DeviceState::Active,
        vec![cert(1, 40, 30, false, Vec::new())],
    );
    let f = cert_expiring(&expired, NOW, warn).unwrap();
    assert!(f.title.contains("expired 10 days ago"), "{}", f.title);
    assert_eq!(f.evidence["expired"], true);
    let gone = posture(
        DeviceState::Decommissioned,
        vec![cert(1, 25, 30, false, Vec::new())],
    );
    assert!(cert_expiring(&gone, NOW, warn).is_none());

    // A manufacturer-bound device: its manufacturer certificate counts.
    let f = cert_expiring(&manufacturer_bound(NOW + days(3)), NOW, warn).unwrap();
    assert_eq!(f.evidence["issuer"], "manufacturer:acme");
    assert!(cert_expiring(&manufacturer_bound(NOW + days(3000)), NOW, warn).is_none());
}

#[test]
fn cert_too_old_after_the_maximum_age() {
    let old = posture(
        DeviceState::Active,
        vec![cert(1, 500, 1000, false, Vec::new())],
    );
    let f = cert_too_old(&old, NOW, days(400)).expect("issued 500 days ago");
    assert_eq!(f.detector, "audit:cert-too-old");
    assert_eq!(f.severity, Severity::Medium);
    assert_eq!(f.dedup_key, "audit:cert-too-old:device:d1");
    let young = posture(
        DeviceState::Active,
        vec![cert(1, 20, 30, false, Vec::new())],
    );
    assert!(cert_too_old(&young, NOW, days(400)).is_none());
    // Manufacturer certificates are long-lived by design.
    assert!(cert_too_old(&manufacturer_bound(NOW + days(9000)), NOW, days(1)).is_none());
}

#[test]
fn weak_keys_by_algorithm_and_size() {
    let weak = key_weakness(&rsa_1024_der());
    assert_eq!(weak.as_deref(), Some("rsa key of 1024 bits"));
    assert_eq!(
        key_weakness(&rcgen_der(&rcgen::PKCS_ECDSA_P256_SHA256)),
        None
    );
    assert_eq!(
        key_weakness(&rcgen_der(&rcgen::PKCS_ECDSA_P384_SHA384)),
        None
    );
    assert_eq!(key_weakness(&rcgen_der(&rcgen::PKCS_ED25519)), None);
    assert_eq!(
        key_weakness(&rcgen_der(&rcgen::PKCS_ECDSA_P521_SHA512)).as_deref(),
        Some("ec key on curve P-521")
    );
    assert_eq!(
        key_weakness(b"not a certificate").as_deref(),
        Some("the certificate does not parse")
    );
    assert_eq!(modulus_bits(&[0x00, 0x80, 0x00]), 16);
    assert_eq!(modulus_bits(&[0x01, 0xff]), 9);
}

#[test]
fn weak_key_findings_cover_usable_certificates_only() {
    let d = posture(
        DeviceState::Active,
        vec![
            cert(2, 1, 30, false, rcgen_der(&rcgen::PKCS_ECDSA_P256_SHA256)),
            cert(1, 5, 30, false, rsa_1024_der()),
        ],
    );
    let f = weak_key(&d, NOW).expect("the RSA-1024 certificate is still usable");
    assert_eq!(f.detector, "audit:weak-key");
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.evidence["certificates"][0]["serial"], "01");
    assert!(f.title.contains("rsa key of 1024 bits"), "{}", f.title);

    let strong = posture(
        DeviceState::Active,
        vec![cert(
            1,
            1,
            30,
            false,
            rcgen_der(&rcgen::PKCS_ECDSA_P256_SHA256),
        )],
    );
    assert!(weak_key(&strong, NOW).is_none());
    // Revoked (its DER is not even read) or expired: not usable.
    let revoked = posture(DeviceState::Active, vec![cert(1, 1, 30, true, Vec::new())]);
    assert!(weak_key(&revoked, NOW).is_none());
    let expired = posture(
        DeviceState::Active,
        vec![cert(1, 40, 30, false, rsa_1024_der())],
    );
    assert!(weak_key(&expired, NOW).is_none());
}

#[test]
fn connected_without_a_right_to_be() {
    let ok = posture(DeviceState::Active, vec![cert(1, 1, 30, false, Vec::new())]);
    assert!(revoked_but_connected(&ok, true, NOW).is_none());
    let revoked = posture(DeviceState::Active, vec![cert(1, 1, 30, true, Vec::new())]);
    assert!(
        revoked_but_connected(&revoked, false, NOW).is_none(),
        "not connected"
    );
    let f = revoked_but_connected(&revoked, true, NOW).expect("revoked and connected");
    assert_eq!(f.detector, "audit:revoked-but-connected");
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.evidence["reason"], "every certificate of it is revoked");
    let gone = posture(
        DeviceState::Decommissioned,
        vec![cert(1, 1, 30, true, Vec::new())],
    );
    assert_eq!(
        revoked_but_connected(&gone, true, NOW).unwrap().evidence["reason"],
        "it is decommissioned"
    );
    let pending = posture(DeviceState::Pending, Vec::new());
    assert!(revoked_but_connected(&pending, true, NOW).is_some());
    let expired = posture(
        DeviceState::Active,
        vec![cert(1, 40, 30, false, Vec::new())],
    );
    assert_eq!(
        revoked_but_connected(&expired, true, NOW).unwrap().evidence["reason"],
        "every certificate of it has expired"
    );
    // A device bound to a manufacturer CA holds no Bulwark certificate.
    assert!(revoked_but_connected(&manufacturer_bound(NOW + days(9)), true, NOW).is_none());
}

#[test]
fn silent_devices_by_their_last_activity() {
    let silent = days(7);
    // Enrolled 100 days ago, its certificate issued 20 days ago, last seen
    // 10 days ago: silent.
    let mut d = posture(
        DeviceState::Active,
        vec![cert(1, 20, 30, false, Vec::new())],
    );
    d.device.last_seen_at = Some(NOW - days(10));
    let f = silent_device(&d, false, None, NOW, silent).expect("silent for 10 days");
    assert_eq!(f.detector, "audit:silent-device");
    assert_eq!(f.severity, Severity::Medium);
    assert!(f.title.contains("10 days ago"), "{}", f.title);
    assert!(
        silent_device(&d, true, None, NOW, silent).is_none(),
        "connected now"
    );
    assert!(
        silent_device(&d, false, Some(NOW - days(1)), NOW, silent).is_none(),
        "an earlier run saw it connected yesterday"
    );
    d.device.last_seen_at = Some(NOW - days(2));
    assert!(silent_device(&d, false, None, NOW, silent).is_none());
    // Never seen: its newest certificate's issuance counts.
    let renewed = posture(DeviceState::Active, vec![cert(1, 3, 30, false, Vec::new())]);
    assert_eq!(last_activity(&renewed, None), NOW - days(3));
    assert!(silent_device(&renewed, false, None, NOW, silent).is_none());
    // Only active devices.
    let mut q = posture(DeviceState::Quarantined, Vec::new());
    q.device.last_seen_at = Some(NOW - days(50));
    assert!(silent_device(&q, false, None, NOW, silent).is_none());
}

fn policy(
    name: &str,
    attachments: Vec<PolicyTarget>,
    statements: &[(&[&'static str], &[&str])],
) -> PosturePolicy {
    PosturePolicy {
        name: PolicyName::new(name).unwrap(),
        version: Some(1),
        attachments,
        statements: statements
            .iter()
            .enumerate()
            .map(|(index, (actions, resources))| PostureStatement {
                index,
                allow: true,
                actions: actions.to_vec(),
                resources: resources.iter().map(|r| r.to_string()).collect(),
            })
            .collect(),
    }
}

#[test]
fn filter_breadth_cases() {
    for (filter, expect) in [
        ("#", Some("matches every topic")),
        ("+/#", Some("matches every topic")),
        ("+/+/#", Some("matches every topic")),
        ("$share/g/#", Some("matches every topic")),
        ("+/+", Some("has only wildcard levels")),
        ("devices/+/cmd", Some("reaches every device's topics")),
        ("devices/#", Some("reaches every device's topics")),
        (
            "$share/g/devices/+/telemetry",
            Some("reaches every device's topics"),
        ),
        ("devices/${device.id}/#", None),
        ("devices/+/to/${device.id}", None),
        ("devices/d42/commands/#", None),
        ("fleet/+/status", None),
        ("sensors/#", None),
        ("devices", None),
    ] {
        assert_eq!(filter_breadth(filter).map(Breadth::why), expect, "{filter}");
    }
}

#[test]
fn over_broad_policies() {
    let group = || vec![PolicyTarget::Group(GroupId::new("g").unwrap())];
    let p = policy(
        "cross-talk",
        group(),
        &[
            (&["connect"], &["#"]),
            (
                &["publish", "receive"],
                &["devices/+/cmd", "devices/${device.id}/#"],
            ),
        ],
    );
    let f = over_broad_policy(&p, NOW).expect("publish on devices/+/cmd");
    assert_eq!(f.detector, "audit:over-broad-policy");
    assert_eq!(f.entity, "policy:cross-talk");
    assert_eq!(f.dedup_key, "audit:over-broad-policy:policy:cross-talk");
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.device, None);
    assert!(
        f.title.contains("allows publish on devices/+/cmd"),
        "{}",
        f.title
    );
    assert_eq!(f.evidence["statements"][0]["statement"], 1);
    assert_eq!(
        f.evidence["statements"][0]["resources"],
        json!(["devices/+/cmd", "devices/${device.id}/#"])
    );

    let own = policy(
        "own",
        group(),
        &[(&["publish", "subscribe"], &["devices/${device.id}/#"])],
    );
    assert!(over_broad_policy(&own, NOW).is_none());
    // `connect` and `receive` on `#` grant no publish or subscribe.
    let inert = policy("inert", group(), &[(&["connect", "receive"], &["#"])]);
    assert!(over_broad_policy(&inert, NOW).is_none());
    // A deny statement is never over-broad.
    let mut deny = policy("deny", group(), &[(&["subscribe"], &["#"])]);
    deny.statements[0].allow = false;
    assert!(over_broad_policy(&deny, NOW).is_none());

    // A back end's policy may read every device, but not everything.
    let svc = || vec![PolicyTarget::Service(ServiceName::new("ingest").unwrap())];
    let ingest = policy(
        "ingest",
        svc(),
        &[(&["subscribe"], &["devices/+/telemetry"])],
    );
    assert!(over_broad_policy(&ingest, NOW).is_none());
    let firehose = policy("firehose", svc(), &[(&["subscribe"], &["#"])]);
    assert!(over_broad_policy(&firehose, NOW).is_some());
    // Unattached: it may be attached to a group any time.
    let loose = policy("loose", Vec::new(), &[(&["subscribe"], &["devices/#"])]);
    assert!(over_broad_policy(&loose, NOW).is_some());
}

#[test]
fn the_built_in_device_policies_are_not_over_broad() {
    for name in ["default-device", "quarantine"] {
        let doc = builtin_policy(name).unwrap();
        let p =
            PosturePolicy::from_document(PolicyName::new(name).unwrap(), None, Vec::new(), &doc);
        assert!(over_broad_policy(&p, NOW).is_none(), "{name}");
    }
    // The dev-only permissive policy is exactly what the check is for.
    let doc = builtin_policy("dev-permissive").unwrap();
    let p = PosturePolicy::from_document(
        PolicyName::new("dev-permissive").unwrap(),
        None,
        Vec::new(),
        &doc,
    );
    assert!(over_broad_policy(&p, NOW).is_some());
}

#[test]
fn audit_chain_verdicts() {
    let bad: Result<VerifyReport, VerifyError> = Err(VerifyError::Modified { seq: 7 });
    let f = audit_chain(&bad, NOW).expect("a modified entry");
    assert_eq!(f.detector, "audit:audit-chain");
    assert_eq!(f.entity, "fleet");
    assert_eq!(f.dedup_key, "audit:audit-chain:fleet");
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.evidence["first_bad_entry"], 7);
    let good: Result<VerifyReport, VerifyError> = Ok(VerifyReport {
        entries: 3,
        checkpoints: 1,
        last_checkpoint: 3,
        head: [0; 32],
    });
    assert!(audit_chain(&good, NOW).is_none());
}

#[test]
fn alerts_take_actions_only_from_matching_playbooks() {
    let mut settings = DetectSettings {
        engine: Default::default(),
        playbooks: super::super::playbook::defaults(),
        sinks: Vec::new(),
        response: Default::default(),
    };
    let d = posture(DeviceState::Active, vec![cert(1, 1, 30, true, Vec::new())]);
    let f = revoked_but_connected(&d, true, NOW).unwrap();
    let a = alert(&settings, f.clone(), NOW);
    assert_eq!(a.dedup, "audit:revoked-but-connected:device:d1");
    assert_eq!(a.device.as_ref().map(DeviceId::as_str), Some("d1"));
    assert!(a.actions.is_empty(), "no built-in playbook matches audit:*");
    assert!(a.bundle.is_some());
    settings.playbooks = vec![toml::from_str(
        "name = \"cut\"\ndetectors = [\"audit:revoked-but-connected\"]\n\
         [[steps]]\naction = \"disconnect\"\n",
    )
    .unwrap()];
    assert_eq!(alert(&settings, f, NOW).actions.len(), 1);
    // Fleet and policy findings get notifications only.
    let p = policy("p", Vec::new(), &[(&["publish"], &["#"])]);
    settings.playbooks = vec![toml::from_str(
        "name = \"all\"\nmin_severity = \"low\"\n\
         [[steps]]\naction = \"notify\"\n[[steps]]\naction = \"disconnect\"\n",
    )
    .unwrap()];
    let actions = alert(&settings, over_broad_policy(&p, NOW).unwrap(), NOW).actions;
    assert_eq!(actions.len(), 1);
    assert_eq!(actions[0].action, bulwark_types::ActionKind::Notify);
}

#[test]
fn audit_settings_are_validated() {
    let settings = |toml_text: &str| DetectSettings {
        engine: Default::default(),
        playbooks: Vec::new(),
        sinks: Vec::new(),
        response: toml::from_str(toml_text).unwrap(),
    };
    let ok = settings("");
    assert_eq!(ok.response.audit_interval_secs, 300);
    assert_eq!(ok.response.cert_expiry_warn_days, 7);
    assert_eq!(ok.response.cert_max_age_days, 400);
    assert_eq!(ok.response.silent_days, 7);
    ok.validate().unwrap();
    settings("audit_interval_secs = 0").validate().unwrap();
    for bad in [
        "audit_interval_secs = 604801",
        "cert_expiry_warn_days = 0",
        "cert_max_age_days = 36501",
        "silent_days = 0",
    ] {
        assert!(settings(bad).validate().is_err(), "{bad}");
    }
}
