//! Bulwark's authorization core: `(principal, action, resource) -> decision`.
//!
//! Pure: no I/O, no async, no clock. The gateway loads [`PolicyDocument`]s
//! (declarative allow/deny statements over MQTT topic filters with variables),
//! compiles them once per connection for the connected [`Principal`] into a
//! [`CompiledPolicy`], and asks [`CompiledPolicy::check`] on every path a
//! message can take.
//!
//! ```
//! use bulwark_policy::{default_device_policy, Action, CompiledPolicy, Principal};
//! use bulwark_types::DeviceId;
//!
//! let me = Principal::new(DeviceId::new("d1").unwrap());
//! let policy = CompiledPolicy::compile(&[default_device_policy()], &me).unwrap();
//! assert!(policy.check(Action::Publish, "devices/d1/telemetry").is_allowed());
//! assert!(!policy.check(Action::Publish, "devices/d2/telemetry").is_allowed());
//! assert!(policy.check(Action::Subscribe, "devices/d1/commands/+").is_allowed());
//! assert!(!policy.check(Action::Subscribe, "devices/+/commands/#").is_allowed());
//! ```
//!
//! Invariants:
//! - deny by default; an explicit deny wins over any allow;
//! - a substituted value never widens access (see [`CompiledPolicy`]):
//!   allows with unsafe values are dropped, denies fail wide;
//! - a granted subscription filter can never select a topic that a deny
//!   statement for `subscribe` or `receive` matches;
//! - checking a publish, receive or connect allocates nothing.

mod builtin;
mod compile;
mod document;
mod error;
mod filter;
mod principal;
mod template;

pub use builtin::{default_device_policy, dev_permissive_policy, quarantine_policy};
pub use compile::{CompileNote, CompiledPolicy, Decision, DenyReason, NoteKind, StatementRef};
pub use document::{Action, Effect, PolicyDocument, Statement};
pub use error::{PolicyError, ResourceProblem};
pub use principal::Principal;
pub use template::{Resource, Variable};

/// The bounds every document and compiled policy stays within.
pub mod limits {
    pub use crate::compile::MAX_RULES;
    pub use crate::document::{MAX_ACTIONS, MAX_NAME_LEN, MAX_RESOURCES, MAX_STATEMENTS, VERSION};
    pub use crate::filter::MAX_TOPIC_LEN;
    pub use crate::template::{MAX_ATTRIBUTE_NAME_LEN, MAX_LEVELS, MAX_RESOURCE_LEN};
}
