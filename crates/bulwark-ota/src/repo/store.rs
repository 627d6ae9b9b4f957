//! The artifact store: uploads streamed to a temp file while hashed, then
//! renamed to `artifacts/<sha256-hex>`. Identical content is stored once;
//! a stored blob is read-only and never rewritten.

use std::fmt;
use std::io::{Read, Write};
use std::path::PathBuf;

use aws_lc_rs::digest::{Context, SHA256};
use tempfile::NamedTempFile;

use super::fsio::{set_mode, sync_dir};
use super::Repository;
use crate::error::OtaError;
use crate::name::TargetName;

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 lower-case hex digits (the only form used in file names).
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Sha256(out))
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Sha256)
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sha256({})", self.to_hex())
    }
}

/// An artifact in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredArtifact {
    pub sha256: Sha256,
    pub length: u64,
}

const CHUNK: usize = 64 * 1024;

impl Repository {
    /// Streams an upload into the store, refusing it once it passes
    /// `max_len` bytes. Never holds the whole artifact in memory.
    pub fn store_artifact(
        &self,
        reader: impl Read,
        max_len: u64,
    ) -> Result<StoredArtifact, OtaError> {
        let tmp_dir = self.tmp();
        let mut tmp = NamedTempFile::new_in(&tmp_dir).map_err(OtaError::io(&tmp_dir))?;
        let mut reader = reader.take(max_len.saturating_add(1));
        let mut digest = Context::new(&SHA256);
        let mut length: u64 = 0;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(OtaError::io(tmp.path())(e)),
            };
            length += n as u64;
            if length > max_len {
                // Dropping `tmp` deletes the partial upload.
                return Err(OtaError::ArtifactTooLarge { max: max_len });
            }
            digest.update(&buf[..n]);
            tmp.write_all(&buf[..n]).map_err(OtaError::io(tmp.path()))?;
        }
        tmp.as_file().sync_all().map_err(OtaError::io(tmp.path()))?;
        let sha256 = Sha256::from_slice(digest.finish().as_ref()).ok_or_else(|| {
            OtaError::malformed("artifact digest", "sha-256 output is not 32 bytes")
        })?;
        let stored = StoredArtifact { sha256, length };
        let dest = self.blob_path(&sha256);
        if self.has_artifact(&stored)? {
            return Ok(stored);
        }
        set_mode(tmp.as_file(), 0o444).map_err(OtaError::io(tmp.path()))?;
        match tmp.persist_noclobber(&dest) {
            Ok(_) => {}
            // Stored concurrently by another upload of the same content.
            Err(e) if self.has_artifact(&stored)? => drop(e),
            Err(e) => return Err(OtaError::io(&dest)(e.error)),
        }
        sync_dir(&self.artifacts())?;
        Ok(stored)
    }

    pub(crate) fn blob_path(&self, sha256: &Sha256) -> PathBuf {
        self.artifacts().join(sha256.to_hex())
    }

    /// Whether the store holds this content with this length.
    pub fn has_artifact(&self, artifact: &StoredArtifact) -> Result<bool, OtaError> {
        let path = self.blob_path(&artifact.sha256);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => {
                if m.len() == artifact.length {
                    Ok(true)
                } else {
                    Err(OtaError::HashMismatch {
                        what: format!("stored artifact {} (length changed)", artifact.sha256),
                        source: None,
                    })
                }
            }
            Ok(_) => Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(OtaError::io(path)(e)),
        }
    }

    /// Makes `targets/<sha256>.<name>` a hard link to the blob (the
    /// consistent-snapshot file name a TUF client fetches).
    pub(crate) fn link_target(
        &self,
        name: &TargetName,
        artifact: &StoredArtifact,
    ) -> Result<(), OtaError> {
        let link = self
            .targets_dir()
            .join(format!("{}.{}", artifact.sha256, name));
        if std::fs::symlink_metadata(&link).is_ok() {
            return Ok(());
        }
        let blob = self.blob_path(&artifact.sha256);
        match std::fs::hard_link(&blob, &link) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(OtaError::io(link)(e)),
        }
    }

    pub(crate) fn sync_targets_dir(&self) -> Result<(), OtaError> {
        sync_dir(&self.targets_dir())
    }
}
