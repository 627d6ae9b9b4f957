//! `bulwark`: the server and the operator CLI in one binary.
//!
//! `bulwark server` runs the control plane; every other subcommand is a
//! client of a running server's API (see `cli`), except the offline
//! `audit verify --data-dir`.

mod cli;
mod config;
mod detect;
mod offline;
mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Bulwark: a self-hosted security control plane for IoT fleets.
///
/// Start a throw-away instance with `bulwark server --dev`, then
/// `source <data-dir>/dev.env` and use the other commands against it.
#[derive(Parser, Debug)]
#[command(name = "bulwark", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    client: cli::ClientOpts,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the Bulwark server: API, EST, CA and the MQTT gateway.
    ///
    /// The first start initializes the data directory: a root and an
    /// issuing CA, an audit key (all encrypted with a key derived from the
    /// passphrase), the store, and a first admin token written to
    /// `<data-dir>/initial-admin-token`.
    ///
    /// Examples:
    ///   BULWARK_PASSPHRASE=... bulwark server --data-dir /var/lib/bulwark
    ///   bulwark server --dev
    Server(ServerArgs),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

#[derive(clap::Args, Debug)]
struct ServerArgs {
    /// TOML configuration file (see README for the keys).
    #[arg(long, env = "BULWARK_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory [default: ./bulwark-data; a temporary one with --dev].
    #[arg(long, env = "BULWARK_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address of the HTTPS API and EST [default: 0.0.0.0:8443; 127.0.0.1:8443 with --dev].
    #[arg(long, env = "BULWARK_API_ADDR", value_name = "ADDR")]
    api_addr: Option<SocketAddr>,
    /// Address of the MQTT gateway (MQTT over TLS; a client certificate
    /// issued by this server is required)
    /// [default: 0.0.0.0:8883; 127.0.0.1:8883 with --dev].
    #[arg(long, env = "BULWARK_MQTT_ADDR", value_name = "ADDR")]
    mqtt_addr: Option<SocketAddr>,
    /// With --dev only: a plaintext MQTT listener on a loopback address for
    /// trying Bulwark with any MQTT tool; anonymous clients get a permissive
    /// dev policy. Refused outside dev mode or on a non-loopback address
    /// [default with --dev: 127.0.0.1:1884].
    #[arg(long, env = "BULWARK_DEV_MQTT_PLAIN_ADDR", value_name = "ADDR")]
    dev_mqtt_plain_addr: Option<SocketAddr>,
    /// File holding the passphrase that protects the CA keys
    /// (alternative: the BULWARK_PASSPHRASE environment variable).
    #[arg(long, env = "BULWARK_PASSPHRASE_FILE", value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
    /// Throw-away instance: loopback only, temporary data directory unless
    /// --data-dir is given, generated passphrase, admin token printed and
    /// written to <data-dir>/dev.env.
    #[arg(long)]
    dev: bool,
    /// Log format: text or json.
    #[arg(long, env = "BULWARK_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Server(a) => rt.block_on(run_server(a)),
        Command::Client(c) => rt.block_on(cli::run(c, cli.client)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_server(a: ServerArgs) -> anyhow::Result<ExitCode> {
    let file = match &a.config {
        Some(p) => config::FileConfig::load(p)?,
        None => config::FileConfig::default(),
    };
    let cfg = config::Config::build(
        file,
        config::Overrides {
            data_dir: a.data_dir,
            api_addr: a.api_addr,
            mqtt_addr: a.mqtt_addr,
            dev_mqtt_plain_addr: a.dev_mqtt_plain_addr,
            passphrase_file: a.passphrase_file,
            dev: a.dev,
            log_format: a.log_format,
        },
    )?;
    server::init_tracing(&cfg);
    server::run(cfg).await?;
    Ok(ExitCode::SUCCESS)
}
