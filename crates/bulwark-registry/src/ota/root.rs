//! Rotating the update repository's root (TUF 5.3.4): the server prepares
//! version N+1 (the current keys with the requested roles replaced), a
//! threshold of version N's root keys and of N+1's sign it where the keys
//! are kept (`bulwark ota root rotate`), and the server accepts it.
//!
//! - An admin's decision (`Action::RotateOtaRoot`): the root decides what
//!   every device trusts.
//! - A root whose snapshot or timestamp threshold the server's online keys
//!   would not meet is refused when prepared and when accepted: the server
//!   could no longer sign them, and devices would stop updating when the
//!   timestamp expires.
//! - Files first, then the audit entry (`OtaRootPublished`), then
//!   snapshot and timestamp are re-signed if the new root no longer
//!   accepts their signatures (the periodic refresh path).
//! - Dev mode only: the server holds the root key and may sign a new root
//!   itself, as it signs releases.

use std::num::NonZeroU64;
use std::time::SystemTime;

use bulwark_ota::{sign_root_metadata, PublicKey, RootSpec, RootSummary};

use super::{key_err, ota_err};
use crate::auth::Action;
use crate::{Operator, Registry, RegistryError};

/// A change to one role in the next root; `None` keeps what the current
/// root says.
#[derive(Debug, Clone, Default)]
pub struct RoleChange {
    /// The role's new Ed25519 public keys, each a PEM `PUBLIC KEY` block
    /// (what `bulwark ota keygen` writes to `NAME.pub`).
    pub keys: Option<Vec<String>>,
    /// How many of them must sign.
    pub threshold: Option<u64>,
}

/// The roles to change in the next root.
#[derive(Debug, Clone, Default)]
pub struct RootChanges {
    pub root: RoleChange,
    pub targets: RoleChange,
    pub snapshot: RoleChange,
    pub timestamp: RoleChange,
}

