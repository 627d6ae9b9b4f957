//! Server configuration: a TOML file (`--config`), then environment, then
//! flags, each overriding the one before. Everything is validated before any
//! port is bound; a bad value is a clear message and a non-zero exit.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

/// The `[api]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiFile {
    pub addr: Option<SocketAddr>,
    /// Names (DNS or IP) in the API's TLS certificate.
    pub tls_names: Option<Vec<String>>,
    pub max_connections: Option<usize>,
    pub handshake_timeout_secs: Option<u64>,
}

/// The `[mqtt]` table: the gateway's listeners and limits (see
/// `bulwark_gateway::GatewayLimits` for what each limit means).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttFile {
    pub addr: Option<SocketAddr>,
    /// The plaintext loopback listener; dev mode only.
    pub dev_plain_addr: Option<SocketAddr>,
    pub handshake_timeout_secs: Option<u64>,
    pub connect_timeout_secs: Option<u64>,
    pub max_packet_size: Option<u32>,
    pub max_packet_size_unauthenticated: Option<u32>,
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<u32>,
    pub max_subscriptions: Option<usize>,
    pub max_topic_len: Option<usize>,
    pub max_topic_levels: Option<usize>,
    pub receive_maximum: Option<u16>,
    pub max_inflight: Option<u16>,
    pub max_queued: Option<usize>,
    pub topic_alias_maximum: Option<u16>,
    pub max_keepalive_secs: Option<u16>,
    pub max_session_expiry_secs: Option<u32>,
    pub publish_rate: Option<f64>,
    pub publish_burst: Option<f64>,
    pub publish_bytes_rate: Option<f64>,
    pub publish_bytes_burst: Option<f64>,
    pub auth_failures_before_backoff: Option<u32>,
    pub auth_backoff_max_secs: Option<u64>,
    pub flap_max_connects: Option<u32>,
    pub flap_window_secs: Option<u64>,
    pub max_retained: Option<usize>,
}

impl MqttFile {
    /// The gateway limits: defaults, overridden by the file, validated.
    fn limits(&self) -> Result<bulwark_gateway::GatewayLimits> {
        use std::time::Duration;
        let mut l = bulwark_gateway::GatewayLimits::default();
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(v) = self.$field { l.$field = v; })* };
        }
        set!(
            max_packet_size,
            max_packet_size_unauthenticated,
            max_connections,
            max_connections_per_ip,
            max_subscriptions,
            max_topic_len,
            max_topic_levels,
            receive_maximum,
            max_inflight,
            max_queued,
            topic_alias_maximum,
            max_keepalive_secs,
            max_session_expiry_secs,
            publish_rate,
            publish_burst,
            publish_bytes_rate,
            publish_bytes_burst,
            auth_failures_before_backoff,
            flap_max_connects,
            max_retained
        );
        let secs = |v: Option<u64>, d: Duration| v.map_or(d, Duration::from_secs);
        l.handshake_timeout = secs(self.handshake_timeout_secs, l.handshake_timeout);
        l.connect_timeout = secs(self.connect_timeout_secs, l.connect_timeout);
        l.auth_backoff_max = secs(self.auth_backoff_max_secs, l.auth_backoff_max);
        l.flap_window = secs(self.flap_window_secs, l.flap_window);
        l.validate().map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(l)
    }
}

/// The `[ca]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaFile {
    pub organization: Option<String>,
    pub device_cert_days: Option<i64>,
    /// Lifetime in seconds; overrides `device_cert_days` (for short-lived fleets and tests).
    pub device_cert_secs: Option<i64>,
    pub passphrase_file: Option<PathBuf>,
}

/// The `[limits]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub per_ip_per_sec: Option<u32>,
    pub per_ip_burst: Option<u32>,
    pub per_token_per_sec: Option<u32>,
    pub per_token_burst: Option<u32>,
    pub max_body_bytes: Option<usize>,
    pub max_est_body_bytes: Option<usize>,
}

/// The `[enrollment]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentFile {
    pub token_ttl_secs: Option<i64>,
}

/// The `[audit]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditFile {
    pub checkpoint_every_entries: Option<u64>,
    pub checkpoint_interval_secs: Option<u64>,
}

