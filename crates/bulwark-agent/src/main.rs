//! `bulwark-agent`: the device agent's command line (see the library's
//! documentation for what each part does).

use std::path::PathBuf;
use std::sync::Arc;

use bulwark_agent::agent::Platform;
use bulwark_agent::config::Config;
use bulwark_agent::enroll::{run_renewal, Enroller};
use bulwark_agent::keys::KeyStore;
use bulwark_agent::posture::collect_posture;
use bulwark_agent::update::{HealthCheck, Reporter, StepReport, Updater};
use bulwark_agent::AgentError;
use clap::{Parser, Subcommand};

/// The Bulwark device agent: a device key generated on the device, EST
/// enrollment and automatic renewal, inventory and posture reports, and
/// verified A/B updates with automatic rollback.
#[derive(Debug, Parser)]
#[command(name = "bulwark-agent", version, about, long_about = None)]
struct Cli {
    /// The agent's TOML configuration (see agent.example.toml).
    #[arg(long, short = 'c', value_name = "FILE", env = "BULWARK_AGENT_CONFIG")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent: enroll if needed, renew the certificate at two thirds
    /// of its lifetime, finish a pending update, report on a schedule.
    Run,
    /// Generate the device key if needed and enroll (once); print the identity.
    Enroll,
    /// Print the identity, the boot slots and the update state as JSON (no network).
    Status,
    /// Print the current posture (sockets, connections, processes) as JSON.
    Posture,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bulwark-agent: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bulwark-agent: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(&cli.config).map_err(chain)?;
    match cli.command {
        Command::Run => run(config).await,
        Command::Enroll => {
            let id = enroller(&config)?.ensure_enrolled().await.map_err(chain)?;
            print_json(&serde_json::json!({
                "device_id": id.device_id(),
                "not_after": unix(id.not_after()),
                "renew_at": unix(id.renew_at()),
            }))
        }
        Command::Status => status(config).await,
        Command::Posture => {
            let posture = collect_posture(std::path::Path::new("/proc")).map_err(chain)?;
            print_json(&serde_json::to_value(&posture)?)
        }
    }
}

/// Prints `value` as pretty JSON on stdout; a closed pipe is not an error.
fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let text = serde_json::to_string_pretty(value)?;
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// The library error with its whole source chain, for anyhow.
fn chain(e: AgentError) -> anyhow::Error {
    anyhow::anyhow!(bulwark_agent::report_chain(&e))
}

fn unix(t: std::time::SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn enroller(config: &Config) -> anyhow::Result<Enroller> {
    let keys = KeyStore::from_config(config).map_err(chain)?;
    Enroller::new(config, keys).map_err(chain)
}

/// Logs update steps (`status` reads the state; it reports nothing).
struct LogReporter;

#[async_trait::async_trait]
impl Reporter for LogReporter {
    async fn report(&self, report: &StepReport) -> Result<(), AgentError> {
        let json = serde_json::to_string(report).unwrap_or_default();
        tracing::info!(report = %json, "update step");
        Ok(())
    }
}

async fn status(config: Config) -> anyhow::Result<()> {
    let identity = enroller(&config)?.load().map_err(chain)?;
    // Read only: no simulated boot, no pending update finished.
    let slots = Platform::open(&config.slots).map_err(chain)?.slots();
    let boot = slots.boot_state().await.map_err(chain)?;
    let device_id = identity
        .as_ref()
        .map(|i| i.device_id().to_owned())
        .or(config.device_id.clone())
        .unwrap_or_default();
    let updater = Updater::open(
        &config.state_dir,
        &device_id,
        slots,
        Arc::new(LogReporter),
        health(&config),
    )
    .map_err(chain)?;
    let out = serde_json::json!({
        "enrolled": identity.is_some(),
        "device_id": device_id,
        "certificate": identity.as_ref().map(|i| serde_json::json!({
            "not_before": unix(i.not_before()),
            "not_after": unix(i.not_after()),
            "renew_at": unix(i.renew_at()),
        })),
        "boot": boot,
        "update": updater.current().await,
        "rollback_floor": updater.rollback_floor().await,
    });
    print_json(&out)
}

fn health(config: &Config) -> HealthCheck {
    HealthCheck {
        command: config.health_check.command.clone(),
        timeout: config.health_timeout(),
    }
}

async fn run(config: Config) -> anyhow::Result<()> {
    let enroller = enroller(&config)?;
    let identity = enroller.ensure_enrolled().await.map_err(chain)?;
    tracing::info!(device_id = %identity.device_id(), renew_at = unix(identity.renew_at()), "identity ready");
    let (identity_tx, identity_rx) = tokio::sync::watch::channel(Arc::new(identity));
    let renewal = tokio::spawn(run_renewal(enroller.clone(), identity_tx));
    // The MQTT link, reports, update instructions and the boot path.
    let result =
        bulwark_agent::agent::run(&config, &enroller, identity_rx, shutdown_signal()).await;
    renewal.abort();
    result.map_err(chain)
}

async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_consistent_and_documented() {
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        for word in ["run", "enroll", "status", "posture", "--config"] {
            assert!(help.contains(word), "{word} missing from --help");
        }
    }

    #[test]
    fn config_is_required() {
        assert!(Cli::try_parse_from(["bulwark-agent", "posture"]).is_err());
        let cli = Cli::try_parse_from(["bulwark-agent", "--config", "/x.toml", "status"]).unwrap();
        assert!(matches!(cli.command, Command::Status));
    }
}
