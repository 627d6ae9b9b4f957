//! The registry with a real SQLite store and CA: stored policies reaching
//! `device_access`/`service_access` (what the MQTT gateway compiles), bus
//! events after commit, service passwords (Argon2id, audited failures) and
//! service certificates through `identify_client`.

use bulwark_policy::{Action, CompiledPolicy};
use bulwark_registry::{ClientIdentity, Event, PolicySubject, RegistryError};
use bulwark_store::StoreError;
use bulwark_types::{DeviceId, DeviceState, GroupId, PolicyName, PolicyTarget, Role, ServiceName};
use tokio::sync::broadcast::error::TryRecvError;

mod common;

use common::{csr_der, fixture, Fixture};

impl Fixture {
    async fn put(&self, json: &str) -> u32 {
        let stored = self
            .registry
            .put_policy(&self.admin, json.as_bytes())
            .await
            .unwrap();
        stored.policy.version.unwrap()
    }

    /// Audit events of `type`, as JSON.
    async fn audited(&self, kind: &str) -> Vec<serde_json::Value> {
        let entries = self
            .registry
            .store()
            .audit_entries(0, 10_000)
            .await
            .unwrap();
        entries
            .iter()
            .map(|e| serde_json::from_str::<serde_json::Value>(&e.event).unwrap())
            .filter(|e| e["type"] == kind)
            .collect()
    }
}

fn doc(name: &str, resource: &str) -> String {
    format!(
        r#"{{"version":1,"name":"{name}","statements":[{{"effect":"allow","actions":["publish"],"resources":["{resource}"]}}]}}"#
    )
}

fn group(s: &str) -> GroupId {
    GroupId::new(s).unwrap()
}

fn policy(s: &str) -> PolicyName {
    PolicyName::new(s).unwrap()
}

fn service(s: &str) -> ServiceName {
    ServiceName::new(s).unwrap()
}

/// A P-256 key's DER CSR.
fn allows(
    documents: &[bulwark_policy::PolicyDocument],
    p: &bulwark_policy::Principal,
    topic: &str,
) -> bool {
    CompiledPolicy::compile(documents, p)
        .unwrap()
        .check(Action::Publish, topic)
        .is_allowed()
}

#[tokio::test]
async fn group_attachments_reach_device_access_and_quarantine_overrides_them() {
    let f = fixture().await;
    let r = &f.registry;
    r.create_group(&f.admin, group("g"), String::new())
        .await
        .unwrap();
    let (token, _) = r
        .create_enroll_token(
            &f.admin,
            group("g"),
            Some(DeviceId::new("d1").unwrap()),
            None,
        )
        .await
        .unwrap();
    r.enroll_with_token(&token, &csr_der(), "test")
        .await
        .unwrap();
    let d1 = DeviceId::new("d1").unwrap();

    let before = r.device_access(&d1).await.unwrap();
    let names: Vec<&str> = before.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["default-device"]);
    assert!(!allows(
        &before.documents,
        &before.principal(),
        "sites/g/d1/temp"
    ));

    assert_eq!(
        f.put(&doc("sites", "sites/${device.group}/${device.id}/#"))
            .await,
        1
    );
    r.attach_policy(&f.admin, policy("sites"), PolicyTarget::Group(group("g")))
        .await
        .unwrap();
    let a = r.device_access(&d1).await.unwrap();
    assert_eq!(a.documents.len(), 2);
    assert_eq!(a.sources[1].name.as_str(), "sites");
    assert_eq!(a.sources[1].version, Some(1));
    assert!(allows(&a.documents, &a.principal(), "sites/g/d1/temp"));
    assert!(
        allows(&a.documents, &a.principal(), "devices/d1/x"),
        "default-device still applies"
    );
    assert!(!allows(&a.documents, &a.principal(), "sites/g/d2/temp"));

    // A new version replaces the old one for every attached group.
    assert_eq!(f.put(&doc("sites", "plant/${device.id}/#")).await, 2);
    let a = r.device_access(&d1).await.unwrap();
    assert_eq!(a.sources[1].version, Some(2));
    assert!(allows(&a.documents, &a.principal(), "plant/d1/x"));
    assert!(!allows(&a.documents, &a.principal(), "sites/g/d1/temp"));

    // Quarantine: the quarantine policy alone.
    r.transition(&f.admin, d1.clone(), DeviceState::Quarantined)
        .await
        .unwrap();
    let q = r.device_access(&d1).await.unwrap();
    let names: Vec<&str> = q.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["quarantine"]);
    assert!(!allows(&q.documents, &q.principal(), "plant/d1/x"));
    assert!(allows(
        &q.documents,
        &q.principal(),
        "remediation/d1/report"
    ));

    // Detached: back to the default policy alone.
    r.transition(&f.admin, d1.clone(), DeviceState::Active)
        .await
        .unwrap();
    r.detach_policy(&f.admin, policy("sites"), PolicyTarget::Group(group("g")))
        .await
        .unwrap();
    let a = r.device_access(&d1).await.unwrap();
    assert_eq!(a.documents.len(), 1);
}

