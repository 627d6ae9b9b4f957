//! The server-side TUF repository over a directory (`<data-dir>/ota/`).
//!
//! ```text
//! <dir>/repository/          served as is: the standard consistent-snapshot layout
//!        N.root.json  timestamp.json  N.snapshot.json  N.targets.json
//!        targets/<sha256-hex>.<name>     hard links to the artifact blobs
//! <dir>/artifacts/<sha256-hex>           content-addressed blobs, read-only
//! <dir>/tmp/                             uploads in progress
//! ```
//!
//! The repository's state is its files: the newest root is the highest
//! contiguous `N.root.json`, `timestamp.json` names the snapshot, which
//! names the targets. Metadata is written atomically in the order targets →
//! snapshot → timestamp, so a crash never leaves a timestamp pointing to a
//! missing file. Writers are serialized by a lock: one process owns the
//! directory. Every operation takes `now` from the caller.
//!
//! Built on tough's schema types and verification (`Root::verify_role`);
//! signing and writing are ours (see [`crate::sign`]) because tough's
//! editor signs all roles together, cannot accept targets signed elsewhere,
//! and writes files in place rather than atomically.

mod fsio;
pub(crate) mod publish;
mod root;
mod serve;
mod store;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use tough::schema::{Root, Signed, Snapshot, Targets, Timestamp};

use crate::error::{MetadataRole, OtaError};
use crate::keys::SigningKey;

pub use publish::{NewTarget, Published, Refreshed};
pub use root::{unsigned_root, RootSpec};
pub use serve::RepoPath;
pub use store::{Sha256, StoredArtifact};

pub(crate) const SPEC_VERSION: &str = "1.0.0";
const SERVED: &str = "repository";
const ARTIFACTS: &str = "artifacts";
const TMP: &str = "tmp";
const TARGETS_DIR: &str = "targets";
const DAY: u64 = 24 * 60 * 60;

/// How long each role's metadata stays valid after it is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiries {
    pub root: Duration,
    pub targets: Duration,
    pub snapshot: Duration,
    pub timestamp: Duration,
}

impl Default for Expiries {
    /// Root 365 days, targets 90, snapshot 7, timestamp 1.
    fn default() -> Self {
        Expiries {
            root: Duration::from_secs(365 * DAY),
            targets: Duration::from_secs(90 * DAY),
            snapshot: Duration::from_secs(7 * DAY),
            timestamp: Duration::from_secs(DAY),
        }
    }
}

/// The online keys: snapshot and timestamp (enough of each for its
/// threshold). The server decrypts them from its key store.
#[derive(Debug)]
pub struct OnlineKeys {
    pub snapshot: Vec<SigningKey>,
    pub timestamp: Vec<SigningKey>,
}

/// The repository directory.
#[derive(Debug)]
pub struct Repository {
    dir: PathBuf,
    expiries: Expiries,
    write_lock: Mutex<()>,
}

/// The metadata currently published.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    pub root: Signed<Root>,
    pub timestamp: Option<Signed<Timestamp>>,
    pub snapshot: Option<Signed<Snapshot>>,
    pub targets: Option<Signed<Targets>>,
}

/// Versions and expiry times of the published metadata, for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoStatus {
    pub root: (u64, SystemTime),
    pub targets: Option<(u64, SystemTime)>,
    pub snapshot: Option<(u64, SystemTime)>,
    pub timestamp: Option<(u64, SystemTime)>,
}

pub(crate) fn expiry(now: SystemTime, ttl: Duration) -> Result<jiff::Timestamp, OtaError> {
    let secs = (now + ttl)
        .duration_since(UNIX_EPOCH)
        .map_err(|_| OtaError::refused(MetadataRole::Timestamp, "clock before 1970"))?
        .as_secs();
    let secs = i64::try_from(secs)
        .map_err(|_| OtaError::refused(MetadataRole::Timestamp, "expiry out of range"))?;
    jiff::Timestamp::from_second(secs)
        .map_err(|_| OtaError::refused(MetadataRole::Timestamp, "expiry out of range"))
}

pub(crate) fn to_jiff(t: SystemTime) -> Result<jiff::Timestamp, OtaError> {
    jiff::Timestamp::try_from(t)
        .map_err(|_| OtaError::refused(MetadataRole::Timestamp, "time out of range"))
}

fn parse_file<T: DeserializeOwned>(bytes: &[u8], role: MetadataRole) -> Result<T, OtaError> {
    serde_json::from_slice(bytes).map_err(|e| OtaError::malformed(format!("{role} metadata"), e))
}

