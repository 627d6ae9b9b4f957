//! Publishing: the next targets metadata (unsigned, for offline signing),
//! accepting signed targets, signing snapshot and timestamp with the online
//! keys, the one-step publish of dev mode, and the periodic re-signing.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::time::{Duration, SystemTime};

use aws_lc_rs::digest::{digest, SHA256};
use tough::schema::{Hashes, Metafile, Role, Signed, Snapshot, Target, Targets, Timestamp};

use super::fsio::{write_atomic, Replace};
use super::{expiry, to_jiff, Current, OnlineKeys, Repository, StoredArtifact, SPEC_VERSION};
use crate::custom::ReleaseInfo;
use crate::error::{MetadataRole, OtaError};
use crate::keys::SigningKey;
use crate::name::TargetName;
use crate::repo::store::Sha256;
use crate::sign::{canonical, file_bytes, sign_role};

/// A release to add to the targets.
#[derive(Debug, Clone)]
pub struct NewTarget {
    pub name: TargetName,
    pub artifact: StoredArtifact,
    pub release: ReleaseInfo,
}

/// The versions written by a publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub targets: u64,
    pub snapshot: u64,
    pub timestamp: u64,
}

/// What [`Repository::refresh`] re-signed (new versions), and when the
/// offline roles expire, so the server can warn the operator in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    pub snapshot: Option<u64>,
    pub timestamp: Option<u64>,
    pub targets_expires: Option<SystemTime>,
    pub root_expires: SystemTime,
}

fn next(v: Option<NonZeroU64>) -> NonZeroU64 {
    v.and_then(|v| v.checked_add(1)).unwrap_or(NonZeroU64::MIN)
}

pub(crate) fn metafile(bytes: &[u8], version: NonZeroU64) -> Metafile {
    Metafile {
        length: Some(bytes.len() as u64),
        hashes: Some(Hashes {
            sha256: digest(&SHA256, bytes).as_ref().to_vec().into(),
            _extra: HashMap::new(),
        }),
        version,
        _extra: HashMap::new(),
    }
}

fn remaining(expires: jiff::Timestamp, now: SystemTime) -> Duration {
    SystemTime::from(expires)
        .duration_since(now)
        .unwrap_or(Duration::ZERO)
}

impl Repository {
    /// The next targets metadata: the current targets with `add` added and
    /// `remove` removed, version + 1, expiring after the configured time.
    /// Returns the canonical JSON bytes of the unsigned `signed` object, to
    /// be signed offline with [`crate::sign_targets_metadata`].
    pub fn next_targets(
        &self,
        add: &[NewTarget],
        remove: &[TargetName],
        now: SystemTime,
    ) -> Result<Vec<u8>, OtaError> {
        let current = self.current()?;
        let targets = self.build_targets(&current, add, remove, now)?;
        canonical(&targets)
    }

    fn build_targets(
        &self,
        current: &Current,
        add: &[NewTarget],
        remove: &[TargetName],
        now: SystemTime,
    ) -> Result<Targets, OtaError> {
        let mut targets = current
            .targets
            .as_ref()
            .map(|t| t.signed.targets.clone())
            .unwrap_or_default();
        for name in remove {
            if targets.remove(&name.to_tough()?).is_none() {
                return Err(OtaError::UnknownTarget {
                    name: name.to_string(),
                });
            }
        }
        for t in add {
            if !self.has_artifact(&t.artifact)? {
                return Err(OtaError::ArtifactMissing {
                    sha256: t.artifact.sha256.to_hex(),
                    length: t.artifact.length,
                });
            }
            let target = Target {
                length: t.artifact.length,
                hashes: Hashes {
                    sha256: t.artifact.sha256.0.to_vec().into(),
                    _extra: HashMap::new(),
                },
                custom: t.release.to_custom(),
                _extra: HashMap::new(),
            };
            let name = t.name.to_tough()?;
            if let Some(old) = targets.get(&name) {
                if old.length != target.length || old.hashes.sha256 != target.hashes.sha256 {
                    return Err(OtaError::TargetImmutable {
                        name: t.name.to_string(),
                    });
                }
            }
            targets.insert(name, target);
        }
        Ok(Targets {
            spec_version: SPEC_VERSION.into(),
            version: next(current.targets.as_ref().map(|t| t.signed.version)),
            expires: expiry(now, self.expiries.targets)?,
            targets,
            delegations: None,
            _extra: HashMap::new(),
        })
    }

