//! Update instructions from the server, turned into verified installs.
//!
//! An instruction arrives on `devices/{id}/commands/ota` as JSON:
//!
//! ```json
//! {"release": "gw-fw-2.1.0", "rollout": "r-42"}
//! ```
//!
//! `release` is a TUF target name; `rollout` is optional and echoed in
//! every step report. Parsing is strict ([`Instruction::parse`]): at most
//! [`MAX_INSTRUCTION_BYTES`], no unknown fields.
//!
//! [`Ota::run`] then:
//!
//! 1. obtains the trusted TUF root: the first time, `1.root.json` fetched
//!    over mTLS from the configured server (the server authenticated by the
//!    configured CA bundle, the device by its certificate) and kept in
//!    `<state_dir>/ota/root.json` once it loaded a verified repository;
//!    afterwards that file, and tough chains newer roots from its datastore
//!    (`<state_dir>/ota/tuf`);
//! 2. checks the target against the device's hardware model and its version
//!    floor ([`Updater::version_floor`]); a refusal is reported as `failed`
//!    with the verifier's reason (wrong hardware, below floor, expired ...);
//! 3. downloads (resuming a partial file) into `<state_dir>/ota/downloads`
//!    (mode 0700) while `downloading` is reported; a length or hash
//!    mismatch is reported as `failed` with its reason;
//! 4. hands the verified artifact to [`Updater::fetch_and_install`], which
//!    writes the inactive slot, marks it for a trial boot and asks the slots
//!    for the reboot.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bulwark_ota::url::Url;
use bulwark_ota::{Device, HardwareModel, HttpsTransport, TargetName, UpdateClient};
use serde::Deserialize;
use tokio::sync::watch;

use crate::identity::Identity;
use crate::update::{Release, Reporter, Step, StepReport, Updater};
use crate::{fsutil, AgentError};

/// Largest instruction payload accepted.
pub const MAX_INSTRUCTION_BYTES: usize = 4096;
/// Longest rollout id accepted.
pub const MAX_ROLLOUT_LEN: usize = 128;
/// Largest first root metadata accepted (the verifier's own limit).
const MAX_ROOT_BYTES: usize = 512 * 1024;

/// One update instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instruction {
    pub release: TargetName,
    pub rollout: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireInstruction {
    release: String,
    #[serde(default)]
    rollout: Option<String>,
}

impl Instruction {
    /// Parses an instruction payload strictly.
    pub fn parse(payload: &[u8]) -> Result<Instruction, AgentError> {
        if payload.len() > MAX_INSTRUCTION_BYTES {
            return Err(AgentError::Instruction(format!(
                "{} bytes, more than {MAX_INSTRUCTION_BYTES}",
                payload.len()
            )));
        }
        let invalid = |e: serde_json::Error| AgentError::Instruction(e.to_string());
        let value: serde_json::Value = serde_json::from_slice(payload).map_err(invalid)?;
        if !value.is_object() {
            // serde would also take a struct from an array.
            return Err(AgentError::Instruction("not a JSON object".into()));
        }
        let wire: WireInstruction = serde_json::from_value(value).map_err(invalid)?;
        let release = TargetName::new(&wire.release)
            .map_err(|e| AgentError::Instruction(format!("release: {e}")))?;
        if let Some(r) = &wire.rollout {
            let ok = !r.is_empty()
                && r.len() <= MAX_ROLLOUT_LEN
                && r.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
            if !ok {
                return Err(AgentError::Instruction(format!(
                    "rollout must be 1 to {MAX_ROLLOUT_LEN} characters of A-Z a-z 0-9 - _ . :"
                )));
            }
        }
        Ok(Instruction {
            release,
            rollout: wire.rollout,
        })
    }
}

/// What the update path needs to know about the device and the server.
#[derive(Debug, Clone)]
pub struct OtaSettings {
    pub state_dir: PathBuf,
    /// The repository's metadata base: `{api_url}/v1/ota/tuf/`.
    pub repository: Url,
    pub hardware_model: HardwareModel,
    /// The CA bundle that authenticates the server.
    pub roots: Arc<rustls::RootCertStore>,
}