impl Repository {
    /// Opens an existing repository (created by [`Repository::create`] or
    /// [`Repository::init`]).
    pub fn open(dir: &Path, expiries: Expiries) -> Result<Self, OtaError> {
        let repo = Repository {
            dir: dir.to_owned(),
            expiries,
            write_lock: Mutex::new(()),
        };
        if !repo.served().join("1.root.json").is_file() {
            return Err(OtaError::NotFound {
                what: format!("repository at {} (no 1.root.json)", dir.display()),
            });
        }
        Ok(repo)
    }

    /// The directory served to devices (metadata and `targets/`).
    pub fn served(&self) -> PathBuf {
        self.dir.join(SERVED)
    }

    pub fn expiries(&self) -> Expiries {
        self.expiries
    }

    fn targets_dir(&self) -> PathBuf {
        self.served().join(TARGETS_DIR)
    }

    fn artifacts(&self) -> PathBuf {
        self.dir.join(ARTIFACTS)
    }

    fn tmp(&self) -> PathBuf {
        self.dir.join(TMP)
    }

    fn make_dirs(dir: &Path) -> Result<(), OtaError> {
        for sub in [SERVED, ARTIFACTS, TMP] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path).map_err(OtaError::io(&path))?;
        }
        let targets = dir.join(SERVED).join(TARGETS_DIR);
        std::fs::create_dir_all(&targets).map_err(OtaError::io(&targets))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // The guarded data is `()`: a panic while holding it leaves nothing
        // inconsistent in memory, and the files are written atomically.
        self.write_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read_metadata<T: DeserializeOwned>(
        &self,
        file: &str,
        role: MetadataRole,
    ) -> Result<Option<T>, OtaError> {
        fsio::read_optional(&self.served().join(file))?
            .map(|bytes| parse_file(&bytes, role))
            .transpose()
    }

    /// The newest root and its version.
    pub(crate) fn latest_root(&self) -> Result<Signed<Root>, OtaError> {
        let mut version = 1u64;
        let mut root: Signed<Root> = self
            .read_metadata("1.root.json", MetadataRole::Root)?
            .ok_or_else(|| OtaError::NotFound {
                what: "1.root.json".into(),
            })?;
        while let Some(next) =
            self.read_metadata(&format!("{}.root.json", version + 1), MetadataRole::Root)?
        {
            root = next;
            version += 1;
        }
        Ok(root)
    }

    /// The bytes of the newest root: what devices are provisioned with.
    pub fn root_bytes(&self) -> Result<Vec<u8>, OtaError> {
        let version = self.latest_root()?.signed.version.get();
        let path = self.served().join(format!("{version}.root.json"));
        std::fs::read(&path).map_err(OtaError::io(path))
    }

    pub(crate) fn current(&self) -> Result<Current, OtaError> {
        let root = self.latest_root()?;
        let timestamp: Option<Signed<Timestamp>> =
            self.read_metadata("timestamp.json", MetadataRole::Timestamp)?;
        let Some(ts) = &timestamp else {
            return Ok(Current {
                root,
                timestamp: None,
                snapshot: None,
                targets: None,
            });
        };
        let snap_version = ts
            .signed
            .meta
            .get("snapshot.json")
            .ok_or_else(|| OtaError::refused(MetadataRole::Timestamp, "no snapshot.json meta"))?
            .version;
        let snapshot: Signed<Snapshot> = self
            .read_metadata(
                &format!("{snap_version}.snapshot.json"),
                MetadataRole::Snapshot,
            )?
            .ok_or_else(|| OtaError::NotFound {
                what: format!("{snap_version}.snapshot.json"),
            })?;
        let targets_version = snapshot
            .signed
            .meta
            .get("targets.json")
            .ok_or_else(|| OtaError::refused(MetadataRole::Snapshot, "no targets.json meta"))?
            .version;
        let targets: Signed<Targets> = self
            .read_metadata(
                &format!("{targets_version}.targets.json"),
                MetadataRole::Targets,
            )?
            .ok_or_else(|| OtaError::NotFound {
                what: format!("{targets_version}.targets.json"),
            })?;
        Ok(Current {
            root,
            timestamp,
            snapshot: Some(snapshot),
            targets: Some(targets),
        })
    }

    /// Versions and expiries of the published metadata.
    pub fn status(&self) -> Result<RepoStatus, OtaError> {
        let c = self.current()?;
        Ok(RepoStatus {
            root: (c.root.signed.version.get(), c.root.signed.expires.into()),
            targets: c
                .targets
                .map(|t| (t.signed.version.get(), t.signed.expires.into())),
            snapshot: c
                .snapshot
                .map(|s| (s.signed.version.get(), s.signed.expires.into())),
            timestamp: c
                .timestamp
                .map(|t| (t.signed.version.get(), t.signed.expires.into())),
        })
    }
}
