//! Compiling documents for one principal, and deciding requests.
//!
//! The semantics (substitution, decisions, the subscribe rule) are
//! documented on [`CompiledPolicy`].

use crate::document::{Action, Effect, PolicyDocument};
use crate::filter::{
    covered, intersects, matches_topic, parse_request, strip_shared, valid_topic_name, Level,
    MAX_TOPIC_LEN,
};
use crate::principal::Principal;
use crate::template::{Part, TemplateLevel};
use crate::PolicyError;

/// Most rules a compiled policy may hold (one per statement, resource and
/// action).
pub const MAX_RULES: usize = 8192;

/// Where a rule came from: indices into the documents given to
/// [`CompiledPolicy::compile`] and into that document's statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StatementRef {
    pub document: usize,
    pub statement: usize,
}

/// The outcome of a check.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(DenyReason),
}

impl Decision {
    pub fn is_allowed(self) -> bool {
        self == Decision::Allow
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// No allow statement grants it (for `subscribe`: not every topic the
    /// filter can match is granted).
    NoMatchingAllow,
    /// This deny statement matches it (for `subscribe`: intersects it).
    ExplicitDeny(StatementRef),
    /// The resource is not a valid topic name (or, for `subscribe`, filter).
    InvalidResource,
}

/// What compilation did with a resource it could not substitute safely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteKind {
    /// An allow resource that was dropped.
    AllowDropped,
    /// A deny resource widened to everything below its unresolved level.
    DenyWidened,
}

/// One unresolved resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileNote {
    pub origin: StatementRef,
    /// Index of the resource within the statement.
    pub resource: usize,
    pub kind: NoteKind,
}

#[derive(Debug, Clone)]
struct Rule {
    levels: Box<[Level]>,
    origin: StatementRef,
}

#[derive(Debug, Clone, Default)]
struct RuleSet {
    deny: Vec<Rule>,
    allow: Vec<Rule>,
}

/// A policy compiled for one principal: per action, the deny and allow
/// rules, each a pre-split vector of levels with variables substituted.
///
/// # Substitution
/// Each variable is replaced by the principal's value, and the level it sits
/// in becomes one literal level. A value is substituted only if it is a safe
/// literal of that level: non-empty, no `/`, `+`, `#` or NUL, the whole
/// resource no longer than [`crate::limits::MAX_TOPIC_LEN`], and not turning the first
/// level into a `$`-topic that the template did not spell out. Otherwise
/// (or when the principal has no such value: no group, missing attribute)
/// the resource is *unresolved*, and what happens depends on the effect:
///
/// - an **allow** is dropped: it can never match, so access never widens;
/// - a **deny** fails wide: the rule keeps the levels before the unresolved
///   one and matches everything below them, `$`-topics included (as if the
///   bad level were `#`), so a hostile value can never switch a deny off.
///
/// Both are reported in [`CompiledPolicy::notes`].
///
/// # Decisions
/// Deny by default; an explicit deny wins over any allow.
///
/// - `publish`, `receive`, `connect`: the resource is a concrete name. It is
///   refused if it is not a valid topic name, if a deny rule for the action
///   matches it, or if no allow rule for the action matches it.
/// - `subscribe`: the resource is a topic filter (`$share/{name}/` is
///   stripped first: a shared subscription receives what its inner filter
///   matches). Let *M(F)* be the set of topic names filter F matches. F is
///   granted iff (1) no deny rule for `subscribe` **or `receive`** matches
///   any topic in M(F) (the deny's filter intersects F), and (2) every topic
///   in M(F) is matched by some allow rule for `subscribe` (union coverage,
///   decided exactly). So a granted filter never selects a topic the policy
///   denies for subscribe or receive. Per-message `receive` checks still
///   apply to every delivery (a subscribe allow does not imply a receive
///   allow).
///
/// Why the subscribe rule is sound: with (1), a granted F has no topic in
/// common with any subscribe or receive deny, so nothing delivered through F
/// can be one the policy denies; with (2), everything F can deliver is
/// something the policy allows subscribing to, so a filter never gains a
/// topic no single-topic subscription would get. Both (1) and (2) are
/// decided exactly (not approximated), including MQTT's `$` rule (a first
/// level `+` or `#` never matches a `$`-topic, so `#` does not intersect a
/// deny on `$SYS/#`) and the empty name (the parent of `/#` is not a
/// topic). Intersecting a deny is refused even when most of F is allowed:
/// a client asking for `devices/d1/#` under a deny on
/// `devices/d1/secret` gets a refusal it can act on (narrow the filter),
/// not a subscription that silently loses messages. Checking a subscribe
/// allocates a little (the parsed filter and a coverage state) and costs
/// O(rules × min(filter depth, longest rule)).
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    sets: [RuleSet; 4],
    names: Vec<String>,
    notes: Vec<CompileNote>,
}

