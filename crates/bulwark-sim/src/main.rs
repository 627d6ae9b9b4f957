//! `bulwark-sim`: the fleet simulator and MQTT load generator.
//!
//! - `enroll`: enrolls N devices into a group over EST, with keys made
//!   locally, and writes their keys and certificates to a directory.
//! - `load`: connects those devices to an mTLS MQTT broker (Bulwark's
//!   gateway or any other broker that trusts Bulwark's CA) and runs one
//!   scenario: `connect-rate`, `fan-in`, `fan-out`, `latency` or `idle`.
//! - `ota`: devices wait for a rollout's update instruction over MQTT, then
//!   verify and download the release and report their steps over HTTPS.
//! - `report`: medians of many `load` results as a markdown table.
//! - `scenario`: attack simulation: a fresh fleet with a benign background,
//!   then one attack; measures the server's time to detect and contain it
//!   and its false positives.
//!
//! Progress goes to stderr; each command prints one JSON object on stdout.
//! Everything stays on loopback, is bounded in count and time, and stops by
//! itself.

mod attack;
mod enroll;
mod identity;
mod mqtt;
mod net;
mod ota;
mod report;
mod scenario;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bulwark_mqtt::{ProtocolVersion, QoS};
use clap::{Parser, Subcommand, ValueEnum};

/// Most devices `enroll` creates in one run.
const MAX_DEVICES: usize = 200_000;
/// Most connections or workers of one `load` run.
const MAX_CLIENTS: usize = 100_000;
/// Longest `--duration` and `--max-seconds`.
const MAX_SECONDS: u64 = 3600;
/// Smallest payload: it carries the publisher, a sequence number and a timestamp.
const MIN_PAYLOAD: usize = scenario::HEADER_LEN;
/// Largest payload.
const MAX_PAYLOAD: usize = 256 * 1024;

const LOAD_HELP: &str = "\
Scenarios (devices are taken from DIR/devices.txt in order, from --first-device):

  connect-rate  --concurrency C workers each open a full mTLS session over and
                over for --duration seconds: TCP connect, TLS handshake (no
                session resumption), CONNECT/CONNACK, then DISCONNECT and close.
                Reports setups/s and p50/p99 setup latency. The workers cycle
                through --clients devices; worker w uses only devices w, w+C,
                w+2C, ... so no client id is online twice.
  fan-in        --clients N publishers (devices 1..N) publish to
                devices/<id>/telemetry as fast as flow control allows (QoS 1:
                --window PUBACKs in flight each; QoS 0: back-to-back, or at
                --rate messages/s in total); one subscriber (device 0) on
                devices/+/telemetry. Reports messages/s sent and received and,
                for QoS 1, losses (acknowledged but never delivered; must be 0).
  fan-out       one publisher (device 0) publishes to bench/broadcast as fast as
                flow control allows (or at --rate); --clients N subscribers
                (devices 1..N) on bench/broadcast. Reports deliveries/s.
  latency       --clients N publishers at a fixed total --rate R (default 1000)
                messages/s, send time in the payload, one subscriber (device 0)
                on devices/+/telemetry. Reports p50/p99/max end-to-end latency.
  idle          opens --clients N connections (devices 0..N-1), --concurrency C
                handshakes at a time, spread over --source-ips; when all are up
                it says so on stderr (and writes --ready-file), keeps them alive
                with PINGREQ for --duration seconds, then disconnects. The
                broker's memory is measured from outside (bench/mqtt.sh).

The broker and every source address must be loopback addresses.";

#[derive(Parser, Debug)]
#[command(name = "bulwark-sim", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Enroll N devices over EST (keys made locally, P-256) and write
    /// DIR/<id>.key (0600), DIR/<id>.crt and DIR/devices.txt.
    ///
    /// Reads BULWARK_ADDR, BULWARK_TOKEN and BULWARK_CACERT (what `bulwark
    /// server --dev` writes to dev.env). Creates the group if it is missing,
    /// then C workers each create a single-use enrollment token through the
    /// API, make a key and CSR, and run EST simpleenroll. HTTP 429 answers
    /// are retried after a pause.
    Enroll {
        /// Devices to enroll.
        #[arg(long)]
        count: usize,
        /// Group the devices join (created if missing).
        #[arg(long)]
        group: String,
        /// Directory for keys, certificates and devices.txt (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Enrollments in flight.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 600)]
        max_seconds: u64,
        #[command(flatten)]
        api: enroll::ApiTarget,
    },
    /// Load an mTLS MQTT broker with enrolled devices (see the scenarios below).
    #[command(after_long_help = LOAD_HELP, after_help = LOAD_HELP)]
    Load(LoadArgs),
    /// Simulated devices take part in an OTA rollout (no real install; see below).
    #[command(after_long_help = ota::OTA_HELP, after_help = ota::OTA_HELP)]
    Ota(ota::OtaArgs),
    /// Attack simulation: enroll a fleet, run benign traffic, then an
    /// attack; poll the server's alerts and print the time to detect and
    /// to contain it, and the false positives (see the scenarios below).
    #[command(after_long_help = attack::SCENARIO_HELP, after_help = attack::SCENARIO_HELP)]
    Scenario(attack::ScenarioArgs),
    /// Read JSON result lines (a file or stdin) and print the medians per
    /// scenario and label as a markdown table, with the ratio of the first
    /// label to the second.
    Report {
        /// A file of JSON lines; stdin if absent.
        file: Option<PathBuf>,
        /// Labels (columns) in order, comma-separated; default: order of appearance.
        #[arg(long, value_delimiter = ',')]
        labels: Vec<String>,
    },
}

