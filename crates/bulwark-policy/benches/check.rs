//! Hot-path cost of `CompiledPolicy::check` against a realistic policy of
//! about 20 statements (the default device policy plus fleet, group,
//! attribute and deny statements).
//!
//! Run with `cargo bench -p bulwark-policy --bench check`. Reported per
//! check: a publish allowed by the last-listed rule, a publish refused by
//! default (no rule matches: every rule is tried), a publish refused by an
//! explicit deny, a receive, and (not on the hot path, allocating) a
//! subscribe coverage check.

use std::hint::black_box;

use bulwark_policy::{default_device_policy, Action, CompiledPolicy, PolicyDocument, Principal};
use bulwark_types::{DeviceId, GroupId};
use criterion::{criterion_group, criterion_main, Criterion};

const FLEET: &str = r#"{
  "version": 1,
  "name": "fleet",
  "statements": [
    { "effect": "allow", "actions": ["publish"], "resources": ["telemetry/${device.group}/${device.id}/+"] },
    { "effect": "allow", "actions": ["publish"], "resources": ["sensors-${device.id}/raw/#"] },
    { "effect": "allow", "actions": ["publish"], "resources": ["zones/${device.attr.zone}/${device.id}/status"] },
    { "effect": "allow", "actions": ["subscribe", "receive"], "resources": ["groups/${device.group}/broadcast/#"] },
    { "effect": "allow", "actions": ["subscribe", "receive"], "resources": ["zones/${device.attr.zone}/broadcast/+"] },
    { "effect": "allow", "actions": ["subscribe", "receive"], "resources": ["fleet/announcements"] },
    { "effect": "allow", "actions": ["subscribe", "receive"], "resources": ["ota/${device.group}/+/manifest"] },
    { "effect": "allow", "actions": ["publish"], "resources": ["ota/${device.group}/${device.id}/progress"] },
    { "effect": "allow", "actions": ["publish"], "resources": ["logs/${device.id}/+/+"] },
    { "effect": "allow", "actions": ["publish"], "resources": ["metrics/${device.attr.site}/${device.id}/#"] },
    { "effect": "allow", "actions": ["subscribe", "receive"], "resources": ["config/${device.id}/+"] },
    { "effect": "allow", "actions": ["publish"], "resources": ["config/${device.id}/ack"] },
    { "effect": "allow", "actions": ["publish"], "resources": ["alarms/${device.attr.site}/${device.id}"] },
    { "effect": "deny", "actions": ["publish"], "resources": ["devices/${device.id}/admin/#"] },
    { "effect": "deny", "actions": ["subscribe", "receive"], "resources": ["devices/${device.id}/commands/internal/#"] },
    { "effect": "deny", "actions": ["publish", "receive"], "resources": ["$SYS/#"] },
    { "effect": "allow", "actions": ["publish"], "resources": ["heartbeat/${device.id}"] }
  ]
}"#;

fn policy() -> CompiledPolicy {
    let principal = Principal::new(DeviceId::new("sensor-0042").expect("valid id"))
        .with_group(GroupId::new("floor-3").expect("valid group"))
        .with_attribute("zone", "north")
        .with_attribute("site", "plant-7");
    let fleet = PolicyDocument::from_json(FLEET).expect("valid policy");
    CompiledPolicy::compile(&[default_device_policy(), fleet], &principal).expect("compiles")
}

fn bench(c: &mut Criterion) {
    let policy = policy();
    let cases: [(&str, Action, &str, bool); 6] = [
        (
            "publish_allow_first",
            Action::Publish,
            "devices/sensor-0042/telemetry",
            true,
        ),
        (
            "publish_allow_last",
            Action::Publish,
            "heartbeat/sensor-0042",
            true,
        ),
        (
            "publish_default_deny",
            Action::Publish,
            "devices/sensor-0043/telemetry/temp",
            false,
        ),
        (
            "publish_explicit_deny",
            Action::Publish,
            "devices/sensor-0042/admin/reset",
            false,
        ),
        (
            "receive_allow",
            Action::Receive,
            "groups/floor-3/broadcast/all",
            true,
        ),
        (
            "subscribe_covered",
            Action::Subscribe,
            "groups/floor-3/broadcast/+",
            true,
        ),
    ];
    for (name, action, topic, expect) in cases {
        let decision = policy.check(action, topic);
        assert_eq!(decision.is_allowed(), expect, "{name}: {decision:?}");
        c.bench_function(name, |b| {
            b.iter(|| black_box(&policy).check(black_box(action), black_box(topic)))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
