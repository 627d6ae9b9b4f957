//! Topic names, topic filters, shared subscriptions and matching
//! (MQTT 3.1.1 §4.7, MQTT 5 §4.7 and §4.8.2).
//!
//! [`TopicName`] is where a message is published: no wildcards.
//! [`TopicFilter`] is what a subscription asks for: `+` alone in its level,
//! `#` alone in the last level. Both are non-empty UTF-8 without U+0000 and
//! at most 65,535 bytes, checked on construction, so a value that exists is
//! well-formed. A filter of the form `$share/{group}/{filter}` is a shared
//! subscription; its group must be non-empty without `/`, `+` or `#`, and its
//! filter must be a valid non-empty filter. This rule applies whatever the
//! protocol version, so a 3.1.1 client cannot smuggle a malformed share.

use std::fmt;

/// Longest topic, in bytes (the two-byte length prefix).
pub const MAX_TOPIC_LEN: usize = u16::MAX as usize;

const SHARE_PREFIX: &str = "$share/";

/// Why a topic name or filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic is {len} bytes long, more than 65535")]
    TooLong { len: usize },
    #[error("topic contains U+0000")]
    Nul,
    #[error("topic name contains a wildcard ('+' or '#')")]
    WildcardInName,
    #[error("'#' must be alone in the last level of a topic filter")]
    MisplacedMultiLevelWildcard,
    #[error("'+' must be alone in its level of a topic filter")]
    MisplacedSingleLevelWildcard,
    #[error("shared subscription group is empty or contains '+' or '#'")]
    InvalidShareName,
    #[error("shared subscription has no topic filter after its group")]
    EmptySharedFilter,
}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong { len: s.len() });
    }
    if s.contains('\0') {
        return Err(TopicError::Nul);
    }
    Ok(())
}

/// A topic a message is published to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicName(String);

impl TopicName {
    /// Validates and wraps `s`.
    pub fn new(s: impl Into<String>) -> Result<Self, TopicError> {
        let s = s.into();
        check_common(&s)?;
        if s.contains(['+', '#']) {
            return Err(TopicError::WildcardInName);
        }
        Ok(Self(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The levels between `/` separators (empty levels included).
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Names starting with `$` are reserved for the server (`$SYS/...`) and
    /// are not matched by filters starting with a wildcard.
    pub fn is_system(&self) -> bool {
        self.0.starts_with('$')
    }
}

/// A subscription's topic filter, possibly shared.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicFilter {
    raw: String,
    /// For `$share/{group}/{filter}`: where `{filter}` starts in `raw`.
    shared_filter_start: Option<usize>,
}

/// The parts of a shared subscription `$share/{group}/{filter}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedSubscription<'a> {
    pub group: &'a str,
    pub filter: &'a str,
}

fn check_filter_levels(s: &str) -> Result<(), TopicError> {
    let mut levels = s.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') && (level != "#" || levels.peek().is_some()) {
            return Err(TopicError::MisplacedMultiLevelWildcard);
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::MisplacedSingleLevelWildcard);
        }
    }
    Ok(())
}

impl TopicFilter {
    /// Validates and wraps `s`.
    pub fn new(s: impl Into<String>) -> Result<Self, TopicError> {
        let raw = s.into();
        check_common(&raw)?;
        let shared_filter_start = match raw.strip_prefix(SHARE_PREFIX) {
            None => {
                check_filter_levels(&raw)?;
                None
            }
            Some(rest) => {
                let (group, filter) = rest.split_once('/').ok_or(TopicError::EmptySharedFilter)?;
                if group.is_empty() || group.contains(['+', '#']) {
                    return Err(TopicError::InvalidShareName);
                }
                if filter.is_empty() {
                    return Err(TopicError::EmptySharedFilter);
                }
                check_filter_levels(filter)?;
                Some(SHARE_PREFIX.len() + group.len() + 1)
            }
        };
        Ok(Self {
            raw,
            shared_filter_start,
        })
    }

    /// The filter as sent, `$share/{group}/` included.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    pub fn into_string(self) -> String {
        self.raw
    }

    /// The group and filter of a shared subscription.
    pub fn shared(&self) -> Option<SharedSubscription<'_>> {
        let start = self.shared_filter_start?;
        let group = self.raw.get(SHARE_PREFIX.len()..start.checked_sub(1)?)?;
        let filter = self.raw.get(start..)?;
        Some(SharedSubscription { group, filter })
    }

    pub fn is_shared(&self) -> bool {
        self.shared_filter_start.is_some()
    }

    /// The part matched against topic names: `{filter}` for a shared
    /// subscription, the whole filter otherwise.
    pub fn match_part(&self) -> &str {
        match self.shared_filter_start {
            Some(start) => self.raw.get(start..).unwrap_or_default(),
            None => &self.raw,
        }
    }

    /// Whether the matched part contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.match_part().contains(['+', '#'])
    }

    /// Whether this filter matches `topic`; see [`matches()`].
    pub fn matches(&self, topic: &TopicName) -> bool {
        matches(self, topic)
    }
}

/// Whether `filter` matches `topic` (MQTT 5 §4.7): levels are compared one
/// by one, `+` matches exactly one level (which may be empty), `#` matches
/// its parent level and any number of levels below, and a topic starting with
/// `$` is never matched by a filter whose first character is a wildcard.
/// Shared subscriptions match with the filter after their group.
pub fn matches(filter: &TopicFilter, topic: &TopicName) -> bool {
    let filter = filter.match_part();
    if topic.is_system() && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.as_str().split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl AsRef<str> for TopicName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for TopicFilter {
    fn as_ref(&self) -> &str {
        &self.raw
    }
}

impl std::str::FromStr for TopicName {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl std::str::FromStr for TopicFilter {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, TopicError> {
        Self::new(s)
    }
}