/// The `[log]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogFile {
    /// `text` (default) or `json`.
    pub format: Option<String>,
    /// A tracing filter, e.g. `info` or `bulwark=debug`.
    pub level: Option<String>,
}

/// `[ota]`: the update repository.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtaFile {
    /// Largest artifact accepted, in MiB (default 1024).
    pub max_artifact_mib: Option<u64>,
    /// Artifact downloads served at once (default 64).
    pub max_concurrent_downloads: Option<usize>,
    /// Lifetime of the timestamp metadata in seconds (default 1 day):
    /// how long a device trusts a repository that stopped being re-signed.
    pub timestamp_expiry_secs: Option<u64>,
    /// Lifetime of the snapshot metadata in seconds (default 7 days).
    pub snapshot_expiry_secs: Option<u64>,
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub api: ApiFile,
    #[serde(default)]
    pub mqtt: MqttFile,
    #[serde(default)]
    pub ca: CaFile,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub enrollment: EnrollmentFile,
    #[serde(default)]
    pub audit: AuditFile,
    #[serde(default)]
    pub log: LogFile,
    #[serde(default)]
    pub ota: OtaFile,
    /// The detection engine (`bulwark_detect::DetectConfig`).
    #[serde(default)]
    pub detect: bulwark_detect::DetectConfig,
    #[serde(default)]
    pub response: crate::detect::ResponseFile,
    /// Response playbooks; absent: the built-in ones; `playbooks = []`: none.
    #[serde(default)]
    pub playbooks: Option<Vec<crate::detect::playbook::Playbook>>,
    /// Where alerts and actions go besides the API and the audit log.
    #[serde(default)]
    pub sinks: Vec<bulwark_sinks::SinkConfig>,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }
}

/// Flags (and their environment variables) that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub api_addr: Option<SocketAddr>,
    pub mqtt_addr: Option<SocketAddr>,
    pub dev_mqtt_plain_addr: Option<SocketAddr>,
    pub passphrase_file: Option<PathBuf>,
    pub dev: bool,
    pub log_format: Option<String>,
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub dev: bool,
    /// `None` in dev mode without `--data-dir`: a temporary directory.
    pub data_dir: Option<PathBuf>,
    pub api_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    /// The plaintext loopback MQTT listener (dev mode only).
    pub dev_mqtt_plain_addr: Option<SocketAddr>,
    pub mqtt_limits: bulwark_gateway::GatewayLimits,
    pub tls_names: Vec<String>,
    pub organization: String,
    /// Lifetime of device certificates, in seconds.
    pub device_cert_secs: i64,
    pub passphrase_file: Option<PathBuf>,
    pub limits: bulwark_api::LimitConfig,
    pub max_connections: usize,
    pub handshake_timeout_secs: u64,
    pub token_ttl_secs: i64,
    pub checkpoint_every_entries: u64,
    pub checkpoint_interval_secs: u64,
    pub log_json: bool,
    pub log_level: String,
    pub ota: bulwark_registry::OtaConfig,
    pub detect: crate::detect::DetectSettings,
}

