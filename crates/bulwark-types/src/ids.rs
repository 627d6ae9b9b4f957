//! Validated identifiers: device ids, group names and labels.
//!
//! The character set is deliberately narrow (`[A-Za-z0-9._-]`, starting with
//! an alphanumeric) so an identifier can be substituted into a certificate
//! subject, a URI, an MQTT topic or a file name without escaping, and can
//! never carry MQTT wildcards (`+`, `#`), separators (`/`) or NUL.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max} characters")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} may contain only letters, digits, '.', '_' and '-', and must start with a letter or digit")]
    BadChar { kind: &'static str },
}

fn validate(kind: &'static str, s: &str, max: usize) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > max {
        return Err(IdError::TooLong { kind, max });
    }
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first_ok
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(IdError::BadChar { kind });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $max:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Longest accepted value, in bytes.
            pub const MAX_LEN: usize = $max;

            /// Validates and wraps `s`.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                validate($kind, &s, $max)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A device's identity: the subject CN of its certificates and its MQTT client id.
    DeviceId,
    "device id",
    128
);
id_type!(
    /// The name of a device group.
    GroupId,
    "group name",
    64
);
id_type!(
    /// A label key or value attached to a device.
    Label,
    "label",
    64
);
id_type!(
    /// The name of a stored MQTT policy (it appears in URLs and audit entries).
    PolicyName,
    "policy name",
    128
);
id_type!(
    /// The name of a service principal: a backend application that talks
    /// MQTT with its own credentials and policies. The subject CN of its
    /// certificates and its MQTT username.
    ServiceName,
    "service name",
    64
);
id_type!(
    /// The name under which an operator registered a manufacturer CA (it
    /// appears in URLs, audit entries and the devices bound to it).
    ManufacturerCaName,
    "manufacturer CA name",
    64
);

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, ok: bool) {
        assert_eq!(DeviceId::new(input).is_ok(), ok, "{input:?}");
    }

    #[test]
    fn device_ids() {
        check("sensor-01", true);
        check("a.b_c-d", true);
        check("", false);
        check("-leading", false);
        check("has/slash", false);
        check("plus+", false);
        check("hash#", false);
        check("nul\0", false);
        check("space here", false);
        check("ünicode", false);
        check(&"x".repeat(128), true);
        check(&"x".repeat(129), false);
    }

    #[test]
    fn deserialize_validates() {
        let r: Result<GroupId, _> = serde_json::from_str("\"../etc\"");
        assert!(r.is_err());
        let g: GroupId = serde_json::from_str("\"floor-3\"").unwrap();
        assert_eq!(g.as_str(), "floor-3");
    }
}
