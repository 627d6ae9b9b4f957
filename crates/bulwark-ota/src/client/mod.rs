//! The device-side verifier, used by the agent and the simulator.
//!
//! [`UpdateClient::load`] runs tough's TUF client (TUF 1.0 §5: root chain,
//! timestamp, snapshot, targets, with rollback, freeze and mix-and-match
//! checks and a persistent datastore) from a trusted root. Then
//! [`UpdateClient::check`] finds a target, parses its release fields and
//! checks hardware and version floors, giving an [`UpdateCandidate`]; only
//! [`UpdateClient::download`] turns a candidate into a [`VerifiedArtifact`],
//! after the downloaded file's length and hashes match the verified
//! metadata. Nothing downloaded is trusted before that.

mod download;
mod http;

use std::path::Path;
use std::time::SystemTime;

use semver::Version;
use tough::schema::{Root, Signed};
use tough::{ExpirationEnforcement, Limits, RepositoryLoader, Transport};
use url::Url;

use crate::custom::{HardwareModel, ReleaseInfo};
use crate::error::{MetadataRole, OtaError};
use crate::name::TargetName;
use crate::repo::Sha256;

pub use download::{ByteStream, FsRangeFetch, RangeFetch, RangeResponse, VerifiedArtifact};
pub use http::HttpsTransport;

/// Limits on metadata sizes (endless-data protection for metadata whose
/// length is not pinned by other signed metadata).
pub const LIMITS: Limits = Limits {
    max_root_size: 512 * 1024,
    max_targets_size: 8 * 1024 * 1024,
    max_timestamp_size: 64 * 1024,
    max_snapshot_size: 1024 * 1024,
    max_root_updates: 1024,
};

/// What the device is and has installed.
#[derive(Debug, Clone)]
pub struct Device {
    pub model: HardwareModel,
    /// The highest version floor of any release this device installed.
    pub floor: Option<Version>,
}

/// A target that passed the device checks, with the verified length and
/// hashes its download must match. Only [`UpdateClient::check`] makes one.
#[derive(Debug, Clone)]
pub struct UpdateCandidate {
    name: TargetName,
    release: ReleaseInfo,
    length: u64,
    sha256: Sha256,
    sha512: Option<Vec<u8>>,
    url: Url,
}

impl UpdateCandidate {
    pub fn name(&self) -> &TargetName {
        &self.name
    }
    pub fn release(&self) -> &ReleaseInfo {
        &self.release
    }
    pub fn length(&self) -> u64 {
        self.length
    }
    pub fn sha256(&self) -> Sha256 {
        self.sha256
    }
    pub fn url(&self) -> &Url {
        &self.url
    }
}

/// A loaded and verified repository.
#[derive(Debug)]
pub struct UpdateClient {
    repo: tough::Repository,
    targets_base: Url,
}

