//! Root metadata: creating the repository (version 1) and rotating keys
//! through new root versions. Version N+1 is accepted only when signed by a
//! threshold of version N's root keys and by a threshold of its own (TUF
//! 5.3.4), and is never overwritten once written.

use std::collections::{HashMap, HashSet};
use std::num::NonZeroU64;
use std::path::Path;
use std::sync::Mutex;
use std::time::SystemTime;

use tough::schema::decoded::{Decoded, Hex};
use tough::schema::{RoleKeys, RoleType, Root, Signed};

use super::fsio::{write_atomic, Replace};
use super::{expiry, to_jiff, Expiries, OnlineKeys, Repository, SPEC_VERSION};
use crate::error::{MetadataRole, OtaError};
use crate::keys::{PublicKey, SigningKey};
use crate::sign::{canonical, file_bytes, sign_role};

/// The keys and thresholds of the four roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootSpec {
    pub root: Vec<PublicKey>,
    pub root_threshold: NonZeroU64,
    pub targets: Vec<PublicKey>,
    pub targets_threshold: NonZeroU64,
    pub snapshot: Vec<PublicKey>,
    pub snapshot_threshold: NonZeroU64,
    pub timestamp: Vec<PublicKey>,
    pub timestamp_threshold: NonZeroU64,
}

impl RootSpec {
    /// One key per role, threshold one (dev mode and tests).
    pub fn single(
        root: &SigningKey,
        targets: &SigningKey,
        snapshot: &SigningKey,
        timestamp: &SigningKey,
    ) -> Self {
        RootSpec {
            root: vec![root.public_key()],
            root_threshold: NonZeroU64::MIN,
            targets: vec![targets.public_key()],
            targets_threshold: NonZeroU64::MIN,
            snapshot: vec![snapshot.public_key()],
            snapshot_threshold: NonZeroU64::MIN,
            timestamp: vec![timestamp.public_key()],
            timestamp_threshold: NonZeroU64::MIN,
        }
    }

