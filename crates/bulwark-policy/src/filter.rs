//! Topic matching on compiled (pre-split, substituted) filters.
//!
//! MQTT rules: levels are separated by `/`; `+` matches exactly one level;
//! `#` matches any number of levels, including none (so `a/#` matches `a`);
//! a filter whose first level is `+` or `#` does not match a topic whose
//! first level starts with `$`.
//!
//! Three questions are answered here:
//! - [`matches_topic`]: does a rule match a concrete topic name? The hot
//!   path: no allocation, one pass over the topic's bytes per rule.
//! - [`intersects`]: is there a topic that both a requested subscription
//!   filter and a rule match?
//! - [`covered`]: is every topic a requested filter matches also matched by
//!   at least one of a set of rules?
//!
//! This crate keeps its own matcher instead of depending on the MQTT codec's
//! filter type: the policy core must stay independent of the wire crate, and
//! its compiled form has one extra level kind, [`Level::Rest`].

/// The longest topic name or filter MQTT can carry, in bytes.
pub const MAX_TOPIC_LEN: usize = 65_535;

/// One level of a compiled rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Level {
    /// A literal level: never contains `/`, `+`, `#` or NUL.
    Literal(Box<str>),
    /// `+`.
    Single,
    /// `#` (always last).
    Multi,
    /// Internal, deny rules only, always last: like `#` but also matching
    /// `$`-topics at the first level. Stands in for a level whose variable
    /// could not be substituted safely, so a deny fails wide.
    Rest,
}

/// A level of a requested subscription filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReqLevel<'a> {
    Literal(&'a str),
    Single,
    Multi,
}

/// A valid MQTT topic name: non-empty, bounded, no wildcards, no NUL.
pub(crate) fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_LEN
        && !topic.bytes().any(|b| matches!(b, b'+' | b'#' | 0))
}

/// Does `rule` match the (valid) topic name `topic`? Allocates nothing.
///
/// Walks the topic's bytes once: a literal level is one prefix comparison
/// followed by a `/` or the end, `+` skips to the next `/`.
pub(crate) fn matches_topic(rule: &[Level], topic: &str) -> bool {
    let t = topic.as_bytes();
    let dollar = t.first() == Some(&b'$');
    // Start of the next unread level; `None` once the last level is read.
    let mut next = Some(0usize);
    for (i, level) in rule.iter().enumerate() {
        match level {
            Level::Rest => return true,
            Level::Multi => return !(i == 0 && dollar),
            Level::Single => {
                let Some(pos) = next else { return false };
                if i == 0 && dollar {
                    return false;
                }
                let rest = t.get(pos..).unwrap_or_default();
                next = rest.iter().position(|&b| b == b'/').map(|k| pos + k + 1);
            }
            Level::Literal(lit) => {
                let Some(pos) = next else { return false };
                let rest = t.get(pos..).unwrap_or_default();
                if !rest.starts_with(lit.as_bytes()) {
                    return false;
                }
                let end = pos + lit.len();
                next = match t.get(end) {
                    None => None,
                    Some(b'/') => Some(end + 1),
                    Some(_) => return false,
                };
            }
        }
    }
    next.is_none()
}

/// Strips a `$share/{ShareName}/` prefix, returning the filter whose topics
/// the subscription receives. `None` for a malformed shared subscription.
pub(crate) fn strip_shared(filter: &str) -> Option<&str> {
    let Some(rest) = filter.strip_prefix("$share/") else {
        return Some(filter);
    };
    let (share, inner) = rest.split_once('/')?;
    let share_ok = !share.is_empty() && !share.contains(['+', '#']);
    (share_ok && !inner.is_empty()).then_some(inner)
}

/// Parses a requested subscription filter. `None` if it is not a valid MQTT
/// topic filter.
pub(crate) fn parse_request(filter: &str) -> Option<Vec<ReqLevel<'_>>> {
    if filter.is_empty() || filter.len() > MAX_TOPIC_LEN || filter.contains('\0') {
        return None;
    }
    let count = filter.split('/').count();
    let mut out = Vec::with_capacity(count);
    for (i, level) in filter.split('/').enumerate() {
        out.push(match level {
            "+" => ReqLevel::Single,
            "#" if i + 1 == count => ReqLevel::Multi,
            _ if level.contains(['+', '#']) => return None,
            _ => ReqLevel::Literal(level),
        });
    }
    Some(out)
}

fn is_dollar(level: &ReqLevel<'_>) -> bool {
    matches!(level, ReqLevel::Literal(l) if l.starts_with('$'))
}

fn is_dollar_rule(level: &Level) -> bool {
    matches!(level, Level::Literal(l) if l.starts_with('$'))
}

