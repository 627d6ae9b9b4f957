//! Data-driven decision tests: documents in, `(action, resource) -> decision`
//! out. Covers default deny, explicit deny, variables, hostile substitutions,
//! `$`-topics, `#` and its parent level, invalid resources and the built-in
//! policies. Subscription coverage has its own file, `subscribe.rs`.

use bulwark_policy::{
    default_device_policy, dev_permissive_policy, quarantine_policy, Action, CompiledPolicy,
    Decision, DenyReason, NoteKind, PolicyDocument, Principal, StatementRef,
};
use bulwark_types::{DeviceId, GroupId};

use Action::{Connect, Publish, Receive, Subscribe};

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Allowed.
    A,
    /// Refused by default: no allow matched.
    D,
    /// Refused by deny statement `n` of document 0.
    X(usize),
    /// Refused as an invalid topic name or filter.
    I,
}
use Expect::{A, D, I, X};

fn device(id: &str) -> Principal {
    Principal::new(DeviceId::new(id).unwrap())
}

fn d1() -> Principal {
    device("d1")
        .with_group(GroupId::new("floor-3").unwrap())
        .with_attribute("zone", "north")
}

fn statements(s: &str) -> String {
    format!(r##"{{"version":1,"name":"t","statements":[{s}]}}"##)
}

fn decide(policy: &CompiledPolicy, action: Action, topic: &str, expect: Expect, ctx: &str) {
    let got = policy.check(action, topic);
    let want = match expect {
        A => Decision::Allow,
        D => Decision::Deny(DenyReason::NoMatchingAllow),
        X(n) => Decision::Deny(DenyReason::ExplicitDeny(StatementRef {
            document: 0,
            statement: n,
        })),
        I => Decision::Deny(DenyReason::InvalidResource),
    };
    assert_eq!(got, want, "{ctx}: {action:?} {topic:?}");
}

/// Compiles `policy` (the statements of one JSON document) for `principal`
/// and checks every `(action, topic, expect)` case.
fn check(policy: &str, principal: &Principal, cases: &[(Action, &str, Expect)]) {
    let doc = PolicyDocument::from_json(&statements(policy)).unwrap();
    let compiled = CompiledPolicy::compile(&[doc], principal).unwrap();
    for &(action, topic, expect) in cases {
        decide(&compiled, action, topic, expect, policy);
    }
}

#[test]
fn default_deny() {
    let p = r##"{"effect":"allow","actions":["publish"],"resources":["a/b"]}"##;
    check(
        p,
        &d1(),
        &[
            (Publish, "a/b", A),
            (Publish, "a/c", D),
            (Publish, "a", D),
            (Publish, "a/b/c", D),
            (Receive, "a/b", D),
            (Subscribe, "a/b", D),
            (Connect, "d1", D),
        ],
    );
}

#[test]
fn explicit_deny_wins() {
    let p = r##"{"effect":"allow","actions":["publish","receive"],"resources":["#"]},
               {"effect":"deny","actions":["publish"],"resources":["secret/#","x/+/y"]}"##;
    check(
        p,
        &d1(),
        &[
            (Publish, "open", A),
            (Publish, "secret", X(1)),
            (Publish, "secret/a/b", X(1)),
            (Publish, "x/q/y", X(1)),
            (Publish, "x/q/y/z", A),
            (Receive, "secret/a", A),
        ],
    );
    // A deny in a later document still wins over an allow in an earlier one.
    let allow = PolicyDocument::from_json(&statements(
        r##"{"effect":"allow","actions":["publish"],"resources":["#"]}"##,
    ))
    .unwrap();
    let deny = PolicyDocument::from_json(&statements(
        r##"{"effect":"deny","actions":["publish"],"resources":["a/#"]}"##,
    ))
    .unwrap();
    let compiled = CompiledPolicy::compile(&[allow, deny], &d1()).unwrap();
    assert_eq!(
        compiled.check(Publish, "a/b"),
        Decision::Deny(DenyReason::ExplicitDeny(StatementRef {
            document: 1,
            statement: 0
        }))
    );
    assert_eq!(compiled.document_name(1), Some("t"));
}

#[test]
fn variables() {
    let p = r##"{"effect":"allow","actions":["publish"],"resources":[
                 "devices/${device.id}/#",
                 "groups/${device.group}/+",
                 "zones/${device.attr.zone}/${device.id}",
                 "sensors-${device.id}/raw",
                 "${device.group}-${device.attr.zone}/x"]}"##;
    check(
        p,
        &d1(),
        &[
            (Publish, "devices/d1/t", A),
            (Publish, "devices/d2/t", D),
            (Publish, "devices/${device.id}/t", D),
            (Publish, "groups/floor-3/t", A),
            (Publish, "groups/floor-4/t", D),
            (Publish, "zones/north/d1", A),
            (Publish, "zones/south/d1", D),
            (Publish, "sensors-d1/raw", A),
            (Publish, "sensors-d2/raw", D),
            (Publish, "floor-3-north/x", A),
        ],
    );
    // No group, no attributes: those resources never match.
    check(
        p,
        &device("d1"),
        &[
            (Publish, "devices/d1/t", A),
            (Publish, "groups/floor-3/t", D),
            (Publish, "zones/north/d1", D),
            (Publish, "floor-3-north/x", D),
        ],
    );
}

