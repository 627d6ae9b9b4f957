//! Resource templates: MQTT topic filters that may contain variables.
//!
//! A template is validated in two steps. First the placeholder check: every
//! `${` must close with `}` and name a known variable (`device.id`,
//! `device.group`, `device.attr.NAME` with NAME of `[A-Za-z0-9_-]+`), so a
//! placeholder can never span a `/`. Then the MQTT filter check on the
//! levels: `+` and `#` must each be a whole level, `#` only the last one, and
//! a variable shares its level only with literal text (`sensors-${device.id}`),
//! never with a wildcard. Substitution therefore produces exactly one literal
//! level per templated level; see [`crate::CompiledPolicy`] for what happens
//! when a value could not be a literal.

use std::fmt;

use crate::error::{excerpt, ResourceProblem};

/// Longest resource template, in bytes.
pub const MAX_RESOURCE_LEN: usize = 1024;
/// Most levels in a resource template.
pub const MAX_LEVELS: usize = 32;
/// Longest attribute name a variable may reference.
pub const MAX_ATTRIBUTE_NAME_LEN: usize = 64;

/// A variable a resource may reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Variable {
    /// `${device.id}`.
    DeviceId,
    /// `${device.group}`.
    DeviceGroup,
    /// `${device.attr.NAME}`.
    Attribute(String),
}

impl Variable {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "device.id" => Some(Self::DeviceId),
            "device.group" => Some(Self::DeviceGroup),
            _ => {
                let attr = name.strip_prefix("device.attr.")?;
                let ok = !attr.is_empty()
                    && attr.len() <= MAX_ATTRIBUTE_NAME_LEN
                    && attr
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                ok.then(|| Self::Attribute(attr.to_owned()))
            }
        }
    }
}

impl fmt::Display for Variable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DeviceId => f.write_str("${device.id}"),
            Self::DeviceGroup => f.write_str("${device.group}"),
            Self::Attribute(name) => write!(f, "${{device.attr.{name}}}"),
        }
    }
}

/// A piece of a templated level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Text(String),
    Var(Variable),
}

/// One level of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TemplateLevel {
    /// `+`.
    Single,
    /// `#` (always last).
    Multi,
    /// Literal text and variables; `[Text("")]` for an empty level.
    Parts(Vec<Part>),
}

/// A validated resource: an MQTT topic filter with variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    levels: Vec<TemplateLevel>,
}

impl Resource {
    /// Validates a resource template (see the module docs for the rules).
    pub fn parse(s: &str) -> Result<Self, ResourceProblem> {
        if s.is_empty() {
            return Err(ResourceProblem::Empty);
        }
        if s.len() > MAX_RESOURCE_LEN {
            return Err(ResourceProblem::TooLong {
                max: MAX_RESOURCE_LEN,
            });
        }
        if s.contains('\0') {
            return Err(ResourceProblem::Nul);
        }
        if s.starts_with("$share/") {
            return Err(ResourceProblem::SharedSubscription);
        }
        check_placeholders(s)?;
        let count = s.split('/').count();
        if count > MAX_LEVELS {
            return Err(ResourceProblem::TooDeep { max: MAX_LEVELS });
        }
        let mut levels = Vec::with_capacity(count);
        for (i, level) in s.split('/').enumerate() {
            levels.push(match level {
                "+" => TemplateLevel::Single,
                "#" if i + 1 == count => TemplateLevel::Multi,
                "#" => return Err(ResourceProblem::MultiWildcardNotLast),
                _ if level.contains(['+', '#']) => {
                    return Err(ResourceProblem::WildcardNotWholeLevel)
                }
                _ => TemplateLevel::Parts(parse_parts(level)?),
            });
        }
        Ok(Self { levels })
    }

    pub(crate) fn from_levels(levels: Vec<TemplateLevel>) -> Self {
        Self { levels }
    }

    pub(crate) fn levels(&self) -> &[TemplateLevel] {
        &self.levels
    }

    /// The variables this resource references, in order.
    pub fn variables(&self) -> impl Iterator<Item = &Variable> {
        self.levels.iter().flat_map(|l| {
            match l {
                TemplateLevel::Parts(parts) => parts.as_slice(),
                _ => &[],
            }
            .iter()
            .filter_map(|p| match p {
                Part::Var(v) => Some(v),
                Part::Text(_) => None,
            })
        })
    }
}

