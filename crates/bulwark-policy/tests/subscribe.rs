//! Subscription filters: coverage by allows, intersection with denies, and
//! property tests of both against the per-topic decisions.
//!
//! Properties, for random policies over a small alphabet and random filters
//! F, writing M(F) for the topics F matches:
//! - soundness: if `check(subscribe, F)` allows, every T in M(F) (generated
//!   by filling F's wildcards with literals of the policy, fresh values,
//!   `$`-values where MQTT allows them, and 0..=2 levels for `#`) is matched
//!   by a subscribe allow, and by no subscribe or receive deny, so in
//!   particular `check(receive, T)` is never an explicit deny;
//! - exact coverage: if it refuses with `NoMatchingAllow`, some T in M(F),
//!   filled with a fresh value (equal to no literal of the policy), is
//!   matched by no subscribe allow;
//! - exact deny: if it refuses with `ExplicitDeny(s)`, statement s matches
//!   some T in M(F).
//!
//! The per-topic oracle is the name matcher (`publish`/`receive` checks),
//! which shares no code with filter coverage and intersection.

use bulwark_policy::{Action, CompiledPolicy, Decision, DenyReason, PolicyDocument, Principal};
use bulwark_types::DeviceId;
use proptest::prelude::*;

use Action::{Publish, Receive, Subscribe};

