//! The operator CLI: `bulwark device ls`, `bulwark enroll-token create`, …
//!
//! Every command here talks to a running server through `bulwark-client`
//! (the one exception, `audit verify --data-dir`, reads the data directory
//! offline). The server is chosen with `--addr`/`BULWARK_ADDR`, trusted
//! through `--cacert`/`BULWARK_CACERT`, and authenticated with
//! `--token`/`BULWARK_TOKEN`.
//!
//! Output is for people by default (aligned tables, `key: value` blocks) and
//! JSON with `--output json`. Secrets that are created (enrollment and
//! operator tokens) are printed alone on stdout so `T=$(bulwark ...)` works.
//! Errors print to stderr as `error: <message>` and exit with status 1; clap
//! exits with 2 on usage errors, and `policy test` with 2 when the action
//! is denied.

mod alert;
mod audit;
mod cert;
mod claim;
mod device;
mod duration;
mod enroll_token;
mod group;
mod manufacturer_ca;
mod mqtt;
mod ota;
mod output;
mod policy;
mod rollout;
mod service;
mod token;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use bulwark_client::{Client, ClientError};

pub use alert::AlertCmd;
pub use audit::AuditCmd;
pub use cert::CertCmd;
pub use claim::ClaimCmd;
pub use device::DeviceCmd;
pub use enroll_token::EnrollTokenCmd;
pub use group::GroupCmd;
pub use manufacturer_ca::ManufacturerCaCmd;
pub use mqtt::MqttCmd;
pub use ota::OtaCmd;
pub use output::OutputFormat;
pub use policy::PolicyCmd;
pub use service::ServiceCmd;
pub use token::TokenCmd;

/// The commands that talk to a running server's operator API.
#[derive(clap::Subcommand, Debug)]
pub enum ClientCommand {
    /// List, show, register, activate, quarantine, release and decommission devices.
    ///
    /// Example: bulwark device ls --state quarantined
    Device(DeviceCmd),
    /// List and create device groups.
    ///
    /// Example: bulwark group create floor-3
    Group(GroupCmd),
    /// Create and list one-time enrollment tokens for devices.
    ///
    /// Example: T=$(bulwark enroll-token create --group floor-3 --ttl 1h)
    EnrollToken(EnrollTokenCmd),
    /// Show and revoke issued certificates.
    ///
    /// Example: bulwark cert revoke 5F:3A:9C --reason key-compromise
    Cert(CertCmd),
    /// Register factory-batch claim certificates.
    ///
    /// Example: bulwark claim create --group floor-3 --csr batch.csr --out batch.pem
    Claim(ClaimCmd),
    /// Create, list and revoke operator API tokens.
    ///
    /// Example: bulwark token create --name ci --role operator --ttl 30d
    Token(TokenCmd),
    /// Store, list, show, delete, attach and test MQTT policies.
    ///
    /// `policy test` exits 0 when the action is allowed, 2 when denied.
    ///
    /// Example: bulwark policy test --device door-17 --action publish --topic devices/door-17/state
    Policy(PolicyCmd),
    /// Register, list, show and remove manufacturer CAs: the MQTT gateway
    /// accepts device certificates they issued (CN = device id) and can
    /// register unknown devices just in time.
    ///
    /// Example: bulwark manufacturer-ca add acme-ca.pem --name acme --group sensors --jit pending
    ManufacturerCa(ManufacturerCaCmd),
    /// Signed OTA releases: upload, sign (offline) and publish; list.
    ///
    /// Example: bulwark ota release create fw.img --name gw-fw-2.1.0 --version 2.1.0 --hardware gw-v2 --targets-key targets.pem
    Ota(OtaCmd),
    /// Create, list and delete service principals (backend applications)
    /// and issue their certificates.
    ///
    /// Example: bulwark service cert billing --csr billing.csr --out billing.pem
    Service(ServiceCmd),
    /// The MQTT gateway's sessions: list them, disconnect one.
    ///
    /// Example: bulwark mqtt sessions
    ///
    /// Example: bulwark mqtt disconnect sensor-01
    Mqtt(MqttCmd),
    /// Print the server's Prometheus metrics (text exposition format).
    ///
    /// The same text Prometheus scrapes from GET /metrics: the MQTT
    /// gateway's counters and gauges (bulwark_mqtt_*) and the API's
    /// answers by status class. Metrics reveal fleet activity, so the
    /// endpoint needs an operator token of a role that may read them
    /// (admin, operator or auditor); give Prometheus an auditor token.
    ///
    /// Example: bulwark metrics | grep bulwark_mqtt_connections_active
    Metrics,
    /// Alerts raised by detection: list (--watch), show, acknowledge,
    /// resolve; approve, refuse, release or escalate response actions.
    ///
    /// Example: bulwark alert ls --state open --watch
    Alert(AlertCmd),
    /// List, export and verify the hash-chained audit log.
    ///
    /// Example: bulwark audit verify
    Audit(AuditCmd),
    /// Check that the server answers.
    ///
    /// Exits 0 when the server reports `ok`, 1 otherwise.
    ///
    /// Example: bulwark health
    Health,
}

