//! `bulwark-bench`: end-to-end load against a running Bulwark server.
//!
//! - `est-enroll`: pre-creates a group and N single-use enrollment tokens
//!   through the API and N P-256 CSRs (none of it timed), then C workers,
//!   each with its own HTTPS connection, run EST `simpleenroll` until the N
//!   tokens are used. Every enrollment is a CSR check, a signature, a
//!   durable SQLite commit and audit entries on the server.
//! - `health`: the same workers against `GET /v1/health`, the TLS + HTTP
//!   cost of a request with no CSR, signature or commit: the baseline.
//! - `report`: medians of many runs' JSON lines as a markdown table.
//!
//! Each run prints one JSON line on stdout; progress goes to stderr. Load
//! goes only to loopback addresses, is bounded in count (`--enrollments`,
//! `--requests`) and in time (`--max-seconds`), and stops by itself.

mod load;
mod report;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use reqwest::Url;

/// Largest run: requests or enrollments.
const MAX_REQUESTS: usize = 1_000_000;
/// Most concurrent workers.
const MAX_CONCURRENCY: usize = 1024;
/// Longest run, in seconds.
const MAX_SECONDS: u64 = 600;

#[derive(Parser, Debug)]
#[command(name = "bulwark-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the server is: the variables `bulwark server --dev` writes to `dev.env`.
#[derive(clap::Args, Debug)]
struct Target {
    /// Server base URL; must be a loopback address.
    #[arg(long, env = "BULWARK_ADDR")]
    addr: String,
    /// PEM CA bundle that signed the server's certificate.
    #[arg(long, env = "BULWARK_CACERT")]
    cacert: PathBuf,
    /// Process id of the server (same machine), to report its CPU time per
    /// request from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// EST simpleenroll with pre-created enrollment tokens.
    EstEnroll {
        #[command(flatten)]
        target: Target,
        /// Operator token allowed to create groups and enrollment tokens.
        #[arg(long, env = "BULWARK_TOKEN", hide_env_values = true)]
        token: String,
        /// Enrollments to run (one token and one CSR each).
        #[arg(long, default_value_t = 3000)]
        enrollments: usize,
        /// Concurrent workers, each with its own HTTPS connection.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Stop taking new work after this many seconds.
        #[arg(long, default_value_t = 120)]
        max_seconds: u64,
    },
    /// GET /v1/health: the TLS + HTTP baseline.
    Health {
        #[command(flatten)]
        target: Target,
        /// Requests to send.
        #[arg(long, default_value_t = 20_000)]
        requests: usize,
        /// Concurrent workers, each with its own HTTPS connection.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// Stop taking new work after this many seconds.
        #[arg(long, default_value_t = 120)]
        max_seconds: u64,
    },
    /// Reads JSON result lines (a file or stdin) and prints medians per
    /// concurrency as a markdown table.
    Report {
        /// A file of JSON lines; stdin if absent.
        file: Option<PathBuf>,
    },
}

/// A validated run size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) count: usize,
    pub(crate) concurrency: usize,
    pub(crate) max_time: Duration,
}

fn bounds(count: usize, concurrency: usize, max_seconds: u64) -> Result<Bounds> {
    if !(1..=MAX_REQUESTS).contains(&count) {
        bail!("the request count must be between 1 and {MAX_REQUESTS} (got {count})");
    }
    if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
        bail!("--concurrency must be between 1 and {MAX_CONCURRENCY} (got {concurrency})");
    }
    if !(1..=MAX_SECONDS).contains(&max_seconds) {
        bail!("--max-seconds must be between 1 and {MAX_SECONDS} (got {max_seconds})");
    }
    Ok(Bounds {
        count,
        concurrency: concurrency.min(count),
        max_time: Duration::from_secs(max_seconds),
    })
}

/// The server address, refused unless it is a loopback address.
fn loopback_url(addr: &str) -> Result<String> {
    let url = Url::parse(addr.trim()).with_context(|| format!("server address {addr:?}"))?;
    let host = url.host_str().unwrap_or("");
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    };
    if !loopback {
        bail!("{addr}: bulwark-bench only sends load to loopback addresses (127.0.0.0/8, ::1, localhost)");
    }
    Ok(addr.trim().to_owned())
}

impl Target {
    fn open(&self) -> Result<load::Server> {
        let addr = loopback_url(&self.addr)?;
        let ca = std::fs::read(&self.cacert)
            .with_context(|| format!("cannot read {}", self.cacert.display()))?;
        Ok(load::Server { addr, ca })
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Report { file } => report::run(file.as_deref()),
        Command::EstEnroll {
            target,
            token,
            enrollments,
            concurrency,
            max_seconds,
        } => {
            let b = bounds(enrollments, concurrency, max_seconds)?;
            let server = target.open()?;
            runtime()?.block_on(load::est_enroll(server, token, b, target.server_pid))
        }
        Command::Health {
            target,
            requests,
            concurrency,
            max_seconds,
        } => {
            let b = bounds(requests, concurrency, max_seconds)?;
            let server = target.open()?;
            runtime()?.block_on(load::health(server, b, target.server_pid))
        }
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
    fn only_loopback_targets() {
        for ok in [
            "https://127.0.0.1:8443",
            "https://127.0.0.2:1",
            "https://[::1]:8443",
            "https://localhost:8443",
        ] {
            assert!(loopback_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://10.0.0.1:8443",
            "https://example.com",
            "https://[2001:db8::1]:1",
            "nonsense",
        ] {
            assert!(loopback_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bounds_are_enforced() {
        assert!(bounds(0, 1, 10).is_err());
        assert!(bounds(10, 0, 10).is_err());
        assert!(bounds(10, 1, 0).is_err());
        assert!(bounds(10, 1, MAX_SECONDS + 1).is_err());
        assert_eq!(bounds(4, 64, 10).unwrap().concurrency, 4);
    }
}
