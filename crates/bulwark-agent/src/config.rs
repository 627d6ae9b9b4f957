//! The agent's TOML configuration: parsed strictly (`deny_unknown_fields`)
//! and validated as a whole before anything starts, so a bad file stops the
//! agent with one clear message.
//!
//! Secrets (the enrollment token, the PKCS#11 PIN) are never written
//! inline in the file unless the entry says so explicitly
//! (`allow_inline = true`): they come from a file of mode 0600 or from an
//! environment variable. See `agent.example.toml` next to the crate's
//! `Cargo.toml` for every option.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::AgentError;

/// The whole agent configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory for the key, certificate and update state (created 0700).
    pub state_dir: PathBuf,
    /// The device id; when absent it is taken from the issued certificate.
    #[serde(default)]
    pub device_id: Option<String>,
    /// Hardware model reported in the inventory.
    pub hardware_model: String,
    /// Seconds between two inventory/posture reports.
    #[serde(default = "default_report_interval")]
    pub report_interval_secs: u64,
    pub server: ServerConfig,
    pub firmware: FirmwareSource,
    #[serde(default)]
    pub enrollment: EnrollmentConfig,
    #[serde(default)]
    pub keys: KeyStorage,
    pub health_check: HealthCheck,
    pub slots: SlotBackend,
}

/// Where the server is and which CA to trust.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `https://host:port` of the API (EST lives under it).
    pub api_url: String,
    /// `host:port` of the mTLS MQTT listener.
    pub mqtt_addr: String,
    /// Name expected in the MQTT listener's certificate.
    pub mqtt_server_name: String,
    /// PEM bundle of the CA(s) that signed the server certificates.
    pub ca_bundle: PathBuf,
}

/// Where the firmware version reported in the inventory comes from.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case", deny_unknown_fields)]
pub enum FirmwareSource {
    /// A fixed string.
    Static { version: String },
    /// The first line of a file (e.g. `/etc/firmware-version`).
    File { path: PathBuf },
}

/// A secret read from a file, an environment variable, or (explicitly
/// marked) written inline.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    #[serde(default)]
    pub file: Option<PathBuf>,
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub inline: Option<String>,
    /// Must be `true` for `inline` to be accepted.
    #[serde(default)]
    pub allow_inline: bool,
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSource")
            .field("file", &self.file)
            .field("env", &self.env)
            .field("inline", &self.inline.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl SecretSource {
    fn validate(&self, what: &str) -> Result<(), AgentError> {
        let set = [
            self.file.is_some(),
            self.env.is_some(),
            self.inline.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err(AgentError::Config(format!(
                "{what}: set exactly one of file, env or inline"
            )));
        }
        if self.inline.is_some() && !self.allow_inline {
            return Err(AgentError::Config(format!(
                "{what}: an inline secret is refused unless `allow_inline = true` is set next to it; prefer `file` (mode 0600) or `env`"
            )));
        }
        if let Some(file) = &self.file {
            absolute(file, what)?;
        }
        if let Some(env) = &self.env {
            if env.is_empty() {
                return Err(AgentError::Config(format!("{what}: env is empty")));
            }
        }
        Ok(())
    }

    /// The secret, trimmed of surrounding whitespace. A file must not be
    /// readable by group or others.
    pub fn read(&self, what: &'static str) -> Result<Zeroizing<String>, AgentError> {
        let value = if let Some(path) = &self.file {
            let bytes = Zeroizing::new(crate::fsutil::read_private(path, what)?);
            Zeroizing::new(
                std::str::from_utf8(&bytes)
                    .map_err(|_| {
                        AgentError::Secret(format!("{what} file {} is not UTF-8", path.display()))
                    })?
                    .trim()
                    .to_owned(),
            )
        } else if let Some(env) = &self.env {
            Zeroizing::new(
                std::env::var(env)
                    .map_err(|_| AgentError::Secret(format!("{what}: ${env} is not set")))?
                    .trim()
                    .to_owned(),
            )
        } else {
            Zeroizing::new(self.inline.clone().unwrap_or_default().trim().to_owned())
        };
        if value.is_empty() {
            return Err(AgentError::Secret(format!("{what} is empty")));
        }
        Ok(value)
    }
}

/// How the device proves it may enroll the first time.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentConfig {
    /// A single-use enrollment token (`bulwark enroll-token create`).
    #[serde(default)]
    pub token: Option<SecretSource>,
    /// A factory claim certificate (PEM) and its key (PEM, mode 0600).
    #[serde(default)]
    pub claim_cert: Option<PathBuf>,
    #[serde(default)]
    pub claim_key: Option<PathBuf>,
}

/// Where the device key lives.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "storage", rename_all = "snake_case", deny_unknown_fields)]
pub enum KeyStorage {
    /// `<state_dir>/device.key`, PKCS#8 PEM, mode 0600.
    #[default]
    File,
    /// A non-extractable key on a PKCS#11 token (cargo feature `pkcs11`).
    Pkcs11 {
        /// Path of the PKCS#11 module (`/usr/lib/softhsm/libsofthsm2.so`).
        module: PathBuf,
        /// Label of the token holding the key.
        token_label: String,
        /// Label given to the key objects.
        #[serde(default = "default_key_label")]
        key_label: String,
        /// The user PIN.
        pin: SecretSource,
    },
}

