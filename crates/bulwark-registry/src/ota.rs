//! The update service: the TUF repository of `bulwark-ota` under the
//! registry's authorization, audit and store.
//!
//! - Keys. Snapshot and timestamp keys are online, sealed in the CA's key
//!   store (`ota-snapshot`, `ota-timestamp`). The root and targets keys are
//!   offline: at first start outside dev mode they are generated once into
//!   `<data-dir>/ota-offline/` (0600) for the operator to move off the
//!   machine; releases are then signed with `bulwark ota sign`. In dev mode
//!   they are sealed in the key store too, and the server signs releases.
//! - Publishing. The artifact is streamed into the content-addressed store
//!   first (inert until a release names it); then the targets metadata
//!   (signed offline, or by the online targets key in dev mode) is checked
//!   and snapshot/timestamp are signed and written; then the release record
//!   and its audit entry are committed. The record is read from the signed
//!   metadata, never from the request.
//! - Root rotation (`root`): the server prepares the next root, a
//!   threshold of the old and of the new root keys sign it offline, the
//!   server accepts it (an admin's decision, audited).
//! - Every file operation runs on the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use bulwark_ca::Keystore;
use bulwark_ota::{
    describe_targets, Expiries, HardwareModel, NewTarget, OnlineKeys, OtaError, ReleaseInfo,
    Repository, RootSpec, Sha256, SigningKey, StoredArtifact, TargetName,
};
use bulwark_store::StoreError;
use bulwark_types::OtaRelease;
use time::OffsetDateTime;

use crate::auth::Action;
use crate::{Operator, Registry, RegistryError};

mod root;

pub use root::{RoleChange, RootChanges};

const SNAPSHOT_KEY: &str = "ota-snapshot";
const TIMESTAMP_KEY: &str = "ota-timestamp";
const TARGETS_KEY: &str = "ota-targets";
const ROOT_KEY: &str = "ota-root";
/// Where the offline keys are written once, outside dev mode.
pub const OFFLINE_DIR: &str = "ota-offline";

/// Settings of the update service.
#[derive(Debug, Clone, Copy)]
pub struct OtaConfig {
    /// The largest artifact accepted, in bytes.
    pub max_artifact_bytes: u64,
    pub expiries: Expiries,
}

impl Default for OtaConfig {
    fn default() -> Self {
        Self {
            max_artifact_bytes: 1 << 30,
            expiries: Expiries::default(),
        }
    }
}

/// The repository and its online keys.
#[derive(Debug)]
pub struct Ota {
    repo: Repository,
    online: OnlineKeys,
    /// Dev mode only: the targets key, online.
    targets_key: Option<SigningKey>,
    /// Dev mode only: the root key, online (the server may sign a new root).
    root_key: Option<SigningKey>,
    config: OtaConfig,
}

/// What a first start created, for the operator.
#[derive(Debug, Clone)]
pub struct OtaCreated {
    /// Outside dev mode: the offline root and targets key files to move
    /// off this machine.
    pub offline_keys: Option<PathBuf>,
}

/// A release to publish, as the request describes it.
#[derive(Debug, Clone)]
pub struct ReleaseRequest {
    pub name: String,
    pub version: String,
    pub hardware: Vec<String>,
    pub floor: Option<String>,
    pub sha256: String,
    pub length: u64,
}

/// The error and the reasons under it (tough's, for a signature
/// threshold), for the operator: what they sent and why it was refused.
fn with_reasons(e: &OtaError) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

fn ota_err(e: OtaError) -> RegistryError {
    match e {
        OtaError::InvalidName(_)
        | OtaError::InvalidHardwareModel(_)
        | OtaError::InvalidRelease { .. }
        | OtaError::Malformed { .. }
        | OtaError::Refused { .. }
        | OtaError::BadSignature { .. }
        | OtaError::Expired { .. }
        | OtaError::ArtifactTooLarge { .. } => RegistryError::Invalid(with_reasons(&e)),
        OtaError::ArtifactMissing { .. } | OtaError::UnknownTarget { .. } => {
            RegistryError::Store(StoreError::NotFound { what: "artifact" })
        }
        OtaError::TargetImmutable { .. } => RegistryError::Conflict(e.to_string()),
        other => RegistryError::Store(StoreError::Internal(other.to_string())),
    }
}