enum Substituted {
    Levels(Vec<Level>),
    /// A level could not be substituted safely; holds the levels before it.
    Unresolved(Vec<Level>),
}

impl CompiledPolicy {
    /// Compiles `documents` (all of them apply; order only matters for the
    /// [`StatementRef`]s reported) for `principal`.
    pub fn compile(
        documents: &[PolicyDocument],
        principal: &Principal,
    ) -> Result<Self, PolicyError> {
        let mut sets: [RuleSet; 4] = Default::default();
        let mut notes = Vec::new();
        let mut total = 0usize;
        for (d, doc) in documents.iter().enumerate() {
            for (s, statement) in doc.statements().iter().enumerate() {
                let origin = StatementRef {
                    document: d,
                    statement: s,
                };
                for (r, resource) in statement.resources().iter().enumerate() {
                    let levels = match substitute(resource.levels(), principal) {
                        Substituted::Levels(levels) => levels,
                        Substituted::Unresolved(mut prefix) => {
                            let kind = match statement.effect() {
                                Effect::Allow => NoteKind::AllowDropped,
                                Effect::Deny => NoteKind::DenyWidened,
                            };
                            notes.push(CompileNote {
                                origin,
                                resource: r,
                                kind,
                            });
                            if kind == NoteKind::AllowDropped {
                                continue;
                            }
                            prefix.push(Level::Rest);
                            prefix
                        }
                    };
                    let levels: Box<[Level]> = levels.into_boxed_slice();
                    for &action in statement.actions() {
                        total += 1;
                        if total > MAX_RULES {
                            return Err(PolicyError::TooManyRules { max: MAX_RULES });
                        }
                        let set = &mut sets[action.index()];
                        let list = match statement.effect() {
                            Effect::Allow => &mut set.allow,
                            Effect::Deny => &mut set.deny,
                        };
                        list.push(Rule {
                            levels: levels.clone(),
                            origin,
                        });
                    }
                }
            }
        }
        Ok(Self {
            sets,
            names: documents.iter().map(|d| d.name().to_owned()).collect(),
            notes,
        })
    }

    /// Decides `action` on `resource` (see the type docs). For
    /// `publish`, `receive` and `connect` this allocates nothing.
    pub fn check(&self, action: Action, resource: &str) -> Decision {
        match action {
            Action::Subscribe => self.check_subscribe(resource),
            _ => self.check_name(action, resource),
        }
    }

    fn check_name(&self, action: Action, topic: &str) -> Decision {
        if !valid_topic_name(topic) {
            return Decision::Deny(DenyReason::InvalidResource);
        }
        let set = &self.sets[action.index()];
        if let Some(rule) = set.deny.iter().find(|r| matches_topic(&r.levels, topic)) {
            return Decision::Deny(DenyReason::ExplicitDeny(rule.origin));
        }
        if set.allow.iter().any(|r| matches_topic(&r.levels, topic)) {
            return Decision::Allow;
        }
        Decision::Deny(DenyReason::NoMatchingAllow)
    }

