//! Entries, their hashes, and the in-memory head of the chain.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The `prev_hash` of the first entry.
pub const GENESIS: Hash = [0u8; 32];

/// One persisted audit entry. `event` is the exact JSON text that was hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub ts: String,
    pub actor: String,
    pub event: String,
    #[serde(with = "hex_hash")]
    pub prev_hash: Hash,
    #[serde(with = "hex_hash")]
    pub hash: Hash,
}

/// A signed statement "the entry at `seq` has hash `hash`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    #[serde(with = "hex_hash")]
    pub hash: Hash,
    pub ts: String,
    #[serde(with = "hex::serde")]
    pub signature: Vec<u8>,
}

fn put(h: &mut Sha256, field: &[u8]) {
    h.update((field.len() as u64).to_be_bytes());
    h.update(field);
}

/// The hash of an entry: domain tag, then every field length-prefixed, so no
/// two different entries can produce the same input.
pub fn entry_hash(prev: &Hash, seq: u64, ts: &str, actor: &str, event: &str) -> Hash {
    let mut h = Sha256::new();
    put(&mut h, b"bulwark-audit-entry-v1");
    put(&mut h, prev);
    put(&mut h, &seq.to_be_bytes());
    put(&mut h, ts.as_bytes());
    put(&mut h, actor.as_bytes());
    put(&mut h, event.as_bytes());
    h.finalize().into()
}

/// The bytes an audit key signs for a checkpoint.
pub fn checkpoint_message(seq: u64, hash: &Hash, ts: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(64 + ts.len());
    m.extend_from_slice(b"bulwark-audit-checkpoint-v1\0");
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(ts.as_bytes());
    m
}

/// The head of the chain, owned by the single writer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    /// Sequence number of the last entry (0 when empty).
    pub last_seq: u64,
    /// Hash of the last entry ([`GENESIS`] when empty).
    pub last_hash: Hash,
}

impl Default for Chain {
    fn default() -> Self {
        Self {
            last_seq: 0,
            last_hash: GENESIS,
        }
    }
}

impl Chain {
    /// Builds the next entry and advances the head.
    pub fn append(&mut self, ts: String, actor: String, event: String) -> Entry {
        let seq = self.last_seq + 1;
        let hash = entry_hash(&self.last_hash, seq, &ts, &actor, &event);
        let entry = Entry {
            seq,
            ts,
            actor,
            event,
            prev_hash: self.last_hash,
            hash,
        };
        self.last_seq = seq;
        self.last_hash = hash;
        entry
    }
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(h))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(s).map_err(serde::de::Error::custom)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("hash must be 32 bytes"))
    }
}