/// Attribute values that are not safe literals of a level.
fn hostile_values() -> Vec<String> {
    vec![
        "+".into(),
        "#".into(),
        "a/#".into(),
        "a/b".into(),
        "/".into(),
        "north/+".into(),
        "nor\0th".into(),
        String::new(),
        "x".repeat(70_000),
        "+/#".into(),
        "a+".into(),
        "#a".into(),
    ]
}

#[test]
fn hostile_values_never_widen_an_allow() {
    let p = r##"{"effect":"allow","actions":["publish","subscribe","receive"],
                "resources":["zones/${device.attr.zone}/#", "z-${device.attr.zone}/data"]}"##;
    let doc = PolicyDocument::from_json(&statements(p)).unwrap();
    for value in hostile_values() {
        let principal = device("d1").with_attribute("zone", value.clone());
        let policy = CompiledPolicy::compile(std::slice::from_ref(&doc), &principal).unwrap();
        let ctx = format!("zone={:?}", value.get(..20).unwrap_or(&value));
        for (action, topic, expect) in [
            (Publish, "zones/a/b", D),
            (Publish, "zones/north/x", D),
            (Publish, "zones/a", D),
            (Publish, "zones", D),
            (Publish, "zones//x", D),
            (Publish, "z-/data", D),
            (Publish, "z-a/data", D),
            (Publish, "zones/+/x", I),
            (Receive, "zones/a/b/c", D),
            (Subscribe, "zones/#", D),
            (Subscribe, "zones/+/#", D),
            (Subscribe, "zones/a/#", D),
            (Subscribe, "#", D),
        ] {
            decide(&policy, action, topic, expect, &ctx);
        }
        assert_eq!(policy.rule_count(), 0, "{ctx}");
        assert!(policy
            .notes()
            .iter()
            .all(|n| n.kind == NoteKind::AllowDropped));
        assert_eq!(policy.notes().len(), 2, "{ctx}");
    }
}

#[test]
fn hostile_values_never_disable_a_deny() {
    let p = r##"{"effect":"allow","actions":["publish","subscribe","receive"],"resources":["#"]},
               {"effect":"deny","actions":["publish","receive"],"resources":["zones/${device.attr.zone}/secret"]}"##;
    let doc = PolicyDocument::from_json(&statements(p)).unwrap();
    for value in hostile_values() {
        let principal = device("d1").with_attribute("zone", value.clone());
        let policy = CompiledPolicy::compile(std::slice::from_ref(&doc), &principal).unwrap();
        let ctx = format!("zone={:?}", value.get(..20).unwrap_or(&value));
        // The deny fails wide: everything below `zones/`.
        for (action, topic, expect) in [
            (Publish, "zones/a/secret", X(1)),
            (Publish, "zones/north/other", X(1)),
            (Publish, "zones", X(1)),
            (Receive, "zones/a/b/c", X(1)),
            (Subscribe, "zones/+/secret", X(1)),
            (Subscribe, "+/a/secret", X(1)),
            (Publish, "other/a/secret", A),
            (Subscribe, "other/#", A),
        ] {
            decide(&policy, action, topic, expect, &ctx);
        }
        assert_eq!(policy.notes().len(), 1, "{ctx}");
        assert_eq!(policy.notes()[0].kind, NoteKind::DenyWidened);
    }
    // A safe value denies exactly its own topic.
    let policy = CompiledPolicy::compile(&[doc], &d1()).unwrap();
    decide(&policy, Publish, "zones/north/secret", X(1), "safe");
    decide(&policy, Publish, "zones/south/secret", A, "safe");
    assert!(policy.notes().is_empty());
}

#[test]
fn hostile_ids_cannot_exist() {
    for id in ["a/#", "+", "#", "a/b", "a\0", "", "$SYS"] {
        assert!(DeviceId::new(id).is_err(), "{id:?}");
        assert!(GroupId::new(id).is_err(), "{id:?}");
    }
}

#[test]
fn dollar_topics() {
    let p = r##"{"effect":"allow","actions":["publish","subscribe","receive"],"resources":["#","+/x"]}"##;
    check(
        p,
        &d1(),
        &[
            (Publish, "a/x", A),
            (Publish, "$SYS/x", D),
            (Publish, "$SYS", D),
            (Receive, "$SYS/broker/load", D),
            (Subscribe, "$SYS/#", D),
            (Subscribe, "$SYS/x", D),
            (Subscribe, "#", A),
            (Subscribe, "+/x", A),
        ],
    );
    let p = r##"{"effect":"allow","actions":["subscribe","receive"],"resources":["$SYS/#"]},
               {"effect":"deny","actions":["receive"],"resources":["#"]}"##;
    check(
        p,
        &d1(),
        &[
            (Receive, "$SYS/x", A),
            (Receive, "a", X(1)),
            (Subscribe, "$SYS/#", A),
            (Subscribe, "$SYS/+/x", A),
            (Subscribe, "#", X(1)),
        ],
    );
    // A variable may not introduce a `$` first level.
    let p = r##"{"effect":"allow","actions":["publish"],"resources":["${device.attr.zone}/#"]}"##;
    let principal = device("d1").with_attribute("zone", "$SYS");
    check(
        p,
        &principal,
        &[(Publish, "$SYS/x", D), (Publish, "north/x", D)],
    );
    check(p, &d1(), &[(Publish, "north/x", A)]);
}