    /// The keys and thresholds a root names (what [`Repository::current_spec`]
    /// gives for the newest root).
    pub fn from_root(root: &Root) -> Result<Self, OtaError> {
        let role = |t: RoleType| -> Result<(Vec<PublicKey>, NonZeroU64), OtaError> {
            let keys = root
                .roles
                .get(&t)
                .ok_or_else(|| OtaError::refused(MetadataRole::Root, format!("no {t} role")))?;
            let list = keys
                .keyids
                .iter()
                .map(|id| {
                    root.keys
                        .get(id)
                        .map(|k| PublicKey(k.clone()))
                        .ok_or_else(|| {
                            OtaError::refused(
                                MetadataRole::Root,
                                format!(
                                    "{t} names key {} that the root does not list",
                                    hex::encode(&**id)
                                ),
                            )
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok((list, keys.threshold))
        };
        let (root_keys, root_threshold) = role(RoleType::Root)?;
        let (targets, targets_threshold) = role(RoleType::Targets)?;
        let (snapshot, snapshot_threshold) = role(RoleType::Snapshot)?;
        let (timestamp, timestamp_threshold) = role(RoleType::Timestamp)?;
        Ok(RootSpec {
            root: root_keys,
            root_threshold,
            targets,
            targets_threshold,
            snapshot,
            snapshot_threshold,
            timestamp,
            timestamp_threshold,
        })
    }

    /// Refuses a spec whose snapshot or timestamp threshold the online keys
    /// the server holds would not meet: accepting such a root would leave
    /// the server unable to re-sign them, and devices would stop updating
    /// once the timestamp expires.
    pub fn check_online(&self, online: &OnlineKeys) -> Result<(), OtaError> {
        for (role, listed, threshold, held) in [
            (
                RoleType::Snapshot,
                &self.snapshot,
                self.snapshot_threshold,
                &online.snapshot,
            ),
            (
                RoleType::Timestamp,
                &self.timestamp,
                self.timestamp_threshold,
                &online.timestamp,
            ),
        ] {
            let usable = held
                .iter()
                .filter(|k| listed.contains(&k.public_key()))
                .count() as u64;
            if usable < threshold.get() {
                return Err(OtaError::refused(
                    MetadataRole::Root,
                    format!(
                        "the server holds {usable} of the {threshold} {role} key(s) this root \
                         requires, so it could not sign {role} metadata: {role} keys must stay \
                         ones the server holds"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn build(&self, version: NonZeroU64, expires: jiff::Timestamp) -> Result<Root, OtaError> {
        let mut keys = HashMap::new();
        let mut roles = HashMap::new();
        for (role, list, threshold) in [
            (RoleType::Root, &self.root, self.root_threshold),
            (RoleType::Targets, &self.targets, self.targets_threshold),
            (RoleType::Snapshot, &self.snapshot, self.snapshot_threshold),
            (
                RoleType::Timestamp,
                &self.timestamp,
                self.timestamp_threshold,
            ),
        ] {
            let mut keyids = Vec::new();
            let mut seen = HashSet::new();
            for key in list {
                let id: Decoded<Hex> = key
                    .as_tough()
                    .key_id()
                    .map_err(|e| OtaError::malformed("public key", e))?;
                if !seen.insert(id.clone()) {
                    return Err(OtaError::refused(
                        MetadataRole::Root,
                        format!("{role} lists a key twice"),
                    ));
                }
                keys.insert(id.clone(), key.as_tough().clone());
                keyids.push(id);
            }
            if threshold.get() > keyids.len() as u64 {
                return Err(OtaError::refused(
                    MetadataRole::Root,
                    format!(
                        "{role} threshold {threshold} is above its {} keys",
                        keyids.len()
                    ),
                ));
            }
            keyids.sort();
            roles.insert(
                role,
                RoleKeys {
                    keyids,
                    threshold,
                    _extra: HashMap::new(),
                },
            );
        }
        Ok(Root {
            spec_version: SPEC_VERSION.into(),
            consistent_snapshot: true,
            version,
            expires,
            keys,
            roles,
            _extra: HashMap::new(),
        })
    }
}

/// The unsigned canonical bytes of a version-1 root (for offline root keys:
/// sign with [`crate::sign_root_metadata`], then [`Repository::init`]).
pub fn unsigned_root(
    spec: &RootSpec,
    expiries: &Expiries,
    now: SystemTime,
) -> Result<Vec<u8>, OtaError> {
    canonical(&spec.build(NonZeroU64::MIN, expiry(now, expiries.root)?)?)
}

/// Checks a root's own shape and its self-signature threshold.
fn check_root(new: &Signed<Root>, now: SystemTime) -> Result<(), OtaError> {
    let role = MetadataRole::Root;
    let r = &new.signed;
    if !r.consistent_snapshot {
        return Err(OtaError::refused(role, "consistent_snapshot must be true"));
    }
    if !r.spec_version.starts_with("1.") {
        return Err(OtaError::refused(role, "unsupported spec_version"));
    }
    for t in [
        RoleType::Root,
        RoleType::Targets,
        RoleType::Snapshot,
        RoleType::Timestamp,
    ] {
        let keys = r
            .roles
            .get(&t)
            .ok_or_else(|| OtaError::refused(role, format!("no {t} role")))?;
        if keys.threshold.get() > keys.keyids.len() as u64 {
            return Err(OtaError::refused(
                role,
                format!("{t} threshold above its keys"),
            ));
        }
    }
    if r.expires <= to_jiff(now)? {
        return Err(OtaError::Expired { role, source: None });
    }
    r.verify_role(new).map_err(|e| OtaError::BadSignature {
        role,
        source: Some(
            format!(
                "version {} is not signed by a threshold of its own (new) root keys: {e}",
                r.version
            )
            .into(),
        ),
    })
}

impl Repository {
    /// Creates a repository with a version-1 root signed by `signers` (a
    /// threshold of the root keys).
    pub fn create(
        dir: &Path,
        spec: &RootSpec,
        signers: &[&SigningKey],
        expiries: Expiries,
        now: SystemTime,
    ) -> Result<Self, OtaError> {
        let root = spec.build(NonZeroU64::MIN, expiry(now, expiries.root)?)?;
        let signed = sign_role(root, signers)?;
        Repository::init(dir, &file_bytes(&signed)?, expiries, now)
    }

    /// Creates a repository from a signed version-1 root.
    pub fn init(
        dir: &Path,
        signed_root: &[u8],
        expiries: Expiries,
        now: SystemTime,
    ) -> Result<Self, OtaError> {
        let root: Signed<Root> = serde_json::from_slice(signed_root)
            .map_err(|e| OtaError::malformed("root metadata", e))?;
        if root.signed.version != NonZeroU64::MIN {
            return Err(OtaError::refused(
                MetadataRole::Root,
                "the first root must be version 1",
            ));
        }
        check_root(&root, now)?;
        Repository::make_dirs(dir)?;
        let repo = Repository {
            dir: dir.to_owned(),
            expiries,
            write_lock: Mutex::new(()),
        };
        write_atomic(
            &repo.served(),
            "1.root.json",
            &file_bytes(&root)?,
            Replace::Never,
        )?;
        Ok(repo)
    }

    fn next_root_role(&self, spec: &RootSpec, now: SystemTime) -> Result<Root, OtaError> {
        let version = self
            .latest_root()?
            .signed
            .version
            .checked_add(1)
            .ok_or_else(|| OtaError::refused(MetadataRole::Root, "version overflow"))?;
        spec.build(version, expiry(now, self.expiries.root)?)
    }

    /// The keys and thresholds of the newest root: the starting point of a
    /// rotation that changes only some roles.
    pub fn current_spec(&self) -> Result<RootSpec, OtaError> {
        RootSpec::from_root(&self.latest_root()?.signed)
    }

    /// The unsigned canonical bytes of the next root version with `spec`'s
    /// keys, for signing with [`crate::sign_root_metadata`].
    pub fn next_root(&self, spec: &RootSpec, now: SystemTime) -> Result<Vec<u8>, OtaError> {
        canonical(&self.next_root_role(spec, now)?)
    }

    /// Accepts the next root: exactly version N+1, signed by a threshold of
    /// the old root keys and of the new ones. Returns the new version.
    ///
    /// Rotating snapshot or timestamp keys takes effect for devices once
    /// [`Repository::refresh`] re-signs with the new keys (it does so as
    /// soon as the root no longer accepts the old signatures); rotating the
    /// targets keys needs a new targets publication.
    pub fn accept_root(&self, signed_root: &[u8], now: SystemTime) -> Result<u64, OtaError> {
        let new: Signed<Root> = serde_json::from_slice(signed_root)
            .map_err(|e| OtaError::malformed("root metadata", e))?;
        let _guard = self.lock();
        let old = self.latest_root()?;
        let expected = old.signed.version.get() + 1;
        if new.signed.version.get() != expected {
            return Err(OtaError::refused(
                MetadataRole::Root,
                format!(
                    "version {} is not the next version {expected}",
                    new.signed.version
                ),
            ));
        }
        old.signed
            .verify_role(&new)
            .map_err(|e| OtaError::BadSignature {
                role: MetadataRole::Root,
                source: Some(
                    format!(
                        "version {expected} is not signed by a threshold of the current root \
                         (version {})'s root keys: {e}",
                        old.signed.version
                    )
                    .into(),
                ),
            })?;
        check_root(&new, now)?;
        write_atomic(
            &self.served(),
            &format!("{expected}.root.json"),
            &file_bytes(&new)?,
            Replace::Never,
        )?;
        Ok(expected)
    }

    /// The server's way in: [`Repository::accept_root`], refused first if
    /// the online keys would not meet the new root's snapshot or timestamp
    /// threshold ([`RootSpec::check_online`]). The caller then runs
    /// [`Repository::refresh`], which re-signs snapshot and timestamp at
    /// once if the new root no longer accepts their signatures.
    pub fn accept_root_online(
        &self,
        signed_root: &[u8],
        online: &OnlineKeys,
        now: SystemTime,
    ) -> Result<u64, OtaError> {
        let new: Signed<Root> = serde_json::from_slice(signed_root)
            .map_err(|e| OtaError::malformed("root metadata", e))?;
        RootSpec::from_root(&new.signed)?.check_online(online)?;
        self.accept_root(signed_root, now)
    }

    /// Builds, signs with `signers` (old and new root keys) and accepts the
    /// next root in one step.
    pub fn rotate_root(
        &self,
        spec: &RootSpec,
        signers: &[&SigningKey],
        now: SystemTime,
    ) -> Result<u64, OtaError> {
        let signed = sign_role(self.next_root_role(spec, now)?, signers)?;
        self.accept_root(&file_bytes(&signed)?, now)
    }
}