/// The scenarios of `load`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Scenario {
    /// Full mTLS session setups per second (TCP + TLS + CONNECT/CONNACK + DISCONNECT).
    ConnectRate,
    /// N publishers on devices/<id>/telemetry, one subscriber on devices/+/telemetry.
    FanIn,
    /// One publisher on bench/broadcast, N subscribers.
    FanOut,
    /// End-to-end latency at a fixed total rate.
    Latency,
    /// N idle connections held open with keep-alive.
    Idle,
}

impl Scenario {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::ConnectRate => "connect-rate",
            Scenario::FanIn => "fan-in",
            Scenario::FanOut => "fan-out",
            Scenario::Latency => "latency",
            Scenario::Idle => "idle",
        }
    }
}

/// TLS key exchange groups offered by the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Kx {
    /// X25519 only: the same key exchange with every broker (OpenSSL-based
    /// brokers do not offer the post-quantum hybrid).
    X25519,
    /// rustls' defaults (X25519MLKEM768 first, then X25519, P-256, P-384).
    Default,
}

#[derive(clap::Args, Debug)]
pub(crate) struct LoadArgs {
    /// Broker address, HOST:PORT; must be a loopback address.
    #[arg(long)]
    broker: String,
    /// PEM CA certificate(s) that signed the broker's certificate.
    #[arg(long)]
    cafile: PathBuf,
    /// Name to verify in the broker's certificate (and to send as SNI).
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Directory written by `bulwark-sim enroll` (devices.txt, <id>.key, <id>.crt).
    #[arg(long)]
    certs: PathBuf,
    /// What to run.
    #[arg(long, value_enum)]
    scenario: Scenario,
    /// Quality of service of publications and subscriptions.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    qos: u8,
    /// Publishers (fan-in, latency), subscribers (fan-out), connections
    /// (idle), or devices cycled through (connect-rate; at least --concurrency).
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Workers (connect-rate), handshakes in flight (idle, and while
    /// connecting the clients of the other scenarios).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds of measured load (idle: seconds to hold the connections once all are up).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Messages/s in total: required rate of `latency` (default 1000); an
    /// optional cap for fan-in and fan-out.
    #[arg(long)]
    rate: Option<f64>,
    /// Payload bytes per message (at least 20: publisher, sequence, send time).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// MQTT version: 5 or 3.1.1.
    #[arg(long, default_value = "5", value_parser = parse_version)]
    mqtt: ProtocolVersion,
    /// Local addresses to connect from, round-robin: `127.0.0.2-127.0.0.60`
    /// or a comma-separated list; all in 127.0.0.0/8. Each address has about
    /// 28k ephemeral ports.
    #[arg(long)]
    source_ips: Option<String>,
    /// Index in devices.txt of the first device to use (to split one fleet
    /// between several processes).
    #[arg(long, default_value_t = 0)]
    first_device: usize,
    /// QoS 1 publications in flight per publisher (capped by the broker's
    /// Receive Maximum).
    #[arg(long, default_value_t = 16)]
    window: usize,
    /// MQTT keep-alive, seconds; PINGREQ is sent after half of it without traffic.
    #[arg(long, default_value_t = 60)]
    keepalive: u16,
    /// Seconds allowed for one TCP connect + TLS handshake + CONNACK.
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
    /// Seconds allowed after the load for outstanding acknowledgements and deliveries.
    #[arg(long, default_value_t = 10)]
    drain: u64,
    /// Hard cap on the whole run, seconds (default: duration + 120).
    #[arg(long)]
    max_seconds: Option<u64>,
    /// Process id of the broker (same machine), to report its CPU time and memory.
    #[arg(long)]
    broker_pid: Option<u32>,
    /// Name of the broker in the result (`bulwark`, `mosquitto`), for `report`.
    #[arg(long, default_value = "")]
    label: String,
    /// idle: file written with "<up> <failed> <seconds>" once every connection is up or has failed.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// TLS key exchange groups the client offers.
    #[arg(long, value_enum, default_value_t = Kx::X25519)]
    kx: Kx,
}

fn parse_version(s: &str) -> Result<ProtocolVersion, String> {
    match s {
        "5" | "5.0" => Ok(ProtocolVersion::V5),
        "3.1.1" | "311" | "4" => Ok(ProtocolVersion::V311),
        _ => Err("expected 5 or 3.1.1".to_owned()),
    }
}

fn check_range(what: &str, v: u64, lo: u64, hi: u64) -> Result<()> {
    if !(lo..=hi).contains(&v) {
        bail!("{what} must be between {lo} and {hi} (got {v})");
    }
    Ok(())
}

impl LoadArgs {
    /// Validates every option before anything is opened.
    fn validate(self) -> Result<scenario::Load> {
        check_range("--clients", self.clients as u64, 1, MAX_CLIENTS as u64)?;
        check_range(
            "--concurrency",
            self.concurrency as u64,
            1,
            MAX_CLIENTS as u64,
        )?;
        check_range("--duration", self.duration, 1, MAX_SECONDS)?;
        check_range("--window", self.window as u64, 1, 65_535)?;
        check_range("--connect-timeout", self.connect_timeout, 1, 600)?;
        check_range("--drain", self.drain, 1, 600)?;
        check_range("--keepalive", u64::from(self.keepalive), 5, 65_535)?;
        check_range(
            "--payload",
            self.payload as u64,
            MIN_PAYLOAD as u64,
            MAX_PAYLOAD as u64,
        )?;
        let max_seconds = self.max_seconds.unwrap_or(self.duration + 120);
        check_range("--max-seconds", max_seconds, 1, MAX_SECONDS)?;
        let rate = match (self.scenario, self.rate) {
            (Scenario::Latency, None) => Some(1000.0),
            (_, r) => r,
        };
        if let Some(r) = rate {
            if !(r.is_finite() && r > 0.0 && r <= 10_000_000.0) {
                bail!("--rate must be a positive number of messages/s (got {r})");
            }
        }
        let broker = net::loopback_socket_addr(&self.broker)?;
        let sources = match &self.source_ips {
            Some(s) => net::parse_sources(s)?,
            None => Vec::new(),
        };
        let tls = identity::TlsSettings::new(&self.cafile, &self.server_name, self.kx)?;
        let qos = if self.qos == 0 {
            QoS::AtMostOnce
        } else {
            QoS::AtLeastOnce
        };
        Ok(scenario::Load {
            scenario: self.scenario,
            broker: net::Broker::new(broker, sources, Duration::from_secs(self.connect_timeout)),
            tls,
            certs: self.certs,
            qos,
            clients: self.clients,
            concurrency: self.concurrency,
            duration: Duration::from_secs(self.duration),
            rate,
            payload: self.payload,
            version: self.mqtt,
            first_device: self.first_device,
            window: self.window,
            keepalive: self.keepalive,
            drain: Duration::from_secs(self.drain),
            max_time: Duration::from_secs(max_seconds),
            broker_pid: self.broker_pid,
            label: self.label,
            ready_file: self.ready_file,
        })
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let out = match cli.command {
        Command::Report { file, labels } => return report::run(file.as_deref(), &labels),
        Command::Enroll {
            count,
            group,
            out,
            concurrency,
            max_seconds,
            api,
        } => {
            check_range("--count", count as u64, 1, MAX_DEVICES as u64)?;
            check_range("--concurrency", concurrency as u64, 1, 1024)?;
            check_range("--max-seconds", max_seconds, 1, MAX_SECONDS)?;
            let plan = enroll::Plan::new(api, count, &group, out, concurrency)?;
            let max = Duration::from_secs(max_seconds);
            runtime()?.block_on(async move {
                tokio::time::timeout(max, enroll::run(plan))
                    .await
                    .map_err(|_| {
                        anyhow::anyhow!("enrollment did not finish within {max_seconds} s")
                    })?
            })?
        }
        Command::Load(args) => {
            let load = args.validate()?;
            let max = load.max_time;
            let rt = runtime()?;
            let out = rt.block_on(async move {
                tokio::time::timeout(max, scenario::run(load))
                    .await
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "the run did not finish within --max-seconds ({} s)",
                            max.as_secs()
                        )
                    })?
            });
            // Connections still open are dropped here; do not wait for them.
            rt.shutdown_timeout(Duration::from_secs(1));
            out?
        }
        Command::Scenario(args) => {
            let max = args.max_seconds();
            let rt = runtime()?;
            let out = rt.block_on(async move {
                tokio::time::timeout(Duration::from_secs(max), attack::run(args))
                    .await
                    .map_err(|_| anyhow::anyhow!("the run did not finish within {max} s"))?
            });
            rt.shutdown_timeout(Duration::from_secs(1));
            out?
        }
        Command::Ota(args) => {
            let max = args.max_seconds();
            let rt = runtime()?;
            let out = rt.block_on(async move {
                tokio::time::timeout(Duration::from_secs(max), ota::run(args))
                    .await
                    .map_err(|_| {
                        anyhow::anyhow!("the run did not finish within --max-seconds ({max} s)")
                    })?
            });
            rt.shutdown_timeout(Duration::from_secs(1));
            out?
        }
    };
    println!("{out}");
    match out["errors"].as_u64() {
        Some(n) if n > 0 && out["command"] == "enroll" => bail!("{n} enrollments failed"),
        _ => Ok(()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version("5"), Ok(ProtocolVersion::V5));
        assert_eq!(parse_version("3.1.1"), Ok(ProtocolVersion::V311));
        assert!(parse_version("3.1").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
