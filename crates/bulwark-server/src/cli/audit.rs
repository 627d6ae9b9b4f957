//! `bulwark audit ...`: read, export and verify the hash-chained audit log.
//!
//! `audit verify` asks the server to re-check the chain; with `--data-dir`
//! it checks a data directory offline instead, without any server.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use bulwark_api_types::{AuditEntry, AuditVerification};

use super::output::{emit, emit_json, Table};
use super::Ctx;

/// The audit log: list, export and verify.
#[derive(clap::Args, Debug)]
pub struct AuditCmd {
    #[command(subcommand)]
    cmd: AuditSub,
}

#[derive(clap::Subcommand, Debug)]
enum AuditSub {
    /// List entries, oldest first.
    ///
    /// Example: bulwark audit ls --after 1200 --limit 50
    Ls {
        /// Only entries after this sequence number.
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
        /// At most this many entries.
        #[arg(long, value_name = "N")]
        limit: Option<u32>,
    },
    /// Export the whole log as JSON lines (one entry per line).
    ///
    /// Example: bulwark audit export --out audit-2025-01.jsonl
    Export {
        /// Write to this file instead of stdout (completed only when the export is whole).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Verify the hash chain and checkpoints.
    ///
    /// Exits 0 with a one-line summary when the log is intact, 1 naming the
    /// first bad entry otherwise. By default the server verifies its own log;
    /// with --data-dir the data directory is checked offline (stop the server
    /// first or use a copy).
    ///
    /// Example: bulwark audit verify
    ///
    /// Example: bulwark audit verify --data-dir /var/lib/bulwark --audit-key 3f9a…
    Verify {
        /// Verify this data directory offline instead of asking the server.
        #[arg(long, value_name = "DIR")]
        data_dir: Option<PathBuf>,
        /// With --data-dir: the audit public key (hex, as logged at first
        /// start), kept outside the data directory. Without it the key in
        /// <data-dir>/ca/audit.pub is trusted, which someone able to rewrite
        /// the data directory could replace.
        #[arg(long, value_name = "HEX", requires = "data_dir")]
        audit_key: Option<String>,
    },
}

impl AuditCmd {
    /// The data directory (and pinned key) when this is an offline
    /// `audit verify --data-dir DIR [--audit-key HEX]`.
    pub(super) fn offline_data_dir(&self) -> Option<(&Path, Option<&str>)> {
        match &self.cmd {
            AuditSub::Verify {
                data_dir: Some(dir),
                audit_key,
            } => Some((dir.as_path(), audit_key.as_deref())),
            _ => None,
        }
    }
}

pub(super) async fn run(cmd: AuditCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match cmd.cmd {
        AuditSub::Ls { after, limit } => {
            let entries = ctx.client.list_audit(after, limit).await?;
            if ctx.json() {
                emit_json(&entries)?;
            } else {
                emit(&entry_table(&entries))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditSub::Export { out } => {
            export(ctx, out.as_deref()).await?;
            Ok(ExitCode::SUCCESS)
        }
        AuditSub::Verify {
            data_dir: Some(dir),
            audit_key,
        } => crate::offline::audit_verify(&dir, audit_key.as_deref()),
        AuditSub::Verify { data_dir: None, .. } => {
            let v = ctx.client.verify_audit().await?;
            if ctx.json() {
                emit_json(&v)?;
            } else if v.ok {
                emit(&ok_summary(&v))?;
            } else {
                eprintln!("error: {}", failure_summary(&v));
            }
            Ok(if v.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// Streams the export to stdout, or to `FILE.partial` renamed to `FILE` once whole.
async fn export(ctx: &Ctx, out: Option<&Path>) -> anyhow::Result<()> {
    let Some(path) = out else {
        let mut stdout = tokio::io::stdout();
        ctx.client.export_audit(&mut stdout).await?;
        return Ok(());
    };
    let mut partial = OsString::from(path.as_os_str());
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let mut file = tokio::fs::File::create(&partial)
        .await
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let written = ctx.client.export_audit(&mut file).await;
    let lines = match written {
        Ok(lines) => lines,
        Err(err) => {
            drop(file);
            // Best effort: the partial file is useless, the export error matters.
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(err.into());
        }
    };
    file.sync_all()
        .await
        .with_context(|| format!("cannot write {}", partial.display()))?;
    tokio::fs::rename(&partial, path)
        .await
        .with_context(|| format!("cannot rename {} to {}", partial.display(), path.display()))?;
    eprintln!(
        "exported {lines} entr{} to {}",
        if lines == 1 { "y" } else { "ies" },
        path.display()
    );
    Ok(())
}

fn ok_summary(v: &AuditVerification) -> String {
    format!(
        "audit log ok: {} entries, {} checkpoints, last checkpoint at entry {}",
        v.entries, v.checkpoints, v.last_checkpoint
    )
}

fn failure_summary(v: &AuditVerification) -> String {
    let what = v.error.as_deref().unwrap_or("chain broken");
    match v.first_bad_entry {
        Some(seq) => format!("audit log verification failed at entry {seq}: {what}"),
        None => format!("audit log verification failed: {what}"),
    }
}

const EVENT_WIDTH: usize = 80;

fn entry_table(entries: &[AuditEntry]) -> String {
    let mut t = Table::new(&["SEQ", "TIME", "ACTOR", "EVENT"]);
    for e in entries {
        t.row(vec![
            e.seq.to_string(),
            e.ts.clone(),
            e.actor.clone(),
            event_summary(&e.event),
        ]);
    }
    t.render()
}

/// The event as compact JSON, cut to [`EVENT_WIDTH`] characters.
fn event_summary(event: &serde_json::Value) -> String {
    let text = event.to_string();
    if text.chars().count() <= EVENT_WIDTH {
        return text;
    }
    let mut cut: String = text.chars().take(EVENT_WIDTH - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verification(ok: bool, first_bad: Option<u64>, error: Option<&str>) -> AuditVerification {
        AuditVerification {
            ok,
            entries: 1234,
            checkpoints: 12,
            last_checkpoint: 1200,
            first_bad_entry: first_bad,
            error: error.map(str::to_owned),
        }
    }

    #[test]
    fn summaries() {
        assert_eq!(
            ok_summary(&verification(true, None, None)),
            "audit log ok: 1234 entries, 12 checkpoints, last checkpoint at entry 1200"
        );
        assert_eq!(
            failure_summary(&verification(false, Some(17), Some("hash mismatch"))),
            "audit log verification failed at entry 17: hash mismatch"
        );
        assert_eq!(
            failure_summary(&verification(false, None, None)),
            "audit log verification failed: chain broken"
        );
    }

    #[test]
    fn long_events_are_cut() {
        let short = serde_json::json!({"type": "device_created"});
        assert_eq!(event_summary(&short), r#"{"type":"device_created"}"#);
        let long = serde_json::json!({"detail": "x".repeat(200)});
        let s = event_summary(&long);
        assert_eq!(s.chars().count(), EVENT_WIDTH);
        assert!(s.ends_with('…'));
    }
}
