//! Built-in policies, built in code so they cannot fail to parse.
//!
//! Their JSON forms (`PolicyDocument::to_json`) are what an operator sees
//! and can copy as a starting point.

use crate::document::{Action, Effect, PolicyDocument, Statement};
use crate::template::{Part, Resource, TemplateLevel, Variable};

fn lit(s: &str) -> TemplateLevel {
    TemplateLevel::Parts(vec![Part::Text(s.to_owned())])
}

fn device_id() -> TemplateLevel {
    TemplateLevel::Parts(vec![Part::Var(Variable::DeviceId)])
}

fn resource(levels: Vec<TemplateLevel>) -> Resource {
    Resource::from_levels(levels)
}

fn document(name: &str, statements: Vec<Statement>) -> PolicyDocument {
    // Non-empty statements, each with actions and few resources, and a short
    // plain name: `PolicyDocument::new` accepts these (tested below), so
    // building them unchecked keeps this function free of a panic path.
    PolicyDocument::unchecked(name.to_owned(), statements)
}

/// A device's own space: it may connect (as itself), publish anywhere under
/// `devices/${device.id}/`, and subscribe to and receive its commands under
/// `devices/${device.id}/commands/`. Nothing else, so device-to-device
/// traffic is denied.
pub fn default_device_policy() -> PolicyDocument {
    let own = || resource(vec![lit("devices"), device_id(), TemplateLevel::Multi]);
    let commands = resource(vec![
        lit("devices"),
        device_id(),
        lit("commands"),
        TemplateLevel::Multi,
    ]);
    document(
        "default-device",
        vec![
            Statement::new(
                Effect::Allow,
                [Action::Connect],
                [resource(vec![device_id()])],
            ),
            Statement::new(Effect::Allow, [Action::Publish], [own()]),
            Statement::new(
                Effect::Allow,
                [Action::Subscribe, Action::Receive],
                [commands],
            ),
        ],
    )
}

/// A quarantined device: it may connect, and publish, subscribe and receive
/// only under `remediation/${device.id}/`.
pub fn quarantine_policy() -> PolicyDocument {
    document(
        "quarantine",
        vec![
            Statement::new(
                Effect::Allow,
                [Action::Connect],
                [resource(vec![device_id()])],
            ),
            Statement::new(
                Effect::Allow,
                [Action::Publish, Action::Subscribe, Action::Receive],
                [resource(vec![
                    lit("remediation"),
                    device_id(),
                    TemplateLevel::Multi,
                ])],
            ),
        ],
    )
}

/// Everything on every non-`$` topic, for the loopback dev listener only.
/// (`#` does not match `$`-topics; MQTT reserves them for the server.)
pub fn dev_permissive_policy() -> PolicyDocument {
    document(
        "dev-permissive",
        vec![Statement::new(
            Effect::Allow,
            Action::ALL,
            [resource(vec![TemplateLevel::Multi])],
        )],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_valid_and_round_trip() {
        for doc in [
            default_device_policy(),
            quarantine_policy(),
            dev_permissive_policy(),
        ] {
            let statements = doc.statements().to_vec();
            assert!(PolicyDocument::new(doc.name(), statements).is_ok());
            let back = PolicyDocument::from_json(&doc.to_json()).unwrap();
            assert_eq!(back, doc);
        }
    }
}
