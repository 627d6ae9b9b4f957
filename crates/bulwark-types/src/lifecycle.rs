//! The device lifecycle and revocation reasons.
//!
//! ```text
//! pending -> active <-> quarantined
//!    \          \            \
//!     +----------+------------+--> decommissioned (terminal)
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a device is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// Registered but not yet enrolled.
    Pending,
    /// Enrolled and allowed to operate.
    Active,
    /// Contained: may only reach remediation topics.
    Quarantined,
    /// Retired; every certificate revoked. Terminal.
    Decommissioned,
}

/// An operator asked for a lifecycle move that the state machine forbids.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot move a device from {from} to {to}")]
pub struct TransitionError {
    pub from: DeviceState,
    pub to: DeviceState,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Quarantined => "quarantined",
            Self::Decommissioned => "decommissioned",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "active" => Self::Active,
            "quarantined" => Self::Quarantined,
            "decommissioned" => Self::Decommissioned,
            _ => return None,
        })
    }

    /// Checks the move `self -> to`.
    pub fn transition(self, to: DeviceState) -> Result<DeviceState, TransitionError> {
        use DeviceState::*;
        let ok = matches!(
            (self, to),
            (Pending, Active)
                | (Active, Quarantined)
                | (Quarantined, Active)
                | (Pending | Active | Quarantined, Decommissioned)
        );
        if ok {
            Ok(to)
        } else {
            Err(TransitionError { from: self, to })
        }
    }
}

impl DeviceState {
    /// A move an operator may ask for: as [`DeviceState::transition`], except
    /// that `pending -> active` happens only by enrolling (a device must hold
    /// a certificate to be active).
    pub fn operator_transition(self, to: DeviceState) -> Result<DeviceState, TransitionError> {
        if self == DeviceState::Pending && to == DeviceState::Active {
            return Err(TransitionError { from: self, to });
        }
        self.transition(to)
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// CRL reason codes (RFC 5280 §5.3.1) an operator may give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RevocationReason {
    #[default]
    Unspecified,
    KeyCompromise,
    CaCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    CertificateHold,
    PrivilegeWithdrawn,
}

impl RevocationReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::KeyCompromise => "key_compromise",
            Self::CaCompromise => "ca_compromise",
            Self::AffiliationChanged => "affiliation_changed",
            Self::Superseded => "superseded",
            Self::CessationOfOperation => "cessation_of_operation",
            Self::CertificateHold => "certificate_hold",
            Self::PrivilegeWithdrawn => "privilege_withdrawn",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "unspecified" => Self::Unspecified,
            "key_compromise" => Self::KeyCompromise,
            "ca_compromise" => Self::CaCompromise,
            "affiliation_changed" => Self::AffiliationChanged,
            "superseded" => Self::Superseded,
            "cessation_of_operation" => Self::CessationOfOperation,
            "certificate_hold" => Self::CertificateHold,
            "privilege_withdrawn" => Self::PrivilegeWithdrawn,
            _ => return None,
        })
    }

    /// The RFC 5280 CRLReason code.
    pub fn code(self) -> u8 {
        match self {
            Self::Unspecified => 0,
            Self::KeyCompromise => 1,
            Self::CaCompromise => 2,
            Self::AffiliationChanged => 3,
            Self::Superseded => 4,
            Self::CessationOfOperation => 5,
            Self::CertificateHold => 6,
            Self::PrivilegeWithdrawn => 9,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DeviceState::*;
    use super::*;

    #[test]
    fn transitions() {
        let all = [Pending, Active, Quarantined, Decommissioned];
        let allowed = [
            (Pending, Active),
            (Active, Quarantined),
            (Quarantined, Active),
            (Pending, Decommissioned),
            (Active, Decommissioned),
            (Quarantined, Decommissioned),
        ];
        for from in all {
            for to in all {
                assert_eq!(
                    from.transition(to).is_ok(),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
    }

    #[test]
    fn operators_cannot_activate_a_pending_device() {
        assert!(Pending.operator_transition(Active).is_err());
        assert!(Quarantined.operator_transition(Active).is_ok());
        assert!(Pending.operator_transition(Decommissioned).is_ok());
    }

    #[test]
    fn names_round_trip() {
        for s in [Pending, Active, Quarantined, Decommissioned] {
            assert_eq!(DeviceState::parse(s.as_str()), Some(s));
        }
    }
}
