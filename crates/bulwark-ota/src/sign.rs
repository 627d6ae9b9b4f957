//! Signing TUF metadata, including offline (`bulwark ota sign`).
//!
//! Written on top of tough's schema rather than through its
//! `RepositoryEditor`: the editor signs every role at once with all keys at
//! hand, and cannot add one signature to metadata produced elsewhere. Here a
//! signature is Ed25519 over the role's canonical JSON (tough's
//! `Role::canonical_form`, OLPC canonical JSON), which is exactly what
//! tough's `Root::verify_role` checks, so any TUF client verifies it.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tough::schema::{Role, Root, Signature, Signed, Targets};

use crate::error::{MetadataRole, OtaError};
use crate::keys::SigningKey;

pub(crate) fn canonical<T: Role>(role: &T) -> Result<Vec<u8>, OtaError> {
    role.canonical_form()
        .map_err(|e| OtaError::malformed("metadata (canonical form)", e))
}

/// Adds (or replaces) `key`'s signature on `signed`.
pub(crate) fn add_signature<T: Role>(
    signed: &mut Signed<T>,
    key: &SigningKey,
) -> Result<(), OtaError> {
    let data = canonical(&signed.signed)?;
    let keyid: tough::schema::decoded::Decoded<tough::schema::decoded::Hex> =
        hex::decode(key.key_id().as_str())
            .map_err(|e| OtaError::malformed("key id", e))?
            .into();
    signed.signatures.retain(|s| s.keyid != keyid);
    signed.signatures.push(Signature {
        keyid,
        sig: key.sign(&data).into(),
    });
    Ok(())
}

/// Signs `role` with each key.
pub(crate) fn sign_role<T: Role>(role: T, keys: &[&SigningKey]) -> Result<Signed<T>, OtaError> {
    let mut signed = Signed {
        signed: role,
        signatures: Vec::new(),
    };
    for key in keys {
        add_signature(&mut signed, key)?;
    }
    Ok(signed)
}

/// The bytes of a metadata file: pretty JSON and a newline.
pub(crate) fn file_bytes<T: Serialize>(signed: &Signed<T>) -> Result<Vec<u8>, OtaError> {
    let mut out = serde_json::to_vec_pretty(signed)
        .map_err(|e| OtaError::malformed("metadata (serialization)", e))?;
    out.push(b'\n');
    Ok(out)
}

/// Parses either bare (unsigned) metadata or an already signed file.
fn parse_any<T: Role + DeserializeOwned>(
    bytes: &[u8],
    role: MetadataRole,
) -> Result<Signed<T>, OtaError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| OtaError::malformed(format!("{role} metadata"), e))?;
    let is_signed = value.get("signed").is_some() && value.get("signatures").is_some();
    if is_signed {
        serde_json::from_value(value)
            .map_err(|e| OtaError::malformed(format!("{role} metadata"), e))
    } else {
        let signed = serde_json::from_value(value)
            .map_err(|e| OtaError::malformed(format!("{role} metadata"), e))?;
        Ok(Signed {
            signed,
            signatures: Vec::new(),
        })
    }
}

/// Signs targets metadata with a key: `bytes` is the unsigned metadata the
/// server produced ([`crate::Repository::next_targets`]) or a file already
/// signed by other keys (for a threshold above one). Returns the signed
/// file to hand back to the server.
pub fn sign_targets_metadata(bytes: &[u8], key: &SigningKey) -> Result<Vec<u8>, OtaError> {
    let mut signed: Signed<Targets> = parse_any(bytes, MetadataRole::Targets)?;
    add_signature(&mut signed, key)?;
    file_bytes(&signed)
}

/// Signs root metadata with a key, like [`sign_targets_metadata`]: for a
/// rotation, a threshold of the old root keys and of the new ones must each
/// add their signature.
pub fn sign_root_metadata(bytes: &[u8], key: &SigningKey) -> Result<Vec<u8>, OtaError> {
    let mut signed: Signed<Root> = parse_any(bytes, MetadataRole::Root)?;
    add_signature(&mut signed, key)?;
    file_bytes(&signed)
}

/// What a targets file says, for the offline signer to show before signing.
#[derive(Debug, Clone)]
pub struct TargetsSummary {
    pub version: u64,
    pub expires: std::time::SystemTime,
    pub signatures: usize,
    pub targets: Vec<TargetSummary>,
}

/// One target of a [`TargetsSummary`].
#[derive(Debug, Clone)]
pub struct TargetSummary {
    pub name: String,
    pub length: u64,
    pub sha256: String,
    /// The release fields, or why they do not parse.
    pub release: Result<crate::custom::ReleaseInfo, String>,
}

/// Describes unsigned or signed targets metadata.
pub fn describe_targets(bytes: &[u8]) -> Result<TargetsSummary, OtaError> {
    let signed: Signed<Targets> = parse_any(bytes, MetadataRole::Targets)?;
    let mut targets: Vec<TargetSummary> = signed
        .signed
        .targets
        .iter()
        .map(|(name, t)| TargetSummary {
            name: name.raw().to_owned(),
            length: t.length,
            sha256: hex::encode(&*t.hashes.sha256),
            release: crate::custom::ReleaseInfo::from_custom(&t.custom).map_err(|e| e.to_string()),
        })
        .collect();
    targets.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(TargetsSummary {
        version: signed.signed.version.get(),
        expires: signed.signed.expires.into(),
        signatures: signed.signatures.len(),
        targets,
    })
}

/// What a root file says, for the signer to show before signing and for
/// the operator's `bulwark ota root show`.
#[derive(Debug, Clone)]
pub struct RootSummary {
    pub version: u64,
    pub expires: std::time::SystemTime,
    pub signatures: usize,
    /// Root, targets, snapshot, timestamp, in that order.
    pub roles: Vec<RoleSummary>,
}

/// One role of a [`RootSummary`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleSummary {
    pub role: MetadataRole,
    pub threshold: u64,
    /// Sorted.
    pub key_ids: Vec<crate::keys::KeyId>,
}

/// Describes unsigned or signed root metadata.
pub fn describe_root(bytes: &[u8]) -> Result<RootSummary, OtaError> {
    let signed: Signed<Root> = parse_any(bytes, MetadataRole::Root)?;
    let spec = crate::repo::RootSpec::from_root(&signed.signed)?;
    let role = |role, keys: &[crate::keys::PublicKey], threshold: std::num::NonZeroU64| {
        let mut key_ids: Vec<_> = keys.iter().map(crate::keys::PublicKey::key_id).collect();
        key_ids.sort();
        RoleSummary {
            role,
            threshold: threshold.get(),
            key_ids,
        }
    };
    Ok(RootSummary {
        version: signed.signed.version.get(),
        expires: signed.signed.expires.into(),
        signatures: signed.signatures.len(),
        roles: vec![
            role(MetadataRole::Root, &spec.root, spec.root_threshold),
            role(MetadataRole::Targets, &spec.targets, spec.targets_threshold),
            role(
                MetadataRole::Snapshot,
                &spec.snapshot,
                spec.snapshot_threshold,
            ),
            role(
                MetadataRole::Timestamp,
                &spec.timestamp,
                spec.timestamp_threshold,
            ),
        ],
    })
}