#[tokio::test]
async fn every_change_is_published_after_commit_and_no_op_writes_are_not() {
    let f = fixture().await;
    let r = &f.registry;
    r.create_group(&f.admin, group("g"), String::new())
        .await
        .unwrap();
    let mut bus = r.bus().subscribe();
    let mut expect = |what: &str, event: Option<Event>| match (event, bus.try_recv()) {
        (Some(e), Ok(got)) => assert_eq!(got, e, "{what}"),
        (None, Err(TryRecvError::Empty)) => {}
        (want, got) => panic!("{what}: expected {want:?}, got {got:?}"),
    };
    f.put(&doc("p", "a/#")).await;
    expect("create", Some(Event::PoliciesChanged));
    let again = r
        .put_policy(&f.admin, doc("p", "a/#").as_bytes())
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.policy.version, Some(1));
    expect("identical document", None);
    let target = PolicyTarget::Group(group("g"));
    r.attach_policy(&f.admin, policy("p"), target.clone())
        .await
        .unwrap();
    expect("attach", Some(Event::PoliciesChanged));
    r.attach_policy(&f.admin, policy("p"), target.clone())
        .await
        .unwrap();
    expect("attach again", None);
    r.detach_policy(&f.admin, policy("p"), target)
        .await
        .unwrap();
    expect("detach", Some(Event::PoliciesChanged));
    r.delete_policy(&f.admin, policy("p")).await.unwrap();
    expect("delete", Some(Event::PoliciesChanged));
    r.create_service(&f.admin, service("s"), false)
        .await
        .unwrap();
    expect("service", Some(Event::ServiceChanged { name: "s".into() }));
    // One audit entry per change, none for the no-ops.
    assert_eq!(f.audited("policy_version_created").await.len(), 1);
    assert_eq!(f.audited("policy_attached").await.len(), 1);
    assert_eq!(f.audited("policy_detached").await.len(), 1);
    assert_eq!(f.audited("policy_deleted").await.len(), 1);
}

#[tokio::test]
async fn a_recreated_policy_continues_its_version_numbers() {
    let f = fixture().await;
    assert_eq!(f.put(&doc("p", "a/#")).await, 1);
    assert_eq!(f.put(&doc("p", "b/#")).await, 2);
    f.registry
        .delete_policy(&f.admin, policy("p"))
        .await
        .unwrap();
    let gone = f.registry.get_policy(&f.admin, &policy("p"), None).await;
    assert!(matches!(
        gone,
        Err(RegistryError::Store(StoreError::NotFound { .. }))
    ));
    assert_eq!(f.put(&doc("p", "a/#")).await, 3);
    let v = f
        .registry
        .get_policy(&f.admin, &policy("p"), Some(1))
        .await
        .unwrap();
    assert_eq!(v.version, Some(1));
    assert_eq!(v.versions.len(), 3);
}

#[tokio::test]
async fn a_service_has_only_its_attached_policies() {
    let f = fixture().await;
    let r = &f.registry;
    r.create_service(&f.admin, service("billing"), false)
        .await
        .unwrap();
    let a = r.service_access(&service("billing")).await.unwrap();
    assert!(a.documents.is_empty(), "nothing attached, nothing allowed");
    assert!(!allows(
        &a.documents,
        &a.principal(),
        "devices/d1/telemetry"
    ));
    assert!(a.principal().service_name().is_some());

    f.put(&doc("read-all", "devices/+/telemetry")).await;
    r.attach_policy(
        &f.admin,
        policy("read-all"),
        PolicyTarget::Service(service("billing")),
    )
    .await
    .unwrap();
    let a = r.service_access(&service("billing")).await.unwrap();
    assert!(allows(&a.documents, &a.principal(), "devices/d1/telemetry"));

    // Deleting the service detaches its policies (so the policy can go).
    r.delete_service(&f.admin, service("billing"))
        .await
        .unwrap();
    assert!(r.service_access(&service("billing")).await.is_err());
    r.delete_policy(&f.admin, policy("read-all")).await.unwrap();
}