impl UpdateClient {
    /// Loads and verifies the repository's metadata from `trusted_root`
    /// (the root the device was provisioned with; newer roots are chained
    /// from it). `datastore` is a persistent directory where the last
    /// verified metadata is kept to detect rollbacks; it is created if
    /// missing. The newest root verified before (kept there by tough) is
    /// the starting point when it is newer than `trusted_root`, so a key
    /// retired by a rotation can never lead this device down another chain.
    pub async fn load<T: Transport + Send + Sync + 'static>(
        trusted_root: &[u8],
        datastore: &Path,
        metadata_base: Url,
        targets_base: Url,
        transport: T,
    ) -> Result<Self, OtaError> {
        tokio::fs::create_dir_all(datastore)
            .await
            .map_err(OtaError::io(datastore))?;
        let targets_base = with_slash(targets_base);
        let trusted_root = starting_root(trusted_root, datastore).await?;
        let repo = RepositoryLoader::new(
            &trusted_root,
            with_slash(metadata_base),
            targets_base.clone(),
        )
        .transport(transport)
        .datastore(datastore)
        .limits(LIMITS)
        .expiration_enforcement(ExpirationEnforcement::Safe)
        .load()
        .await?;
        Ok(UpdateClient { repo, targets_base })
    }

    /// The underlying tough repository (roles as verified).
    pub fn tough(&self) -> &tough::Repository {
        &self.repo
    }

    /// The verified targets version.
    pub fn targets_version(&self) -> u64 {
        self.repo.targets().signed.version.get()
    }

    /// Refuses to go on with metadata that expired since it was loaded.
    fn check_expiry(&self) -> Result<(), OtaError> {
        let now = jiff::Timestamp::try_from(SystemTime::now())
            .map_err(|_| OtaError::refused(MetadataRole::Timestamp, "clock out of range"))?;
        let expiries = [
            (self.repo.root().signed.expires, MetadataRole::Root),
            (
                self.repo.timestamp().signed.expires,
                MetadataRole::Timestamp,
            ),
            (self.repo.snapshot().signed.expires, MetadataRole::Snapshot),
            (self.repo.targets().signed.expires, MetadataRole::Targets),
        ];
        for (expires, role) in expiries {
            if expires <= now {
                return Err(OtaError::Expired { role, source: None });
            }
        }
        Ok(())
    }

    /// Finds `name` and checks it for `device`: release fields parse, the
    /// device's model is listed, and the version is not below the device's
    /// floor nor the release's own floor.
    pub fn check(&self, name: &TargetName, device: &Device) -> Result<UpdateCandidate, OtaError> {
        self.check_expiry()?;
        let target = self
            .repo
            .targets()
            .signed
            .targets
            .get(&name.to_tough()?)
            .ok_or_else(|| OtaError::UnknownTarget {
                name: name.to_string(),
            })?;
        let release = ReleaseInfo::from_custom(&target.custom)?;
        if !release.supports(&device.model) {
            let supported: Vec<&str> = release.hardware().iter().map(|m| m.as_str()).collect();
            return Err(OtaError::WrongHardware {
                name: name.to_string(),
                model: device.model.to_string(),
                supported: supported.join(", "),
            });
        }
        for floor in [device.floor.as_ref(), release.floor()]
            .into_iter()
            .flatten()
        {
            if release.version() < floor {
                return Err(OtaError::BelowFloor {
                    version: release.version().clone(),
                    floor: floor.clone(),
                });
            }
        }
        let sha256 = Sha256::from_slice(&target.hashes.sha256).ok_or_else(|| {
            OtaError::refused(
                MetadataRole::Targets,
                format!("target {name}: sha256 is not 32 bytes"),
            )
        })?;
        let sha512 = match target.hashes._extra.get("sha512") {
            None => None,
            Some(v) => {
                let bytes = v
                    .as_str()
                    .and_then(|s| hex::decode(s).ok())
                    .filter(|b| b.len() == 64)
                    .ok_or_else(|| {
                        OtaError::refused(
                            MetadataRole::Targets,
                            format!("target {name}: bad sha512"),
                        )
                    })?;
                Some(bytes)
            }
        };
        let file = if self.repo.root().signed.consistent_snapshot {
            format!("{sha256}.{name}")
        } else {
            name.to_string()
        };
        let url = self
            .targets_base
            .join(&file)
            .map_err(|e| OtaError::malformed("target url", e))?;
        Ok(UpdateCandidate {
            name: name.clone(),
            release,
            length: target.length,
            sha256,
            sha512,
            url,
        })
    }

    /// The highest-version target that passes [`UpdateClient::check`] for
    /// `device`, if any. Targets that fail it are skipped.
    pub fn latest_for(&self, device: &Device) -> Result<Option<UpdateCandidate>, OtaError> {
        self.check_expiry()?;
        let mut best: Option<UpdateCandidate> = None;
        for name in self.repo.targets().signed.targets.keys() {
            let Ok(name) = TargetName::from_tough(name) else {
                continue;
            };
            let Ok(candidate) = self.check(&name, device) else {
                continue;
            };
            if best
                .as_ref()
                .is_none_or(|b| candidate.release.version() > b.release.version())
            {
                best = Some(candidate);
            }
        }
        Ok(best)
    }

    /// Downloads a candidate into `dir` with resume, and verifies it.
    pub async fn download(
        &self,
        candidate: &UpdateCandidate,
        fetch: &dyn RangeFetch,
        dir: &Path,
    ) -> Result<VerifiedArtifact, OtaError> {
        download::download(candidate, fetch, dir).await
    }
}

/// The root to start from: the datastore's `root.json` (written by tough
/// after it verified the root chain) if it is newer than the provisioned
/// one and self-consistent, else the provisioned root.
async fn starting_root(provisioned: &[u8], datastore: &Path) -> Result<Vec<u8>, OtaError> {
    let base: Signed<Root> = serde_json::from_slice(provisioned)
        .map_err(|e| OtaError::malformed("trusted root metadata", e))?;
    let Ok(bytes) = tokio::fs::read(datastore.join("root.json")).await else {
        return Ok(provisioned.to_vec());
    };
    match serde_json::from_slice::<Signed<Root>>(&bytes) {
        Ok(stored)
            if stored.signed.version > base.signed.version
                && stored.signed.verify_role(&stored).is_ok() =>
        {
            Ok(bytes)
        }
        _ => Ok(provisioned.to_vec()),
    }
}

fn with_slash(url: Url) -> Url {
    if url.path().ends_with('/') {
        return url;
    }
    let mut url = url;
    let path = format!("{}/", url.path());
    url.set_path(&path);
    url
}
