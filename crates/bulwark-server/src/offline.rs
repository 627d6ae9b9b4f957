//! Commands that read a data directory directly, without a server.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

/// Where the store lives inside a data directory.
pub fn db_path(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("bulwark.db")
}

/// The audit public key written at initialization (`ca/audit.pub`, hex).
pub fn audit_public_key(data_dir: &Path) -> Result<[u8; 32]> {
    let path = data_dir.join("ca").join("audit.pub");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the audit public key {}", path.display()))?;
    let bytes =
        hex::decode(text.trim()).with_context(|| format!("{} is not hex", path.display()))?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("{} is not a 32-byte Ed25519 key", path.display()))
}

/// Parses a hex Ed25519 public key.
fn parse_key(hex_key: &str) -> Result<[u8; 32]> {
    let bytes = hex::decode(hex_key.trim()).context("--audit-key is not hex")?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("--audit-key must be 32 bytes (64 hex digits)"))
}

/// `bulwark audit verify --data-dir DIR [--audit-key HEX]`: exit 0 when the
/// whole log verifies; otherwise print the first bad entry and exit 1. A
/// pinned key that differs from `ca/audit.pub` is itself a failure.
pub fn audit_verify(data_dir: &Path, pinned: Option<&str>) -> Result<ExitCode> {
    let db = db_path(data_dir);
    if !db.exists() {
        bail!(
            "{} holds no Bulwark store ({} is missing)",
            data_dir.display(),
            db.display()
        );
    }
    let key = match pinned {
        Some(hex_key) => {
            let key = parse_key(hex_key)?;
            if audit_public_key(data_dir).ok() != Some(key) {
                eprintln!(
                    "audit log FAILED verification: ca/audit.pub is not the pinned audit key"
                );
                return Ok(ExitCode::FAILURE);
            }
            key
        }
        None => audit_public_key(data_dir)?,
    };
    match bulwark_store::sqlite::verify_audit_offline(&db, &key)
        .with_context(|| format!("cannot read the audit log in {}", db.display()))?
    {
        Ok(r) => {
            println!(
                "audit log OK: {} entries, {} signed checkpoints (last at entry {})",
                r.entries, r.checkpoints, r.last_checkpoint
            );
            if r.last_checkpoint < r.entries {
                println!(
                    "note: entries {}..{} are not yet covered by a signed checkpoint",
                    r.last_checkpoint + 1,
                    r.entries
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("audit log FAILED verification: {e}");
            eprintln!("first bad entry: {}", e.seq());
            Ok(ExitCode::FAILURE)
        }
    }
}