fn compile(statements: &str) -> CompiledPolicy {
    let json = format!(r#"{{"version":1,"name":"t","statements":[{statements}]}}"#);
    let doc = PolicyDocument::from_json(&json).unwrap();
    let me = Principal::new(DeviceId::new("d1").unwrap()).with_attribute("hostile", "+/#");
    CompiledPolicy::compile(&[doc], &me).unwrap()
}

/// `allows` and `denies` are resource lists for subscribe; each case is
/// `(filter, expected)` with `'A'` allowed, `'D'` not covered, `'X'`
/// refused by the deny, `'I'` invalid.
fn check(allows: &[&str], denies: &[&str], cases: &[(&str, char)]) {
    let list = |rs: &[&str]| {
        rs.iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut statements = vec![format!(
        r#"{{"effect":"allow","actions":["subscribe"],"resources":[{}]}}"#,
        list(allows)
    )];
    if !denies.is_empty() {
        statements.push(format!(
            r#"{{"effect":"deny","actions":["receive"],"resources":[{}]}}"#,
            list(denies)
        ));
    }
    let policy = compile(&statements.join(","));
    for &(filter, expect) in cases {
        let got = match policy.check(Subscribe, filter) {
            Decision::Allow => 'A',
            Decision::Deny(DenyReason::NoMatchingAllow) => 'D',
            Decision::Deny(DenyReason::ExplicitDeny(_)) => 'X',
            Decision::Deny(DenyReason::InvalidResource) => 'I',
        };
        assert_eq!(
            got, expect,
            "allow {allows:?} deny {denies:?}: subscribe {filter:?}"
        );
    }
}

#[test]
fn single_allow_coverage() {
    check(
        &["devices/d1/commands/#"],
        &[],
        &[
            ("devices/d1/commands/#", 'A'),
            ("devices/d1/commands/+", 'A'),
            ("devices/d1/commands/+/+/#", 'A'),
            ("devices/d1/commands", 'A'),
            ("devices/d1/commands/reboot", 'A'),
            ("devices/+/commands/#", 'D'),
            ("devices/d1/#", 'D'),
            ("devices/d1/+", 'D'),
            ("devices/#", 'D'),
            ("+/d1/commands/#", 'D'),
            ("#", 'D'),
            ("devices/d1/commandsX/#", 'D'),
        ],
    );
    check(
        &["a/+/c"],
        &[],
        &[
            ("a/+/c", 'A'),
            ("a/b/c", 'A'),
            ("a/b/+", 'D'),
            ("a/+/c/#", 'D'),
            ("a/+/#", 'D'),
            ("a/+/c/d", 'D'),
        ],
    );
    check(
        &["#"],
        &[],
        &[("#", 'A'), ("+/+/#", 'A'), ("$SYS/#", 'D'), ("$SYS", 'D')],
    );
    check(
        &["+"],
        &[],
        &[
            ("+", 'A'),
            ("a", 'A'),
            ("#", 'D'),
            ("+/#", 'D'),
            ("a/b", 'D'),
        ],
    );
}

#[test]
fn deep_filters_cost_no_more_than_the_rules() {
    let deep = format!("{}#", "a/".repeat(30_000));
    let deeper_plus = format!("{}+", "a/".repeat(30_000));
    check(&["a/#"], &[], &[(&deep, 'A'), (&deeper_plus, 'A')]);
    check(&["a/a/+"], &["b/#"], &[(&deep, 'D'), (&deeper_plus, 'D')]);
}

#[test]
fn union_coverage() {
    // `a/#` needs the parent `a` and every deeper topic.
    check(&["a", "a/+/#"], &[], &[("a/#", 'A'), ("a/+", 'A')]);
    check(&["a/+/#"], &[], &[("a/#", 'D'), ("a/+/#", 'A')]);
    check(
        &["a", "a/+", "a/+/+/#"],
        &[],
        &[("a/#", 'A'), ("a/+/+", 'A')],
    );
    check(
        &["a", "a/+/+/#"],
        &[],
        &[("a/#", 'D'), ("a/+/+", 'A'), ("a/+", 'D')],
    );
    check(&["a", "a/+", "a/+/+", "a/+/+/+/#"], &[], &[("a/#", 'A')]);
    check(&["a", "a/+", "a/+/+", "a/+/+/+/+/#"], &[], &[("a/#", 'D')]);
    // Literals never cover a wildcard, however many there are.
    check(&["a/b", "a/c", "a/d"], &[], &[("a/+", 'D'), ("a/b", 'A')]);
    // A literal plus a wildcard rule below it.
    check(
        &["a/b/#", "a/+/x"],
        &[],
        &[("a/+/x", 'A'), ("a/b/+", 'A'), ("a/+/y", 'D')],
    );
    // `$` topics: `#` covers none of them.
    check(
        &["#", "$SYS/+"],
        &[],
        &[("$SYS/x", 'A'), ("$SYS/#", 'D'), ("$SYS/+", 'A')],
    );
}

#[test]
fn deny_intersection_refuses() {
    let allow = ["devices/d1/#"];
    check(
        &allow,
        &["devices/d1/commands/internal/#"],
        &[
            ("devices/d1/telemetry", 'A'),
            ("devices/d1/commands/reboot", 'A'),
            // `+` may be `internal`, and `#` matches its parent level.
            ("devices/d1/commands/+", 'X'),
            ("devices/d1/commands/reboot/+", 'A'),
            ("devices/d1/commands/internal", 'X'),
            ("devices/d1/commands/#", 'X'),
            ("devices/d1/#", 'X'),
            ("devices/d1/+/internal/x", 'X'),
            ("devices/d1/commands/+/x", 'X'),
            // Refused for coverage is reported only when no deny intersects.
            ("devices/+/commands/internal", 'X'),
            ("devices/+/telemetry", 'D'),
        ],
    );
    check(
        &["#"],
        &["$SYS/#", "+/secret"],
        &[
            ("#", 'X'),
            ("a/#", 'X'),
            ("a/b/#", 'A'),
            ("a/secret", 'X'),
            ("$SYS/x", 'X'),
            ("+/+", 'X'),
            ("+/+/+", 'A'),
        ],
    );
    // A `$` deny does not intersect a first-level wildcard.
    check(&["#"], &["$SYS/#"], &[("#", 'A'), ("+/#", 'A')]);
}

#[test]
fn hostile_deny_fails_wide_for_subscribe() {
    check(
        &["#"],
        &["x/${device.attr.hostile}/y"],
        &[("x/a/z", 'X'), ("x", 'X'), ("+", 'X'), ("y/#", 'A')],
    );
}

// ---- properties ----------------------------------------------------------

const LITERALS: [&str; 4] = ["a", "b", "$s", ""];
const FRESH: &str = "fresh";

fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(&LITERALS[..]).prop_map(str::to_owned),
        4 => Just("+".to_owned()),
        2 => Just("${device.id}".to_owned()),
        1 => Just("${device.attr.hostile}".to_owned()),
        1 => Just("${device.attr.missing}".to_owned()),
    ]
}

/// 0..=3 levels, then maybe `#`; never empty.
fn filter_of(level: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (prop::collection::vec(level, 0..=3), any::<bool>())
        .prop_map(|(mut levels, multi)| {
            if multi {
                levels.push("#".to_owned());
            }
            levels.join("/")
        })
        .prop_filter("an empty filter is invalid", |f| !f.is_empty())
}

fn statement() -> impl Strategy<Value = String> {
    let actions = prop::sample::select(vec![
        r#""subscribe""#,
        r#""receive""#,
        r#""subscribe","receive""#,
    ]);
    let effect = prop::sample::select(vec!["allow", "allow", "deny"]);
    (
        effect,
        actions,
        prop::collection::vec(filter_of(level()), 1..=3),
    )
        .prop_map(|(e, a, rs)| {
            let rs: Vec<String> = rs.iter().map(|r| format!("{r:?}")).collect();
            format!(
                r#"{{"effect":"{e}","actions":[{a}],"resources":[{}]}}"#,
                rs.join(",")
            )
        })
}