/// Every `${` closes and names a known variable. Runs on the whole string
/// before splitting, so `${device.attr.a/b}` is reported as an unknown
/// variable rather than as two broken levels.
fn check_placeholders(s: &str) -> Result<(), ResourceProblem> {
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or(ResourceProblem::UnterminatedVariable)?;
        let name = &after[..end];
        if Variable::parse(name).is_none() {
            return Err(ResourceProblem::UnknownVariable(excerpt(name)));
        }
        rest = &after[end + 1..];
    }
    Ok(())
}

/// Splits one level (already free of `/`, `+`, `#`, checked placeholders)
/// into text and variables.
fn parse_parts(level: &str) -> Result<Vec<Part>, ResourceProblem> {
    let mut parts = Vec::new();
    let mut rest = level;
    while let Some(start) = rest.find("${") {
        if start > 0 {
            parts.push(Part::Text(rest[..start].to_owned()));
        }
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or(ResourceProblem::UnterminatedVariable)?;
        let var = Variable::parse(&after[..end])
            .ok_or_else(|| ResourceProblem::UnknownVariable(excerpt(&after[..end])))?;
        parts.push(Part::Var(var));
        rest = &after[end + 1..];
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(Part::Text(rest.to_owned()));
    }
    Ok(parts)
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, level) in self.levels.iter().enumerate() {
            if i > 0 {
                f.write_str("/")?;
            }
            match level {
                TemplateLevel::Single => f.write_str("+")?,
                TemplateLevel::Multi => f.write_str("#")?,
                TemplateLevel::Parts(parts) => {
                    for part in parts {
                        match part {
                            Part::Text(t) => f.write_str(t)?,
                            Part::Var(v) => write!(f, "{v}")?,
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for Resource {
    type Err = ResourceProblem;
    fn from_str(s: &str) -> Result<Self, ResourceProblem> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expect: Result<(), ResourceProblem>) {
        let got = Resource::parse(input);
        assert_eq!(
            got.as_ref().map(|_| ()),
            expect.as_ref().map(|_| ()),
            "{input:?}"
        );
        if let Ok(r) = got {
            assert_eq!(r.to_string(), input, "round trip");
            assert_eq!(Resource::parse(&r.to_string()), Ok(r));
        }
    }

    #[test]
    fn templates() {
        use ResourceProblem as P;
        check("devices/${device.id}/#", Ok(()));
        check("sensors-${device.id}/x", Ok(()));
        check("${device.group}-${device.id}", Ok(()));
        check("a/${device.attr.zone_1-b}/+", Ok(()));
        check("$SYS/#", Ok(()));
        check("a$${device.id}", Ok(()));
        check("a//b/", Ok(()));
        check("#", Ok(()));
        check("+", Ok(()));
        check("a/}{$/b", Ok(()));
        check("", Err(P::Empty));
        check("a\0b", Err(P::Nul));
        check("a/#/b", Err(P::MultiWildcardNotLast));
        check("a/b#", Err(P::WildcardNotWholeLevel));
        check("a/+b", Err(P::WildcardNotWholeLevel));
        check("+${device.id}", Err(P::WildcardNotWholeLevel));
        check("a/${device.id", Err(P::UnterminatedVariable));
        check(
            "a/${device.name}",
            Err(P::UnknownVariable("device.name".into())),
        );
        check(
            "a/${device.attr.}",
            Err(P::UnknownVariable("device.attr.".into())),
        );
        check(
            "a/${device.attr.a/b}",
            Err(P::UnknownVariable("device.attr.a/b".into())),
        );
        check(
            "a/${device.attr.a.b}",
            Err(P::UnknownVariable("device.attr.a.b".into())),
        );
        check(
            "${${device.id}}",
            Err(P::UnknownVariable("${device.id".into())),
        );
        check("$share/g/a", Err(P::SharedSubscription));
        check(
            &"a/"
                .repeat(31)
                .chars()
                .chain("a".chars())
                .collect::<String>(),
            Ok(()),
        );
        check(
            &"a/"
                .repeat(32)
                .chars()
                .chain("a".chars())
                .collect::<String>(),
            Err(P::TooDeep { max: 32 }),
        );
        check(
            &"x".repeat(MAX_RESOURCE_LEN + 1),
            Err(P::TooLong {
                max: MAX_RESOURCE_LEN,
            }),
        );
    }

    #[test]
    fn variables_listed() {
        let r = Resource::parse("${device.group}/x-${device.attr.zone}/${device.id}").unwrap();
        let vars: Vec<String> = r.variables().map(ToString::to_string).collect();
        assert_eq!(
            vars,
            ["${device.group}", "${device.attr.zone}", "${device.id}"]
        );
    }
}
