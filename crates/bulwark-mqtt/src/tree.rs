//! The subscription index: topic filters in a trie of levels, so a publish
//! visits only the branches its topic can match (`+`, `#` and the literal
//! level at each step), never the whole subscription set.
//!
//! Shared subscriptions (`$share/{group}/{filter}`) sit in the same trie
//! under their inner filter, in a group that receives each message once,
//! round-robin over its members (connected members first).
//!
//! The trie is generic over the subscriber value: the gateway stores one
//! entry per (session, filter); tests and the fuzzer store plain keys. It
//! is not synchronised; the owner wraps it in whatever lock it needs.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Who holds a subscription: the session key plus what the router needs.
pub trait Subscriber: Clone {
    fn key(&self) -> &str;
    /// Whether the subscriber is connected now (preferred for shared
    /// subscriptions).
    fn is_online(&self) -> bool;
}

#[derive(Debug)]
struct Group<T> {
    name: Box<str>,
    members: Vec<T>,
    next: AtomicUsize,
}

#[derive(Debug)]
struct Node<T> {
    children: HashMap<Box<str>, Node<T>>,
    plus: Option<Box<Node<T>>>,
    /// Subscribers whose filter ends with `#` here.
    hash: Vec<T>,
    hash_groups: Vec<Group<T>>,
    /// Subscribers whose filter ends exactly here.
    exact: Vec<T>,
    exact_groups: Vec<Group<T>>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Self {
            children: HashMap::new(),
            plus: None,
            hash: Vec::new(),
            hash_groups: Vec::new(),
            exact: Vec::new(),
            exact_groups: Vec::new(),
        }
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_empty()
            && self.hash_groups.is_empty()
            && self.exact.is_empty()
            && self.exact_groups.is_empty()
    }
}

/// The trie.
#[derive(Debug)]
pub struct Tree<T> {
    root: Node<T>,
    len: usize,
}

impl<T> Default for Tree<T> {
    fn default() -> Self {
        Self {
            root: Node::default(),
            len: 0,
        }
    }
}

/// `filter` is the match part (after `$share/{group}/`); `group` the share
/// name for a shared subscription.
fn slot<'a, T>(
    mut node: &'a mut Node<T>,
    filter: &str,
    group: Option<&str>,
) -> (&'a mut Vec<T>, Option<&'a mut Vec<Group<T>>>) {
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level == "#" && levels.peek().is_none() {
            return if group.is_some() {
                (&mut node.hash, Some(&mut node.hash_groups))
            } else {
                (&mut node.hash, None)
            };
        }
        node = if level == "+" {
            node.plus.get_or_insert_with(Box::default)
        } else {
            node.children.entry(level.into()).or_default()
        };
    }
    if group.is_some() {
        (&mut node.exact, Some(&mut node.exact_groups))
    } else {
        (&mut node.exact, None)
    }
}

impl<T: Subscriber> Tree<T> {
    /// Number of (subscriber, filter) entries.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds or replaces `sub`'s subscription to `filter`. Returns true when
    /// it replaced an existing one.
    pub fn insert(&mut self, filter: &str, group: Option<&str>, sub: T) -> bool {
        let (direct, groups) = slot(&mut self.root, filter, group);
        let list = match (groups, group) {
            (Some(groups), Some(name)) => {
                let idx = match groups.iter().position(|g| &*g.name == name) {
                    Some(i) => i,
                    None => {
                        groups.push(Group {
                            name: name.into(),
                            members: Vec::new(),
                            next: AtomicUsize::new(0),
                        });
                        groups.len() - 1
                    }
                };
                match groups.get_mut(idx) {
                    Some(g) => &mut g.members,
                    None => return false,
                }
            }
            _ => direct,
        };
        if let Some(existing) = list.iter_mut().find(|s| s.key() == sub.key()) {
            *existing = sub;
            return true;
        }
        list.push(sub);
        self.len += 1;
        false
    }