    /// Accepts targets metadata signed offline: it must be signed by a
    /// threshold of the current root's targets keys, be exactly the next
    /// version, expire in the future, have no delegations, and every target
    /// must have a valid name, valid release fields and be in the store with
    /// the same length and hash. Then writes targets, snapshot and timestamp.
    pub fn accept_signed_targets(
        &self,
        signed: &[u8],
        keys: &OnlineKeys,
        now: SystemTime,
    ) -> Result<Published, OtaError> {
        let signed: Signed<Targets> = serde_json::from_slice(signed)
            .map_err(|e| OtaError::malformed("targets metadata", e))?;
        let _guard = self.lock();
        let current = self.current()?;
        self.check_targets(&current, &signed, now)?;
        self.write_publication(&current, &signed, keys, now)
    }

    /// Dev mode: builds, signs (targets key online too) and publishes.
    pub fn publish(
        &self,
        add: &[NewTarget],
        remove: &[TargetName],
        targets_keys: &[&SigningKey],
        keys: &OnlineKeys,
        now: SystemTime,
    ) -> Result<Published, OtaError> {
        let _guard = self.lock();
        let current = self.current()?;
        let targets = self.build_targets(&current, add, remove, now)?;
        let signed = sign_role(targets, targets_keys)?;
        self.check_targets(&current, &signed, now)?;
        self.write_publication(&current, &signed, keys, now)
    }

