//! `bulwark claim ...`: claim certificates for factory batches.
//!
//! The factory generates one claim key per batch and sends its CSR here;
//! the certificate that comes back is flashed into every device of the batch,
//! which then enrolls over EST with mutual TLS, rate-limited per claim.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use bulwark_api_types::{CreateClaim, CreatedClaim};
use bulwark_types::{Claim, GroupId};

use super::duration::parse_ttl;
use super::output::{emit, emit_json, key_values, ts, Table};
use super::Ctx;

/// Claim certificates for factory batches: create and list.
#[derive(clap::Args, Debug)]
pub struct ClaimCmd {
    #[command(subcommand)]
    cmd: ClaimSub,
}

#[derive(clap::Subcommand, Debug)]
enum ClaimSub {
    /// Register a claim key (from its PEM CSR) and get its certificate.
    ///
    /// Without --out the certificate PEM goes to stdout and a summary to
    /// stderr; with --out the certificate is written to FILE and the summary
    /// goes to stdout.
    ///
    /// Example: bulwark claim create --group floor-3 --csr batch-42.csr --ttl 365d --rate-per-minute 30 --out batch-42.pem
    Create {
        /// The group devices enrolling with this claim join.
        #[arg(long, value_name = "GROUP")]
        group: GroupId,
        /// PEM PKCS#10 request for the claim key.
        #[arg(long, value_name = "FILE")]
        csr: PathBuf,
        /// Certificate lifetime: 30d, 365d, ... (server default 365d).
        #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
        ttl: Option<u64>,
        /// Enrollments allowed per minute with this claim (server default 60).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        rate_per_minute: Option<u32>,
        /// Write the certificate PEM to this file.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// List claims with their enrollment counts.
    ///
    /// Example: bulwark claim ls
    Ls,
}

pub(super) async fn run(cmd: ClaimCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match cmd.cmd {
        ClaimSub::Create {
            group,
            csr,
            ttl,
            rate_per_minute,
            out,
        } => {
            let csr_pem = read_csr(&csr)?;
            let req = CreateClaim {
                group,
                csr_pem,
                ttl_seconds: ttl,
                rate_per_minute,
            };
            let created = ctx.client.create_claim(&req).await?;
            if let Some(path) = &out {
                std::fs::write(path, &created.certificate_pem).with_context(|| {
                    format!(
                        "claim {} was created but its certificate could not be written to {}",
                        created.record.id,
                        path.display()
                    )
                })?;
            }
            if ctx.json() {
                emit_json(&created)?;
            } else if let Some(path) = &out {
                emit(&summary(&created, &path.display().to_string()))?;
            } else {
                emit(&created.certificate_pem)?;
                eprint!("{}", summary(&created, "(stdout)"));
            }
        }
        ClaimSub::Ls => {
            let claims = ctx.client.list_claims().await?;
            if ctx.json() {
                emit_json(&claims)?;
            } else {
                emit(&claim_table(&claims))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The CSR file as PEM text; DER and other files are refused with a hint.
pub(super) fn read_csr(path: &std::path::Path) -> anyhow::Result<String> {
    let bytes =
        std::fs::read(path).with_context(|| format!("cannot read CSR {}", path.display()))?;
    check_csr_pem(bytes).with_context(|| format!("{} is not a usable CSR", path.display()))
}

fn check_csr_pem(bytes: Vec<u8>) -> anyhow::Result<String> {
    let text = String::from_utf8(bytes).map_err(|_| {
        anyhow::anyhow!(
            "it is binary (DER?); convert it with: openssl req -inform DER -in FILE -out FILE.pem"
        )
    })?;
    if !text.contains("-----BEGIN CERTIFICATE REQUEST-----")
        && !text.contains("-----BEGIN NEW CERTIFICATE REQUEST-----")
    {
        anyhow::bail!("expected a PEM block '-----BEGIN CERTIFICATE REQUEST-----'");
    }
    Ok(text)
}

fn summary(created: &CreatedClaim, certificate: &str) -> String {
    let c = &created.record;
    key_values(&[
        ("claim", c.id.clone()),
        ("group", c.group.to_string()),
        ("serial", c.serial.to_string()),
        ("rate per minute", c.rate_per_minute.to_string()),
        ("certificate", certificate.to_owned()),
    ])
}

fn claim_table(claims: &[Claim]) -> String {
    let mut t = Table::new(&[
        "ID",
        "GROUP",
        "SERIAL",
        "RATE/MIN",
        "ENROLLMENTS",
        "CREATED",
    ]);
    for c in claims {
        t.row(vec![
            c.id.clone(),
            c.group.to_string(),
            c.serial.to_string(),
            c.rate_per_minute.to_string(),
            c.enrollments.to_string(),
            ts(c.created_at),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::check_csr_pem;

    #[test]
    fn csr_files() {
        let pem = "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n";
        assert_eq!(
            check_csr_pem(pem.as_bytes().to_vec()).ok().as_deref(),
            Some(pem)
        );
        let err = check_csr_pem(vec![0x30, 0x82, 0xff, 0xfe]).unwrap_err();
        assert!(err.to_string().contains("DER"), "{err}");
        let err = check_csr_pem(b"-----BEGIN CERTIFICATE-----\n".to_vec()).unwrap_err();
        assert!(err.to_string().contains("CERTIFICATE REQUEST"), "{err}");
    }
}
