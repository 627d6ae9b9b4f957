//! Bulwark OTA: the update repository (server side) and its verifier
//! (device side), on TUF 1.0 through the `tough` crate.
//!
//! - [`name`]: validated target names ([`TargetName`]), the first line
//!   against path traversal.
//! - [`custom`]: the release fields in each target's `custom` object
//!   (hardware models, version, anti-rollback floor).
//! - [`keys`]: Ed25519 PKCS#8 signing keys and TUF key ids.
//! - [`sign`]: signing metadata, including offline (`bulwark ota sign`).
//! - [`repo`]: the server's repository directory: artifact store,
//!   publication, re-signing, root rotation, and path resolution for serving.
//! - [`client`]: the device's verifier: tough's client, device checks,
//!   resumable verified download, HTTPS (mTLS) transport.
//! - `rollout`: the rollout state machine.
//!
//! No sockets except the HTTPS transport, no database, no runtime spawning.

pub mod client;
pub mod custom;
pub mod error;
pub mod keys;
pub mod name;
pub mod repo;
pub mod rollout;
pub mod sign;

pub use client::{
    Device, FsRangeFetch, HttpsTransport, RangeFetch, UpdateCandidate, UpdateClient,
    VerifiedArtifact,
};
pub use custom::{HardwareModel, ReleaseInfo};
pub use error::{MetadataRole, OtaError};
pub use keys::{KeyId, PublicKey, SigningKey};
pub use name::TargetName;
pub use repo::{
    Expiries, NewTarget, OnlineKeys, Published, Refreshed, RepoStatus, Repository, RootSpec,
    Sha256, StoredArtifact,
};
pub use sign::{
    describe_root, describe_targets, sign_root_metadata, sign_targets_metadata, RoleSummary,
    RootSummary,
};
/// The TUF library and URL type of this crate's API (transports, schema).
pub use {tough, url};

#[cfg(test)]
mod tests;