    /// Removes `key`'s subscription to `filter`; true if there was one.
    pub fn remove(&mut self, filter: &str, group: Option<&str>, key: &str) -> bool {
        let levels: Vec<&str> = filter.split('/').collect();
        let removed = remove_at(&mut self.root, &levels, group, key);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Calls `direct` for every non-shared subscriber whose filter matches
    /// `topic`, and `shared` for the one chosen member of each matching
    /// shared group.
    pub fn for_each_match(&self, topic: &str, mut visit: impl FnMut(&T)) {
        let system = topic.starts_with('$');
        let levels: Vec<&str> = topic.split('/').collect();
        walk(&self.root, &levels, 0, system, &mut visit);
    }
}

fn choose<T: Subscriber>(group: &Group<T>) -> Option<&T> {
    let n = group.members.len();
    if n == 0 {
        return None;
    }
    // Round-robin over the online members: the next turn starts after the
    // one chosen, so an offline member's turn is not handed to the same
    // neighbour every time. (Concurrent routers may race on the counter;
    // that only perturbs the rotation.)
    let start = group.next.load(Ordering::Relaxed);
    for i in 0..n {
        let idx = (start + i) % n;
        if let Some(m) = group.members.get(idx).filter(|m| m.is_online()) {
            group.next.store(idx + 1, Ordering::Relaxed);
            return Some(m);
        }
    }
    group.next.store(start.wrapping_add(1), Ordering::Relaxed);
    group.members.get(start % n)
}

fn visit_all<T: Subscriber>(list: &[T], groups: &[Group<T>], visit: &mut impl FnMut(&T)) {
    list.iter().for_each(&mut *visit);
    for g in groups {
        if let Some(m) = choose(g) {
            visit(m);
        }
    }
}

fn walk<T: Subscriber>(
    node: &Node<T>,
    levels: &[&str],
    depth: usize,
    system: bool,
    visit: &mut impl FnMut(&T),
) {
    // Wildcards at the first level never match a `$` topic (MQTT 4.7.2).
    let wild_ok = !(system && depth == 0);
    if wild_ok {
        // `a/#` matches `a` itself and everything below.
        visit_all(&node.hash, &node.hash_groups, visit);
    }
    let Some((level, rest)) = levels.split_first() else {
        visit_all(&node.exact, &node.exact_groups, visit);
        return;
    };
    if let Some(child) = node.children.get(*level) {
        walk(child, rest, depth + 1, system, visit);
    }
    if wild_ok {
        if let Some(plus) = &node.plus {
            walk(plus, rest, depth + 1, system, visit);
        }
    }
}

fn remove_at<T: Subscriber>(
    node: &mut Node<T>,
    levels: &[&str],
    group: Option<&str>,
    key: &str,
) -> bool {
    let take = |list: &mut Vec<T>| match list.iter().position(|s| s.key() == key) {
        Some(i) => {
            list.swap_remove(i);
            true
        }
        None => false,
    };
    let take_group = |groups: &mut Vec<Group<T>>, name: &str| {
        let Some(gi) = groups.iter().position(|g| &*g.name == name) else {
            return false;
        };
        let Some(g) = groups.get_mut(gi) else {
            return false;
        };
        let removed = match g.members.iter().position(|s| s.key() == key) {
            Some(i) => {
                g.members.swap_remove(i);
                true
            }
            None => false,
        };
        if g.members.is_empty() {
            groups.swap_remove(gi);
        }
        removed
    };
    match levels.split_first() {
        Some((&"#", [])) => match group {
            Some(name) => take_group(&mut node.hash_groups, name),
            None => take(&mut node.hash),
        },
        None => match group {
            Some(name) => take_group(&mut node.exact_groups, name),
            None => take(&mut node.exact),
        },
        Some((&"+", rest)) => {
            let Some(plus) = node.plus.as_deref_mut() else {
                return false;
            };
            let removed = remove_at(plus, rest, group, key);
            if plus.is_empty() {
                node.plus = None;
            }
            removed
        }
        Some((level, rest)) => {
            let Some(child) = node.children.get_mut(*level) else {
                return false;
            };
            let removed = remove_at(child, rest, group, key);
            if child.is_empty() {
                node.children.remove(*level);
            }
            removed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct S(&'static str, bool);

    impl Subscriber for S {
        fn key(&self) -> &str {
            self.0
        }
        fn is_online(&self) -> bool {
            self.1
        }
    }

    fn matched(tree: &Tree<S>, topic: &str) -> Vec<&'static str> {
        let mut out = Vec::new();
        tree.for_each_match(topic, |s| out.push(s.0));
        out.sort_unstable();
        out
    }

    #[test]
    fn wildcards_match_like_the_spec() {
        let mut t = Tree::default();
        let cases = [
            ("a", "a/b/c"),
            ("b", "a/+/c"),
            ("c", "a/#"),
            ("d", "#"),
            ("e", "+/+/+"),
            ("f", "a/b"),
            ("g", "+"),
            ("h", "/+"),
        ];
        for (k, f) in cases {
            t.insert(f, None, S(k, true));
        }
        assert_eq!(matched(&t, "a/b/c"), ["a", "b", "c", "d", "e"]);
        assert_eq!(matched(&t, "a"), ["c", "d", "g"]);
        assert_eq!(matched(&t, "a/b"), ["c", "d", "f"]);
        assert_eq!(matched(&t, "/x"), ["d", "h"]);
        assert_eq!(matched(&t, "x/y"), ["d"]);
    }

    #[test]
    fn dollar_topics_escape_leading_wildcards() {
        let mut t = Tree::default();
        t.insert("#", None, S("all", true));
        t.insert("+/info", None, S("plus", true));
        t.insert("$SYS/#", None, S("sys", true));
        t.insert("$SYS/+", None, S("sys+", true));
        assert_eq!(matched(&t, "$SYS/info"), ["sys", "sys+"]);
        assert_eq!(matched(&t, "x/info"), ["all", "plus"]);
    }

    #[test]
    fn insert_replaces_and_remove_prunes() {
        let mut t = Tree::default();
        assert!(!t.insert("a/+", None, S("x", true)));
        assert!(t.insert("a/+", None, S("x", false)));
        assert_eq!(t.len(), 1);
        assert!(!t.remove("a/+", None, "y"));
        assert!(t.remove("a/+", None, "x"));
        assert!(!t.remove("a/+", None, "x"));
        assert!(t.is_empty());
        assert!(t.root.is_empty(), "empty branches are pruned");
    }

    #[test]
    fn shared_groups_deliver_once_round_robin_preferring_online() {
        let mut t = Tree::default();
        t.insert("jobs/#", Some("g"), S("w1", true));
        t.insert("jobs/#", Some("g"), S("w2", true));
        t.insert("jobs/#", Some("g"), S("off", false));
        t.insert("jobs/#", Some("h"), S("h1", true));
        t.insert("jobs/#", None, S("plain", true));
        let mut counts = HashMap::new();
        for _ in 0..100 {
            let m = matched(&t, "jobs/1");
            assert_eq!(m.len(), 3, "{m:?}");
            for k in m {
                *counts.entry(k).or_insert(0) += 1;
            }
        }
        assert_eq!(counts["plain"], 100);
        assert_eq!(counts["h1"], 100);
        assert_eq!(counts.get("off"), None);
        assert!(counts["w1"] >= 40 && counts["w2"] >= 40, "{counts:?}");
        assert!(t.remove("jobs/#", Some("g"), "w1"));
        assert!(t.remove("jobs/#", Some("g"), "w2"));
        // Only the offline member is left: it still gets the message.
        assert_eq!(matched(&t, "jobs/1"), ["h1", "off", "plain"]);
    }
}
