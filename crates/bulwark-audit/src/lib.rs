//! The tamper-evident audit log, without storage.
//!
//! Every entry carries the SHA-256 of the entry before it, so editing,
//! removing or reordering an entry breaks the chain from that point on.
//! Periodically the single writer signs a *checkpoint* (sequence number and
//! entry hash) with a dedicated Ed25519 audit key; a checkpoint pins the
//! chain up to its sequence number, so a rewritten chain or a log truncated
//! after a checkpoint is detected even if every hash was recomputed.
//!
//! This crate is pure: the store persists entries, the server owns the key.

mod chain;
mod event;
mod verify;

pub use chain::{checkpoint_message, entry_hash, Chain, Checkpoint, Entry, Hash, GENESIS};
pub use event::{Actor, AuditEvent, EnrollMethod};
pub use verify::{verify, VerifyError, VerifyReport};
