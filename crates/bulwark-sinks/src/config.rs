//! Sink configuration: what an operator writes (TOML, JSON, …), checked
//! completely by [`SinkConfig::check`] before any task starts.
//!
//! ```toml
//! [[sinks]]
//! type = "webhook"
//! url = "https://soc.example/hooks/bulwark"
//! secret = "…at least 16 bytes…"
//! ```
//!
//! Every sink takes `name` (default `<type>-<index>`), `min_severity`
//! (default `low`) and `queue_capacity` (default 1024); the transports with
//! a network take `timeout_secs` and a `[retry]` table.

use std::fmt;
use std::path::PathBuf;

use bulwark_types::Severity;
use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

use crate::format::syslog::Facility;

/// Default capacity of each sink's queue.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1024;
/// Default NATS server.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// Default NATS subject.
pub const DEFAULT_NATS_SUBJECT: &str = "bulwark.alerts";
/// Shortest accepted webhook secret, in bytes.
pub const MIN_SECRET_LEN: usize = 16;

/// One sink, tagged by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SinkConfig {
    Webhook(WebhookConfig),
    Syslog(SyslogConfig),
    Jsonl(JsonlConfig),
    Nats(NatsConfig),
}

/// A secret that `Debug` never shows and that is wiped when dropped.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(Zeroizing::new(s.into()))
    }

    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// Retries of one notice: exponential back-off from `initial_backoff_ms`,
/// doubling up to `max_backoff_ms`, each wait drawn uniformly from its
/// upper half (jitter); at most `max_attempts` attempts in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 5,
            initial_backoff_ms: 500,
            max_backoff_ms: 30_000,
        }
    }
}

fn low() -> Severity {
    Severity::Low
}
fn queue() -> usize {
    DEFAULT_QUEUE_CAPACITY
}
fn ten() -> u64 {
    10
}
fn app_name() -> String {
    "bulwark".to_owned()
}
fn sd_id() -> String {
    "bulwark@32473".to_owned()
}
fn max_message() -> usize {
    8192
}
fn nats_url() -> String {
    DEFAULT_NATS_URL.to_owned()
}
fn nats_subject() -> String {
    DEFAULT_NATS_SUBJECT.to_owned()
}

/// `type = "webhook"`: a signed HTTP(S) POST of the JSON envelope.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub name: Option<String>,
    #[serde(default = "low")]
    pub min_severity: Severity,
    #[serde(default = "queue")]
    pub queue_capacity: usize,
    /// `https://…`; `http://` only to a loopback address, or anywhere with
    /// `insecure_plain_http = true`.
    pub url: String,
    /// The HMAC-SHA256 key (at least 16 bytes).
    pub secret: Secret,
    /// A PEM file of CA certificates trusted for the receiver, in addition
    /// to the system's roots.
    pub ca_file: Option<PathBuf>,
    /// Allow `http://` to a non-loopback host (the signature still
    /// authenticates, but the alert travels in clear text).
    #[serde(default)]
    pub insecure_plain_http: bool,
    #[serde(default = "ten")]
    pub timeout_secs: u64,
    #[serde(default)]
    pub retry: RetryConfig,
}

/// How syslog messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogTransport {
    /// Plain TCP (RFC 6587), for a collector on the same host or network.
    Tcp,
    /// TLS (RFC 5425), verifying the collector against `ca_file`.
    #[default]
    Tls,
}

/// What a syslog message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyslogFormat {
    /// RFC 5424 with structured data and a UTF-8 MSG.
    #[default]
    Rfc5424,
    /// A CEF record as the MSG of an RFC 5424 header.
    Cef,
}

