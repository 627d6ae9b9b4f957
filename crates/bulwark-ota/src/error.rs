//! The crate's error type, and the one place where tough's errors become it.
//!
//! Every refusal a device or the server can meet has its own variant whose
//! message names the attack it stops (rollback, freeze, mix-and-match,
//! arbitrary software, endless data, wrong hardware, below floor), so a
//! caller can report the reason and a test can assert it.

use std::fmt;
use std::path::PathBuf;

use tough::schema::RoleType;

use crate::name::NameRejection;

/// A boxed error kept as a source.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A top-level TUF role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetadataRole {
    Root,
    Targets,
    Snapshot,
    Timestamp,
}

impl MetadataRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MetadataRole::Root => "root",
            MetadataRole::Targets => "targets",
            MetadataRole::Snapshot => "snapshot",
            MetadataRole::Timestamp => "timestamp",
        }
    }

    /// The role of a metadata file name as the client fetches it
    /// (`timestamp.json`, `N.snapshot.json`, ...).
    fn of_file(url_path: &str) -> Option<MetadataRole> {
        let file = url_path.rsplit('/').next().unwrap_or(url_path);
        if file == "timestamp.json" {
            Some(MetadataRole::Timestamp)
        } else if file.ends_with(".snapshot.json") || file == "snapshot.json" {
            Some(MetadataRole::Snapshot)
        } else if file.ends_with(".targets.json") || file == "targets.json" {
            Some(MetadataRole::Targets)
        } else if file.ends_with(".root.json") || file == "root.json" {
            Some(MetadataRole::Root)
        } else {
            None
        }
    }
}

impl From<RoleType> for MetadataRole {
    fn from(role: RoleType) -> Self {
        match role {
            RoleType::Root => MetadataRole::Root,
            RoleType::Snapshot => MetadataRole::Snapshot,
            RoleType::Timestamp => MetadataRole::Timestamp,
            RoleType::Targets | RoleType::DelegatedTargets => MetadataRole::Targets,
        }
    }
}

impl fmt::Display for MetadataRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtaError {
    #[error("invalid target name: {0}")]
    InvalidName(NameRejection),

    #[error("invalid hardware model: {0}")]
    InvalidHardwareModel(NameRejection),

    #[error("invalid release fields: {reason}")]
    InvalidRelease { reason: String },

    #[error("invalid key: {reason}")]
    InvalidKey { reason: &'static str },

    #[error("malformed {what}")]
    Malformed {
        what: String,
        #[source]
        source: BoxError,
    },

    /// Signed metadata that is well formed but not acceptable (wrong
    /// version, delegations, a target missing from the store, ...).
    #[error("{role} metadata refused: {reason}")]
    Refused { role: MetadataRole, reason: String },

    #[error("artifact larger than the maximum of {max} bytes")]
    ArtifactTooLarge { max: u64 },

    #[error("artifact {sha256} with length {length} is not in the store")]
    ArtifactMissing { sha256: String, length: u64 },

    #[error(
        "target {name} is already published with other content (published targets are immutable)"
    )]
    TargetImmutable { name: String },

    #[error("unknown target {name}")]
    UnknownTarget { name: String },

    #[error("wrong hardware: {name} is for {supported}, not for {model}")]
    WrongHardware {
        name: String,
        model: String,
        supported: String,
    },

    #[error("below floor: version {version} is below the version floor {floor}")]
    BelowFloor {
        version: semver::Version,
        floor: semver::Version,
    },

    #[error("rollback of {role} metadata refused: a newer version was seen before")]
    Rollback {
        role: MetadataRole,
        #[source]
        source: Option<BoxError>,
    },

    #[error("{role} metadata has expired (freeze attack)")]
    Expired {
        role: MetadataRole,
        #[source]
        source: Option<BoxError>,
    },

    #[error("bad signature: {role} metadata is not signed by a threshold of its trusted keys")]
    BadSignature {
        role: MetadataRole,
        #[source]
        source: Option<BoxError>,
    },

    #[error("mix-and-match: {role} metadata does not match what the metadata listing it says")]
    MixAndMatch {
        role: MetadataRole,
        #[source]
        source: Option<BoxError>,
    },

    #[error("hash mismatch for {what}")]
    HashMismatch {
        what: String,
        #[source]
        source: Option<BoxError>,
    },

    #[error("length exceeded (endless data): {what} is longer than {max} bytes")]
    LengthExceeded {
        what: String,
        max: u64,
        #[source]
        source: Option<BoxError>,
    },

    #[error("download of {name} incomplete: {have} of {want} bytes")]
    Incomplete { name: String, have: u64, want: u64 },

    #[error("not found: {what}")]
    NotFound { what: String },

    #[error("transport error fetching {url}")]
    Transport {
        url: String,
        #[source]
        source: BoxError,
    },

    #[error("i/o error on {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("tuf repository error")]
    Tuf(#[source] Box<tough::error::Error>),
}

