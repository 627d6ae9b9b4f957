//! Proof that the hot path allocates nothing: `check` for publish, receive
//! and connect, allowed and refused, against a compiled policy with
//! variables, wildcards and denies, under a counting global allocator.
//!
//! The allocator is `stats_alloc`'s instrumented system allocator (the
//! workspace forbids `unsafe_code`, which a hand-written `GlobalAlloc` impl
//! would need). It counts process-wide, so this binary holds one test.

use std::alloc::System;
use std::hint::black_box;

use bulwark_policy::{default_device_policy, Action, CompiledPolicy, PolicyDocument, Principal};
use bulwark_types::{DeviceId, GroupId};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const EXTRA: &str = r##"{
  "version": 1,
  "name": "extra",
  "statements": [
    { "effect": "allow", "actions": ["publish", "receive"], "resources": ["groups/${device.group}/+/x", "z-${device.attr.zone}/#"] },
    { "effect": "deny", "actions": ["publish", "receive"], "resources": ["devices/${device.id}/admin/#", "$SYS/#"] },
    { "effect": "deny", "actions": ["publish"], "resources": ["hostile/${device.attr.bad}/x"] }
  ]
}"##;

#[test]
fn checking_a_name_allocates_nothing() {
    let principal = Principal::new(DeviceId::new("d1").unwrap())
        .with_group(GroupId::new("g").unwrap())
        .with_attribute("zone", "north")
        .with_attribute("bad", "a/#");
    let docs = [
        default_device_policy(),
        PolicyDocument::from_json(EXTRA).unwrap(),
    ];
    let policy = CompiledPolicy::compile(&docs, &principal).unwrap();
    let long = "devices/d1/".repeat(1000);
    let cases: Vec<(Action, &str, bool)> = vec![
        (Action::Publish, "devices/d1/telemetry", true),
        (Action::Publish, "devices/d1", true),
        (Action::Publish, "devices/d2/telemetry", false),
        (Action::Publish, "devices/d1/admin/reset", false),
        (Action::Publish, "groups/g/any/x", true),
        (Action::Publish, "z-north/a/b/c", true),
        (Action::Publish, "hostile/q/x", false),
        (Action::Publish, "$SYS/x", false),
        (Action::Publish, "a/+/b", false),
        (Action::Publish, "", false),
        (Action::Publish, &long, true),
        (Action::Receive, "devices/d1/commands/reboot", true),
        (Action::Receive, "devices/d2/commands/reboot", false),
        (Action::Connect, "d1", true),
        (Action::Connect, "d2", false),
    ];

    // Warm up outside the measured region (lazy statics, first-use paths).
    for &(action, topic, expect) in &cases {
        assert_eq!(
            policy.check(action, topic).is_allowed(),
            expect,
            "{action:?} {topic}"
        );
    }

    let region = Region::new(GLOBAL);
    for _ in 0..100 {
        for &(action, topic, _) in &cases {
            let _ = black_box(black_box(&policy).check(black_box(action), black_box(topic)));
        }
    }
    let change = region.change();
    assert_eq!(change.allocations, 0, "{change:?}");
    assert_eq!(change.reallocations, 0, "{change:?}");

    // The counter works: a subscribe check (not on the hot path) does
    // allocate, so a zero above is not a broken instrument.
    let region = Region::new(GLOBAL);
    let _ = black_box(policy.check(Action::Subscribe, "devices/d1/commands/#"));
    assert!(region.change().allocations > 0);
}
