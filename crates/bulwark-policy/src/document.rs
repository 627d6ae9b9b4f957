//! Declarative policy documents: the stored, versioned, operator-written form.
//!
//! ```json
//! { "version": 1, "name": "default-device",
//!   "statements": [ { "effect": "allow", "actions": ["publish"],
//!                     "resources": ["devices/${device.id}/#"] } ] }
//! ```
//!
//! A [`PolicyDocument`] that exists is valid: `Deserialize` goes through the
//! same validation as [`PolicyDocument::from_json`] (unknown fields, effects
//! and actions refused; every resource checked as a template, see
//! [`crate::Resource`]; counts and lengths bounded). Any serde format works
//! (JSON, TOML, ...); [`PolicyDocument::from_json`] is the entry point that
//! keeps the typed error naming the statement index.

use serde::{Deserialize, Serialize};

use crate::error::{excerpt, PolicyError};
use crate::template::Resource;

/// The only document version this crate reads.
pub const VERSION: u64 = 1;
/// Longest policy name, in bytes.
pub const MAX_NAME_LEN: usize = 128;
/// Most statements in one document.
pub const MAX_STATEMENTS: usize = 256;
/// Most entries in one statement's `actions` list (duplicates included).
pub const MAX_ACTIONS: usize = 16;
/// Most resources in one statement.
pub const MAX_RESOURCES: usize = 64;

/// Whether a matching statement grants or refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    Allow,
    Deny,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// What a principal wants to do.
///
/// - `connect`: the resource is the MQTT client identifier (for a device,
///   its id), matched like a topic name;
/// - `publish`: a topic name the client sends to (also wills and retained
///   messages it sets);
/// - `subscribe`: a topic filter the client asks for;
/// - `receive`: a topic name of a message about to be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Connect,
    Publish,
    Subscribe,
    Receive,
}

impl Action {
    pub const ALL: [Action; 4] = [
        Action::Connect,
        Action::Publish,
        Action::Subscribe,
        Action::Receive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Publish => "publish",
            Self::Subscribe => "subscribe",
            Self::Receive => "receive",
        }
    }

    /// Parses the lower-case document spelling.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// One allow or deny statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    effect: Effect,
    actions: Vec<Action>,
    resources: Vec<Resource>,
}

impl Statement {
    /// A statement; duplicate actions are merged. Counts are checked when
    /// the statement is put into a [`PolicyDocument`].
    pub fn new(
        effect: Effect,
        actions: impl IntoIterator<Item = Action>,
        resources: impl IntoIterator<Item = Resource>,
    ) -> Self {
        let mut actions: Vec<Action> = actions.into_iter().collect();
        actions.sort_unstable();
        actions.dedup();
        Self {
            effect,
            actions,
            resources: resources.into_iter().collect(),
        }
    }

    pub fn effect(&self) -> Effect {
        self.effect
    }

    pub fn actions(&self) -> &[Action] {
        &self.actions
    }

    pub fn resources(&self) -> &[Resource] {
        &self.resources
    }
}

/// A validated policy document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawDocument", into = "RawDocument")]
pub struct PolicyDocument {
    name: String,
    statements: Vec<Statement>,
}

impl PolicyDocument {
    /// Builds and validates a document.
    pub fn new(name: impl Into<String>, statements: Vec<Statement>) -> Result<Self, PolicyError> {
        let name = name.into();
        check_name(&name)?;
        if statements.is_empty() {
            return Err(PolicyError::NoStatements);
        }
        if statements.len() > MAX_STATEMENTS {
            return Err(PolicyError::TooManyStatements {
                max: MAX_STATEMENTS,
            });
        }
        for (i, s) in statements.iter().enumerate() {
            if s.actions.is_empty() {
                return Err(PolicyError::NoActions { statement: i });
            }
            if s.resources.is_empty() {
                return Err(PolicyError::NoResources { statement: i });
            }
            if s.resources.len() > MAX_RESOURCES {
                return Err(PolicyError::TooManyResources {
                    statement: i,
                    max: MAX_RESOURCES,
                });
            }
        }
        Ok(Self { name, statements })
    }