/// `type = "syslog"`: RFC 5424 or CEF over TCP or TLS, octet-counted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    pub name: Option<String>,
    #[serde(default = "low")]
    pub min_severity: Severity,
    #[serde(default = "queue")]
    pub queue_capacity: usize,
    /// `host:port` of the collector (6514 is syslog over TLS).
    pub address: String,
    #[serde(default)]
    pub transport: SyslogTransport,
    /// PEM CA certificates that may have issued the collector's
    /// certificate (required for TLS; the system roots are not used).
    pub ca_file: Option<PathBuf>,
    /// The name the collector's certificate must carry (default: the host
    /// part of `address`).
    pub server_name: Option<String>,
    /// A client certificate chain and key (PEM) for collectors that
    /// require mutual TLS.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    #[serde(default)]
    pub format: SyslogFormat,
    #[serde(default)]
    pub facility: Facility,
    /// HOSTNAME (default: this machine's host name, `-` if unknown).
    pub hostname: Option<String>,
    #[serde(default = "app_name")]
    pub app_name: String,
    /// The SD-ID of the structured data (`name@<enterprise number>`;
    /// 32473 is the number RFC 5612 reserves for documentation: use your
    /// organisation's when you have one).
    #[serde(default = "sd_id")]
    pub sd_id: String,
    /// Longest message, in bytes (MSG is cut to fit; at least 480).
    #[serde(default = "max_message")]
    pub max_message_bytes: usize,
    #[serde(default = "ten")]
    pub timeout_secs: u64,
    #[serde(default)]
    pub retry: RetryConfig,
}

/// When the JSON lines file is synced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// `fdatasync` after every line: a delivered notice survives a crash.
    #[default]
    Always,
    /// Leave it to the kernel (a crash may lose the last seconds).
    Never,
}

/// `type = "jsonl"`: one JSON envelope per line, appended to a file (or
/// written to standard output when `path = "-"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    pub name: Option<String>,
    #[serde(default = "low")]
    pub min_severity: Severity,
    #[serde(default = "queue")]
    pub queue_capacity: usize,
    pub path: PathBuf,
    #[serde(default)]
    pub fsync: FsyncPolicy,
    #[serde(default)]
    pub retry: RetryConfig,
}

/// `type = "nats"`: the JSON envelope published to a subject.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    pub name: Option<String>,
    #[serde(default = "low")]
    pub min_severity: Severity,
    #[serde(default = "queue")]
    pub queue_capacity: usize,
    #[serde(default = "nats_url")]
    pub url: String,
    #[serde(default = "nats_subject")]
    pub subject: String,
    /// PEM CA certificates for the server; setting it requires TLS.
    pub ca_file: Option<PathBuf>,
    #[serde(default = "ten")]
    pub timeout_secs: u64,
    #[serde(default)]
    pub retry: RetryConfig,
}

/// The fields every sink has, with defaults applied.
#[derive(Debug, Clone)]
pub(crate) struct Common {
    pub name: String,
    pub min_severity: Severity,
    pub queue_capacity: usize,
    pub retry: RetryConfig,
}

impl SinkConfig {
    /// The sink's type name.
    pub fn kind(&self) -> &'static str {
        match self {
            SinkConfig::Webhook(_) => "webhook",
            SinkConfig::Syslog(_) => "syslog",
            SinkConfig::Jsonl(_) => "jsonl",
            SinkConfig::Nats(_) => "nats",
        }
    }

    pub(crate) fn common(&self, index: usize) -> Common {
        let (name, min_severity, queue_capacity, retry) = match self {
            SinkConfig::Webhook(c) => (&c.name, c.min_severity, c.queue_capacity, c.retry),
            SinkConfig::Syslog(c) => (&c.name, c.min_severity, c.queue_capacity, c.retry),
            SinkConfig::Jsonl(c) => (&c.name, c.min_severity, c.queue_capacity, c.retry),
            SinkConfig::Nats(c) => (&c.name, c.min_severity, c.queue_capacity, c.retry),
        };
        Common {
            name: name
                .clone()
                .unwrap_or_else(|| format!("{}-{index}", self.kind())),
            min_severity,
            queue_capacity,
            retry,
        }
    }

    /// Checks every sink and builds its transport (reads CA files, parses
    /// URLs) without connecting anywhere: what [`Dispatcher::start`]
    /// does before spawning, for a server that validates its configuration
    /// before binding ports.
    ///
    /// [`Dispatcher::start`]: crate::Dispatcher::start
    pub fn check(configs: &[SinkConfig]) -> Result<(), crate::SinkError> {
        crate::dispatch::build_all(configs).map(drop)
    }
}

/// This machine's host name for syslog HOSTNAME and CEF `dvchost`, or `-`.
pub(crate) fn local_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| crate::format::syslog::check_header_field(s, 255).is_ok())
        .unwrap_or_else(|| "-".to_owned())
}
