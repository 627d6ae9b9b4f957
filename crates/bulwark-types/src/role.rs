//! Operator roles and what each may do.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The role an operator token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including token management.
    Admin,
    /// Fleet operations: devices, groups, enrollment, revocation.
    Operator,
    /// Read-only, including the audit log.
    Auditor,
    /// May only create enrollment tokens and read groups.
    Enroller,
    /// Publishes OTA releases and runs rollouts; reads the inventory.
    ReleaseManager,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Operator => "operator",
            Self::Auditor => "auditor",
            Self::Enroller => "enroller",
            Self::ReleaseManager => "release_manager",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "admin" => Self::Admin,
            "operator" => Self::Operator,
            "auditor" => Self::Auditor,
            "enroller" => Self::Enroller,
            "release_manager" => Self::ReleaseManager,
            _ => return None,
        })
    }

    pub const ALL: [Role; 5] = [
        Role::Admin,
        Role::Operator,
        Role::Auditor,
        Role::Enroller,
        Role::ReleaseManager,
    ];
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
