//! `bulwark ota root ...`: the update repository's root — show it, rotate
//! its keys.
//!
//! `rotate` asks the server for the next root (the current keys with the
//! requested roles changed), checks that it says what was asked, shows the
//! changes, signs it here with every `--sign-key` (the old and the new root
//! keys: private keys never leave this machine) and uploads it. Without
//! `--sign-key` only a dev-mode server, which holds its root key, signs.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use bulwark_api_types::{OtaRoot, RootRoleChange, RotateRoot};
use bulwark_ota::{PublicKey, RootSummary, SigningKey};

use super::super::output::{emit, emit_json, key_values, ts, Table};
use super::super::Ctx;
use super::read_key;

#[derive(clap::Subcommand, Debug)]
pub(super) enum RootSub {
    /// Show the current root: version, expiry, each role's threshold and key ids.
    ///
    /// Example: bulwark ota root show
    Show,
    /// Publish the next root version with new keys for some roles.
    ///
    /// Roles not named keep their keys. The new root must be signed by a
    /// threshold of the CURRENT root keys and by a threshold of the NEW
    /// ones: pass both private keys with --sign-key (they are used here and
    /// never sent). Devices provisioned with any earlier root follow the
    /// chain to the new one. Snapshot and timestamp keys are the server's
    /// online keys: only keys it holds are accepted. After a targets key
    /// change, devices refuse the current releases until the next release is
    /// signed with the new targets key.
    ///
    /// Example (replace the root key):
    ///   bulwark ota keygen --out root-2.pem          # also writes root-2.pub
    ///   bulwark ota root rotate --new-root-pub root-2.pub --sign-key root.pem --sign-key root-2.pem
    ///
    /// Example (new targets key; the root key stays and signs as old and new):
    ///   bulwark ota root rotate --targets-pub targets-2.pub --sign-key root.pem
    #[command(verbatim_doc_comment)]
    Rotate {
        /// A private key to sign the new root with: the current root key(s)
        /// and the new one(s). Repeat for several.
        #[arg(long = "sign-key", alias = "root-key", value_name = "FILE")]
        sign_keys: Vec<PathBuf>,
        /// A public key of the new root role (PEM, NAME.pub from `ota keygen`). Repeat for several.
        #[arg(long = "new-root-pub", alias = "root-pub", value_name = "FILE")]
        root_pub: Vec<PathBuf>,
        /// How many root keys must sign later roots (default: unchanged).
        #[arg(long, value_name = "N")]
        root_threshold: Option<u64>,
        /// A public key of the new targets role (signs releases). Repeat for several.
        #[arg(long = "targets-pub", value_name = "FILE")]
        targets_pub: Vec<PathBuf>,
        /// How many targets keys must sign (default: unchanged).
        #[arg(long, value_name = "N")]
        targets_threshold: Option<u64>,
        /// A snapshot public key (must be one the server holds). Repeat for several.
        #[arg(long = "snapshot-pub", value_name = "FILE")]
        snapshot_pub: Vec<PathBuf>,
        /// How many snapshot keys must sign (default: unchanged).
        #[arg(long, value_name = "N")]
        snapshot_threshold: Option<u64>,
        /// A timestamp public key (must be one the server holds). Repeat for several.
        #[arg(long = "timestamp-pub", value_name = "FILE")]
        timestamp_pub: Vec<PathBuf>,
        /// How many timestamp keys must sign (default: unchanged).
        #[arg(long, value_name = "N")]
        timestamp_threshold: Option<u64>,
        /// Show what would change; sign and upload nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// What was asked for one role, to check the prepared root against.
struct Wanted {
    role: &'static str,
    /// Key ids, when the keys change.
    keys: Option<BTreeSet<String>>,
    threshold: Option<u64>,
}

/// A role's requested change, as sent and as checked against what the
/// server prepared.
fn role_change(
    files: &[PathBuf],
    threshold: Option<u64>,
) -> anyhow::Result<Option<(RootRoleChange, Option<BTreeSet<String>>)>> {
    if files.is_empty() && threshold.is_none() {
        return Ok(None);
    }
    let mut pems = Vec::new();
    let mut ids = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let key = PublicKey::from_pem(text.as_bytes()).with_context(|| {
            format!(
                "{} is not an Ed25519 public key (the NAME.pub file `bulwark ota keygen` writes)",
                file.display()
            )
        })?;
        ids.insert(key.key_id().to_string());
        pems.push(text);
    }
    let keys = (!pems.is_empty()).then_some(pems);
    let wanted = keys.is_some().then_some(ids);
    Ok(Some((RootRoleChange { keys, threshold }, wanted)))
}

pub(super) async fn run(cmd: RootSub, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match cmd {
        RootSub::Show => {
            let root = ctx.client.ota_root().await?;
            if ctx.json() {
                emit_json(&root)?;
            } else {
                emit(&show(&root))?;
            }
        }
        RootSub::Rotate {
            sign_keys,
            root_pub,
            root_threshold,
            targets_pub,
            targets_threshold,
            snapshot_pub,
            snapshot_threshold,
            timestamp_pub,
            timestamp_threshold,
            dry_run,
        } => {
            let keys = sign_keys
                .iter()
                .map(|p| read_key(p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut req = RotateRoot::default();
            let mut wanted: Vec<Wanted> = Vec::new();
            for (role, files, threshold, slot) in [
                ("root", &root_pub, root_threshold, &mut req.root),
                ("targets", &targets_pub, targets_threshold, &mut req.targets),
                (
                    "snapshot",
                    &snapshot_pub,
                    snapshot_threshold,
                    &mut req.snapshot,
                ),
                (
                    "timestamp",
                    &timestamp_pub,
                    timestamp_threshold,
                    &mut req.timestamp,
                ),
            ] {
                if let Some((change, ids)) = role_change(files, threshold)? {
                    wanted.push(Wanted {
                        role,
                        keys: ids,
                        threshold: change.threshold,
                    });
                    *slot = Some(change);
                }
            }
            let current = ctx.client.ota_root().await?;
            let prepared = ctx.client.prepare_root(&req).await?;
            let bytes = prepared.unsigned_root.into_bytes();
            let next = bulwark_ota::describe_root(&bytes)
                .context("the server's prepared root is not root metadata")?;
            check_prepared(&current, &next, &wanted)?;
            let changes = diff(&current, &next);
            eprintln!(
                "root version {} → {} (expires {}):\n{}",
                current.version,
                next.version,
                ts(next.expires.into()),
                changes
            );
            if dry_run {
                return Ok(ExitCode::SUCCESS);
            }
            let published = if keys.is_empty() {
                // Only a dev server holds its root key; others answer how
                // to sign offline.
                ctx.client.publish_root(&req).await?
            } else {
                let signed = sign(&current, &next, bytes, &keys)?;
                ctx.client
                    .publish_root(&RotateRoot {
                        signed_root: Some(
                            String::from_utf8(signed).context("signed root is not UTF-8")?,
                        ),
                        ..RotateRoot::default()
                    })
                    .await?
            };
            if ctx.json() {
                emit_json(&published)?;
            } else {
                emit(&format!("published root version {}", published.version))?;
            }
            if wanted
                .iter()
                .any(|w| w.role == "targets" && w.keys.is_some())
            {
                eprintln!(
                    "note: devices refuse the current releases until the next release is signed \
                     with the new targets key"
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Refuses to sign unless the prepared root is the next version and each
/// role asked for has exactly the keys and threshold asked for.
fn check_prepared(current: &OtaRoot, next: &RootSummary, wanted: &[Wanted]) -> anyhow::Result<()> {
    if next.version != current.version + 1 {
        bail!(
            "the server prepared root version {}, not {}: refusing to sign",
            next.version,
            current.version + 1
        );
    }
    for Wanted {
        role,
        keys,
        threshold,
    } in wanted
    {
        let Some(got) = next.roles.iter().find(|r| r.role.as_str() == *role) else {
            bail!("the server's prepared root has no {role} role: refusing to sign");
        };
        let got_ids: BTreeSet<String> = got.key_ids.iter().map(ToString::to_string).collect();
        if keys.as_ref().is_some_and(|ids| *ids != got_ids)
            || threshold.is_some_and(|t| t != got.threshold)
        {
            bail!("the server's prepared root does not give {role} the keys or threshold asked for: refusing to sign");
        }
    }
    Ok(())
}

/// Signs with each key, saying whether it is a key of the current root,
/// of the new one, or of neither (refused: it would add nothing).
fn sign(
    current: &OtaRoot,
    next: &RootSummary,
    mut bytes: Vec<u8>,
    keys: &[SigningKey],
) -> anyhow::Result<Vec<u8>> {
    let old_ids: BTreeSet<&str> = current
        .roles
        .iter()
        .filter(|r| r.role == "root")
        .flat_map(|r| r.key_ids.iter().map(String::as_str))
        .collect();
    let new_ids: BTreeSet<String> = next
        .roles
        .iter()
        .filter(|r| r.role.as_str() == "root")
        .flat_map(|r| r.key_ids.iter().map(ToString::to_string))
        .collect();
    for key in keys {
        let id = key.key_id().to_string();
        let (old, new) = (old_ids.contains(id.as_str()), new_ids.contains(&id));
        let as_what = match (old, new) {
            (true, true) => "current and new root key",
            (true, false) => "current root key",
            (false, true) => "new root key",
            (false, false) => {
                bail!("key {id} is neither a current nor a new root key: refusing to sign with it")
            }
        };
        bytes = bulwark_ota::sign_root_metadata(&bytes, key)
            .context("cannot sign the root metadata")?;
        eprintln!("signed with {id} ({as_what})");
    }
    Ok(bytes)
}

/// One line per role: threshold and key ids, with what was added/removed.
fn diff(current: &OtaRoot, next: &RootSummary) -> String {
    let mut t = Table::new(&["ROLE", "THRESHOLD", "KEYS", "CHANGE"]);
    for role in &next.roles {
        let new_ids: BTreeSet<String> = role.key_ids.iter().map(ToString::to_string).collect();
        let old = current.roles.iter().find(|r| r.role == role.role.as_str());
        let old_ids: BTreeSet<String> = old
            .map(|r| r.key_ids.iter().cloned().collect())
            .unwrap_or_default();
        let old_threshold = old.map(|r| r.threshold).unwrap_or_default();
        let mut change = Vec::new();
        for id in new_ids.difference(&old_ids) {
            change.push(format!("+{}", short(id)));
        }
        for id in old_ids.difference(&new_ids) {
            change.push(format!("-{}", short(id)));
        }
        if old_threshold != role.threshold {
            change.push(format!("threshold {old_threshold} → {}", role.threshold));
        }
        t.row(vec![
            role.role.to_string(),
            role.threshold.to_string(),
            new_ids
                .iter()
                .map(|i| short(i))
                .collect::<Vec<_>>()
                .join(","),
            if change.is_empty() {
                "unchanged".into()
            } else {
                change.join(" ")
            },
        ]);
    }
    t.render()
}

fn short(id: &str) -> &str {
    id.get(..16).unwrap_or(id)
}

fn show(root: &OtaRoot) -> String {
    let mut t = Table::new(&["ROLE", "THRESHOLD", "KEY IDS"]);
    for r in &root.roles {
        t.row(vec![
            r.role.clone(),
            r.threshold.to_string(),
            r.key_ids.join(","),
        ]);
    }
    format!(
        "{}\n{}",
        key_values(&[
            ("version", root.version.to_string()),
            ("expires", ts(root.expires)),
        ]),
        t.render()
    )
}
