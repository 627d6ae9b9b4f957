//! The subject a policy is compiled for: a device's id, group and attributes.
//!
//! Ids and group names are validated newtypes and can never carry MQTT
//! wildcards, separators or NUL. Attribute values are free text set by
//! operators and are treated as hostile: compilation checks every value it
//! substitutes (see [`crate::CompiledPolicy`]).

use std::collections::BTreeMap;

use bulwark_types::{DeviceId, GroupId};

use crate::template::Variable;

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    id: DeviceId,
    group: Option<GroupId>,
    attributes: BTreeMap<String, String>,
}

impl Principal {
    /// A principal with no group and no attributes.
    pub fn new(id: DeviceId) -> Self {
        Self {
            id,
            group: None,
            attributes: BTreeMap::new(),
        }
    }

    /// Sets the device's group.
    #[must_use]
    pub fn with_group(mut self, group: GroupId) -> Self {
        self.group = Some(group);
        self
    }

    /// Adds (or replaces) an attribute. Any name and value are accepted; a
    /// name a policy cannot spell is simply never referenced, and a value
    /// that is not a safe topic-level literal never widens access.
    #[must_use]
    pub fn with_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    pub fn id(&self) -> &DeviceId {
        &self.id
    }

    pub fn group(&self) -> Option<&GroupId> {
        self.group.as_ref()
    }

    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }

    pub fn attributes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attributes
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The raw (unchecked) value of a variable, if the principal has one.
    pub(crate) fn value(&self, var: &Variable) -> Option<&str> {
        match var {
            Variable::DeviceId => Some(self.id.as_str()),
            Variable::DeviceGroup => self.group.as_ref().map(GroupId::as_str),
            Variable::Attribute(name) => self.attribute(name),
        }
    }
}