    /// For the built-in policies, whose validity a unit test proves.
    pub(crate) fn unchecked(name: String, statements: Vec<Statement>) -> Self {
        Self { name, statements }
    }

    /// Parses and validates a JSON document.
    pub fn from_json(text: &str) -> Result<Self, PolicyError> {
        let raw: RawDocument = serde_json::from_str(text).map_err(PolicyError::Malformed)?;
        Self::try_from(raw)
    }

    /// Parses and validates a JSON document from bytes.
    pub fn from_json_slice(bytes: &[u8]) -> Result<Self, PolicyError> {
        let raw: RawDocument = serde_json::from_slice(bytes).map_err(PolicyError::Malformed)?;
        Self::try_from(raw)
    }

    /// The canonical JSON form (what [`Self::from_json`] reads back).
    pub fn to_json(&self) -> String {
        // A `RawDocument` is strings and vectors of strings: serializing it
        // to a `String` cannot fail, so the fallback is never taken.
        serde_json::to_string_pretty(&RawDocument::from(self.clone())).unwrap_or_default()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn statements(&self) -> &[Statement] {
        &self.statements
    }
}

fn check_name(name: &str) -> Result<(), PolicyError> {
    let reason = if name.is_empty() {
        "must not be empty"
    } else if name.len() > MAX_NAME_LEN {
        "is longer than 128 bytes"
    } else if name.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(PolicyError::BadName { reason })
}

/// The wire shape, before validation. Effects and actions are strings here so
/// a refusal can name the statement it came from.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocument {
    version: u64,
    name: String,
    statements: Vec<RawStatement>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatement {
    effect: String,
    actions: Vec<String>,
    resources: Vec<String>,
}

impl TryFrom<RawDocument> for PolicyDocument {
    type Error = PolicyError;

    fn try_from(raw: RawDocument) -> Result<Self, PolicyError> {
        if raw.version != VERSION {
            return Err(PolicyError::UnsupportedVersion {
                version: raw.version,
            });
        }
        check_name(&raw.name)?;
        if raw.statements.len() > MAX_STATEMENTS {
            return Err(PolicyError::TooManyStatements {
                max: MAX_STATEMENTS,
            });
        }
        let mut statements = Vec::with_capacity(raw.statements.len());
        for (i, s) in raw.statements.into_iter().enumerate() {
            statements.push(statement_from_raw(i, s)?);
        }
        Self::new(raw.name, statements)
    }
}

fn statement_from_raw(i: usize, raw: RawStatement) -> Result<Statement, PolicyError> {
    let effect = match raw.effect.as_str() {
        "allow" => Effect::Allow,
        "deny" => Effect::Deny,
        other => {
            return Err(PolicyError::UnknownEffect {
                statement: i,
                effect: excerpt(other),
            })
        }
    };
    if raw.actions.len() > MAX_ACTIONS {
        return Err(PolicyError::TooManyActions {
            statement: i,
            max: MAX_ACTIONS,
        });
    }
    let mut actions = Vec::with_capacity(raw.actions.len());
    for a in &raw.actions {
        actions.push(
            Action::from_name(a).ok_or_else(|| PolicyError::UnknownAction {
                statement: i,
                action: excerpt(a),
            })?,
        );
    }
    if raw.resources.len() > MAX_RESOURCES {
        return Err(PolicyError::TooManyResources {
            statement: i,
            max: MAX_RESOURCES,
        });
    }
    let mut resources = Vec::with_capacity(raw.resources.len());
    for (j, r) in raw.resources.iter().enumerate() {
        resources.push(
            Resource::parse(r).map_err(|reason| PolicyError::BadResource {
                statement: i,
                resource: j,
                reason,
            })?,
        );
    }
    Ok(Statement::new(effect, actions, resources))
}

impl From<PolicyDocument> for RawDocument {
    fn from(doc: PolicyDocument) -> Self {
        Self {
            version: VERSION,
            name: doc.name,
            statements: doc
                .statements
                .into_iter()
                .map(|s| RawStatement {
                    effect: s.effect.as_str().to_owned(),
                    actions: s.actions.iter().map(|a| a.as_str().to_owned()).collect(),
                    resources: s.resources.iter().map(ToString::to_string).collect(),
                })
                .collect(),
        }
    }
}
