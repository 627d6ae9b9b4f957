//! The store's error type.

use bulwark_types::TransitionError;

/// Why a store operation failed. Variants other than `Internal` and
/// `Unavailable` describe the caller's request and map to 4xx answers.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("{what} already exists")]
    AlreadyExists { what: &'static str },
    #[error("group {0} does not exist")]
    NoSuchGroup(String),
    #[error("enrollment token is not valid")]
    TokenInvalid,
    #[error("enrollment token has already been used")]
    TokenUsed,
    #[error("enrollment token has expired")]
    TokenExpired,
    #[error("device {device} belongs to group {actual}, not {expected}")]
    GroupMismatch {
        device: String,
        expected: String,
        actual: String,
    },
    #[error("device {0} is already enrolled")]
    AlreadyEnrolled(String),
    #[error("device {device} is {state} and may not do this")]
    DeviceState { device: String, state: String },
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("certificate {0} is revoked")]
    CertificateRevoked(String),
    #[error("certificate {0} has expired")]
    CertificateExpired(String),
    #[error("certificate {0} was not issued to this device")]
    CertificateMismatch(String),
    #[error("certificate {0} is already revoked")]
    AlreadyRevoked(String),
    #[error("operator token {0} is already revoked")]
    TokenAlreadyRevoked(String),
    /// The request conflicts with what exists; the message says how.
    #[error("{0}")]
    Conflict(String),
    /// A manufacturer certificate may not speak for this device, or a
    /// device bound to a manufacturer CA may not enroll otherwise.
    #[error("{0}")]
    ManufacturerBinding(String),
    #[error("policy {policy} is attached to {attachments}; detach it first")]
    PolicyInUse { policy: String, attachments: String },
    #[error("the store is shutting down")]
    Unavailable,
    #[error("store failure: {0}")]
    Internal(String),
    #[error("database error")]
    Sqlite(#[from] rusqlite::Error),
}

impl StoreError {
    pub(crate) fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }
}