fn key_err(what: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Store(StoreError::Internal(format!("OTA {what}: {e}")))
}

fn sealed(keystore: &Keystore, name: &str) -> Result<SigningKey, RegistryError> {
    let der = keystore.load(name).map_err(|e| key_err(name, e))?;
    SigningKey::from_pkcs8_der(&der).map_err(|e| key_err(name, e))
}

fn seal(keystore: &Keystore, name: &str, key: &SigningKey) -> Result<(), RegistryError> {
    keystore
        .store(name, key.pkcs8_der())
        .map_err(|e| key_err(name, e))
}

impl Ota {
    /// Opens `<data_dir>/ota`, creating the repository and its keys at the
    /// first start.
    pub fn open_or_create(
        data_dir: &Path,
        keystore: &Keystore,
        dev: bool,
        config: OtaConfig,
    ) -> Result<(Ota, Option<OtaCreated>), RegistryError> {
        let dir = data_dir.join("ota");
        let created = if dir.join("repository").join("1.root.json").is_file() {
            None
        } else {
            Some(Self::create(data_dir, &dir, keystore, dev, config)?)
        };
        let repo = Repository::open(&dir, config.expiries).map_err(ota_err)?;
        let online = OnlineKeys {
            snapshot: vec![sealed(keystore, SNAPSHOT_KEY)?],
            timestamp: vec![sealed(keystore, TIMESTAMP_KEY)?],
        };
        let (targets_key, root_key) = if dev {
            (
                Some(sealed(keystore, TARGETS_KEY)?),
                Some(sealed(keystore, ROOT_KEY)?),
            )
        } else {
            (None, None)
        };
        Ok((
            Ota {
                repo,
                online,
                targets_key,
                root_key,
                config,
            },
            created,
        ))
    }

    fn create(
        data_dir: &Path,
        dir: &Path,
        keystore: &Keystore,
        dev: bool,
        config: OtaConfig,
    ) -> Result<OtaCreated, RegistryError> {
        let gen = || SigningKey::generate().map_err(|e| key_err("key generation", e));
        let (root, targets, snapshot, timestamp) = (gen()?, gen()?, gen()?, gen()?);
        seal(keystore, SNAPSHOT_KEY, &snapshot)?;
        seal(keystore, TIMESTAMP_KEY, &timestamp)?;
        let offline_keys = if dev {
            seal(keystore, TARGETS_KEY, &targets)?;
            seal(keystore, ROOT_KEY, &root)?;
            None
        } else {
            let out = data_dir.join(OFFLINE_DIR);
            std::fs::create_dir_all(&out).map_err(|e| key_err("offline key directory", e))?;
            root.write_file(&out.join("root.pem"))
                .map_err(|e| key_err("root key file", e))?;
            targets
                .write_file(&out.join("targets.pem"))
                .map_err(|e| key_err("targets key file", e))?;
            Some(out)
        };
        let spec = RootSpec::single(&root, &targets, &snapshot, &timestamp);
        Repository::create(dir, &spec, &[&root], config.expiries, SystemTime::now())
            .map_err(ota_err)?;
        Ok(OtaCreated { offline_keys })
    }

    /// The repository (for serving its files).
    pub fn repository(&self) -> &Repository {
        &self.repo
    }

    /// The newest root, the device's trust anchor.
    pub fn root_json(&self) -> Result<Vec<u8>, RegistryError> {
        self.repo.root_bytes().map_err(ota_err)
    }

    /// Whether releases are signed by the server (dev mode).
    pub fn signs_releases(&self) -> bool {
        self.targets_key.is_some()
    }

    pub fn max_artifact_bytes(&self) -> u64 {
        self.config.max_artifact_bytes
    }

