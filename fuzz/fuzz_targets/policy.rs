//! Policy documents and decisions: arbitrary bytes as a JSON policy, then
//! (after a NUL) newline-separated resources to check. Must never panic;
//! valid documents round-trip through their canonical JSON, and a granted
//! subscription never covers a topic the policy explicitly denies for
//! `receive` (checked on one topic of the filter: wildcards filled with `x`).
#![no_main]
use bulwark_policy::{Action, CompiledPolicy, Decision, DenyReason, PolicyDocument, Principal};
use bulwark_types::{DeviceId, GroupId};
use libfuzzer_sys::fuzz_target;

const DEFAULT_TOPICS: &str = "devices/d1/x\ndevices/+/commands/#\n#\n$SYS/x\nzones/a/b\nd1";

fn principal() -> Option<Principal> {
    Some(
        Principal::new(DeviceId::new("d1").ok()?)
            .with_group(GroupId::new("g").ok()?)
            .with_attribute("zone", "north")
            .with_attribute("hostile", "+/#")
            .with_attribute("empty", "")
            .with_attribute("nul", "a\0b")
            .with_attribute("dollar", "$SYS"),
    )
}

/// One topic of the filter `f` (after `$share/{name}/`, if any): every
/// wildcard level becomes `x`.
fn instance(f: &str) -> String {
    let f = f
        .strip_prefix("$share/")
        .and_then(|rest| rest.split_once('/'))
        .map_or(f, |(_, inner)| inner);
    f.split('/')
        .map(|l| if l == "+" || l == "#" { "x" } else { l })
        .collect::<Vec<_>>()
        .join("/")
}

fuzz_target!(|data: &[u8]| {
    let (json, topics) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], std::str::from_utf8(&data[i + 1..]).unwrap_or("")),
        None => (data, DEFAULT_TOPICS),
    };
    let Ok(doc) = PolicyDocument::from_json_slice(json) else { return };
    let again = PolicyDocument::from_json(&doc.to_json()).expect("canonical JSON parses");
    assert_eq!(again, doc);

    let Some(principal) = principal() else { return };
    let Ok(policy) = CompiledPolicy::compile(&[doc], &principal) else { return };
    for topic in topics.split('\n') {
        for action in Action::ALL {
            let _ = policy.check(action, topic);
        }
        if policy.check(Action::Subscribe, topic) == Decision::Allow {
            let t = instance(topic);
            let receive = policy.check(Action::Receive, &t);
            assert!(
                !matches!(receive, Decision::Deny(DenyReason::ExplicitDeny(_))),
                "granted {topic:?} but receive {t:?} is {receive:?}"
            );
        }
    }
});
