//! Real `bulwark-agent` processes for end-to-end tests: enrolled with a
//! token, directory slots in a temp dir, a health-check command; and a
//! backend "console" service that sends update instructions over MQTT and
//! reads the agents' reports and inventories.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bulwark_api_types::{CreateEnrollToken, CreateGroup};
use bulwark_mqtt::{ProtocolVersion, QoS, ReasonCode};
use bulwark_types::{DeviceId, GroupId};
use serde_json::{json, Value};

use super::mqtt::{connect_packet, Raw};
use super::{write, Server};

/// How long a whole update (download, install, health check) may take.
pub const UPDATE: Duration = Duration::from_secs(20);

/// A recognisable artifact of `len` bytes.
pub fn artifact(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 37 % 253) as u8).collect()
}

pub fn agent_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_bulwark")).with_file_name("bulwark-agent");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p bulwark-agent` first (`cargo test --workspace` builds it)",
        bin.display()
    );
    bin
}

/// Publishes `name` (version 2.0.0) for `hardware` with the CLI.
pub fn publish_release(server: &Server, name: &str, hardware: &str, body: &[u8]) {
    publish_version(server, name, "2.0.0", hardware, None, body);
}

/// Publishes `name` at `version` for `hardware`, with an optional
/// anti-rollback `floor`, with the CLI.
pub fn publish_version(
    server: &Server,
    name: &str,
    version: &str,
    hardware: &str,
    floor: Option<&str>,
    body: &[u8],
) {
    let file = write(server.dir.path(), &format!("{name}.img"), body);
    let mut args = vec![
        "ota",
        "release",
        "create",
        file.to_str().unwrap(),
        "--name",
        name,
        "--version",
        version,
        "--hardware",
        hardware,
    ];
    if let Some(floor) = floor {
        args.extend(["--floor", floor]);
    }
    let out = server.cli(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `<data-dir>/ota/repository`: the files served at `/v1/ota/tuf/`.
pub fn repository_dir(server: &Server) -> PathBuf {
    server.data_dir().join("ota").join("repository")
}

/// Replaces `path` atomically for readers (the server): a temp file in the
/// same directory, renamed over it.
pub fn replace_file(path: &Path, bytes: &[u8]) {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A running `bulwark-agent run`.
pub struct Agent {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub id: String,
}

impl Agent {
    /// Enrolls `id` with a fresh token and starts the agent with directory
    /// slots and `health` as its health check.
    pub async fn start(server: &Server, id: &str, model: &str, health: &[&str]) -> Agent {
        let admin = server.client();
        let _ = admin
            .create_group(&CreateGroup {
                name: GroupId::new("ota-agents").unwrap(),
                description: String::new(),
            })
            .await;
        let token = admin
            .create_enroll_token(&CreateEnrollToken {
                group: GroupId::new("ota-agents").unwrap(),
                device_id: Some(DeviceId::new(id).unwrap()),
                ttl_seconds: None,
            })
            .await
            .unwrap()
            .token;
        let dir = tempfile::tempdir().unwrap();
        let token_file = write(dir.path(), "token", &token);
        std::fs::set_permissions(
            &token_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let config = format!(
            r#"
state_dir = "{state}"
hardware_model = "{model}"
[server]
api_url = "{api}"
mqtt_addr = "{mqtt}"
mqtt_server_name = "localhost"
ca_bundle = "{ca}"
[firmware]
source = "static"
version = "1.0.0"
[enrollment]
token = {{ file = "{token}" }}
[health_check]
command = {health}
timeout_secs = 10
[slots]
backend = "directory"
root = "{slots}"
"#,
            state = dir.path().join("state").display(),
            api = server.addr,
            mqtt = server.mqtt_addr,
            ca = server.cacert.display(),
            token = token_file.display(),
            health = serde_json::to_string(health).unwrap(),
            slots = dir.path().join("slots").display(),
        );
        let config_path = write(dir.path(), "agent.toml", config);
        let log = std::fs::File::create(dir.path().join("agent.log")).unwrap();
        let child = Command::new(agent_bin())
            .arg("--config")
            .arg(&config_path)
            .arg("run")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn bulwark-agent");
        Agent {
            child: Some(child),
            dir,
            id: id.to_owned(),
        }
    }

    pub fn slot_image(&self, slot: &str) -> PathBuf {
        self.dir.path().join("slots").join(slot).join("image")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        let child = self.child.as_mut().expect("started");
        child.try_wait().unwrap().is_none()
    }

    /// SIGTERM; the agent must stop cleanly within 10 s.
    pub fn terminate(&mut self) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "agent exit {status}: {}", self.log());
                assert!(self.log().contains("stopped"), "{}", self.log());
                return;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- agent log ----\n{}", self.log());
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A backend service that may send update instructions and read reports.
pub async fn console(server: &Server) -> Console {
    let http = super::raw(server);
    let api = |path: &str| format!("{}{path}", server.addr);
    let created: Value = http
        .post(api("/v1/services"))
        .bearer_auth(&server.token)
        .json(&json!({"name": "ota-console", "password": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let password = created["generated_password"].as_str().unwrap().to_owned();
    let policy = json!({"version": 1, "name": "ota-console", "statements": [
        {"effect": "allow", "actions": ["connect"], "resources": ["ota-console"]},
        {"effect": "allow", "actions": ["publish"], "resources": ["devices/+/commands/ota"]},
        {"effect": "allow", "actions": ["subscribe", "receive"],
         "resources": ["devices/+/ota/status", "devices/+/ota/rejected", "devices/+/inventory"]}
    ]});
    for r in [
        http.post(api("/v1/policies")).json(&policy),
        http.put(api("/v1/services/ota-console/policies/ota-console")),
    ] {
        let r = r.bearer_auth(&server.token).send().await.unwrap();
        assert!(r.status().is_success(), "{:?}", r.text().await);
    }
    let mut login = connect_packet(ProtocolVersion::V5, "ota-console");
    login.username = Some("ota-console".into());
    login.password = Some(password.as_bytes().to_vec().into());
    let mut svc = Raw::tls(server, None).await.unwrap();
    let ack = svc.handshake(login).await.unwrap();
    assert_eq!(ack.reason_code, ReasonCode::Success);
    let granted = svc
        .subscribe(
            1,
            &[
                ("devices/+/ota/status", QoS::AtLeastOnce),
                ("devices/+/ota/rejected", QoS::AtLeastOnce),
                ("devices/+/inventory", QoS::AtLeastOnce),
            ],
        )
        .await;
    assert_eq!(granted, [ReasonCode::GrantedQoS1; 3]);
    Console {
        raw: svc,
        pending: Vec::new(),
    }
}

/// The console's connection and the messages it received but no test
/// step asked for yet.
pub struct Console {
    pub raw: Raw,
    pub pending: Vec<(String, Value)>,
}

impl Console {
    /// The next JSON message on `devices/{id}/{suffix}` within `timeout`;
    /// messages on other topics are kept for later.
    pub async fn next_on(&mut self, id: &str, suffix: &str, timeout: Duration) -> Value {
        let topic = format!("devices/{id}/{suffix}");
        if let Some(i) = self.pending.iter().position(|(t, _)| *t == topic) {
            return self.pending.remove(i).1;
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let p = self
                .raw
                .next_publish(left)
                .await
                .unwrap_or_else(|| panic!("nothing on {topic} within {timeout:?}"));
            let got = p
                .topic
                .as_ref()
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default();
            let value = serde_json::from_slice(&p.payload).unwrap();
            if got == topic {
                return value;
            }
            self.pending.push((got, value));
        }
    }

    pub async fn instruct(&mut self, id: &str, payload: &str) {
        let topic = format!("devices/{id}/commands/ota");
        self.raw.publish(&topic, payload, QoS::AtLeastOnce, 7).await;
    }
}

/// Sends the instruction and collects the step reports up to a terminal one.
pub async fn update(svc: &mut Console, agent: &Agent, instruction: Value) -> Vec<Value> {
    svc.instruct(&agent.id, &instruction.to_string()).await;
    let mut steps = Vec::new();
    loop {
        let step = svc.next_on(&agent.id, "ota/status", UPDATE).await;
        let state = step["state"].as_str().unwrap().to_owned();
        steps.push(step);
        if ["healthy", "failed", "rolled_back"].contains(&state.as_str()) {
            return steps;
        }
    }
}

pub fn states(steps: &[Value]) -> Vec<&str> {
    steps.iter().map(|s| s["state"].as_str().unwrap()).collect()
}

/// Starts everything up to the agent's first inventory (slot a).
pub async fn ready(server: &Server, id: &str, health: &[&str]) -> (Console, Agent) {
    let mut svc = console(server).await;
    let agent = Agent::start(server, id, "rig-1", health).await;
    let first = svc.next_on(id, "inventory", UPDATE).await;
    assert_eq!(first["active_slot"], "a", "{first}");
    assert_eq!(first["release"], Value::Null, "{first}");
    assert_eq!(first["hardware_model"], "rig-1");
    (svc, agent)
}