impl Config {
    /// Merges file and overrides and validates the result.
    pub fn build(file: FileConfig, o: Overrides) -> Result<Self> {
        let dev = o.dev;
        let (def_api, def_mqtt) = if dev {
            ("127.0.0.1:8443", "127.0.0.1:8883")
        } else {
            ("0.0.0.0:8443", "0.0.0.0:8883")
        };
        let api_addr = o
            .api_addr
            .or(file.api.addr)
            .unwrap_or_else(|| def_api.parse().expect("valid default"));
        let mqtt_addr = o
            .mqtt_addr
            .or(file.mqtt.addr)
            .unwrap_or_else(|| def_mqtt.parse().expect("valid default"));
        if dev {
            for (name, a) in [("--api-addr", api_addr), ("--mqtt-addr", mqtt_addr)] {
                if !a.ip().is_loopback() {
                    bail!(
                        "{name} {a}: --dev listens on loopback addresses only (127.0.0.0/8 or ::1)"
                    );
                }
            }
        }
        let dev_mqtt_plain_addr = match (dev, o.dev_mqtt_plain_addr.or(file.mqtt.dev_plain_addr)) {
            (false, Some(_)) => bail!(
                "the plaintext MQTT listener (--dev-mqtt-plain-addr, [mqtt] dev_plain_addr) \
                 exists only in --dev mode"
            ),
            (false, None) => None,
            (true, a) => {
                let a = a.unwrap_or_else(|| "127.0.0.1:1884".parse().expect("valid default"));
                if !a.ip().is_loopback() {
                    bail!("--dev-mqtt-plain-addr {a}: the plaintext MQTT listener may only bind a loopback address");
                }
                Some(a)
            }
        };
        let mqtt_limits = file.mqtt.limits()?;
        let data_dir = o.data_dir.or(file.data_dir);
        let data_dir = match (dev, data_dir) {
            (_, Some(d)) => Some(d),
            (true, None) => None,
            (false, None) => Some(PathBuf::from("./bulwark-data")),
        };
        let mut tls_names = file
            .api
            .tls_names
            .unwrap_or_else(|| vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]);
        if !api_addr.ip().is_unspecified() && !tls_names.contains(&api_addr.ip().to_string()) {
            tls_names.push(api_addr.ip().to_string());
        }
        if tls_names.is_empty() {
            bail!("[api] tls_names must name at least one host");
        }
        let device_cert_days = file.ca.device_cert_days.unwrap_or(30);
        if !(1..=825).contains(&device_cert_days) {
            bail!("[ca] device_cert_days must be between 1 and 825 (got {device_cert_days})");
        }
        let device_cert_secs = file
            .ca
            .device_cert_secs
            .unwrap_or(device_cert_days * 86_400);
        if !(5..=825 * 86_400).contains(&device_cert_secs) {
            bail!("[ca] device_cert_secs must be between 5 and 71280000 (got {device_cert_secs})");
        }
        let organization = file.ca.organization.unwrap_or_else(|| "Bulwark".into());
        if organization.is_empty() || organization.len() > 64 {
            bail!("[ca] organization must be 1 to 64 characters");
        }
        let d = bulwark_api::LimitConfig::default();
        let l = file.limits;
        let limits = bulwark_api::LimitConfig {
            per_ip_per_sec: positive("limits.per_ip_per_sec", l.per_ip_per_sec, d.per_ip_per_sec)?,
            per_ip_burst: positive("limits.per_ip_burst", l.per_ip_burst, d.per_ip_burst)?,
            per_token_per_sec: positive(
                "limits.per_token_per_sec",
                l.per_token_per_sec,
                d.per_token_per_sec,
            )?,
            per_token_burst: positive(
                "limits.per_token_burst",
                l.per_token_burst,
                d.per_token_burst,
            )?,
            max_body_bytes: bounded(
                "limits.max_body_bytes",
                l.max_body_bytes,
                d.max_body_bytes,
                1024,
                16 << 20,
            )?,
            max_est_body_bytes: bounded(
                "limits.max_est_body_bytes",
                l.max_est_body_bytes,
                d.max_est_body_bytes,
                1024,
                1 << 20,
            )?,
            max_concurrent_downloads: bounded(
                "ota.max_concurrent_downloads",
                file.ota.max_concurrent_downloads,
                d.max_concurrent_downloads,
                1,
                100_000,
            )?,
        };
        let ota = {
            use std::time::Duration;
            let d = bulwark_registry::OtaConfig::default();
            let mib = file
                .ota
                .max_artifact_mib
                .unwrap_or(d.max_artifact_bytes >> 20);
            if !(1..=64 * 1024).contains(&mib) {
                bail!("[ota] max_artifact_mib must be between 1 and 65536 (got {mib})");
            }
            let mut expiries = d.expiries;
            if let Some(t) = file.ota.timestamp_expiry_secs {
                if !(2..=30 * 86_400).contains(&t) {
                    bail!("[ota] timestamp_expiry_secs must be between 2 and 2592000 (got {t})");
                }
                expiries.timestamp = Duration::from_secs(t);
            }
            if let Some(t) = file.ota.snapshot_expiry_secs {
                if !(2..=365 * 86_400).contains(&t) || Duration::from_secs(t) < expiries.timestamp {
                    bail!(
                        "[ota] snapshot_expiry_secs must be between 2 and 31536000 and not below \
                         the timestamp's lifetime (got {t})"
                    );
                }
                expiries.snapshot = Duration::from_secs(t);
            }
            bulwark_registry::OtaConfig {
                max_artifact_bytes: mib << 20,
                expiries,
            }
        };
        let detect = crate::detect::DetectSettings {
            engine: file.detect,
            playbooks: file
                .playbooks
                .unwrap_or_else(crate::detect::playbook::defaults),
            sinks: file.sinks,
            response: file.response,
        };
        detect.validate()?;
        let token_ttl_secs = file.enrollment.token_ttl_secs.unwrap_or(3600);
        if !(60..=30 * 86_400).contains(&token_ttl_secs) {
            bail!("[enrollment] token_ttl_secs must be between 60 and 2592000");
        }
        let log_format = o
            .log_format
            .or(file.log.format)
            .unwrap_or_else(|| "text".into());
        let log_json = match log_format.as_str() {
            "text" => false,
            "json" => true,
            other => bail!("log format must be text or json (got {other:?})"),
        };
        Ok(Self {
            dev,
            data_dir,
            api_addr,
            mqtt_addr,
            dev_mqtt_plain_addr,
            mqtt_limits,
            tls_names,
            organization,
            device_cert_secs,
            passphrase_file: o.passphrase_file.or(file.ca.passphrase_file),
            limits,
            max_connections: bounded(
                "api.max_connections",
                file.api.max_connections,
                4096,
                1,
                1 << 20,
            )?,
            handshake_timeout_secs: file.api.handshake_timeout_secs.unwrap_or(10).clamp(1, 120),
            token_ttl_secs,
            checkpoint_every_entries: file.audit.checkpoint_every_entries.unwrap_or(1000).max(1),
            checkpoint_interval_secs: file.audit.checkpoint_interval_secs.unwrap_or(10).max(1),
            log_json,
            log_level: file.log.level.unwrap_or_else(|| "info".into()),
            ota,
            detect,
        })
    }
}

