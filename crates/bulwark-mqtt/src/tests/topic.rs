//! Topic names, filters, shared subscriptions and matching, from the
//! examples of MQTT 5 §4.7 and §4.8.2.

use proptest::prelude::*;

use super::prop::topic_name;
use crate::{matches, SharedSubscription, TopicError, TopicFilter, TopicName};

fn check_name(s: &str, expect: Result<(), TopicError>) {
    assert_eq!(TopicName::new(s).map(drop), expect, "{s:?}");
}

fn check_filter(s: &str, expect: Result<(), TopicError>) {
    assert_eq!(TopicFilter::new(s).map(drop), expect, "{s:?}");
}

fn check_match(filter: &str, topic: &str, expect: bool) {
    let f = TopicFilter::new(filter).unwrap();
    let t = TopicName::new(topic).unwrap();
    assert_eq!(matches(&f, &t), expect, "{filter:?} vs {topic:?}");
}

#[test]
fn topic_names() {
    for ok in [
        "a",
        "/",
        "a/b",
        "a//b/",
        "$SYS/broker",
        " ",
        "é/€/😀",
        "sport/tennis/player1",
    ] {
        check_name(ok, Ok(()));
    }
    check_name("", Err(TopicError::Empty));
    check_name("a/+", Err(TopicError::WildcardInName));
    check_name("#", Err(TopicError::WildcardInName));
    check_name("a#b", Err(TopicError::WildcardInName));
    check_name("a\0b", Err(TopicError::Nul));
    check_name(&"x".repeat(65_535), Ok(()));
    check_name(
        &"x".repeat(65_536),
        Err(TopicError::TooLong { len: 65_536 }),
    );
}

#[test]
fn topic_filters() {
    use TopicError as E;
    for ok in [
        "#",
        "+",
        "sport/#",
        "sport/tennis/player1/#",
        "+/tennis/#",
        "sport/+/player1",
        "/",
        "+/+",
        "/+",
        "a//b",
        "$SYS/#",
        "$share",
        "$shared/x",
        "$share/g/#",
        "$share/consumer1/sport/tennis/+",
    ] {
        check_filter(ok, Ok(()));
    }
    for (bad, err) in [
        ("", E::Empty),
        ("a\0", E::Nul),
        ("sport/tennis#", E::MisplacedMultiLevelWildcard),
        ("sport/tennis/#/ranking", E::MisplacedMultiLevelWildcard),
        ("##", E::MisplacedMultiLevelWildcard),
        ("sport+", E::MisplacedSingleLevelWildcard),
        ("a/+b/c", E::MisplacedSingleLevelWildcard),
        ("$share/", E::EmptySharedFilter),
        ("$share/g", E::EmptySharedFilter),
        ("$share/g/", E::EmptySharedFilter),
        ("$share//a", E::InvalidShareName),
        ("$share/g+/a", E::InvalidShareName),
        ("$share/#/a", E::InvalidShareName),
        ("$share/g/a#", E::MisplacedMultiLevelWildcard),
        ("$share/g/+x", E::MisplacedSingleLevelWildcard),
    ] {
        check_filter(bad, Err(err));
    }
    check_filter(&"a".repeat(65_536), Err(E::TooLong { len: 65_536 }));
}

#[test]
fn shared_subscriptions_split_into_group_and_filter() {
    let f = TopicFilter::new("$share/consumer1/sport/tennis/+").unwrap();
    assert!(f.is_shared());
    assert_eq!(
        f.shared(),
        Some(SharedSubscription {
            group: "consumer1",
            filter: "sport/tennis/+"
        })
    );
    assert_eq!(f.match_part(), "sport/tennis/+");
    assert!(f.has_wildcards());
    let plain = TopicFilter::new("sport/tennis").unwrap();
    assert_eq!((plain.shared(), plain.match_part()), (None, "sport/tennis"));
    assert!(!plain.has_wildcards());
}

#[test]
fn matching_follows_the_spec_examples() {
    for (filter, topic, expect) in [
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
            true,
        ),
        ("sport/#", "sport", true),
        ("#", "sport/tennis", true),
        ("#", "/", true),
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player2", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("+", "finance", true),
        ("a/+/b", "a//b", true),
        ("a/b", "a/b", true),
        ("a/b", "a/b/", false),
        ("a/b/", "a/b", false),
        ("ACCOUNTS", "Accounts", false),
        ("sport/tennis/#", "sport/tennis", true),
        ("sport/tennis/#", "sport/tennisx", false),
        // `$` topics are not matched by a leading wildcard.
        ("#", "$SYS/monitor/Clients", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("$SYS/#", "$SYS/monitor/Clients", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ("+", "$SYS", false),
        ("$SYS", "$SYS", true),
        ("a/#", "a/$SYS", true),
        // Shared subscriptions match with the filter after the group.
        ("$share/g/sport/#", "sport/tennis", true),
        ("$share/g/#", "$SYS/x", false),
        ("$share/g/sport", "$share/g/sport", false),
        ("$share", "$share", true),
    ] {
        check_match(filter, topic, expect);
    }
}

proptest! {
    #[test]
    fn any_string_is_validated_without_panicking(s in "\\PC{0,20}|[a+#/$\0]{0,12}") {
        let _ = TopicName::new(s.as_str());
        if let Ok(f) = TopicFilter::new(s.as_str()) {
            prop_assert_eq!(f.as_str(), s.as_str());
            if let Some(shared) = f.shared() {
                prop_assert_eq!(format!("$share/{}/{}", shared.group, shared.filter), s);
            }
        }
    }

    #[test]
    fn a_topic_matches_itself_and_its_generalisations(t in topic_name(), level in 0usize..6) {
        let exact = TopicFilter::new(t.as_str()).unwrap();
        prop_assert!(matches(&exact, &t));
        let mut levels: Vec<&str> = t.levels().collect();
        let n = level % levels.len();
        let system = t.is_system();
        if let Some(l) = levels.get_mut(n) {
            *l = "+";
        }
        let plus = TopicFilter::new(levels.join("/")).unwrap();
        prop_assert_eq!(matches(&plus, &t), !(system && n == 0));
        levels.truncate(n);
        levels.push("#");
        let hash = TopicFilter::new(levels.join("/")).unwrap();
        prop_assert_eq!(matches(&hash, &t), !(system && n == 0));
    }
}
