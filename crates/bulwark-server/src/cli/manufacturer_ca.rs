//! `bulwark manufacturer-ca ...`: manufacturer CAs whose device
//! certificates the MQTT gateway accepts ("bring your own CA"), with
//! just-in-time registration of the devices they name.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use bulwark_api_types::{CreateManufacturerCa, ManufacturerCaDetail};
use bulwark_types::{GroupId, JitMode, ManufacturerCa, ManufacturerCaName};

use super::output::{emit, emit_json, key_values, opt, ts, Table};
use super::Ctx;

/// Manufacturer CAs: add, list, show, remove.
#[derive(clap::Args, Debug)]
pub struct ManufacturerCaCmd {
    #[command(subcommand)]
    cmd: ManufacturerCaSub,
}

#[derive(clap::Subcommand, Debug)]
enum ManufacturerCaSub {
    /// Register a manufacturer CA from its PEM certificate (admin only).
    ///
    /// The MQTT gateway then accepts device certificates this CA issued
    /// directly: the certificate's subject CN is the device id. The first
    /// certificate seen for a device is bound to it; a device enrolled
    /// through Bulwark's CA or bound to another manufacturer CA cannot be
    /// taken over. What happens to a device id the inventory does not hold
    /// is --jit: off (refused; register it first with `bulwark device
    /// create ID --group G --manufacturer-ca NAME`), pending (created
    /// pending in --group and refused until `bulwark device activate ID`)
    /// or active (created active in --group).
    ///
    /// The certificate is checked strictly: one PEM certificate, a CA
    /// (basicConstraints CA:TRUE, keyCertSign if keyUsage is present), valid
    /// now, not Bulwark's own CA, an EC P-256/P-384, Ed25519 or RSA (2048 to
    /// 8192 bits) key signed with SHA-2.
    ///
    /// Example: bulwark manufacturer-ca add acme-ca.pem --name acme --group sensors --jit pending
    Add {
        /// The CA certificate, PEM.
        file: PathBuf,
        /// The name to register it under: letters, digits, '.', '_' and '-'.
        #[arg(long, value_name = "NAME")]
        name: ManufacturerCaName,
        /// The group devices registered just in time join (required unless --jit off).
        #[arg(long, value_name = "GROUP")]
        group: Option<GroupId>,
        /// Just-in-time registration of unknown devices: off, pending or active.
        #[arg(long, value_name = "MODE", value_parser = parse_jit, default_value = "off")]
        jit: JitMode,
    },
    /// List registered manufacturer CAs.
    ///
    /// Example: bulwark manufacturer-ca list
    #[command(alias = "ls")]
    List,
    /// Show a manufacturer CA and its certificate (PEM).
    ///
    /// Example: bulwark manufacturer-ca show acme
    Show {
        /// The name it was registered under.
        name: ManufacturerCaName,
    },
    /// Remove a manufacturer CA (admin only).
    ///
    /// Its certificates stop authenticating at once: new connections are
    /// refused and the live MQTT sessions of the devices bound to it are
    /// disconnected. The devices stay in the inventory; adding the same
    /// certificate under the same name again restores them. This does not
    /// ask for confirmation.
    ///
    /// Example: bulwark manufacturer-ca remove acme
    #[command(alias = "rm")]
    Remove {
        /// The name it was registered under.
        name: ManufacturerCaName,
    },
}

fn parse_jit(s: &str) -> Result<JitMode, String> {
    JitMode::parse(&s.trim().to_ascii_lowercase())
        .ok_or_else(|| format!("unknown JIT mode {s:?}; one of off, pending, active"))
}

pub(super) async fn run(cmd: ManufacturerCaCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match cmd.cmd {
        ManufacturerCaSub::Add {
            file,
            name,
            group,
            jit,
        } => {
            let certificate_pem = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read the CA certificate {}", file.display()))?;
            let detail = ctx
                .client
                .create_manufacturer_ca(&CreateManufacturerCa {
                    name,
                    certificate_pem,
                    group,
                    jit,
                })
                .await?;
            if ctx.json() {
                emit_json(&detail)?;
            } else {
                emit(&format!(
                    "registered manufacturer CA {} (sha256 {}, jit {})",
                    detail.ca.name, detail.ca.fingerprint_sha256, detail.ca.jit
                ))?;
            }
        }
        ManufacturerCaSub::List => {
            let cas = ctx.client.list_manufacturer_cas().await?;
            if ctx.json() {
                emit_json(&cas)?;
            } else {
                emit(&ca_table(&cas))?;
            }
        }
        ManufacturerCaSub::Show { name } => {
            let detail = ctx.client.get_manufacturer_ca(&name).await?;
            if ctx.json() {
                emit_json(&detail)?;
            } else {
                emit(&ca_kv(&detail))?;
            }
        }
        ManufacturerCaSub::Remove { name } => {
            let removed = ctx.client.delete_manufacturer_ca(&name).await?;
            if ctx.json() {
                emit_json(&removed)?;
            } else {
                let n = removed.devices.len();
                emit(&format!(
                    "removed manufacturer CA {}; {n} bound device{} can no longer connect",
                    removed.name,
                    if n == 1 { "" } else { "s" }
                ))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn ca_table(cas: &[ManufacturerCa]) -> String {
    let mut t = Table::new(&["NAME", "JIT", "GROUP", "DEVICES", "NOT AFTER", "SUBJECT"]);
    for c in cas {
        t.row(vec![
            c.name.to_string(),
            c.jit.to_string(),
            opt(c.group.as_ref()),
            c.devices.to_string(),
            ts(c.not_after),
            c.subject.clone(),
        ]);
    }
    t.render()
}

fn ca_kv(d: &ManufacturerCaDetail) -> String {
    let c = &d.ca;
    let mut text = key_values(&[
        ("name", c.name.to_string()),
        ("subject", c.subject.clone()),
        ("sha256", c.fingerprint_sha256.clone()),
        ("jit", c.jit.to_string()),
        ("group", opt(c.group.as_ref())),
        ("devices", c.devices.to_string()),
        ("not before", ts(c.not_before)),
        ("not after", ts(c.not_after)),
        ("registered", ts(c.created_at)),
    ]);
    text.push('\n');
    text.push_str(&d.certificate_pem);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jit_modes() {
        assert_eq!(parse_jit("Pending"), Ok(JitMode::Pending));
        assert_eq!(parse_jit("off"), Ok(JitMode::Off));
        assert!(parse_jit("on")
            .unwrap_err()
            .contains("off, pending, active"));
    }
}