fn positive(name: &str, v: Option<u32>, default: u32) -> Result<u32> {
    match v {
        Some(0) => bail!("{name} must be at least 1"),
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

fn bounded(name: &str, v: Option<usize>, default: usize, min: usize, max: usize) -> Result<usize> {
    let v = v.unwrap_or(default);
    if v < min || v > max {
        bail!("{name} must be between {min} and {max} (got {v})");
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str, o: Overrides) -> Result<Config> {
        Config::build(toml::from_str(toml_text)?, o)
    }

    #[test]
    fn defaults() {
        let c = parse("", Overrides::default()).unwrap();
        assert_eq!(c.api_addr.to_string(), "0.0.0.0:8443");
        assert_eq!(c.data_dir, Some(PathBuf::from("./bulwark-data")));
        assert_eq!(c.device_cert_secs, 30 * 86_400);
    }

    #[test]
    fn flags_override_file() {
        let o = Overrides {
            api_addr: Some("127.0.0.1:9443".parse().unwrap()),
            ..Default::default()
        };
        let c = parse("[api]\naddr = \"0.0.0.0:1234\"\n", o).unwrap();
        assert_eq!(c.api_addr.to_string(), "127.0.0.1:9443");
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse("[ca]\ndevice_cert_days = 0\n", Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("device_cert_days"), "{e}");
        let e = parse("[limits]\nper_ip_per_sec = 0\n", Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("per_ip_per_sec"), "{e}");
        assert!(parse("bogus = 1\n", Overrides::default()).is_err());
        assert!(parse("[api]\naddr = \"not an address\"\n", Overrides::default()).is_err());
    }

    #[test]
    fn dev_refuses_non_loopback() {
        let o = Overrides {
            dev: true,
            api_addr: Some("0.0.0.0:8443".parse().unwrap()),
            ..Default::default()
        };
        let e = parse("", o).unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
    }
}
