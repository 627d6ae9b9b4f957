//! End-to-end tests of the crate: a real repository on disk, real Ed25519
//! signatures, and tough's real client reading it. The shared fixture lives
//! here; each file covers one boundary.

mod attacks;
mod happy;
mod http;
mod interop;
mod resume;
mod rotation;
mod server;

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use semver::Version;
use serde::Serialize;
use tempfile::TempDir;
use tough::schema::{Role, Signed, Snapshot, Timestamp};
use tough::FilesystemTransport;
use url::Url;

use crate::repo::publish::metafile;
use crate::sign::{file_bytes, sign_role};
use crate::{
    Device, Expiries, HardwareModel, NewTarget, OnlineKeys, OtaError, Published, ReleaseInfo,
    Repository, RootSpec, SigningKey, TargetName, UpdateClient,
};

pub(crate) const DAY: Duration = Duration::from_secs(24 * 60 * 60);
pub(crate) const MAX: u64 = 16 * 1024 * 1024;

pub(crate) fn now() -> SystemTime {
    SystemTime::now()
}

pub(crate) fn copy_key(k: &SigningKey) -> SigningKey {
    SigningKey::from_pkcs8_der(k.pkcs8_der()).unwrap()
}

pub(crate) fn name(s: &str) -> TargetName {
    TargetName::new(s).unwrap()
}

pub(crate) fn release(models: &[&str], version: &str, floor: Option<&str>) -> ReleaseInfo {
    ReleaseInfo::new(
        models
            .iter()
            .map(|m| HardwareModel::new(m).unwrap())
            .collect(),
        Version::parse(version).unwrap(),
        floor.map(|f| Version::parse(f).unwrap()),
    )
    .unwrap()
}

pub(crate) fn device(model: &str, floor: Option<&str>) -> Device {
    Device {
        model: HardwareModel::new(model).unwrap(),
        floor: floor.map(|f| Version::parse(f).unwrap()),
    }
}

/// A repository with one key per role, and the keys.
pub(crate) struct Fixture {
    pub dir: TempDir,
    pub repo: Repository,
    pub root_key: SigningKey,
    pub targets_key: SigningKey,
    pub snapshot_key: SigningKey,
    pub timestamp_key: SigningKey,
}

impl Fixture {
    pub fn new() -> Self {
        Fixture::with_expiries(Expiries::default())
    }

    pub fn with_expiries(expiries: Expiries) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root_key = SigningKey::generate().unwrap();
        let targets_key = SigningKey::generate().unwrap();
        let snapshot_key = SigningKey::generate().unwrap();
        let timestamp_key = SigningKey::generate().unwrap();
        let spec = RootSpec::single(&root_key, &targets_key, &snapshot_key, &timestamp_key);
        let repo = Repository::create(
            &dir.path().join("ota"),
            &spec,
            &[&root_key],
            expiries,
            now(),
        )
        .unwrap();
        Fixture {
            dir,
            repo,
            root_key,
            targets_key,
            snapshot_key,
            timestamp_key,
        }
    }

    pub fn online(&self) -> OnlineKeys {
        OnlineKeys {
            snapshot: vec![copy_key(&self.snapshot_key)],
            timestamp: vec![copy_key(&self.timestamp_key)],
        }
    }

    pub fn spec(&self) -> RootSpec {
        RootSpec::single(
            &self.root_key,
            &self.targets_key,
            &self.snapshot_key,
            &self.timestamp_key,
        )
    }

    pub fn new_target(&self, target: &str, content: &[u8], release: ReleaseInfo) -> NewTarget {
        let artifact = self.repo.store_artifact(content, MAX).unwrap();
        NewTarget {
            name: name(target),
            artifact,
            release,
        }
    }

    /// Stores and publishes one release (dev mode) at `at`.
    pub fn publish_at(&self, target: NewTarget, at: SystemTime) -> Published {
        self.repo
            .publish(&[target], &[], &[&self.targets_key], &self.online(), at)
            .unwrap()
    }

    pub fn add(&self, target: &str, content: &[u8], release: ReleaseInfo) -> Published {
        let t = self.new_target(target, content, release);
        self.publish_at(t, now())
    }

    pub fn served(&self) -> PathBuf {
        self.repo.served()
    }

    pub fn metadata_url(&self) -> Url {
        Url::from_directory_path(self.served()).unwrap()
    }

    pub fn targets_url(&self) -> Url {
        Url::from_directory_path(self.served().join("targets")).unwrap()
    }

    pub fn root_v1(&self) -> Vec<u8> {
        std::fs::read(self.served().join("1.root.json")).unwrap()
    }

    /// A device's view: loads with the version-1 root and `datastore`.
    pub async fn client(&self, datastore: &Path) -> Result<UpdateClient, OtaError> {
        UpdateClient::load(
            &self.root_v1(),
            datastore,
            self.metadata_url(),
            self.targets_url(),
            FilesystemTransport,
        )
        .await
    }

    pub fn read(&self, file: &str) -> Vec<u8> {
        std::fs::read(self.served().join(file)).unwrap()
    }

    pub fn write(&self, file: &str, bytes: &[u8]) {
        let path = self.served().join(file);
        let _ = std::fs::remove_file(&path);
        std::fs::write(path, bytes).unwrap();
    }

    pub fn write_signed<T: Serialize>(&self, file: &str, signed: &Signed<T>) -> Vec<u8> {
        let bytes = file_bytes(signed).unwrap();
        self.write(file, &bytes);
        bytes
    }

    /// What an attacker holding the online keys can do: a snapshot listing
    /// `targets_bytes` as targets version `targets_version`, and a timestamp
    /// for it, written straight into the served directory.
    pub fn forge_snapshot_and_timestamp(
        &self,
        targets_bytes: &[u8],
        targets_version: u64,
        snapshot_version: u64,
        timestamp_version: u64,
    ) {
        let v = |n: u64| NonZeroU64::new(n).unwrap();
        let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
        let mut snapshot = Snapshot::new("1.0.0".into(), v(snapshot_version), expires);
        snapshot.meta.insert(
            "targets.json".into(),
            metafile(targets_bytes, v(targets_version)),
        );
        let snapshot = sign_role(snapshot, &[&self.snapshot_key]).unwrap();
        let snapshot_bytes = self.write_signed(&snapshot.signed.filename(true), &snapshot);
        self.forge_timestamp(&snapshot_bytes, snapshot_version, timestamp_version);
    }

    /// A timestamp signed with the real timestamp key, pointing at any
    /// snapshot.
    pub fn forge_timestamp(&self, snapshot_bytes: &[u8], snapshot_version: u64, version: u64) {
        let v = |n: u64| NonZeroU64::new(n).unwrap();
        let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(24);
        let mut timestamp = Timestamp::new("1.0.0".into(), v(version), expires);
        timestamp.meta.insert(
            "snapshot.json".into(),
            metafile(snapshot_bytes, v(snapshot_version)),
        );
        let timestamp = sign_role(timestamp, &[&self.timestamp_key]).unwrap();
        self.write_signed("timestamp.json", &timestamp);
    }
}

/// Asserts an error's variant and that its message names the reason.
#[track_caller]
pub(crate) fn assert_refused(err: &OtaError, matches: bool, words: &str) {
    assert!(matches, "unexpected error: {err:?}");
    let msg = err.to_string();
    assert!(msg.contains(words), "{msg:?} should contain {words:?}");
}