#[test]
fn multi_level_covers_parent() {
    let p = r##"{"effect":"allow","actions":["publish","subscribe","receive"],"resources":["a/b/#"]},
               {"effect":"deny","actions":["publish"],"resources":["x/#"]}"##;
    check(
        p,
        &d1(),
        &[
            (Publish, "a/b", A),
            (Publish, "a/b/", A),
            (Publish, "a/b/c/d", A),
            (Publish, "a", D),
            (Publish, "a/bc", D),
            (Subscribe, "a/b", A),
            (Subscribe, "a/b/#", A),
            (Subscribe, "a/#", D),
            (Receive, "a/b", A),
            (Publish, "x", X(1)),
        ],
    );
}

#[test]
fn invalid_resources() {
    let p = r##"{"effect":"allow","actions":["connect","publish","subscribe","receive"],"resources":["#"]}"##;
    let long = "a".repeat(65_536);
    check(
        p,
        &d1(),
        &[
            (Publish, "", I),
            (Publish, "a/+", I),
            (Publish, "a/#", I),
            (Publish, "a\0b", I),
            (Publish, &long, I),
            (Receive, "+", I),
            (Connect, "", I),
            (Subscribe, "", I),
            (Subscribe, "a/#/b", I),
            (Subscribe, "a+", I),
            (Subscribe, "a\0", I),
            (Subscribe, "$share/g", I),
            (Subscribe, "$share/+/a", I),
            (Subscribe, "$share//a", I),
            (Subscribe, &long, I),
        ],
    );
}

#[test]
fn shared_subscriptions_check_the_inner_filter() {
    let p = r##"{"effect":"allow","actions":["subscribe"],"resources":["devices/d1/commands/#"]}"##;
    check(
        p,
        &d1(),
        &[
            (Subscribe, "$share/g/devices/d1/commands/#", A),
            (Subscribe, "$share/g/devices/d1/commands/+", A),
            (Subscribe, "$share/g/devices/#", D),
            (Subscribe, "$share/g/#", D),
            (Subscribe, "$share/g/+/#", D),
        ],
    );
}

#[test]
fn default_device_policy_segments_devices() {
    let policy = CompiledPolicy::compile(&[default_device_policy()], &d1()).unwrap();
    for (action, topic, expect) in [
        (Connect, "d1", A),
        (Connect, "d2", D),
        (Publish, "devices/d1/telemetry", A),
        (Publish, "devices/d1", A),
        (Publish, "devices/d1/commands/reboot", A),
        (Publish, "devices/d2/telemetry", D),
        (Publish, "devices/d2/commands/reboot", D),
        (Publish, "fleet/all", D),
        (Subscribe, "devices/d1/commands/#", A),
        (Subscribe, "devices/d1/commands/+", A),
        (Subscribe, "devices/d1/commands", A),
        (Subscribe, "devices/d1/#", D),
        (Subscribe, "devices/d2/commands/#", D),
        (Subscribe, "devices/+/commands/#", D),
        (Subscribe, "#", D),
        (Subscribe, "+/#", D),
        (Subscribe, "$share/g/devices/#", D),
        (Receive, "devices/d1/commands/reboot", A),
        (Receive, "devices/d1/telemetry", D),
        (Receive, "devices/d2/commands/reboot", D),
    ] {
        decide(&policy, action, topic, expect, "default");
    }
}

#[test]
fn quarantine_and_dev_policies() {
    let q = CompiledPolicy::compile(&[quarantine_policy()], &d1()).unwrap();
    for (action, topic, expect) in [
        (Connect, "d1", A),
        (Publish, "remediation/d1/report", A),
        (Subscribe, "remediation/d1/#", A),
        (Receive, "remediation/d1/fix", A),
        (Publish, "devices/d1/telemetry", D),
        (Subscribe, "devices/d1/commands/#", D),
        (Publish, "remediation/d2/report", D),
    ] {
        decide(&q, action, topic, expect, "quarantine");
    }
    let dev = CompiledPolicy::compile(&[dev_permissive_policy()], &d1()).unwrap();
    for (action, topic, expect) in [
        (Connect, "anyone", A),
        (Publish, "any/topic", A),
        (Subscribe, "#", A),
        (Receive, "devices/d2/x", A),
        (Publish, "$SYS/x", D),
    ] {
        decide(&dev, action, topic, expect, "dev");
    }
}