/// The command run after booting a new slot to decide whether it is healthy.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthCheck {
    /// Program and arguments (no shell).
    pub command: Vec<String>,
    #[serde(default = "default_health_timeout")]
    pub timeout_secs: u64,
}

/// The A/B slot implementation.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "backend", rename_all = "snake_case", deny_unknown_fields)]
pub enum SlotBackend {
    /// `root/a`, `root/b` and a state file: tests and simple devices.
    Directory { root: PathBuf },
    /// Hook commands for a real bootloader (see [`crate::slots`]).
    Command(CommandHooks),
}

/// The commands of [`crate::slots::CommandSlots`]. Arguments equal to
/// `{artifact}` or `{slot}` are replaced by the value as one argument.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandHooks {
    /// Prints `booted=<slot>`, `trial=yes|no` and optionally `good=<slot>`.
    pub status: Vec<String>,
    /// Writes `{artifact}` into slot `{slot}`.
    pub install: Vec<String>,
    /// Boots `{slot}` once, in trial mode, at the next reboot.
    pub mark_trial: Vec<String>,
    /// Marks the running slot `{slot}` good.
    pub confirm: Vec<String>,
    /// Goes back to the good slot `{slot}` (marks the other bad).
    pub rollback: Vec<String>,
    /// Reboots the device; absent: the agent only reports `rebooting` and
    /// waits for someone else to reboot.
    #[serde(default)]
    pub reboot: Option<Vec<String>>,
    /// The two slot names (default `["a", "b"]`).
    #[serde(default = "default_slot_names")]
    pub slot_names: [String; 2],
    #[serde(default = "default_hook_timeout")]
    pub timeout_secs: u64,
}

fn default_report_interval() -> u64 {
    300
}
fn default_health_timeout() -> u64 {
    120
}
fn default_hook_timeout() -> u64 {
    900
}
fn default_key_label() -> String {
    "bulwark-device".to_owned()
}
fn default_slot_names() -> [String; 2] {
    ["a".to_owned(), "b".to_owned()]
}

fn absolute(path: &Path, what: &str) -> Result<(), AgentError> {
    if path.is_absolute() {
        Ok(())
    } else {
        Err(AgentError::Config(format!(
            "{what} must be an absolute path, not {}",
            path.display()
        )))
    }
}

fn command(argv: &[String], what: &str, placeholders: &[&str]) -> Result<(), AgentError> {
    let Some(program) = argv.first() else {
        return Err(AgentError::Config(format!("{what} is an empty command")));
    };
    if program.is_empty() {
        return Err(AgentError::Config(format!("{what}: the program is empty")));
    }
    for arg in argv {
        if (arg == "{artifact}" || arg == "{slot}") && !placeholders.contains(&arg.as_str()) {
            return Err(AgentError::Config(format!(
                "{what}: {arg} has no meaning here"
            )));
        }
        let embedded = arg.contains('{') && !placeholders.contains(&arg.as_str());
        if embedded && (arg.contains("{artifact}") || arg.contains("{slot}")) {
            return Err(AgentError::Config(format!(
                "{what}: placeholder inside {arg:?}; a placeholder must be a whole argument (the value is passed as one argument, never spliced into a string)"
            )));
        }
    }
    Ok(())
}

/// `name` is a usable slot name: 1–32 of `[A-Za-z0-9._-]`.
pub fn valid_slot_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "."
        && name != ".."
}

