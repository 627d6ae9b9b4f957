//! Differential: the gateway's subscription trie against the plain
//! filter matcher. Input: newline-separated lines; the first half are
//! subscription filters (`$share/{group}/...` allowed), the rest topics.
//! For every valid topic, the trie must visit exactly the plain
//! subscriptions whose filter matches, and exactly one member of each
//! matching shared group. Removing everything must leave the trie empty.
#![no_main]
use std::collections::BTreeMap;

use bulwark_mqtt::tree::{Subscriber, Tree};
use bulwark_mqtt::{matches, TopicFilter, TopicName};
use libfuzzer_sys::fuzz_target;

#[derive(Clone, Debug)]
struct Key(String, bool);

impl Subscriber for Key {
    fn key(&self) -> &str {
        &self.0
    }
    fn is_online(&self) -> bool {
        self.1
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines: Vec<&str> = text.split('\n').collect();
    let (filters, topics) = lines.split_at(lines.len() / 2);
    let mut tree = Tree::default();
    // (key -> filter); a key subscribes once.
    let mut subs: BTreeMap<String, TopicFilter> = BTreeMap::new();
    for (i, f) in filters.iter().enumerate() {
        let Ok(filter) = TopicFilter::new(*f) else {
            continue;
        };
        let key = format!("s{i}");
        let (m, g) = match filter.shared() {
            Some(s) => (s.filter.to_owned(), Some(s.group.to_owned())),
            None => (filter.as_str().to_owned(), None),
        };
        tree.insert(&m, g.as_deref(), Key(key.clone(), i % 3 != 0));
        subs.insert(key, filter);
    }
    for t in topics {
        let Ok(topic) = TopicName::new(*t) else {
            continue;
        };
        let mut got: Vec<String> = Vec::new();
        tree.for_each_match(topic.as_str(), |k| got.push(k.0.clone()));
        got.sort();
        // Plain subscriptions: exactly those that match.
        let mut want: Vec<String> = subs
            .iter()
            .filter(|(_, f)| !f.is_shared() && matches(f, &topic))
            .map(|(k, _)| k.clone())
            .collect();
        // Shared: one member per matching (group, filter).
        let mut groups: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for (k, f) in &subs {
            if let Some(s) = f.shared() {
                if matches(f, &topic) {
                    groups
                        .entry((s.group.to_owned(), s.filter.to_owned()))
                        .or_default()
                        .push(k.clone());
                }
            }
        }
        for members in groups.values() {
            let chosen: Vec<&String> = got.iter().filter(|k| members.contains(k)).collect();
            assert_eq!(chosen.len(), 1, "one delivery per shared group, got {chosen:?}");
            want.push(chosen[0].clone());
        }
        want.sort();
        assert_eq!(got, want, "topic {t:?}");
    }
    for (k, f) in &subs {
        let (m, g) = match f.shared() {
            Some(s) => (s.filter, Some(s.group)),
            None => (f.as_str(), None),
        };
        assert!(tree.remove(m, g, k), "{k} {f:?} not removable");
    }
    assert!(tree.is_empty());
});