    fn new_target(&self, req: &ReleaseRequest) -> Result<NewTarget, RegistryError> {
        let name = TargetName::new(&req.name).map_err(ota_err)?;
        let parse = |what: &str, v: &str| {
            semver::Version::parse(v)
                .map_err(|e| RegistryError::Invalid(format!("{what} {v:?} is not a version: {e}")))
        };
        let hardware = req
            .hardware
            .iter()
            .map(|m| HardwareModel::new(m).map_err(ota_err))
            .collect::<Result<Vec<_>, _>>()?;
        let floor = req
            .floor
            .as_deref()
            .map(|f| parse("floor", f))
            .transpose()?;
        let release =
            ReleaseInfo::new(hardware, parse("version", &req.version)?, floor).map_err(ota_err)?;
        let sha256 = Sha256::from_hex(&req.sha256)
            .ok_or_else(|| RegistryError::Invalid("sha256 must be 64 hex digits".into()))?;
        Ok(NewTarget {
            name,
            artifact: StoredArtifact {
                sha256,
                length: req.length,
            },
            release,
        })
    }
}

/// The store's record of a target, from verified metadata.
fn release_record(
    t: &bulwark_ota::sign::TargetSummary,
    targets_version: u64,
) -> Result<OtaRelease, RegistryError> {
    let info = t
        .release
        .as_ref()
        .map_err(|e| RegistryError::Invalid(format!("release fields of {}: {e}", t.name)))?;
    Ok(OtaRelease {
        name: t.name.clone(),
        version: info.version().to_string(),
        hardware: info
            .hardware()
            .iter()
            .map(|m| m.as_str().to_owned())
            .collect(),
        floor: info.floor().map(|f| f.to_string()),
        sha256: t.sha256.clone(),
        length: t.length,
        targets_version,
        published_at: OffsetDateTime::now_utc(),
    })
}

impl Registry {
    /// Installs the update service (at start-up, before the registry is
    /// shared).
    pub fn with_ota(mut self, ota: Ota) -> Self {
        self.ota = Some(Arc::new(ota));
        self
    }

    /// The update service, when this server runs one.
    pub fn ota(&self) -> Result<&Arc<Ota>, RegistryError> {
        self.ota.as_ref().ok_or_else(|| {
            RegistryError::Invalid("this server has no OTA repository configured".into())
        })
    }

    /// Streams an artifact into the content-addressed store. `body` is read
    /// on the blocking pool; the upload is refused past the size limit.
    pub async fn ota_store_artifact(
        &self,
        op: &Operator,
        body: impl std::io::Read + Send + 'static,
    ) -> Result<StoredArtifact, RegistryError> {
        self.allow(op, Action::ManageReleases).await?;
        let ota = self.ota()?.clone();
        let max = ota.config.max_artifact_bytes;
        tokio::task::spawn_blocking(move || ota.repo.store_artifact(body, max))
            .await
            .map_err(|e| key_err("artifact upload task", e))?
            .map_err(ota_err)
    }

    /// The next targets metadata with `req` added, unsigned (canonical
    /// JSON), for `bulwark ota sign` on the machine holding the targets key.
    pub async fn ota_prepare_release(
        &self,
        op: &Operator,
        req: ReleaseRequest,
    ) -> Result<Vec<u8>, RegistryError> {
        self.allow(op, Action::ManageReleases).await?;
        let ota = self.ota()?.clone();
        let target = ota.new_target(&req)?;
        tokio::task::spawn_blocking(move || {
            ota.repo.next_targets(&[target], &[], SystemTime::now())
        })
        .await
        .map_err(|e| key_err("prepare task", e))?
        .map_err(ota_err)
    }

    /// Publishes a release: with `signed_targets` (signed offline), or
    /// signed by the server's online targets key (dev mode).
    pub async fn ota_publish_release(
        &self,
        op: &Operator,
        req: ReleaseRequest,
        signed_targets: Option<Vec<u8>>,
    ) -> Result<OtaRelease, RegistryError> {
        self.allow(op, Action::ManageReleases).await?;
        let ota = self.ota()?.clone();
        let target = ota.new_target(&req)?;
        if self
            .store
            .get_ota_release(target.name.as_str())
            .await?
            .is_some()
        {
            return Err(RegistryError::Store(StoreError::AlreadyExists {
                what: "release",
            }));
        }
        let offline = signed_targets.is_some();
        let name = target.name.clone();
        let (published, described) = tokio::task::spawn_blocking(move || {
            let now = SystemTime::now();
            let published = match &signed_targets {
                Some(bytes) => ota.repo.accept_signed_targets(bytes, &ota.online, now)?,
                None => match &ota.targets_key {
                    Some(key) => ota.repo.publish(&[target], &[], &[key], &ota.online, now)?,
                    None => {
                        return Err(OtaError::Refused {
                            role: bulwark_ota::MetadataRole::Targets,
                            reason: "this server holds no targets key: sign the release offline \
                                     (bulwark ota release create --targets-key FILE)"
                                .into(),
                        })
                    }
                },
            };
            let path = ota
                .repo
                .served()
                .join(format!("{}.targets.json", published.targets));
            let bytes = std::fs::read(&path).map_err(|source| OtaError::Io { path, source })?;
            Ok((published, describe_targets(&bytes)?))
        })
        .await
        .map_err(|e| key_err("publish task", e))?
        .map_err(ota_err)?;
        // The record comes from the metadata devices will verify.
        let t = described
            .targets
            .iter()
            .find(|t| t.name == name.as_str())
            .ok_or_else(|| {
                RegistryError::Invalid(format!("the signed targets metadata does not list {name}"))
            })?;
        let release = release_record(t, published.targets)?;
        Ok(self
            .store
            .publish_ota_release(release, offline, op.actor())
            .await?)
    }

