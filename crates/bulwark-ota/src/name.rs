//! Validated names: [`TargetName`] (an artifact's name in the repository)
//! and the shared allow-list check also used for hardware models.
//!
//! A name is a single path component from a conservative allow-list,
//! `[A-Za-z0-9._-]`, 1..=128 bytes, not starting with `.` or `-`, and with
//! no `..` anywhere. Everything else is refused with a specific
//! [`NameRejection`]: separators (`/`, `\`), absolute and drive paths,
//! NUL and control characters, `%` (so no percent-encoded traversal can
//! survive a later decoding step), and any non-ASCII character (so no
//! Unicode look-alike of `.` or `/`). A valid name can be joined to a
//! directory without escaping it, on any platform the agent runs on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::OtaError;

/// The longest target name, in bytes.
pub const MAX_TARGET_NAME_LEN: usize = 128;

/// Why a name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRejection {
    Empty,
    TooLong,
    NotUtf8,
    Nul,
    ControlChar,
    Absolute,
    DotDot,
    Slash,
    Backslash,
    Percent,
    NonAscii,
    OtherChar,
    LeadingDot,
    LeadingDash,
}

impl NameRejection {
    pub fn as_str(self) -> &'static str {
        match self {
            NameRejection::Empty => "empty",
            NameRejection::TooLong => "too long",
            NameRejection::NotUtf8 => "not UTF-8",
            NameRejection::Nul => "contains NUL",
            NameRejection::ControlChar => "contains a control character",
            NameRejection::Absolute => "absolute path",
            NameRejection::DotDot => "contains `..` (path traversal)",
            NameRejection::Slash => "contains `/`",
            NameRejection::Backslash => "contains `\\`",
            NameRejection::Percent => "contains `%` (encoded form)",
            NameRejection::NonAscii => "contains a non-ASCII character",
            NameRejection::OtherChar => "contains a character outside [A-Za-z0-9._-]",
            NameRejection::LeadingDot => "starts with `.`",
            NameRejection::LeadingDash => "starts with `-`",
        }
    }
}

impl fmt::Display for NameRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks `s` against the allow-list with a maximum length of `max` bytes.
pub(crate) fn check_name(s: &str, max: usize) -> Result<(), NameRejection> {
    let bytes = s.as_bytes();
    if bytes.is_empty() {
        return Err(NameRejection::Empty);
    }
    if bytes.len() > max {
        return Err(NameRejection::TooLong);
    }
    if bytes.contains(&0) {
        return Err(NameRejection::Nul);
    }
    if s.chars().any(char::is_control) {
        return Err(NameRejection::ControlChar);
    }
    let drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if bytes[0] == b'/' || bytes[0] == b'\\' || drive {
        return Err(NameRejection::Absolute);
    }
    if s.contains("..") {
        return Err(NameRejection::DotDot);
    }
    for c in s.chars() {
        match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '.' | '_' | '-' => {}
            '/' => return Err(NameRejection::Slash),
            '\\' => return Err(NameRejection::Backslash),
            '%' => return Err(NameRejection::Percent),
            c if !c.is_ascii() => return Err(NameRejection::NonAscii),
            _ => return Err(NameRejection::OtherChar),
        }
    }
    match bytes[0] {
        b'.' => Err(NameRejection::LeadingDot),
        b'-' => Err(NameRejection::LeadingDash),
        _ => Ok(()),
    }
}

/// The name of an artifact in the repository; safe to use as a file name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetName(String);

impl TargetName {
    /// Validates `s` as a target name.
    pub fn new(s: &str) -> Result<Self, OtaError> {
        check_name(s, MAX_TARGET_NAME_LEN).map_err(OtaError::InvalidName)?;
        Ok(TargetName(s.to_owned()))
    }

    /// Validates raw bytes (from a URL path or a fuzzer) as a target name.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OtaError> {
        let s = std::str::from_utf8(bytes)
            .map_err(|_| OtaError::InvalidName(NameRejection::NotUtf8))?;
        TargetName::new(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The same name as tough's type (always equal to its resolved form).
    pub fn to_tough(&self) -> Result<tough::TargetName, OtaError> {
        Ok(tough::TargetName::new(self.0.as_str())?)
    }

    /// Validates the raw form of a name found in TUF metadata.
    pub fn from_tough(name: &tough::TargetName) -> Result<Self, OtaError> {
        TargetName::new(name.raw())
    }
}

impl fmt::Display for TargetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TargetName {
    type Err = OtaError;

    fn from_str(s: &str) -> Result<Self, OtaError> {
        TargetName::new(s)
    }
}

impl AsRef<str> for TargetName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for TargetName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TargetName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        TargetName::new(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[path = "name_tests.rs"]
mod tests;