impl OtaSettings {
    /// Settings for a server at `api_url` (`https://host:port`).
    pub fn new(
        state_dir: &Path,
        api_url: &str,
        hardware_model: &str,
        roots: Arc<rustls::RootCertStore>,
    ) -> Result<OtaSettings, AgentError> {
        let base = format!("{}/v1/ota/tuf/", api_url.trim_end_matches('/'));
        let repository =
            Url::parse(&base).map_err(|e| AgentError::Config(format!("server.api_url: {e}")))?;
        let hardware_model = HardwareModel::new(hardware_model)
            .map_err(|e| AgentError::Config(format!("hardware_model: {e}")))?;
        Ok(OtaSettings {
            state_dir: state_dir.to_owned(),
            repository,
            hardware_model,
            roots,
        })
    }

    fn ota_dir(&self) -> PathBuf {
        self.state_dir.join("ota")
    }
}

/// Runs instructions, one at a time (the caller keeps it so).
pub struct Ota {
    settings: OtaSettings,
    device_id: String,
    identity: watch::Receiver<Arc<Identity>>,
    updater: Arc<Updater>,
    reporter: Arc<dyn Reporter>,
}

impl std::fmt::Debug for Ota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ota")
            .field("settings", &self.settings)
            .field("device_id", &self.device_id)
            .finish()
    }
}

impl Ota {
    pub fn new(
        settings: OtaSettings,
        device_id: &str,
        identity: watch::Receiver<Arc<Identity>>,
        updater: Arc<Updater>,
        reporter: Arc<dyn Reporter>,
    ) -> Ota {
        Ota {
            settings,
            device_id: device_id.to_owned(),
            identity,
            updater,
            reporter,
        }
    }

    /// Checks, downloads and installs the instruction's release. Returns
    /// the step reached: `rebooting` (the slots asked for a reboot) or
    /// `failed` (reported with its reason). An `Err` is an update that
    /// could not start (another one is unfinished, the state is unusable).
    pub async fn run(&self, instruction: &Instruction) -> Result<Step, AgentError> {
        let (client, transport) = match self.repository().await {
            Ok(c) => c,
            Err(e) => return self.refuse(instruction, &e).await,
        };
        let device = match self.device().await {
            Ok(d) => d,
            Err(e) => return self.refuse(instruction, &e).await,
        };
        let candidate = match client.check(&instruction.release, &device) {
            Ok(c) => c,
            Err(e) => return self.refuse(instruction, &e.into()).await,
        };
        let release = Release {
            target: candidate.name().to_string(),
            version: candidate.release().version().to_string(),
            length: candidate.length(),
            sha256: candidate.sha256().to_hex(),
            floor: 0,
            version_floor: candidate.release().floor().map(|v| v.to_string()),
            rollout: instruction.rollout.clone(),
        };
        let dir = self.settings.ota_dir().join("downloads");
        private_dir(&dir)?;
        let fetch = async {
            client
                .download(&candidate, &transport, &dir)
                .await
                .map(|verified| verified.path().to_owned())
                .map_err(|e| crate::report_chain(&e))
        };
        let step = self.updater.fetch_and_install(release, fetch).await?;
        if step == Step::Rebooting {
            // The slot holds its own copy now.
            remove_files_in(&dir);
        }
        Ok(step)
    }

    /// Reports `failed` for an instruction refused before anything was
    /// installed (the version is unknown then: empty).
    async fn refuse(&self, instruction: &Instruction, e: &AgentError) -> Result<Step, AgentError> {
        let reason = crate::report_chain(e);
        tracing::warn!(release = %instruction.release, %reason, "update refused");
        let report = StepReport {
            device_id: self.device_id.clone(),
            target: instruction.release.to_string(),
            version: String::new(),
            state: Step::Failed,
            reason: Some(reason),
            rollout: instruction.rollout.clone(),
            at: time::OffsetDateTime::now_utc(),
        };
        if let Err(e) = self.reporter.report(&report).await {
            tracing::warn!(error = %crate::report_chain(&e), "cannot report an update step");
        }
        Ok(Step::Failed)
    }

    async fn device(&self) -> Result<Device, AgentError> {
        let floor =
            match self.updater.version_floor().await {
                None => None,
                Some(text) => Some(semver::Version::parse(&text).map_err(|e| {
                    AgentError::Update(format!("stored version floor {text:?}: {e}"))
                })?),
            };
        Ok(Device {
            model: self.settings.hardware_model.clone(),
            floor,
        })
    }

    /// An mTLS HTTPS client with the current identity.
    fn http(&self) -> Result<reqwest::Client, AgentError> {
        let identity = self.identity.borrow().clone();
        mtls_client(&identity, self.settings.roots.clone())
    }