pub type Result<T, E = OtaError> = std::result::Result<T, E>;

impl OtaError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> OtaError {
        let path = path.into();
        move |source| OtaError::Io { path, source }
    }

    pub(crate) fn refused(role: MetadataRole, reason: impl Into<String>) -> OtaError {
        OtaError::Refused {
            role,
            reason: reason.into(),
        }
    }

    pub(crate) fn malformed(what: impl Into<String>, source: impl Into<BoxError>) -> OtaError {
        OtaError::Malformed {
            what: what.into(),
            source: source.into(),
        }
    }
}

impl From<tough::error::Error> for OtaError {
    fn from(err: tough::error::Error) -> Self {
        from_tough(err)
    }
}

/// Maps tough's client errors to the refusal they stand for.
fn from_tough(err: tough::error::Error) -> OtaError {
    use tough::error::Error as E;
    match err {
        E::ExpiredMetadata { role, .. } => OtaError::Expired {
            role: role.into(),
            source: Some(Box::new(err)),
        },
        E::VerifyMetadata { role, .. } => OtaError::BadSignature {
            role: role.into(),
            source: Some(Box::new(err)),
        },
        E::VerifyTrustedMetadata { .. } => OtaError::BadSignature {
            role: MetadataRole::Root,
            source: Some(Box::new(err)),
        },
        E::VerifyRoleMetadata { .. } => OtaError::BadSignature {
            role: MetadataRole::Targets,
            source: Some(Box::new(err)),
        },
        E::OlderMetadata { role, .. } => OtaError::Rollback {
            role: role.into(),
            source: Some(Box::new(err)),
        },
        E::OlderSnapshotInTimestamp { .. } => OtaError::Rollback {
            role: MetadataRole::Snapshot,
            source: Some(Box::new(err)),
        },
        E::SnapshotRoleRollback { .. } | E::SnapshotRoleMissing { .. } => OtaError::Rollback {
            role: MetadataRole::Targets,
            source: Some(Box::new(err)),
        },
        E::VersionMismatch { role, .. } => OtaError::MixAndMatch {
            role: role.into(),
            source: Some(Box::new(err)),
        },
        E::ParseMetadata { role, .. } => {
            OtaError::malformed(format!("{} metadata", MetadataRole::from(role)), err)
        }
        E::ParseTrustedMetadata { .. } => OtaError::malformed("trusted root metadata", err),
        E::TimestampMetaLength { .. } | E::MissingSnapshotMeta { .. } => {
            OtaError::refused(MetadataRole::Timestamp, err.to_string().to_lowercase())
        }
        E::SnapshotTargetsMetaMissing { .. } | E::MetaMissing { .. } => {
            OtaError::refused(MetadataRole::Snapshot, err.to_string().to_lowercase())
        }
        E::Transport { .. } => from_transport(err),
        other => OtaError::Tuf(Box::new(other)),
    }
}

/// A transport error may carry tough's own length or hash check.
fn from_transport(err: tough::error::Error) -> OtaError {
    let tough::error::Error::Transport { url, source, .. } = &err else {
        return OtaError::Tuf(Box::new(err));
    };
    let role = MetadataRole::of_file(url.path());
    let what = match role {
        Some(role) => format!("{role} metadata"),
        None => format!("target {}", url.path().rsplit('/').next().unwrap_or("")),
    };
    let inner =
        std::error::Error::source(source).and_then(|e| e.downcast_ref::<tough::error::Error>());
    match inner {
        // The length or hash of snapshot and targets metadata is pinned by
        // the signed metadata listing them: a mismatch is a mix-and-match.
        Some(tough::error::Error::HashMismatch { .. }) => match role {
            Some(role) => OtaError::MixAndMatch {
                role,
                source: Some(Box::new(err)),
            },
            None => OtaError::HashMismatch {
                what,
                source: Some(Box::new(err)),
            },
        },
        Some(tough::error::Error::MaxSizeExceeded {
            max_size,
            specifier,
            ..
        }) => match role {
            Some(role) if specifier.ends_with(".json") => OtaError::MixAndMatch {
                role,
                source: Some(Box::new(err)),
            },
            _ => OtaError::LengthExceeded {
                what,
                max: *max_size,
                source: Some(Box::new(err)),
            },
        },
        _ if source.kind() == tough::TransportErrorKind::FileNotFound => {
            OtaError::NotFound { what }
        }
        _ => OtaError::Transport {
            url: url.to_string(),
            source: Box::new(err),
        },
    }
}