/// Is there a valid topic name matched by both `req` and `rule`?
///
/// Exact: every literal level is a valid topic level, so each filter matches
/// some topic, and the walk below decides the intersection level by level,
/// including the `$` rule at the first level and the one topic that a
/// filter can describe but MQTT forbids, the empty name (a single empty
/// level, as in the parent of `/#`).
pub(crate) fn intersects(req: &[ReqLevel<'_>], rule: &[Level]) -> bool {
    // When the common topic is forced to end after level `i`: it must not
    // be the empty name.
    let ends_ok = |i: usize| {
        !(i == 1
            && (matches!(req.first(), Some(ReqLevel::Literal("")))
                || matches!(rule.first(), Some(Level::Literal(l)) if l.is_empty())))
    };
    let mut i = 0;
    loop {
        let first = i == 0;
        match (req.get(i), rule.get(i)) {
            (None, Some(Level::Rest)) => return ends_ok(i),
            (Some(_), Some(Level::Rest)) => return true,
            (None, None) => return ends_ok(i),
            // A rule `#` or a request `#` also matches the parent level.
            (None, Some(r)) => return matches!(r, Level::Multi) && ends_ok(i),
            (Some(q), None) => return matches!(q, ReqLevel::Multi) && ends_ok(i),
            // The rest of the other side matches some topic; the only way
            // to miss is a `$` first level against a first-level wildcard.
            (Some(ReqLevel::Multi), Some(r)) => return !(first && is_dollar_rule(r)),
            (Some(q), Some(Level::Multi)) => return !(first && is_dollar(q)),
            (Some(ReqLevel::Literal(a)), Some(Level::Literal(b))) => {
                if *a != &**b {
                    return false;
                }
            }
            (Some(ReqLevel::Literal(a)), Some(Level::Single)) => {
                if first && a.starts_with('$') {
                    return false;
                }
            }
            (Some(ReqLevel::Single), Some(Level::Literal(b))) => {
                if first && b.starts_with('$') {
                    return false;
                }
            }
            (Some(ReqLevel::Single), Some(Level::Single)) => {}
        }
        i += 1;
    }
}

/// The input symbol of one topic level during coverage: a known literal, or
/// a "fresh" value equal to no literal of any rule and not starting with `$`.
#[derive(Clone, Copy)]
enum Sym<'a> {
    Literal(&'a str),
    Fresh,
}

/// Advances every live rule position over one level.
fn step(rules: &[&[Level]], state: &mut Vec<(usize, usize)>, sym: Sym<'_>, first: bool) {
    let dollar = first && matches!(sym, Sym::Literal(l) if l.starts_with('$'));
    state.retain_mut(|(r, pos)| match rules[*r].get(*pos) {
        None => false,
        Some(Level::Rest) => true,
        Some(Level::Multi) => !dollar,
        Some(Level::Single) => {
            *pos += 1;
            !dollar
        }
        Some(Level::Literal(lit)) => match sym {
            Sym::Literal(s) if s == &**lit => {
                *pos += 1;
                true
            }
            _ => false,
        },
    });
}

/// Does some live rule match the topic read so far (ending here)?
fn accepts(rules: &[&[Level]], state: &[(usize, usize)]) -> bool {
    state.iter().any(|&(r, pos)| {
        matches!(
            rules[r].get(pos),
            None | Some(Level::Multi) | Some(Level::Rest)
        )
    })
}

/// Is every topic that `req` matches matched by at least one of `rules`?
///
/// Exact, by a monotonicity argument: reading the levels of a topic keeps,
/// for each rule, at most one position, so the "state" is a set of (rule,
/// position) pairs, and a topic is covered iff the final state accepts. Where
/// `req` has a wildcard, a fresh value (equal to no rule literal) yields the
/// smallest possible state, and acceptance and stepping are monotone in the
/// state; so checking the fresh value decides coverage for every value. For
/// `#`, the fresh path is followed until the state stops changing (at most
/// the longest rule's length), checking acceptance at every depth, the
/// parent level included (unless it is the empty name, not a topic).
pub(crate) fn covered(req: &[ReqLevel<'_>], rules: &[&[Level]]) -> bool {
    let mut state: Vec<(usize, usize)> = (0..rules.len()).map(|r| (r, 0)).collect();
    let longest = rules.iter().map(|r| r.len()).max().unwrap_or(0);
    for (i, level) in req.iter().enumerate() {
        let first = i == 0;
        match level {
            ReqLevel::Literal(l) => step(rules, &mut state, Sym::Literal(l), first),
            ReqLevel::Single => step(rules, &mut state, Sym::Fresh, first),
            ReqLevel::Multi => {
                // The parent level, unless it is the empty name (the parent
                // of `/#`), which is not a topic.
                let parent_is_empty_name = i == 1 && req[0] == ReqLevel::Literal("");
                let parent_is_topic = !(first || parent_is_empty_name);
                if parent_is_topic && !accepts(rules, &state) {
                    return false;
                }
                // Each step drops or advances every rule not parked on
                // `#`/`Rest`, so a fixed point comes within `longest + 1`.
                for _ in 0..=longest + 1 {
                    let before = state.clone();
                    step(rules, &mut state, Sym::Fresh, first);
                    if !accepts(rules, &state) {
                        return false;
                    }
                    if state == before {
                        return true;
                    }
                }
                return false;
            }
        }
        if state.is_empty() {
            return false;
        }
        // Every live rule is parked on `#` (or `Rest`) past the first level:
        // each matches every continuation, so the rest of `req` is covered.
        // This also bounds the work by the longest rule, not by `req`.
        let parked = |&(r, pos): &(usize, usize)| {
            matches!(rules[r].get(pos), Some(Level::Multi | Level::Rest))
        };
        if state.iter().all(parked) {
            return true;
        }
    }
    accepts(rules, &state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> Vec<Level> {
        s.split('/')
            .map(|l| match l {
                "+" => Level::Single,
                "#" => Level::Multi,
                "*" => Level::Rest,
                _ => Level::Literal(l.into()),
            })
            .collect()
    }

    #[test]
    fn topic_matching() {
        let check = |r: &str, t: &str, expect: bool| {
            assert_eq!(matches_topic(&rule(r), t), expect, "{r} vs {t}");
        };
        check("a/b", "a/b", true);
        check("a/b", "a/b/c", false);
        check("a/b", "a", false);
        check("a/#", "a", true);
        check("a/#", "a/b/c", true);
        check("a/#", "ab", false);
        check("a/+", "a/", true);
        check("a/+", "a", false);
        check("+/+", "/", true);
        check("#", "$SYS/x", false);
        check("+/x", "$SYS/x", false);
        check("$SYS/#", "$SYS/x", true);
        check("*", "$SYS/x", true);
        check("a/*", "a", true);
        check("a/", "a/", true);
        check("a", "a/", false);
        check("a/+", "a/", true);
        check("a//b", "a//b", true);
        check("+/+/b", "a//b", true);
        check("a/b", "a/bc", false);
        check("a/bc", "a/b", false);
        check("+", "abc", true);
        check("+/+", "abc", false);
        check("/", "/", true);
        check("+", "/", false);
    }

    #[test]
    fn shared() {
        assert_eq!(strip_shared("$share/g/a/#"), Some("a/#"));
        assert_eq!(strip_shared("a/#"), Some("a/#"));
        assert_eq!(strip_shared("$share/g"), None);
        assert_eq!(strip_shared("$share//a"), None);
        assert_eq!(strip_shared("$share/+/a"), None);
        assert_eq!(strip_shared("$share/g/"), None);
    }

    #[test]
    fn intersections() {
        let check = |q: &str, r: &str, expect: bool| {
            let req = parse_request(q).unwrap();
            assert_eq!(intersects(&req, &rule(r)), expect, "{q} vs {r}");
        };
        check("a/b", "a/b", true);
        check("a/+", "a/b", true);
        check("a/#", "a", true);
        check("a", "a/#", true);
        check("a/+", "a", false);
        check("#", "$SYS/#", false);
        check("+/a", "$SYS/a", false);
        check("$SYS/a", "+/a", false);
        check("$SYS/#", "#", false);
        check("$SYS/#", "*", true);
        check("#", "a/b/c", true);
        check("a/+/c", "a/b/+", true);
        check("a/+/c", "a/b/d", false);
        check("/#", "+", false);
        check("/#", "#", true);
        check("/#", "/+", true);
        check("/", "+/+", true);
        check("+", "/#", false);
        check("+/#", "/", true);
    }

    #[test]
    fn coverage() {
        let check = |q: &str, rs: &[&str], expect: bool| {
            let req = parse_request(q).unwrap();
            let owned: Vec<Vec<Level>> = rs.iter().map(|r| rule(r)).collect();
            let refs: Vec<&[Level]> = owned.iter().map(Vec::as_slice).collect();
            assert_eq!(covered(&req, &refs), expect, "{q} vs {rs:?}");
        };
        check("a/b", &["a/b"], true);
        check("a/+", &["a/#"], true);
        check("a/#", &["a/+"], false);
        check("a/#", &["a/+/#"], false);
        check("a/#", &["a", "a/+/#"], true);
        check("a/#", &["a/b", "a/+"], false);
        check("#", &["#"], true);
        check("#", &["+/#"], true);
        check("+", &["#"], true);
        check("$SYS/x", &["#"], false);
        check("$SYS/x", &["$SYS/+"], true);
        check("a/+/c", &["a/b/c"], false);
        check("a/+/c/#", &["a/+/c", "a/+/c/+", "a/+/c/+/#"], true);
        check("a/+/c/#", &["a/+/c", "a/+/c/+"], false);
        check("a/b", &[], false);
        check("/#", &["/+/#"], true);
        check("/#", &["/+/+/#"], false);
    }
}