    /// Loads and verifies the repository metadata.
    async fn repository(&self) -> Result<(UpdateClient, HttpsTransport), AgentError> {
        let http = self.http()?;
        let dir = self.settings.ota_dir();
        private_dir(&dir)?;
        let root_path = dir.join("root.json");
        let stored = match std::fs::read(&root_path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(AgentError::io("cannot read", &root_path, e)),
        };
        let root = match &stored {
            Some(bytes) => bytes.clone(),
            None => self.fetch_first_root(&http).await?,
        };
        let transport = HttpsTransport::new(http);
        let targets = self
            .settings
            .repository
            .join("targets/")
            .map_err(|e| AgentError::Config(format!("repository url: {e}")))?;
        let client = UpdateClient::load(
            &root,
            &dir.join("tuf"),
            self.settings.repository.clone(),
            targets,
            transport.clone(),
        )
        .await?;
        if stored.is_none() {
            // Pinned only once it led to a verified repository.
            fsutil::write_atomic(&root_path, &root, 0o600)?;
        }
        Ok((client, transport))
    }

    /// `1.root.json` over mTLS, bounded.
    async fn fetch_first_root(&self, http: &reqwest::Client) -> Result<Vec<u8>, AgentError> {
        let url = self
            .settings
            .repository
            .join("1.root.json")
            .map_err(|e| AgentError::Config(format!("repository url: {e}")))?;
        let failed = |what: &str, e: reqwest::Error| AgentError::Repository {
            what: format!("{what} {url}"),
            source: Some(e),
        };
        let mut response = http
            .get(url.clone())
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| failed("cannot fetch", e))?;
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| failed("cannot read", e))?
        {
            if body.len() + chunk.len() > MAX_ROOT_BYTES {
                return Err(AgentError::Repository {
                    what: format!("{url} is larger than {MAX_ROOT_BYTES} bytes"),
                    source: None,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// An HTTPS-only client presenting `identity` (its rustls configuration,
/// so a PKCS#11 key works too) to a server authenticated by `roots`. The
/// OTA download and the rollout reports ([`crate::https_report`]) use it.
pub(crate) fn mtls_client(
    identity: &Identity,
    roots: Arc<rustls::RootCertStore>,
) -> Result<reqwest::Client, AgentError> {
    let tls = identity.client_config(roots)?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .https_only(true)
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| AgentError::Repository {
            what: "cannot build the https client".into(),
            source: Some(e),
        })
}

/// Creates `dir` if needed and makes it 0700 (only the agent writes it).
fn private_dir(dir: &Path) -> Result<(), AgentError> {
    fsutil::ensure_private_dir(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| AgentError::io("cannot restrict", dir, e))
}

/// Removes the files directly in `dir` (best effort).
fn remove_files_in(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_file()) {
            if let Err(e) = std::fs::remove_file(entry.path()) {
                tracing::warn!(path = %entry.path().display(), error = %e, "cannot remove a downloaded file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions_are_parsed_strictly() {
        let ok = Instruction::parse(br#"{"release": "gw-fw-2.1.0", "rollout": "r-42"}"#).unwrap();
        assert_eq!(ok.release.as_str(), "gw-fw-2.1.0");
        assert_eq!(ok.rollout.as_deref(), Some("r-42"));
        let bare = Instruction::parse(br#"{"release": "fw"}"#).unwrap();
        assert_eq!(bare.rollout, None);

        let long = format!(r#"{{"release": "fw", "rollout": "{}"}}"#, "x".repeat(5000));
        for (bad, expect) in [
            (&br#"{"release": "fw", "extra": 1}"#[..], "unknown field"),
            (br#"{"rollout": "r"}"#, "missing field"),
            (br#"{"release": "../etc/passwd"}"#, "release"),
            (br#"{"release": "fw", "rollout": "a b"}"#, "rollout"),
            (br#"{"release": "fw", "rollout": ""}"#, "rollout"),
            (br#"["fw"]"#, "not a JSON object"),
            (b"\xff", "invalid update instruction"),
            (long.as_bytes(), "more than 4096"),
        ] {
            let e = Instruction::parse(bad).unwrap_err().to_string();
            assert!(e.contains(expect), "{}: {e}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_repository_is_under_the_api_url() {
        let roots = Arc::new(rustls::RootCertStore::empty());
        let s = OtaSettings::new(Path::new("/s"), "https://h:8443/", "rig", roots).unwrap();
        assert_eq!(s.repository.as_str(), "https://h:8443/v1/ota/tuf/");
        assert_eq!(s.ota_dir(), Path::new("/s/ota"));
    }
}