    fn check_subscribe(&self, filter: &str) -> Decision {
        let Some(req) = strip_shared(filter).and_then(parse_request) else {
            return Decision::Deny(DenyReason::InvalidResource);
        };
        let denies = self.sets[Action::Subscribe.index()]
            .deny
            .iter()
            .chain(&self.sets[Action::Receive.index()].deny);
        for rule in denies {
            if intersects(&req, &rule.levels) {
                return Decision::Deny(DenyReason::ExplicitDeny(rule.origin));
            }
        }
        let allows: Vec<&[Level]> = self.sets[Action::Subscribe.index()]
            .allow
            .iter()
            .map(|r| &*r.levels)
            .collect();
        if covered(&req, &allows) {
            Decision::Allow
        } else {
            Decision::Deny(DenyReason::NoMatchingAllow)
        }
    }

    /// For explaining an [`Decision::Allow`]: the first allow statement that
    /// grants `action` on `resource` by itself. For `publish`, `receive` and
    /// `connect` that is the first matching allow rule; for `subscribe`, an
    /// allow rule that alone covers every topic the filter can match (a
    /// filter granted only by the union of several statements has none).
    /// Says nothing about denies: call [`CompiledPolicy::check`] for the
    /// decision.
    pub fn allowed_by(&self, action: Action, resource: &str) -> Option<StatementRef> {
        let allows = &self.sets[action.index()].allow;
        match action {
            Action::Subscribe => {
                let req = strip_shared(resource).and_then(parse_request)?;
                allows
                    .iter()
                    .find(|r| covered(&req, &[&*r.levels]))
                    .map(|r| r.origin)
            }
            _ => {
                if !valid_topic_name(resource) {
                    return None;
                }
                allows
                    .iter()
                    .find(|r| matches_topic(&r.levels, resource))
                    .map(|r| r.origin)
            }
        }
    }

    /// The name of the `index`th compiled document.
    pub fn document_name(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(String::as_str)
    }

    /// Resources that could not be substituted safely for this principal.
    pub fn notes(&self) -> &[CompileNote] {
        &self.notes
    }

    /// Number of compiled rules (all actions, allow and deny).
    pub fn rule_count(&self) -> usize {
        self.sets.iter().map(|s| s.allow.len() + s.deny.len()).sum()
    }
}

/// Is `value` safe to substitute into a topic level?
fn safe_value(value: &str) -> bool {
    !value.is_empty() && !value.contains(['/', '+', '#', '\0'])
}

fn substitute(template: &[TemplateLevel], principal: &Principal) -> Substituted {
    let mut out = Vec::with_capacity(template.len());
    let mut len = template.len().saturating_sub(1); // the separators
    for (i, level) in template.iter().enumerate() {
        let parts = match level {
            TemplateLevel::Single => {
                out.push(Level::Single);
                len += 1;
                continue;
            }
            TemplateLevel::Multi => {
                out.push(Level::Multi);
                len += 1;
                continue;
            }
            TemplateLevel::Parts(parts) => parts,
        };
        let mut text = String::new();
        for part in parts {
            match part {
                Part::Text(t) => text.push_str(t),
                Part::Var(v) => match principal.value(v) {
                    Some(value)
                        if safe_value(value) && len + text.len() + value.len() <= MAX_TOPIC_LEN =>
                    {
                        text.push_str(value)
                    }
                    _ => return Substituted::Unresolved(out),
                },
            }
        }
        // A variable must not make the first level a `$`-topic: only a
        // template that spells the `$` itself reaches `$SYS` and the like.
        let spelled_dollar = matches!(parts.first(), Some(Part::Text(t)) if t.starts_with('$'));
        if i == 0 && text.starts_with('$') && !spelled_dollar {
            return Substituted::Unresolved(out);
        }
        len += text.len();
        if len > MAX_TOPIC_LEN {
            return Substituted::Unresolved(out);
        }
        out.push(Level::Literal(text.into_boxed_str()));
    }
    Substituted::Levels(out)
}
