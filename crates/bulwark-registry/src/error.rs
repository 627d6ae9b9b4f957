//! The domain's error type; the API maps it to HTTP in one place.

use bulwark_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The credential was missing, unknown, expired or revoked.
    #[error("{0}")]
    Unauthenticated(String),
    /// Authenticated, but the role may not do this.
    #[error("role {role} may not {action}")]
    Forbidden { role: String, action: &'static str },
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    /// The request itself is wrong (bad CSR, weak key, bad field).
    #[error("{0}")]
    Invalid(String),
    /// The request conflicts with what exists (a built-in policy's name).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("certificate authority failure")]
    Ca(#[from] bulwark_ca::CaError),
}