impl Config {
    /// Reads, parses and validates `path`.
    pub fn load(path: &Path) -> Result<Config, AgentError> {
        let text = std::fs::read_to_string(path).map_err(|e| AgentError::ConfigLoad {
            path: path.to_owned(),
            source: Box::new(e),
        })?;
        Self::parse(&text).map_err(|e| match e {
            AgentError::ConfigLoad { source, .. } => AgentError::ConfigLoad {
                path: path.to_owned(),
                source,
            },
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<Config, AgentError> {
        let config: Config = toml::from_str(text).map_err(|e| AgentError::ConfigLoad {
            path: PathBuf::from("<text>"),
            source: Box::new(e),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks everything that the types alone do not.
    pub fn validate(&self) -> Result<(), AgentError> {
        absolute(&self.state_dir, "state_dir")?;
        absolute(&self.server.ca_bundle, "server.ca_bundle")?;
        let url = self.server.api_url.trim();
        let rest = url.strip_prefix("https://").ok_or_else(|| {
            AgentError::Config(format!(
                "server.api_url {url:?} must start with https:// (EST and the API are only spoken over TLS)"
            ))
        })?;
        if rest.is_empty() || rest.starts_with('/') || rest.contains(['?', '#']) {
            return Err(AgentError::Config(format!(
                "server.api_url {url:?} needs a host and no query or fragment"
            )));
        }
        let (host, port) = self.server.mqtt_addr.rsplit_once(':').ok_or_else(|| {
            AgentError::Config(format!(
                "server.mqtt_addr {:?} must be host:port",
                self.server.mqtt_addr
            ))
        })?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(AgentError::Config(format!(
                "server.mqtt_addr {:?} must be host:port with a port in 1..=65535",
                self.server.mqtt_addr
            )));
        }
        rustls_pki_types::ServerName::try_from(self.server.mqtt_server_name.as_str()).map_err(
            |_| {
                AgentError::Config(format!(
                    "server.mqtt_server_name {:?} is not a DNS name or IP address",
                    self.server.mqtt_server_name
                ))
            },
        )?;
        if let Some(id) = &self.device_id {
            if id.is_empty()
                || id.len() > 128
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            {
                return Err(AgentError::Config(format!(
                    "device_id {id:?} must be 1-128 characters of letters, digits, '.', '_' or '-'"
                )));
            }
        }
        if self.hardware_model.trim().is_empty() {
            return Err(AgentError::Config("hardware_model is empty".to_owned()));
        }
        if !(10..=86_400).contains(&self.report_interval_secs) {
            return Err(AgentError::Config(format!(
                "report_interval_secs is {}; it must be between 10 and 86400",
                self.report_interval_secs
            )));
        }
        match &self.firmware {
            FirmwareSource::Static { version } if version.trim().is_empty() => {
                return Err(AgentError::Config("firmware.version is empty".to_owned()))
            }
            FirmwareSource::File { path } => absolute(path, "firmware.path")?,
            FirmwareSource::Static { .. } => {}
        }
        self.validate_enrollment()?;
        if let KeyStorage::Pkcs11 {
            module,
            token_label,
            key_label,
            pin,
        } = &self.keys
        {
            if !cfg!(feature = "pkcs11") {
                return Err(AgentError::Config(
                    "keys.storage = \"pkcs11\" needs an agent built with the `pkcs11` feature"
                        .to_owned(),
                ));
            }
            absolute(module, "keys.module")?;
            if token_label.is_empty() || token_label.len() > 32 {
                return Err(AgentError::Config(
                    "keys.token_label must be 1-32 characters".to_owned(),
                ));
            }
            if key_label.is_empty() {
                return Err(AgentError::Config("keys.key_label is empty".to_owned()));
            }
            pin.validate("keys.pin")?;
        }
        command(&self.health_check.command, "health_check.command", &[])?;
        if !(1..=3600).contains(&self.health_check.timeout_secs) {
            return Err(AgentError::Config(
                "health_check.timeout_secs must be between 1 and 3600".to_owned(),
            ));
        }
        match &self.slots {
            SlotBackend::Directory { root } => absolute(root, "slots.root")?,
            SlotBackend::Command(h) => h.validate()?,
        }
        Ok(())
    }

    fn validate_enrollment(&self) -> Result<(), AgentError> {
        let e = &self.enrollment;
        match (&e.claim_cert, &e.claim_key) {
            (Some(c), Some(k)) => {
                absolute(c, "enrollment.claim_cert")?;
                absolute(k, "enrollment.claim_key")?;
                if e.token.is_some() {
                    return Err(AgentError::Config(
                        "enrollment: set either token or claim_cert/claim_key, not both".to_owned(),
                    ));
                }
            }
            (None, None) => {}
            _ => {
                return Err(AgentError::Config(
                    "enrollment: claim_cert and claim_key go together".to_owned(),
                ))
            }
        }
        if let Some(token) = &e.token {
            token.validate("enrollment.token")?;
        }
        Ok(())
    }

    /// The health-check timeout.
    pub fn health_timeout(&self) -> Duration {
        Duration::from_secs(self.health_check.timeout_secs)
    }

    /// The report interval.
    pub fn report_interval(&self) -> Duration {
        Duration::from_secs(self.report_interval_secs)
    }
}

impl CommandHooks {
    fn validate(&self) -> Result<(), AgentError> {
        command(&self.status, "slots.status", &[])?;
        command(&self.install, "slots.install", &["{artifact}", "{slot}"])?;
        if !self.install.iter().any(|a| a == "{artifact}") {
            return Err(AgentError::Config(
                "slots.install must pass {artifact} as an argument".to_owned(),
            ));
        }
        command(&self.mark_trial, "slots.mark_trial", &["{slot}"])?;
        command(&self.confirm, "slots.confirm", &["{slot}"])?;
        command(&self.rollback, "slots.rollback", &["{slot}"])?;
        if let Some(reboot) = &self.reboot {
            command(reboot, "slots.reboot", &[])?;
        }
        let [a, b] = &self.slot_names;
        if !valid_slot_name(a) || !valid_slot_name(b) || a == b {
            return Err(AgentError::Config(
                "slots.slot_names must be two different names of [A-Za-z0-9._-]".to_owned(),
            ));
        }
        if !(1..=86_400).contains(&self.timeout_secs) {
            return Err(AgentError::Config(
                "slots.timeout_secs must be between 1 and 86400".to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