impl RoleChange {
    fn apply(
        &self,
        role: &str,
        keys: &mut Vec<PublicKey>,
        threshold: &mut NonZeroU64,
    ) -> Result<(), RegistryError> {
        if let Some(pems) = &self.keys {
            if pems.is_empty() {
                return Err(RegistryError::Invalid(format!(
                    "{role}: a role needs at least one key"
                )));
            }
            *keys = pems
                .iter()
                .enumerate()
                .map(|(i, pem)| {
                    PublicKey::from_pem(pem.as_bytes()).map_err(|e| {
                        RegistryError::Invalid(format!(
                            "{role} key {}: {e} (a PEM PUBLIC KEY block, as `bulwark ota keygen` \
                             writes to NAME.pub)",
                            i + 1
                        ))
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(t) = self.threshold {
            *threshold = NonZeroU64::new(t).ok_or_else(|| {
                RegistryError::Invalid(format!("{role}: the threshold must be at least 1"))
            })?;
        }
        Ok(())
    }
}

impl RootChanges {
    /// `spec` with the requested roles replaced.
    pub fn apply(&self, mut spec: RootSpec) -> Result<RootSpec, RegistryError> {
        self.root
            .apply("root", &mut spec.root, &mut spec.root_threshold)?;
        self.targets
            .apply("targets", &mut spec.targets, &mut spec.targets_threshold)?;
        self.snapshot
            .apply("snapshot", &mut spec.snapshot, &mut spec.snapshot_threshold)?;
        self.timestamp.apply(
            "timestamp",
            &mut spec.timestamp,
            &mut spec.timestamp_threshold,
        )?;
        Ok(spec)
    }
}

impl Registry {
    /// The newest root: version, expiry, and the keys and threshold of each
    /// role.
    pub async fn ota_root(&self, op: &Operator) -> Result<RootSummary, RegistryError> {
        self.allow(op, Action::ReadOta).await?;
        let ota = self.ota()?.clone();
        tokio::task::spawn_blocking(move || bulwark_ota::describe_root(&ota.repo.root_bytes()?))
            .await
            .map_err(|e| key_err("root task", e))?
            .map_err(ota_err)
    }

    /// The next root, unsigned (canonical JSON): the current keys and
    /// thresholds with `changes` applied, version N+1, to be signed by a
    /// threshold of the current root keys and of the new ones.
    pub async fn ota_prepare_root(
        &self,
        op: &Operator,
        changes: RootChanges,
    ) -> Result<Vec<u8>, RegistryError> {
        self.allow(op, Action::RotateOtaRoot).await?;
        let ota = self.ota()?.clone();
        tokio::task::spawn_blocking(move || {
            let spec = changes.apply(ota.repo.current_spec().map_err(ota_err)?)?;
            spec.check_online(&ota.online).map_err(ota_err)?;
            ota.repo
                .next_root(&spec, SystemTime::now())
                .map_err(ota_err)
        })
        .await
        .map_err(|e| key_err("prepare root task", e))?
    }

    /// Accepts the next root signed offline: exactly version N+1, signed by
    /// a threshold of the current root keys and of its own, unexpired, with
    /// snapshot and timestamp keys the server holds. Returns its version.
    pub async fn ota_accept_root(
        &self,
        op: &Operator,
        signed: &[u8],
    ) -> Result<u64, RegistryError> {
        self.allow(op, Action::RotateOtaRoot).await?;
        let ota = self.ota()?.clone();
        let signed = signed.to_vec();
        let version = tokio::task::spawn_blocking(move || {
            ota.repo
                .accept_root_online(&signed, &ota.online, SystemTime::now())
        })
        .await
        .map_err(|e| key_err("accept root task", e))?
        .map_err(ota_err)?;
        self.root_published(op, version).await?;
        Ok(version)
    }

    /// Dev mode: builds the next root with `changes`, signs it with the
    /// server's own root key and accepts it. Refused when the server holds
    /// no root key, or when the new root names root keys it does not hold
    /// (they must sign too).
    pub async fn ota_sign_root(
        &self,
        op: &Operator,
        changes: RootChanges,
    ) -> Result<u64, RegistryError> {
        self.allow(op, Action::RotateOtaRoot).await?;
        let ota = self.ota()?.clone();
        if ota.root_key.is_none() {
            return Err(RegistryError::Invalid(
                "this server holds no root key: send the new root signed offline by the old and \
                 the new root keys (bulwark ota root rotate --sign-key OLD.pem --sign-key NEW.pem)"
                    .into(),
            ));
        }
        let version = tokio::task::spawn_blocking(move || {
            let now = SystemTime::now();
            let spec = changes.apply(ota.repo.current_spec().map_err(ota_err)?)?;
            let key = ota
                .root_key
                .as_ref()
                .ok_or_else(|| RegistryError::Invalid("this server holds no root key".into()))?;
            let unsigned = ota.repo.next_root(&spec, now).map_err(ota_err)?;
            let signed = sign_root_metadata(&unsigned, key).map_err(ota_err)?;
            ota.repo
                .accept_root_online(&signed, &ota.online, now)
                .map_err(ota_err)
        })
        .await
        .map_err(|e| key_err("sign root task", e))??;
        self.root_published(op, version).await?;
        Ok(version)
    }

    /// After a new root is written: its audit entry, then snapshot and
    /// timestamp re-signed if the new root no longer accepts them.
    async fn root_published(&self, op: &Operator, version: u64) -> Result<(), RegistryError> {
        self.store.ota_root_published(version, op.actor()).await?;
        tracing::info!(version, "OTA root published");
        // The root is published and audited; a failure here is retried by
        // the periodic refresh, so the operator is not told the rotation
        // failed (retrying it would be refused as a stale version).
        if let Err(e) = self.ota_refresh().await {
            tracing::error!(error = %e, "re-signing snapshot and timestamp after a root rotation failed; the periodic refresh retries");
        }
        Ok(())
    }
}