#[tokio::test]
async fn service_passwords_are_hashed_checked_and_failures_audited() {
    let f = fixture().await;
    let r = &f.registry;
    let (svc, pw) = r
        .create_service(&f.admin, service("billing"), true)
        .await
        .unwrap();
    let pw = pw.expect("a generated password");
    assert!(svc.password);
    assert!(pw.starts_with("bws_") && pw.len() > 40, "{pw}");
    let stored = r
        .store()
        .get_service(&service("billing"))
        .await
        .unwrap()
        .unwrap()
        .password_hash
        .unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains(&pw));

    let id = r
        .authenticate_service_password("billing", &pw, "10.0.0.1")
        .await
        .unwrap();
    assert_eq!(id.name().as_str(), "billing");
    assert!(id.serial().is_none());

    r.create_service(&f.admin, service("nopw"), false)
        .await
        .unwrap();
    for (user, password, reason) in [
        ("billing", "bws_wrong", "wrong password"),
        ("ghost", pw.as_str(), "unknown service"),
        ("nopw", pw.as_str(), "service has no password"),
        ("bad/name", pw.as_str(), "not a valid service name"),
    ] {
        let e = r
            .authenticate_service_password(user, password, "10.0.0.9")
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), "service authentication failed", "{user}");
        let last = f.audited("service_authentication_failed").await;
        assert_eq!(last.last().unwrap()["reason"], reason, "{user}");
    }
    let failures = f.audited("service_authentication_failed").await;
    assert_eq!(failures.len(), 4);
    assert_eq!(failures[0]["service"], "billing");
    assert!(
        failures[3]["service"].is_null(),
        "an invalid name is not echoed"
    );
    let entries = r.store().audit_entries(0, 10_000).await.unwrap();
    assert!(entries.iter().any(|e| e.actor == "anonymous:10.0.0.9"));
    assert!(
        entries.iter().all(|e| !e.event.contains(&pw)),
        "the password never reaches the audit log"
    );

    // A deleted service's password no longer works.
    r.delete_service(&f.admin, service("billing"))
        .await
        .unwrap();
    assert!(r
        .authenticate_service_password("billing", &pw, "10.0.0.1")
        .await
        .is_err());
}

#[tokio::test]
async fn service_certificates_identify_the_service_until_it_is_deleted() {
    let f = fixture().await;
    let r = &f.registry;
    let missing = r
        .issue_service_certificate(&f.admin, service("billing"), &csr_der(), None)
        .await;
    assert!(matches!(
        missing,
        Err(RegistryError::Store(StoreError::NotFound {
            what: "service"
        }))
    ));
    r.create_service(&f.admin, service("billing"), false)
        .await
        .unwrap();
    let cert = r
        .issue_service_certificate(&f.admin, service("billing"), &csr_der(), None)
        .await
        .unwrap();
    match r.identify_client(&cert.der).await.unwrap() {
        ClientIdentity::Service(s) => {
            assert_eq!(s.name().as_str(), "billing");
            assert_eq!(s.serial(), Some(&cert.serial));
        }
        other => panic!("expected a service identity, got {other:?}"),
    }
    let issued = f.audited("service_certificate_issued").await;
    assert_eq!(issued[0]["serial"], cert.serial.to_hex());

    let mut bus = r.bus().subscribe();
    let revoked = r
        .delete_service(&f.admin, service("billing"))
        .await
        .unwrap();
    assert_eq!(revoked, vec![cert.serial.clone()]);
    assert_eq!(
        bus.try_recv().unwrap(),
        Event::CertificateRevoked {
            serial: cert.serial.clone(),
            device_id: None
        }
    );
    assert_eq!(
        bus.try_recv().unwrap(),
        Event::ServiceChanged {
            name: "billing".into()
        }
    );
    let e = r.identify_client(&cert.der).await.unwrap_err();
    assert!(e.to_string().contains("revoked"), "{e}");
}

#[tokio::test]
async fn roles_are_checked_before_anything_changes() {
    let f = fixture().await;
    let r = &f.registry;
    let auditor = f.operator(Role::Auditor).await;
    let operator = f.operator(Role::Operator).await;
    let e = r
        .put_policy(&auditor, doc("p", "a").as_bytes())
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "role auditor may not manage policies");
    // Refused before the document is even parsed.
    let e = r.put_policy(&auditor, b"not json").await.unwrap_err();
    assert!(matches!(e, RegistryError::Forbidden { .. }));
    let e = r
        .create_service(&operator, service("s"), true)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "role operator may not manage service principals"
    );
    assert!(r.list_policies(&auditor).await.is_ok());
    assert!(r
        .effective_policy(&auditor, &PolicySubject::Service(service("s")))
        .await
        .is_err_and(|e| matches!(e, RegistryError::Store(StoreError::NotFound { .. }))));
    assert!(r.store().list_policies().await.unwrap().is_empty());
    assert!(r.store().list_services().await.unwrap().is_empty());
    assert_eq!(f.audited("authorization_denied").await.len(), 3);
}
