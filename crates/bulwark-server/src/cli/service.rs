//! `bulwark service ...`: service principals, the backend applications that
//! talk MQTT with their own credentials and only the policies attached to
//! them (`bulwark policy attach NAME --service SERVICE`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use bulwark_api_types::CreateService;
use bulwark_types::{Service, ServiceName};

use super::claim::read_csr;
use super::duration::parse_ttl;
use super::output::{emit, emit_json, ts, Table};
use super::Ctx;

/// Service principals: create, list, delete, and issue certificates.
#[derive(clap::Args, Debug)]
pub struct ServiceCmd {
    #[command(subcommand)]
    cmd: ServiceSub,
}

#[derive(clap::Subcommand, Debug)]
enum ServiceSub {
    /// Create a service principal (admin only).
    ///
    /// With --password the server generates a password for MQTT
    /// username/password authentication (username = the service name) and
    /// prints only it, so it can be captured; it is shown this once and
    /// stored only as a hash. A new service may do nothing until a policy
    /// is attached to it.
    ///
    /// Example: PW=$(bulwark service create billing --password)
    Create {
        /// The service name: letters, digits, '.', '_' and '-'.
        name: ServiceName,
        /// Generate a password for it.
        #[arg(long)]
        password: bool,
    },
    /// List service principals with their attached policies.
    ///
    /// Example: bulwark service list
    #[command(alias = "ls")]
    List,
    /// Delete a service principal (admin only): its certificates are
    /// revoked, its policies detached, and its live sessions cut.
    ///
    /// Example: bulwark service delete billing
    Delete { name: ServiceName },
    /// Issue a client certificate for a service from its PEM CSR (admin only).
    ///
    /// Only the CSR's public key is used: the certificate names the service
    /// (CN=<name>, SAN urn:bulwark:service:<name>). Without --out the PEM
    /// goes to stdout and a summary to stderr.
    ///
    /// Example: openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout billing.key -subj /CN=billing -out billing.csr
    ///
    ///          bulwark service cert billing --csr billing.csr --out billing.pem
    Cert {
        name: ServiceName,
        /// PEM PKCS#10 request for the service's key.
        #[arg(long, value_name = "FILE")]
        csr: PathBuf,
        /// Write the certificate PEM to this file.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Certificate lifetime: 30d, 90d, ... (server default: the device
        /// certificate lifetime; at most 365d).
        #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
        ttl: Option<u64>,
    },
}

pub(super) async fn run(cmd: ServiceCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match cmd.cmd {
        ServiceSub::Create { name, password } => {
            let created = ctx
                .client
                .create_service(&CreateService { name, password })
                .await?;
            if ctx.json() {
                emit_json(&created)?;
            } else if let Some(pw) = &created.generated_password {
                emit(pw)?;
            } else {
                emit(&format!(
                    "created service {} (no password: issue it a certificate with \
                     `bulwark service cert {} --csr FILE`)",
                    created.record.name, created.record.name
                ))?;
            }
        }
        ServiceSub::List => {
            let services = ctx.client.list_services().await?;
            if ctx.json() {
                emit_json(&services)?;
            } else {
                emit(&service_table(&services))?;
            }
        }
        ServiceSub::Delete { name } => {
            let deleted = ctx.client.delete_service(&name).await?;
            if ctx.json() {
                emit_json(&deleted)?;
            } else {
                let revoked: Vec<String> = deleted
                    .revoked_certificates
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                emit(&format!(
                    "deleted service {} (certificates revoked: {})",
                    deleted.name,
                    if revoked.is_empty() {
                        "none".to_owned()
                    } else {
                        revoked.join(", ")
                    }
                ))?;
            }
        }
        ServiceSub::Cert {
            name,
            csr,
            out,
            ttl,
        } => {
            let csr_pem = read_csr(&csr)?;
            let pem = ctx.client.service_certificate(&name, &csr_pem, ttl).await?;
            if let Some(path) = &out {
                std::fs::write(path, &pem).with_context(|| {
                    format!(
                        "the certificate of service {name} was issued but could not be written to {}",
                        path.display()
                    )
                })?;
            }
            if ctx.json() {
                emit_json(&serde_json::json!({ "service": name, "certificate_pem": pem }))?;
            } else if let Some(path) = &out {
                emit(&format!(
                    "certificate for service {name} written to {}",
                    path.display()
                ))?;
            } else {
                emit(&pem)?;
                eprintln!("certificate for service {name} written to stdout");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn service_table(services: &[Service]) -> String {
    let mut t = Table::new(&["NAME", "PASSWORD", "CREATED", "POLICIES"]);
    for s in services {
        let policies: Vec<&str> = s.policies.iter().map(|p| p.as_str()).collect();
        t.row(vec![
            s.name.to_string(),
            if s.password { "yes" } else { "no" }.to_owned(),
            ts(s.created_at),
            if policies.is_empty() {
                "-".to_owned()
            } else {
                policies.join(", ")
            },
        ]);
    }
    t.render()
}