fn request() -> impl Strategy<Value = String> {
    let level = prop_oneof![
        prop::sample::select(&["a", "b", "$s", "", "d1", "+"][..]).prop_map(str::to_owned),
    ];
    filter_of(level)
}

/// Calls `visit` on topics of M(filter) obtained by filling `+` with one of
/// `values` and `#` with 0..=`depth` levels of `values` (never a `$` first
/// level for a wildcard, never zero levels for a first-level `#`, never the
/// empty name), until `visit` returns true. Returns whether it did.
fn any_topic(
    filter: &str,
    values: &[&str],
    depth: usize,
    visit: &mut dyn FnMut(&str) -> bool,
) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    walk(&levels, values, depth, &mut Vec::new(), visit)
}

fn walk<'a>(
    rest: &[&'a str],
    values: &[&'a str],
    depth: usize,
    topic: &mut Vec<&'a str>,
    visit: &mut dyn FnMut(&str) -> bool,
) -> bool {
    let first = topic.is_empty();
    let allowed: Vec<&'a str> = values
        .iter()
        .copied()
        .filter(|v| !(first && v.starts_with('$')))
        .collect();
    let emit = |topic: &[&str], visit: &mut dyn FnMut(&str) -> bool| {
        let name = topic.join("/");
        !name.is_empty() && visit(&name)
    };
    match rest.split_first() {
        None => emit(topic, visit),
        Some((&"+", tail)) => allowed
            .iter()
            .any(|&v| descend(v, tail, values, depth, topic, visit)),
        Some((&"#", _)) => {
            // `#` is its parent level, or one more level followed by `#`.
            (!first && emit(topic, visit))
                || (depth > 0
                    && allowed
                        .iter()
                        .any(|&v| descend(v, &["#"], values, depth - 1, topic, visit)))
        }
        Some((&lit, tail)) => descend(lit, tail, values, depth, topic, visit),
    }
}

fn descend<'a>(
    level: &'a str,
    rest: &[&'a str],
    values: &[&'a str],
    depth: usize,
    topic: &mut Vec<&'a str>,
    visit: &mut dyn FnMut(&str) -> bool,
) -> bool {
    topic.push(level);
    let found = walk(rest, values, depth, topic, visit);
    topic.pop();
    found
}

const VALUES: [&str; 6] = ["a", "b", "$s", "", "d1", FRESH];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn subscribe_decisions_agree_with_topic_decisions(
        statements in prop::collection::vec(statement(), 1..=4),
        filter in request(),
    ) {
        let policy = compile(&statements.join(","));
        // The oracle: per-topic decisions by plain topic matching, with
        // each statement's `subscribe` renamed `publish` (publish and
        // receive checks match concrete names; they share no code with the
        // filter coverage and intersection under test).
        let oracle = |statements: &str| compile(&statements.replace(r#""subscribe""#, r#""publish""#));
        let all = oracle(&statements.join(","));
        let explicit = |d| matches!(d, Decision::Deny(DenyReason::ExplicitDeny(_)));
        match policy.check(Subscribe, &filter) {
            Decision::Allow => {
                let mut bad = None;
                any_topic(&filter, &VALUES, 2, &mut |topic| {
                    let sub = all.check(Publish, topic);
                    let receive = all.check(Receive, topic);
                    let wrong = sub != Decision::Allow || explicit(receive);
                    if wrong {
                        bad = Some((topic.to_owned(), sub, receive));
                    }
                    wrong
                });
                prop_assert!(bad.is_none(), "{} granted, but {:?}", filter, bad);
            }
            Decision::Deny(DenyReason::NoMatchingAllow) => {
                // Rules have at most 4 levels: a fresh path of depth 5
                // reaches every state the coverage check can fail in.
                let uncovered = any_topic(&filter, &[FRESH], 5, &mut |t| {
                    all.check(Publish, t) != Decision::Allow
                });
                prop_assert!(uncovered, "{} refused but every fresh topic is allowed", filter);
            }
            Decision::Deny(DenyReason::ExplicitDeny(by)) => {
                // The refusing statement alone must deny some topic of F.
                // Rules have at most four levels, so four levels for `#`
                // reach any intersection.
                let alone = oracle(&statements[by.statement]);
                let hit = any_topic(&filter, &VALUES, 4, &mut |t| {
                    explicit(alone.check(Publish, t)) || explicit(alone.check(Receive, t))
                });
                prop_assert!(hit, "{} refused by {:?} but no topic of it is", filter, by);
            }
            Decision::Deny(DenyReason::InvalidResource) => {
                prop_assert!(false, "generated filter {} is valid", filter);
            }
        }
    }
}