    /// Records every target the published metadata lists that the store
    /// does not know: a crash between writing the metadata and committing
    /// the record leaves such a target visible to devices; after this (at
    /// start-up) it is listed and audited. Returns how many were recorded.
    pub async fn ota_reconcile(&self) -> Result<usize, RegistryError> {
        let ota = self.ota()?.clone();
        let offline = !ota.signs_releases();
        let current = tokio::task::spawn_blocking(move || -> Result<_, OtaError> {
            let Some((version, _)) = ota.repo.status()?.targets else {
                return Ok(None);
            };
            let path = ota.repo.served().join(format!("{version}.targets.json"));
            let bytes = std::fs::read(&path).map_err(|source| OtaError::Io { path, source })?;
            Ok(Some((version, describe_targets(&bytes)?)))
        })
        .await
        .map_err(|e| key_err("reconcile task", e))?
        .map_err(ota_err)?;
        let Some((version, described)) = current else {
            return Ok(0);
        };
        let mut recorded = 0;
        for t in &described.targets {
            if self.store.get_ota_release(&t.name).await?.is_some() {
                continue;
            }
            let release = release_record(t, version)?;
            tracing::warn!(name = %release.name, "recording a release published before a crash");
            self.store
                .publish_ota_release(release, offline, bulwark_audit::Actor::System)
                .await?;
            recorded += 1;
        }
        Ok(recorded)
    }

    /// Refuses (audited) unless the operator may read OTA releases and
    /// rollouts, e.g. the repository's files.
    pub async fn ota_may_read(&self, op: &Operator) -> Result<(), RegistryError> {
        self.allow(op, Action::ReadOta).await
    }

    pub async fn ota_releases(&self, op: &Operator) -> Result<Vec<OtaRelease>, RegistryError> {
        self.allow(op, Action::ReadOta).await?;
        Ok(self.store.list_ota_releases().await?)
    }

    pub async fn ota_release(
        &self,
        op: &Operator,
        name: &str,
    ) -> Result<OtaRelease, RegistryError> {
        self.allow(op, Action::ReadOta).await?;
        self.store
            .get_ota_release(name)
            .await?
            .ok_or(RegistryError::Store(StoreError::NotFound {
                what: "release",
            }))
    }

    /// Re-signs snapshot and timestamp before they expire (called
    /// periodically by the server).
    pub async fn ota_refresh(&self) -> Result<(), RegistryError> {
        let ota = self.ota()?.clone();
        let now = SystemTime::now();
        let refreshed = tokio::task::spawn_blocking(move || ota.repo.refresh(&ota.online, now))
            .await
            .map_err(|e| key_err("refresh task", e))?
            .map_err(ota_err)?;
        // The offline roles cannot be re-signed here: warn in time.
        let soon = now + std::time::Duration::from_secs(14 * 24 * 3600);
        if refreshed.targets_expires.is_some_and(|t| t < soon) {
            tracing::warn!(
                "the OTA targets metadata expires within 14 days: publish or re-sign a release"
            );
        }
        if refreshed.root_expires < soon {
            tracing::warn!("the OTA root metadata expires within 14 days: rotate the root");
        }
        Ok(())
    }
}