    fn check_targets(
        &self,
        current: &Current,
        signed: &Signed<Targets>,
        now: SystemTime,
    ) -> Result<(), OtaError> {
        let role = MetadataRole::Targets;
        current
            .root
            .signed
            .verify_role(signed)
            .map_err(|e| OtaError::BadSignature {
                role,
                source: Some(Box::new(e)),
            })?;
        let t = &signed.signed;
        let expected = next(current.targets.as_ref().map(|t| t.signed.version));
        if t.version != expected {
            return Err(OtaError::refused(
                role,
                format!("version {} is not the next version {expected}", t.version),
            ));
        }
        if !t.spec_version.starts_with("1.") {
            return Err(OtaError::refused(role, "unsupported spec_version"));
        }
        if t.expires <= to_jiff(now)? {
            return Err(OtaError::Expired { role, source: None });
        }
        if t.delegations
            .as_ref()
            .is_some_and(|d| !d.roles.is_empty() || !d.keys.is_empty())
        {
            return Err(OtaError::refused(role, "delegations are not supported"));
        }
        let old = current.targets.as_ref().map(|c| &c.signed.targets);
        for (name, target) in &t.targets {
            let ours = TargetName::from_tough(name)?;
            ReleaseInfo::from_custom(&target.custom)?;
            let sha256 = Sha256::from_slice(&target.hashes.sha256).ok_or_else(|| {
                OtaError::refused(role, format!("target {ours}: sha256 is not 32 bytes"))
            })?;
            let artifact = StoredArtifact {
                sha256,
                length: target.length,
            };
            if !self.has_artifact(&artifact)? {
                return Err(OtaError::ArtifactMissing {
                    sha256: sha256.to_hex(),
                    length: target.length,
                });
            }
            if let Some(prev) = old.and_then(|o| o.get(name)) {
                if prev.length != target.length || prev.hashes.sha256 != target.hashes.sha256 {
                    return Err(OtaError::TargetImmutable {
                        name: ours.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Links the target files, then writes targets → snapshot → timestamp.
    fn write_publication(
        &self,
        current: &Current,
        signed: &Signed<Targets>,
        keys: &OnlineKeys,
        now: SystemTime,
    ) -> Result<Published, OtaError> {
        let targets_bytes = file_bytes(signed)?;
        let version = signed.signed.version;
        let snapshot = self.build_snapshot(current, metafile(&targets_bytes, version), now)?;
        let (snapshot, snapshot_bytes) = self.sign_online(current, snapshot, &keys.snapshot)?;
        let timestamp =
            self.build_timestamp(current, &snapshot_bytes, snapshot.signed.version, now)?;
        let (timestamp, timestamp_bytes) = self.sign_online(current, timestamp, &keys.timestamp)?;
        // Written only after everything is signed and verified: target
        // files first, then the metadata naming them.
        for (name, target) in &signed.signed.targets {
            let sha256 = Sha256::from_slice(&target.hashes.sha256).ok_or_else(|| {
                OtaError::refused(MetadataRole::Targets, "sha256 is not 32 bytes")
            })?;
            let artifact = StoredArtifact {
                sha256,
                length: target.length,
            };
            self.link_target(&TargetName::from_tough(name)?, &artifact)?;
        }
        self.sync_targets_dir()?;
        let dir = self.served();
        write_atomic(
            &dir,
            &signed.signed.filename(true),
            &targets_bytes,
            Replace::Allowed,
        )?;
        write_atomic(
            &dir,
            &snapshot.signed.filename(true),
            &snapshot_bytes,
            Replace::Allowed,
        )?;
        write_atomic(&dir, "timestamp.json", &timestamp_bytes, Replace::Allowed)?;
        Ok(Published {
            targets: version.get(),
            snapshot: snapshot.signed.version.get(),
            timestamp: timestamp.signed.version.get(),
        })
    }

    fn build_snapshot(
        &self,
        current: &Current,
        targets_meta: Metafile,
        now: SystemTime,
    ) -> Result<Snapshot, OtaError> {
        let mut snapshot = Snapshot::new(
            SPEC_VERSION.into(),
            next(current.snapshot.as_ref().map(|s| s.signed.version)),
            expiry(now, self.expiries.snapshot)?,
        );
        snapshot.meta.insert("targets.json".into(), targets_meta);
        Ok(snapshot)
    }

    fn build_timestamp(
        &self,
        current: &Current,
        snapshot_bytes: &[u8],
        snapshot_version: NonZeroU64,
        now: SystemTime,
    ) -> Result<Timestamp, OtaError> {
        let mut timestamp = Timestamp::new(
            SPEC_VERSION.into(),
            next(current.timestamp.as_ref().map(|t| t.signed.version)),
            expiry(now, self.expiries.timestamp)?,
        );
        timestamp.meta.insert(
            "snapshot.json".into(),
            metafile(snapshot_bytes, snapshot_version),
        );
        Ok(timestamp)
    }

    /// Signs with the online keys and checks the result against the root,
    /// so a wrong or missing online key fails before anything is written.
    fn sign_online<T: Role>(
        &self,
        current: &Current,
        role: T,
        keys: &[SigningKey],
    ) -> Result<(Signed<T>, Vec<u8>), OtaError> {
        let refs: Vec<&SigningKey> = keys.iter().collect();
        let signed = sign_role(role, &refs)?;
        current
            .root
            .signed
            .verify_role(&signed)
            .map_err(|e| OtaError::BadSignature {
                role: T::TYPE.into(),
                source: Some(Box::new(e)),
            })?;
        let bytes = file_bytes(&signed)?;
        Ok((signed, bytes))
    }

    /// Re-signs snapshot and timestamp when less than half of their
    /// lifetime is left (or when the root no longer accepts their
    /// signatures, after a key rotation). The server calls this
    /// periodically, more often than half the timestamp lifetime.
    pub fn refresh(&self, keys: &OnlineKeys, now: SystemTime) -> Result<Refreshed, OtaError> {
        let _guard = self.lock();
        let current = self.current()?;
        let root = &current.root.signed;
        let mut out = Refreshed {
            snapshot: None,
            timestamp: None,
            targets_expires: current.targets.as_ref().map(|t| t.signed.expires.into()),
            root_expires: root.expires.into(),
        };
        let (Some(snapshot), Some(timestamp)) = (&current.snapshot, &current.timestamp) else {
            return Ok(out);
        };
        let snapshot_due = remaining(snapshot.signed.expires, now) < self.expiries.snapshot / 2
            || root.verify_role(snapshot).is_err();
        let timestamp_due = snapshot_due
            || remaining(timestamp.signed.expires, now) < self.expiries.timestamp / 2
            || root.verify_role(timestamp).is_err();
        if !timestamp_due {
            return Ok(out);
        }
        let dir = self.served();
        let (snapshot_version, snapshot_bytes) = if snapshot_due {
            let meta = snapshot
                .signed
                .meta
                .get("targets.json")
                .cloned()
                .ok_or_else(|| OtaError::refused(MetadataRole::Snapshot, "no targets.json meta"))?;
            let new = self.build_snapshot(&current, meta, now)?;
            let (signed, bytes) = self.sign_online(&current, new, &keys.snapshot)?;
            write_atomic(
                &dir,
                &signed.signed.filename(true),
                &bytes,
                Replace::Allowed,
            )?;
            out.snapshot = Some(signed.signed.version.get());
            (signed.signed.version, bytes)
        } else {
            let version = snapshot.signed.version;
            let path = dir.join(format!("{version}.snapshot.json"));
            (version, std::fs::read(&path).map_err(OtaError::io(path))?)
        };
        let new = self.build_timestamp(&current, &snapshot_bytes, snapshot_version, now)?;
        let (signed, bytes) = self.sign_online(&current, new, &keys.timestamp)?;
        write_atomic(&dir, "timestamp.json", &bytes, Replace::Allowed)?;
        out.timestamp = Some(signed.signed.version.get());
        Ok(out)
    }
}
