//! Offline verification of a whole log against its signed checkpoints.

use std::collections::BTreeMap;

use aws_lc_rs::signature::{UnparsedPublicKey, ED25519};

use crate::chain::{checkpoint_message, entry_hash, Checkpoint, Entry, Hash, GENESIS};

/// The first problem found in a log. `seq` names the first bad entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("entry {seq}: missing or out of order (found entry {found} where {seq} was expected)")]
    Gap { seq: u64, found: u64 },
    #[error("entry {seq}: modified (its content does not match its hash)")]
    Modified { seq: u64 },
    #[error("entry {seq}: chain broken (its prev_hash is not the hash of entry {prev})", prev = seq - 1)]
    Broken { seq: u64 },
    #[error("entry {seq}: does not match the signed checkpoint at {seq} (the log was rewritten)")]
    CheckpointMismatch { seq: u64 },
    #[error("checkpoint at entry {seq}: bad signature")]
    BadCheckpointSignature { seq: u64 },
    #[error(
        "log truncated: a signed checkpoint covers entry {seq} but the log ends at entry {last}"
    )]
    Truncated { seq: u64, last: u64 },
}

impl VerifyError {
    /// The sequence number of the first bad entry.
    pub fn seq(&self) -> u64 {
        match self {
            Self::Gap { seq, .. }
            | Self::Modified { seq }
            | Self::Broken { seq }
            | Self::CheckpointMismatch { seq }
            | Self::BadCheckpointSignature { seq } => *seq,
            Self::Truncated { last, .. } => last + 1,
        }
    }
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub entries: u64,
    pub checkpoints: u64,
    /// Sequence number of the last signed checkpoint (0 if none).
    pub last_checkpoint: u64,
    pub head: Hash,
}

