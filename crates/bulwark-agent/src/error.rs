//! The agent library's one error type.
//!
//! Messages are lower-case, name the file or command involved and never
//! contain a secret (key, PIN, enrollment token). Sources are kept so the
//! binary can print the whole chain.

use std::path::PathBuf;

/// Everything that can go wrong in the agent library.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The configuration file cannot be read or parsed.
    #[error("cannot load the configuration {}", .path.display())]
    ConfigLoad {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The configuration parsed but is not usable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A file or directory operation failed.
    #[error("{what} {}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file holding a secret may be read by other users.
    #[error(
        "{} has mode {mode:03o}: a file holding a {what} must not be readable by group or others (chmod 600 it, or delete it to start over)",
        .path.display()
    )]
    InsecurePermissions {
        what: &'static str,
        path: PathBuf,
        mode: u32,
    },
    /// A secret (PIN, token) could not be obtained.
    #[error("{0}")]
    Secret(String),
    /// Generating, loading or using the device key failed.
    #[error("device key: {what}")]
    Key {
        what: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A PKCS#11 call failed.
    #[cfg(feature = "pkcs11")]
    #[error("pkcs#11: {what}")]
    Pkcs11 {
        what: String,
        #[source]
        source: Option<cryptoki::error::Error>,
    },
    /// An EST exchange with the server failed.
    #[error("est {op} failed")]
    Est {
        op: &'static str,
        #[source]
        source: Box<bulwark_client::ClientError>,
    },
    /// A certificate is malformed or does not fit the device key.
    #[error("certificate: {0}")]
    Certificate(String),
    /// Enrollment is needed but no credential is configured, or similar.
    #[error("enrollment: {0}")]
    Enrollment(String),
    /// Building the TLS configuration failed.
    #[error("tls: {what}")]
    Tls {
        what: &'static str,
        #[source]
        source: rustls::Error,
    },
    /// A JSON state file is corrupt or cannot be encoded.
    #[error("state file {} is not valid", .path.display())]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A configured command failed, timed out or could not be started.
    #[error("command {program:?} {reason}")]
    Command { program: String, reason: String },
    /// A slot operation was refused.
    #[error("slots: {0}")]
    Slot(String),
    /// An update was refused or cannot proceed.
    #[error("update: {0}")]
    Update(String),
    /// The update verifier refused the release or its download (the
    /// message names the attack or mismatch: wrong hardware, below floor,
    /// hash mismatch, expired metadata, ...).
    #[error(transparent)]
    Ota(#[from] bulwark_ota::OtaError),
    /// The update repository could not be reached or answered badly.
    #[error("update repository: {what}")]
    Repository {
        what: String,
        #[source]
        source: Option<reqwest::Error>,
    },
    /// An update instruction from the server is malformed.
    #[error("invalid update instruction: {0}")]
    Instruction(String),
    /// The MQTT link refused a request or has stopped.
    #[error("mqtt link: {what}")]
    Link {
        what: &'static str,
        #[source]
        source: crate::link::LinkError,
    },
    /// A report could not be encoded as JSON.
    #[error("cannot encode a report for {topic} as json")]
    Encode {
        topic: String,
        #[source]
        source: serde_json::Error,
    },
    /// Reading `/proc` failed.
    #[error("posture: cannot read {}", .path.display())]
    Posture {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl AgentError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// Maps a client error of the EST call `op`.
    pub(crate) fn est(op: &'static str) -> impl FnOnce(bulwark_client::ClientError) -> Self {
        move |source| Self::Est {
            op,
            source: Box::new(source),
        }
    }

    pub(crate) fn key(what: impl Into<String>) -> Self {
        Self::Key {
            what: what.into(),
            source: None,
        }
    }

    pub(crate) fn key_with(
        what: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::Key {
            what: what.into(),
            source: Some(Box::new(source)),
        }
    }
}