/// How to reach the server. Every option also reads an environment variable.
#[derive(clap::Args, Debug, Clone)]
pub struct ClientOpts {
    /// The server's API address.
    #[arg(
        long,
        env = "BULWARK_ADDR",
        global = true,
        value_name = "URL",
        help_heading = "Server connection"
    )]
    pub addr: Option<String>,
    /// Operator API token (sent as a Bearer token).
    #[arg(
        long,
        env = "BULWARK_TOKEN",
        hide_env_values = true,
        global = true,
        value_name = "TOKEN",
        help_heading = "Server connection"
    )]
    pub token: Option<String>,
    /// PEM bundle of the CA that signed the server's certificate; nothing else is trusted.
    #[arg(
        long,
        env = "BULWARK_CACERT",
        global = true,
        value_name = "FILE",
        help_heading = "Server connection"
    )]
    pub cacert: Option<PathBuf>,
    /// Output format of listings and records.
    #[arg(long, value_enum, global = true, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// What every command handler gets: a connected client and the output format.
struct Ctx {
    client: Client,
    output: OutputFormat,
}

impl Ctx {
    fn json(&self) -> bool {
        self.output == OutputFormat::Json
    }
}

/// Runs one client command. Failures are printed to stderr as
/// `error: <message>` and turned into exit status 1 here, so the caller
/// only has to return the exit code.
pub async fn run(cmd: ClientCommand, opts: ClientOpts) -> anyhow::Result<ExitCode> {
    let has_token = opts.token.as_deref().is_some_and(|t| !t.trim().is_empty());
    match dispatch(cmd, &opts).await {
        Ok(code) => Ok(code),
        Err(err) => Ok(report(&err, has_token)),
    }
}

async fn dispatch(cmd: ClientCommand, opts: &ClientOpts) -> anyhow::Result<ExitCode> {
    if let ClientCommand::Audit(audit) = &cmd {
        if let Some((dir, key)) = audit.offline_data_dir() {
            return crate::offline::audit_verify(dir, key);
        }
    }
    if let ClientCommand::Ota(ota) = cmd {
        if ota.is_offline() {
            return ota::run_offline(ota);
        }
        return ota::run(
            ota,
            &Ctx {
                client: connect(opts)?,
                output: opts.output,
            },
        )
        .await;
    }
    let ctx = Ctx {
        client: connect(opts)?,
        output: opts.output,
    };
    match cmd {
        ClientCommand::Device(c) => device::run(c, &ctx).await,
        ClientCommand::Group(c) => group::run(c, &ctx).await,
        ClientCommand::EnrollToken(c) => enroll_token::run(c, &ctx).await,
        ClientCommand::Cert(c) => cert::run(c, &ctx).await,
        ClientCommand::Claim(c) => claim::run(c, &ctx).await,
        ClientCommand::Token(c) => token::run(c, &ctx).await,
        ClientCommand::Policy(c) => policy::run(c, &ctx).await,
        ClientCommand::Service(c) => service::run(c, &ctx).await,
        ClientCommand::ManufacturerCa(c) => manufacturer_ca::run(c, &ctx).await,
        ClientCommand::Ota(c) => ota::run(c, &ctx).await,
        ClientCommand::Audit(c) => audit::run(c, &ctx).await,
        ClientCommand::Alert(c) => alert::run(c, &ctx).await,
        ClientCommand::Mqtt(c) => mqtt::run(c, &ctx).await,
        ClientCommand::Metrics => mqtt::metrics(&ctx).await,
        ClientCommand::Health => health(&ctx).await,
    }
}

/// A client from the options (which clap already filled from the environment).
fn connect(opts: &ClientOpts) -> anyhow::Result<Client> {
    let addr = opts
        .addr
        .as_deref()
        .filter(|a| !a.trim().is_empty())
        .context(
            "no server address: pass --addr URL or set BULWARK_ADDR (e.g. https://127.0.0.1:8443)",
        )?;
    let cacert = opts.cacert.as_ref().context(
        "no CA bundle: pass --cacert FILE or set BULWARK_CACERT to the PEM file of the CA that signed the server's certificate",
    )?;
    let pem = std::fs::read(cacert)
        .with_context(|| format!("cannot read the CA bundle {}", cacert.display()))?;
    let token = opts.token.clone().filter(|t| !t.trim().is_empty());
    Client::new(addr, token, &pem).context("cannot set up the API client")
}

/// Prints `err` and picks the exit code.
fn report(err: &anyhow::Error, has_token: bool) -> ExitCode {
    let broken_pipe = err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        // The reader went away (`| head`): not worth a message.
        return ExitCode::FAILURE;
    }
    eprintln!("error: {err:#}");
    let unauthorized = err
        .chain()
        .any(|e| matches!(e.downcast_ref::<ClientError>(), Some(c) if c.status() == Some(401)));
    if unauthorized && !has_token {
        eprintln!("hint: no operator token was given; pass --token or set BULWARK_TOKEN");
    }
    ExitCode::FAILURE
}

async fn health(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let health = ctx.client.health().await?;
    if ctx.json() {
        output::emit_json(&health)?;
    } else {
        output::emit(&format!(
            "{}: bulwark {} at {}, server time {}",
            health.status,
            health.version,
            ctx.client.base_url(),
            output::ts(health.now)
        ))?;
    }
    Ok(if health.status == "ok" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// The client commands as `main` mounts them (with a propagated
    /// `--version`, which a subcommand's own `--version` would clash with).
    #[derive(clap::Parser, Debug)]
    #[command(name = "bulwark", version, propagate_version = true)]
    struct Cli {
        #[command(subcommand)]
        command: super::ClientCommand,
        #[command(flatten)]
        client: super::ClientOpts,
    }

    #[test]
    fn every_command_is_well_formed() {
        Cli::command().debug_assert();
    }
}
