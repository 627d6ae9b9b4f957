//! The crate's one error type.
//!
//! Every refusal of a document names where it happened: the statement index
//! (0-based, in document order) and, for a resource, its index within the
//! statement. Messages are lower-case and never echo more than a short,
//! truncated piece of the offending input.

/// Why a policy document was refused, or could not be compiled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The text is not a well-formed document (bad JSON, wrong types,
    /// missing or unknown fields).
    #[error("malformed policy document")]
    Malformed(#[source] serde_json::Error),
    #[error("unsupported policy version {version} (expected 1)")]
    UnsupportedVersion { version: u64 },
    #[error("policy name {reason}")]
    BadName { reason: &'static str },
    #[error("a policy needs at least one statement")]
    NoStatements,
    #[error("too many statements (at most {max})")]
    TooManyStatements { max: usize },
    #[error("statement {statement}: unknown effect {effect:?} (expected \"allow\" or \"deny\")")]
    UnknownEffect { statement: usize, effect: String },
    #[error("statement {statement}: unknown action {action:?} (expected connect, publish, subscribe or receive)")]
    UnknownAction { statement: usize, action: String },
    #[error("statement {statement}: no actions")]
    NoActions { statement: usize },
    #[error("statement {statement}: too many actions (at most {max})")]
    TooManyActions { statement: usize, max: usize },
    #[error("statement {statement}: no resources")]
    NoResources { statement: usize },
    #[error("statement {statement}: too many resources (at most {max})")]
    TooManyResources { statement: usize, max: usize },
    #[error("statement {statement}, resource {resource}: {reason}")]
    BadResource {
        statement: usize,
        resource: usize,
        reason: ResourceProblem,
    },
    #[error("compiled policy would have more than {max} rules")]
    TooManyRules { max: usize },
}

/// What is wrong with one resource filter of a statement.
///
/// Kept as a plain value (not a second error enum) so [`PolicyError`] stays
/// the crate's only error type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceProblem {
    Empty,
    TooLong {
        max: usize,
    },
    TooDeep {
        max: usize,
    },
    Nul,
    UnterminatedVariable,
    /// The variable name, truncated.
    UnknownVariable(String),
    /// `+` or `#` shares a level with other characters or a variable.
    WildcardNotWholeLevel,
    /// `#` is not the last level.
    MultiWildcardNotLast,
    /// `$share/...` is a subscription request form, not a resource.
    SharedSubscription,
}

impl std::fmt::Display for ResourceProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Empty => f.write_str("empty topic filter"),
            Self::TooLong { max } => write!(f, "topic filter longer than {max} bytes"),
            Self::TooDeep { max } => write!(f, "topic filter deeper than {max} levels"),
            Self::Nul => f.write_str("topic filter contains NUL"),
            Self::UnterminatedVariable => f.write_str("unterminated \"${\" variable"),
            Self::UnknownVariable(name) => write!(
                f,
                "unknown variable \"${{{name}}}\" (expected device.id, device.group or device.attr.NAME with NAME of letters, digits, '_' or '-')"
            ),
            Self::WildcardNotWholeLevel => {
                f.write_str("'+' and '#' must each occupy a whole topic level")
            }
            Self::MultiWildcardNotLast => f.write_str("'#' must be the last topic level"),
            Self::SharedSubscription => {
                f.write_str("'$share/' filters are not resources; name the topic filter itself")
            }
        }
    }
}

/// Truncates user input echoed in an error to a bounded, char-aligned prefix.
pub(crate) fn excerpt(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
