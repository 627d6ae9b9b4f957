//! `bulwark ota ...`: signed releases for the update repository.
//!
//! `release create` uploads, signs and publishes in one step: with
//! `--targets-key FILE` the targets metadata is signed here (the key never
//! leaves this machine); without it, only a dev-mode server (which holds
//! its own targets key) signs. `sign` and `keygen` work offline, with no
//! server at all: on the machine that keeps the release key, `sign` shows
//! what it is about to sign before writing the signed file. `root`
//! (in `ota/root.rs`) shows and rotates the repository's root.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use bulwark_api_types::{CreateRelease, OtaRelease};
use bulwark_ota::SigningKey;

use super::output::{emit, emit_json, key_values, opt, ts, Table};
use super::Ctx;

mod root;

/// OTA releases: upload, sign, publish, list.
#[derive(clap::Args, Debug)]
pub struct OtaCmd {
    #[command(subcommand)]
    cmd: OtaSub,
}

#[derive(clap::Subcommand, Debug)]
enum OtaSub {
    /// Releases: create (upload + sign + publish), list, show.
    Release {
        #[command(subcommand)]
        cmd: ReleaseSub,
    },
    /// Rollouts: create, list, status (--watch), pause, resume, cancel.
    Rollout {
        #[command(subcommand)]
        cmd: super::rollout::RolloutSub,
    },
    /// The repository's root: show it, rotate its keys (admins).
    Root {
        #[command(subcommand)]
        cmd: root::RootSub,
    },
    /// Sign targets metadata offline with a key file (no server needed).
    ///
    /// Prints what the metadata lists (version, expiry, each target with
    /// its hash and release fields), then writes the signed metadata.
    ///
    /// Example: bulwark ota sign --key targets.pem unsigned.json --out signed.json
    Sign {
        /// The unsigned (or partly signed) targets metadata.
        input: PathBuf,
        /// The targets signing key (Ed25519 PKCS#8 PEM).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Where to write the signed metadata.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Generate an Ed25519 signing key file (mode 0600; refuses to overwrite).
    ///
    /// Also writes the public key next to it (FILE with the extension
    /// .pub, a PEM PUBLIC KEY block), for `ota root rotate --new-root-pub`
    /// and the like.
    ///
    /// Example: bulwark ota keygen --out targets.pem    # and targets.pub
    Keygen {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(clap::Subcommand, Debug)]
enum ReleaseSub {
    /// Upload FILE, sign the new targets metadata and publish the release.
    ///
    /// The artifact is streamed and stored by its SHA-256; the release is
    /// immutable once published. Devices refuse it unless their hardware
    /// model is listed, and, once installed, refuse anything below --floor.
    ///
    /// Example: bulwark ota release create fw-2.1.0.img --name gw-fw-2.1.0 --version 2.1.0 --hardware gw-v2 --targets-key targets.pem
    #[command(disable_version_flag = true)]
    Create {
        /// The artifact.
        file: PathBuf,
        /// The target name devices fetch it by (letters, digits, '.', '_', '-').
        #[arg(long, value_name = "NAME")]
        name: String,
        /// Semantic version of what it installs.
        #[arg(long, value_name = "VERSION")]
        version: String,
        /// A hardware model it may be installed on (repeat for several).
        #[arg(long = "hardware", value_name = "MODEL", required = true)]
        hardware: Vec<String>,
        /// Anti-rollback floor: devices that install it refuse any later release below it.
        #[arg(long, value_name = "VERSION")]
        floor: Option<String>,
        /// Sign here with this targets key (otherwise the server must hold one: dev mode).
        #[arg(long, value_name = "FILE")]
        targets_key: Option<PathBuf>,
    },
    /// List published releases.
    ///
    /// Example: bulwark ota release ls
    #[command(alias = "ls")]
    List,
    /// Show a release.
    ///
    /// Example: bulwark ota release show gw-fw-2.1.0
    Show { name: String },
}

impl OtaCmd {
    /// Whether the command runs without a server (`sign`, `keygen`).
    pub fn is_offline(&self) -> bool {
        matches!(self.cmd, OtaSub::Sign { .. } | OtaSub::Keygen { .. })
    }
}

/// `sign` and `keygen`, which need no server.
pub fn run_offline(cmd: OtaCmd) -> anyhow::Result<ExitCode> {
    match cmd.cmd {
        OtaSub::Sign { input, key, out } => {
            let unsigned = std::fs::read(&input)
                .with_context(|| format!("cannot read {}", input.display()))?;
            let key = read_key(&key)?;
            describe(&unsigned)?;
            let signed = bulwark_ota::sign_targets_metadata(&unsigned, &key)
                .context("cannot sign the targets metadata")?;
            write_new(&out, &signed)?;
            emit(&format!(
                "signed with key {} → {}",
                key.key_id().as_str(),
                out.display()
            ))?;
        }
        OtaSub::Keygen { out } => {
            let public = out.with_extension("pub");
            if public == out {
                bail!("--out names the private key file; the public key goes to NAME.pub");
            }
            if public.exists() {
                bail!("{} exists: refusing to overwrite it", public.display());
            }
            let key = SigningKey::generate().context("cannot generate a key")?;
            key.write_file(&out)
                .with_context(|| format!("cannot write {}", out.display()))?;
            let pem = key
                .public_key()
                .to_pem()
                .context("cannot encode the public key")?;
            write_new(&public, pem.as_bytes())?;
            emit(&format!(
                "wrote Ed25519 key {} to {} (mode 0600; keep it offline) and its public key to {}",
                key.key_id().as_str(),
                out.display(),
                public.display()
            ))?;
        }
        OtaSub::Release { .. } | OtaSub::Rollout { .. } | OtaSub::Root { .. } => {
            unreachable!("release, rollout and root commands need a server")
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_key(path: &Path) -> anyhow::Result<SigningKey> {
    SigningKey::read_file(path).with_context(|| format!("cannot use the key {}", path.display()))
}

fn write_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist)", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Shows what a targets file lists, so the signer sees what they sign.
fn describe(bytes: &[u8]) -> anyhow::Result<()> {
    let d = bulwark_ota::describe_targets(bytes).context("not targets metadata")?;
    let expires = time::OffsetDateTime::from(d.expires);
    let mut t = Table::new(&["TARGET", "VERSION", "HARDWARE", "FLOOR", "LENGTH", "SHA256"]);
    for target in &d.targets {
        let (version, hardware, floor) = match &target.release {
            Ok(r) => (
                r.version().to_string(),
                r.hardware()
                    .iter()
                    .map(|m| m.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                opt(r.floor()),
            ),
            Err(e) => (format!("invalid: {e}"), String::new(), String::new()),
        };
        t.row(vec![
            target.name.clone(),
            version,
            hardware,
            floor,
            target.length.to_string(),
            target.sha256.clone(),
        ]);
    }
    emit(&format!(
        "targets metadata version {}, expires {}, {} signature(s) already\n{}",
        d.version,
        ts(expires),
        d.signatures,
        t.render()
    ))?;
    Ok(())
}

pub(super) async fn run(cmd: OtaCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let cmd = match cmd.cmd {
        OtaSub::Release { cmd } => cmd,
        OtaSub::Rollout { cmd } => return super::rollout::run(cmd, ctx).await,
        OtaSub::Root { cmd } => return root::run(cmd, ctx).await,
        other => return run_offline(OtaCmd { cmd: other }),
    };
    match cmd {
        ReleaseSub::Create {
            file,
            name,
            version,
            hardware,
            floor,
            targets_key,
        } => {
            let key = targets_key.as_deref().map(read_key).transpose()?;
            eprintln!("uploading {} ...", file.display());
            let stored = ctx.client.upload_artifact(&file).await?;
            eprintln!("stored {} bytes, sha256 {}", stored.length, stored.sha256);
            let mut req = CreateRelease {
                name,
                version,
                hardware,
                floor,
                sha256: stored.sha256,
                length: stored.length,
                signed_targets: None,
            };
            if let Some(key) = key {
                let prepared = ctx.client.prepare_release(&req).await?;
                let signed =
                    bulwark_ota::sign_targets_metadata(prepared.unsigned_targets.as_bytes(), &key)
                        .context("cannot sign the targets metadata")?;
                req.signed_targets =
                    Some(String::from_utf8(signed).context("signed metadata is not UTF-8")?);
            }
            let rel = ctx.client.create_release(&req).await?;
            if ctx.json() {
                emit_json(&rel)?;
            } else {
                emit(&format!(
                    "published {} {} for {} (targets metadata version {})",
                    rel.name,
                    rel.version,
                    rel.hardware.join(", "),
                    rel.targets_version
                ))?;
            }
        }
        ReleaseSub::List => {
            let rels = ctx.client.list_releases().await?;
            if ctx.json() {
                emit_json(&rels)?;
            } else {
                emit(&release_table(&rels))?;
            }
        }
        ReleaseSub::Show { name } => {
            let rel = ctx.client.get_release(&name).await?;
            if ctx.json() {
                emit_json(&rel)?;
            } else {
                emit(&key_values(&[
                    ("name", rel.name.clone()),
                    ("version", rel.version.clone()),
                    ("hardware", rel.hardware.join(", ")),
                    ("floor", opt(rel.floor.as_ref())),
                    ("sha256", rel.sha256.clone()),
                    ("length", rel.length.to_string()),
                    ("targets version", rel.targets_version.to_string()),
                    ("published", ts(rel.published_at)),
                ]))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn release_table(rels: &[OtaRelease]) -> String {
    let mut t = Table::new(&[
        "NAME",
        "VERSION",
        "HARDWARE",
        "FLOOR",
        "LENGTH",
        "PUBLISHED",
    ]);
    for r in rels {
        t.row(vec![
            r.name.clone(),
            r.version.clone(),
            r.hardware.join(","),
            opt(r.floor.as_ref()),
            r.length.to_string(),
            ts(r.published_at),
        ]);
    }
    t.render()
}