/// Verifies `entries` (in storage order) against `checkpoints`, whose
/// signatures must verify under the Ed25519 `public_key`.
pub fn verify<I>(
    entries: I,
    checkpoints: &[Checkpoint],
    public_key: &[u8; 32],
) -> Result<VerifyReport, VerifyError>
where
    I: IntoIterator<Item = Entry>,
{
    let key = UnparsedPublicKey::new(&ED25519, public_key);
    let mut pinned: BTreeMap<u64, Hash> = BTreeMap::new();
    for cp in checkpoints {
        let msg = checkpoint_message(cp.seq, &cp.hash, &cp.ts);
        key.verify(&msg, &cp.signature)
            .map_err(|_| VerifyError::BadCheckpointSignature { seq: cp.seq })?;
        pinned.insert(cp.seq, cp.hash);
    }

    let mut prev = GENESIS;
    let mut last = 0u64;
    for e in entries {
        let seq = last + 1;
        if e.seq != seq {
            return Err(VerifyError::Gap { seq, found: e.seq });
        }
        if entry_hash(&e.prev_hash, e.seq, &e.ts, &e.actor, &e.event) != e.hash {
            return Err(VerifyError::Modified { seq });
        }
        if e.prev_hash != prev {
            return Err(VerifyError::Broken { seq });
        }
        if let Some(h) = pinned.get(&seq) {
            if *h != e.hash {
                return Err(VerifyError::CheckpointMismatch { seq });
            }
        }
        prev = e.hash;
        last = seq;
    }
    if let Some((&seq, _)) = pinned.range(last + 1..).next() {
        return Err(VerifyError::Truncated { seq, last });
    }
    Ok(VerifyReport {
        entries: last,
        checkpoints: checkpoints.len() as u64,
        last_checkpoint: pinned.keys().next_back().copied().unwrap_or(0),
        head: prev,
    })
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};

    use super::*;
    use crate::chain::Chain;

    struct Log {
        entries: Vec<Entry>,
        checkpoints: Vec<Checkpoint>,
        key: Ed25519KeyPair,
    }

    impl Log {
        fn new(n: u64, checkpoint_every: u64) -> Self {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
            let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
            let mut chain = Chain::default();
            let mut entries = Vec::new();
            let mut checkpoints = Vec::new();
            for i in 1..=n {
                let e = chain.append(
                    format!("2026-01-01T00:00:{i:02}Z"),
                    "system".into(),
                    format!("{{\"type\":\"test\",\"i\":{i}}}"),
                );
                if i % checkpoint_every == 0 {
                    let ts = e.ts.clone();
                    let sig = key.sign(&checkpoint_message(e.seq, &e.hash, &ts));
                    checkpoints.push(Checkpoint {
                        seq: e.seq,
                        hash: e.hash,
                        ts,
                        signature: sig.as_ref().to_vec(),
                    });
                }
                entries.push(e);
            }
            Self {
                entries,
                checkpoints,
                key,
            }
        }

        fn check(&self) -> Result<VerifyReport, VerifyError> {
            let pk: [u8; 32] = self.key.public_key().as_ref().try_into().unwrap();
            verify(self.entries.clone(), &self.checkpoints, &pk)
        }

        /// Recomputes every hash from `from` on, as an attacker with write
        /// access to the store (but not the audit key) would.
        fn rehash_from(&mut self, from: usize) {
            let mut prev = if from == 0 {
                GENESIS
            } else {
                self.entries[from - 1].hash
            };
            for e in &mut self.entries[from..] {
                e.prev_hash = prev;
                e.hash = entry_hash(&prev, e.seq, &e.ts, &e.actor, &e.event);
                prev = e.hash;
            }
        }
    }

    #[test]
    fn intact_log_verifies() {
        let log = Log::new(25, 10);
        let r = log.check().unwrap();
        assert_eq!(r.entries, 25);
        assert_eq!(r.checkpoints, 2);
        assert_eq!(r.last_checkpoint, 20);
    }

    #[test]
    fn edited_entry_is_named() {
        let mut log = Log::new(25, 10);
        log.entries[6].actor = "operator:evil".into();
        assert_eq!(log.check(), Err(VerifyError::Modified { seq: 7 }));
    }

    #[test]
    fn edited_and_rehashed_entry_caught_by_checkpoint() {
        let mut log = Log::new(25, 10);
        log.entries[6].event = "{}".into();
        log.rehash_from(6);
        assert_eq!(
            log.check(),
            Err(VerifyError::CheckpointMismatch { seq: 10 })
        );
    }

    #[test]
    fn removed_entry_is_a_gap() {
        let mut log = Log::new(25, 10);
        log.entries.remove(4);
        assert_eq!(log.check(), Err(VerifyError::Gap { seq: 5, found: 6 }));
    }

    #[test]
    fn reordered_entries_are_refused() {
        let mut log = Log::new(25, 10);
        log.entries.swap(3, 4);
        assert_eq!(log.check(), Err(VerifyError::Gap { seq: 4, found: 5 }));
        // Renumbering to hide the swap breaks the hashes instead.
        let mut log = Log::new(25, 10);
        log.entries.swap(3, 4);
        log.entries[3].seq = 4;
        log.entries[4].seq = 5;
        assert_eq!(log.check(), Err(VerifyError::Modified { seq: 4 }));
    }

    #[test]
    fn truncation_after_checkpoint_is_detected() {
        let mut log = Log::new(25, 10);
        log.entries.truncate(15);
        assert_eq!(
            log.check(),
            Err(VerifyError::Truncated { seq: 20, last: 15 })
        );
    }

    #[test]
    fn forged_checkpoint_is_refused() {
        let mut log = Log::new(25, 10);
        log.checkpoints[0].signature[0] ^= 1;
        assert_eq!(
            log.check(),
            Err(VerifyError::BadCheckpointSignature { seq: 10 })
        );
    }

    #[test]
    fn broken_link_is_named() {
        let mut log = Log::new(5, 100);
        log.entries[2].prev_hash = [7u8; 32];
        // Recompute the entry's own hash so only the link is wrong.
        let e = &mut log.entries[2];
        e.hash = entry_hash(&e.prev_hash, e.seq, &e.ts, &e.actor, &e.event);
        assert_eq!(log.check(), Err(VerifyError::Broken { seq: 3 }));
    }
}
