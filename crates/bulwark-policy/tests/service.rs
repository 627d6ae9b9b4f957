//! Service principals: `${device.*}` variables never resolve for them, so
//! an allow that uses one grants nothing and a deny that uses one fails
//! wide; literal statements apply as they do to devices. Plus
//! `CompiledPolicy::allowed_by`, which names the statement behind an allow.

use bulwark_policy::{
    default_device_policy, Action, CompiledPolicy, Decision, DenyReason, NoteKind, PolicyDocument,
    Principal, StatementRef,
};
use bulwark_types::{DeviceId, GroupId, ServiceName};

use Action::{Connect, Publish, Receive, Subscribe};

fn service(name: &str) -> Principal {
    Principal::service(ServiceName::new(name).unwrap())
}

fn doc(statements: &str) -> PolicyDocument {
    PolicyDocument::from_json(&format!(
        r##"{{"version":1,"name":"svc","statements":[{statements}]}}"##
    ))
    .unwrap()
}

fn check(policy: &CompiledPolicy, cases: &[(Action, &str, bool)]) {
    for &(action, topic, allowed) in cases {
        assert_eq!(
            policy.check(action, topic).is_allowed(),
            allowed,
            "{action:?} {topic:?}"
        );
    }
}

#[test]
fn a_service_principal_has_a_name_and_nothing_else() {
    let p = service("billing")
        .with_group(GroupId::new("g").unwrap())
        .with_attribute("zone", "north");
    assert_eq!(p.name(), "billing");
    assert_eq!(p.service_name().map(ServiceName::as_str), Some("billing"));
    assert!(p.device_id().is_none());
    assert!(!p.is_device());
    assert!(p.group().is_none(), "a service has no group");
    assert_eq!(p.attributes().count(), 0, "a service has no attributes");

    let d = Principal::new(DeviceId::new("d1").unwrap());
    assert_eq!(d.name(), "d1");
    assert!(d.is_device());
    assert!(d.service_name().is_none());
}

#[test]
fn device_variables_never_grant_a_service_anything() {
    let policy = doc(
        r##"{"effect":"allow","actions":["publish","subscribe","receive","connect"],
             "resources":["devices/${device.id}/#","groups/${device.group}/#",
                          "zones/${device.attr.zone}/#","${device.id}"]},
            {"effect":"allow","actions":["subscribe","receive"],"resources":["devices/+/telemetry"]},
            {"effect":"allow","actions":["connect"],"resources":["billing"]}"##,
    );
    let compiled = CompiledPolicy::compile(&[policy], &service("billing")).unwrap();
    check(
        &compiled,
        &[
            (Publish, "devices/billing/x", false),
            (Publish, "devices//x", false),
            (Publish, "groups/x", false),
            (Subscribe, "devices/+/telemetry", true),
            (Receive, "devices/d7/telemetry", true),
            (Subscribe, "devices/#", false),
            (Connect, "billing", true),
            (Connect, "other", false),
        ],
    );
    // Each of the four templated allow resources was dropped, and said so.
    let dropped: Vec<usize> = compiled
        .notes()
        .iter()
        .filter(|n| n.kind == NoteKind::AllowDropped)
        .map(|n| n.resource)
        .collect();
    assert_eq!(dropped, vec![0, 1, 2, 3]);
}

#[test]
fn device_variables_in_a_deny_fail_wide_for_a_service() {
    let policy = doc(
        r##"{"effect":"allow","actions":["publish"],"resources":["devices/#"]},
            {"effect":"deny","actions":["publish"],"resources":["devices/${device.id}/secret"]}"##,
    );
    let compiled = CompiledPolicy::compile(&[policy], &service("billing")).unwrap();
    // The deny cannot resolve `${device.id}`: it keeps `devices/` and
    // matches everything below it.
    assert_eq!(
        compiled.check(Publish, "devices/d1/telemetry"),
        Decision::Deny(DenyReason::ExplicitDeny(StatementRef {
            document: 0,
            statement: 1
        }))
    );
    assert_eq!(compiled.notes()[0].kind, NoteKind::DenyWidened);
}

#[test]
fn a_service_with_no_policy_may_do_nothing() {
    let compiled = CompiledPolicy::compile(&[], &service("idle")).unwrap();
    check(
        &compiled,
        &[
            (Connect, "idle", false),
            (Publish, "anything", false),
            (Subscribe, "#", false),
            (Receive, "anything", false),
        ],
    );
    // The default device policy is written in `${device.id}`: it gives a
    // service nothing either.
    let compiled = CompiledPolicy::compile(&[default_device_policy()], &service("idle")).unwrap();
    check(
        &compiled,
        &[(Connect, "idle", false), (Publish, "devices/idle/x", false)],
    );
}

#[test]
fn allowed_by_names_the_granting_statement() {
    let policy = doc(
        r##"{"effect":"allow","actions":["publish"],"resources":["a/#"]},
            {"effect":"allow","actions":["publish","subscribe"],"resources":["b/+"]},
            {"effect":"allow","actions":["subscribe"],"resources":["c/x","c/y"]}"##,
    );
    let compiled = CompiledPolicy::compile(&[policy], &service("s")).unwrap();
    let st = |statement| {
        Some(StatementRef {
            document: 0,
            statement,
        })
    };
    assert_eq!(compiled.allowed_by(Publish, "a/1/2"), st(0));
    assert_eq!(compiled.allowed_by(Publish, "b/1"), st(1));
    assert_eq!(compiled.allowed_by(Subscribe, "b/+"), st(1));
    assert_eq!(compiled.allowed_by(Subscribe, "$share/g/b/1"), st(1));
    assert_eq!(compiled.allowed_by(Subscribe, "c/x"), st(2));
    assert_eq!(compiled.allowed_by(Publish, "z"), None);
    assert_eq!(
        compiled.allowed_by(Publish, "a/+"),
        None,
        "not a topic name"
    );
    assert_eq!(compiled.allowed_by(Subscribe, "a/#"), None);
}
