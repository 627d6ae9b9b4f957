//! The subject a policy is compiled for: a device (id, group, attributes)
//! or a service principal (a backend application, by name).
//!
//! Ids, group and service names are validated newtypes and can never carry
//! MQTT wildcards, separators or NUL. Attribute values are free text set by
//! operators and are treated as hostile: compilation checks every value it
//! substitutes (see [`crate::CompiledPolicy`]).
//!
//! A service has no `${device.*}` values: every variable is unresolved for
//! it, so an allow statement that uses one never grants a service anything
//! and a deny statement that uses one fails wide. Service policies name
//! their topics literally.

use std::collections::BTreeMap;

use bulwark_types::{DeviceId, GroupId, ServiceName};

use crate::template::Variable;

/// Who a principal is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Subject {
    Device(DeviceId),
    Service(ServiceName),
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    subject: Subject,
    group: Option<GroupId>,
    attributes: BTreeMap<String, String>,
}

impl Principal {
    /// A device principal with no group and no attributes.
    pub fn new(id: DeviceId) -> Self {
        Self {
            subject: Subject::Device(id),
            group: None,
            attributes: BTreeMap::new(),
        }
    }

    /// A service principal. It has no group and no attributes, and no
    /// `${device.*}` variable ever resolves for it (see the module docs).
    pub fn service(name: ServiceName) -> Self {
        Self {
            subject: Subject::Service(name),
            group: None,
            attributes: BTreeMap::new(),
        }
    }

    /// Sets the device's group. Ignored for a service principal.
    #[must_use]
    pub fn with_group(mut self, group: GroupId) -> Self {
        if self.is_device() {
            self.group = Some(group);
        }
        self
    }

    /// Adds (or replaces) an attribute. Any name and value are accepted; a
    /// name a policy cannot spell is simply never referenced, and a value
    /// that is not a safe topic-level literal never widens access. Ignored
    /// for a service principal.
    #[must_use]
    pub fn with_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        if self.is_device() {
            self.attributes.insert(name.into(), value.into());
        }
        self
    }

    /// The device id; `None` for a service principal.
    pub fn device_id(&self) -> Option<&DeviceId> {
        match &self.subject {
            Subject::Device(id) => Some(id),
            Subject::Service(_) => None,
        }
    }

    /// The service name; `None` for a device principal.
    pub fn service_name(&self) -> Option<&ServiceName> {
        match &self.subject {
            Subject::Service(name) => Some(name),
            Subject::Device(_) => None,
        }
    }

    /// The device id or service name.
    pub fn name(&self) -> &str {
        match &self.subject {
            Subject::Device(id) => id.as_str(),
            Subject::Service(name) => name.as_str(),
        }
    }

    pub fn is_device(&self) -> bool {
        matches!(self.subject, Subject::Device(_))
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
    /// A service has none.
    pub(crate) fn value(&self, var: &Variable) -> Option<&str> {
        let Subject::Device(id) = &self.subject else {
            return None;
        };
        match var {
            Variable::DeviceId => Some(id.as_str()),
            Variable::DeviceGroup => self.group.as_ref().map(GroupId::as_str),
            Variable::Attribute(name) => self.attribute(name),
        }
    }
}
