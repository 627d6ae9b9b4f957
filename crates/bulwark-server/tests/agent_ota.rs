//! Over-the-air updates end to end with real processes: `bulwark server
//! --dev`, a release published with the CLI, a real `bulwark-agent run`
//! process (enrolled with a token, directory slots in a temp dir, a
//! health-check command) and a service principal that sends the update
//! instruction over MQTT and reads the agent's reports:
//! `devices/{id}/commands/ota` in, `devices/{id}/ota/status` and
//! `devices/{id}/inventory` out.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bulwark_api_types::{CreateEnrollToken, CreateGroup};
use bulwark_mqtt::{ProtocolVersion, QoS, ReasonCode};
use bulwark_types::{DeviceId, GroupId};
use common::mqtt::{connect_packet, Raw};
use common::{rt, write, Server};
use serde_json::{json, Value};

/// How long a whole update (download, install, health check) may take.
const UPDATE: Duration = Duration::from_secs(20);

/// A recognisable artifact of `len` bytes.
fn artifact(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 37 % 253) as u8).collect()
}

fn agent_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_bulwark")).with_file_name("bulwark-agent");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p bulwark-agent` first (`cargo test --workspace` builds it)",
        bin.display()
    );
    bin
}

/// Publishes `name` (version 2.0.0) for `hardware` with the CLI.
fn publish_release(server: &Server, name: &str, hardware: &str, body: &[u8]) {
    let file = write(server.dir.path(), &format!("{name}.img"), body);
    let out = server.cli(&[
        "ota",
        "release",
        "create",
        file.to_str().unwrap(),
        "--name",
        name,
        "--version",
        "2.0.0",
        "--hardware",
        hardware,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `bulwark-agent run`.
struct Agent {
    child: Option<Child>,
    dir: tempfile::TempDir,
    id: String,
}

impl Agent {
    /// Enrolls `id` with a fresh token and starts the agent with directory
    /// slots and `health` as its health check.
    async fn start(server: &Server, id: &str, model: &str, health: &[&str]) -> Agent {
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

    fn slot_image(&self, slot: &str) -> PathBuf {
        self.dir.path().join("slots").join(slot).join("image")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    fn is_running(&mut self) -> bool {
        let child = self.child.as_mut().expect("started");
        child.try_wait().unwrap().is_none()
    }

    /// SIGTERM; the agent must stop cleanly within 10 s.
    fn terminate(&mut self) {
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
async fn console(server: &Server) -> Console {
    let http = common::raw(server);
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
struct Console {
    raw: Raw,
    pending: Vec<(String, Value)>,
}

impl Console {
    /// The next JSON message on `devices/{id}/{suffix}` within `timeout`;
    /// messages on other topics are kept for later.
    async fn next_on(&mut self, id: &str, suffix: &str, timeout: Duration) -> Value {
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

    async fn instruct(&mut self, id: &str, payload: &str) {
        let topic = format!("devices/{id}/commands/ota");
        self.raw.publish(&topic, payload, QoS::AtLeastOnce, 7).await;
    }
}

/// Sends the instruction and collects the step reports up to a terminal one.
async fn update(svc: &mut Console, agent: &Agent, instruction: Value) -> Vec<Value> {
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

fn states(steps: &[Value]) -> Vec<&str> {
    steps.iter().map(|s| s["state"].as_str().unwrap()).collect()
}

/// Starts everything up to the agent's first inventory (slot a).
async fn ready(server: &Server, id: &str, health: &[&str]) -> (Console, Agent) {
    let mut svc = console(server).await;
    let agent = Agent::start(server, id, "rig-1", health).await;
    let first = svc.next_on(id, "inventory", UPDATE).await;
    assert_eq!(first["active_slot"], "a", "{first}");
    assert_eq!(first["release"], Value::Null, "{first}");
    assert_eq!(first["hardware_model"], "rig-1");
    (svc, agent)
}

#[test]
fn a_good_release_is_installed_booted_on_trial_and_confirmed() {
    let server = Server::start("");
    let body = artifact(200_000);
    publish_release(&server, "rig-fw-2.0.0", "rig-1", &body);
    rt().block_on(async {
        let (mut svc, mut agent) = ready(&server, "ota-good", &["/bin/true"]).await;
        let steps = update(
            &mut svc,
            &agent,
            json!({"release": "rig-fw-2.0.0", "rollout": "r-good"}),
        )
        .await;
        assert_eq!(
            states(&steps),
            [
                "queued",
                "downloading",
                "verifying",
                "installing",
                "rebooting",
                "healthy"
            ],
            "{steps:?}"
        );
        for s in &steps {
            assert_eq!(
                (&s["device_id"], &s["target"], &s["version"], &s["rollout"]),
                (
                    &json!("ota-good"),
                    &json!("rig-fw-2.0.0"),
                    &json!("2.0.0"),
                    &json!("r-good")
                ),
                "{s}"
            );
            assert_eq!(s["reason"], Value::Null, "{s}");
        }
        assert_eq!(std::fs::read(agent.slot_image("b")).unwrap(), body);

        let inventory = svc.next_on(&agent.id, "inventory", UPDATE).await;
        assert_eq!(inventory["active_slot"], "b", "{inventory}");
        assert_eq!(
            inventory["release"],
            json!({"target": "rig-fw-2.0.0", "version": "2.0.0"})
        );

        // The download directory is the agent's alone, and the first root
        // is pinned for the next update.
        let state = agent.dir.path().join("state").join("ota");
        let mode = std::os::unix::fs::MetadataExt::mode(
            &std::fs::metadata(state.join("downloads")).unwrap(),
        );
        assert_eq!(mode & 0o777, 0o700);
        assert!(state.join("root.json").is_file());
        agent.terminate();
    });
}

#[test]
fn a_failing_health_check_rolls_back_and_the_agent_keeps_running_on_the_old_slot() {
    let server = Server::start("");
    let body = artifact(50_000);
    publish_release(&server, "rig-fw-bad", "rig-1", &body);
    rt().block_on(async {
        let (mut svc, mut agent) = ready(&server, "ota-unhealthy", &["/bin/false"]).await;
        let steps = update(&mut svc, &agent, json!({"release": "rig-fw-bad"})).await;
        assert_eq!(
            states(&steps),
            [
                "queued",
                "downloading",
                "verifying",
                "installing",
                "rebooting",
                "rolled_back"
            ],
            "{steps:?}"
        );
        let last = steps.last().unwrap();
        let reason = last["reason"].as_str().unwrap();
        assert!(
            reason.contains("health check failed") && reason.contains("rolled back to slot a"),
            "{reason}"
        );
        assert_eq!(
            last["rollout"],
            Value::Null,
            "no rollout named: none echoed"
        );

        let inventory = svc.next_on(&agent.id, "inventory", UPDATE).await;
        assert_eq!(inventory["active_slot"], "a", "{inventory}");
        assert_eq!(inventory["release"], Value::Null, "{inventory}");
        assert!(agent.is_running(), "{}", agent.log());
        agent.terminate();
    });
}

#[test]
fn a_release_for_other_hardware_is_refused_with_the_reason_and_nothing_is_written() {
    let server = Server::start("");
    publish_release(&server, "sensor-fw-2.0.0", "sensor-9", &artifact(10_000));
    rt().block_on(async {
        let (mut svc, mut agent) = ready(&server, "ota-wrong-hw", &["/bin/true"]).await;
        let steps = update(
            &mut svc,
            &agent,
            json!({"release": "sensor-fw-2.0.0", "rollout": "r-hw"}),
        )
        .await;
        assert_eq!(states(&steps), ["failed"], "{steps:?}");
        let reason = steps[0]["reason"].as_str().unwrap();
        assert!(
            reason.contains("wrong hardware")
                && reason.contains("sensor-9")
                && reason.contains("rig-1"),
            "{reason}"
        );
        assert_eq!(
            (&steps[0]["target"], &steps[0]["rollout"]),
            (&json!("sensor-fw-2.0.0"), &json!("r-hw"))
        );
        assert!(
            !agent.slot_image("b").exists(),
            "nothing in the inactive slot"
        );
        assert!(!agent.slot_image("a").exists());
        let inventory = svc.next_on(&agent.id, "inventory", UPDATE).await;
        assert_eq!(inventory["active_slot"], "a", "{inventory}");
        agent.terminate();
    });
}

#[test]
fn malformed_instructions_and_one_sent_during_an_update_are_rejected_and_ignored() {
    let server = Server::start("");
    publish_release(&server, "rig-fw-slow", "rig-1", &artifact(20_000));
    rt().block_on(async {
        // A slow health check keeps the first update running.
        let (mut svc, mut agent) = ready(&server, "ota-busy", &["/bin/sh", "-c", "sleep 2"]).await;
        let id = agent.id.clone();
        for bad in [
            r#"{"release": "rig-fw-slow", "force": true}"#,
            r#"{"release": "../../etc/passwd"}"#,
            "not json",
        ] {
            svc.instruct(&id, bad).await;
            let r = svc.next_on(&id, "ota/rejected", UPDATE).await;
            let reason = r["reason"].as_str().unwrap();
            assert!(
                reason.contains("invalid update instruction"),
                "{bad}: {reason}"
            );
            assert_eq!(r["release"], Value::Null, "{r}");
        }

        svc.instruct(&id, r#"{"release": "rig-fw-slow", "rollout": "r-1"}"#)
            .await;
        let first = svc.next_on(&id, "ota/status", UPDATE).await;
        assert_eq!(first["state"], "queued", "{first}");
        svc.instruct(&id, r#"{"release": "rig-fw-slow", "rollout": "r-2"}"#)
            .await;
        let r = svc.next_on(&id, "ota/rejected", UPDATE).await;
        assert_eq!(
            (&r["release"], &r["rollout"], &r["reason"]),
            (
                &json!("rig-fw-slow"),
                &json!("r-2"),
                &json!("an update is already running")
            )
        );
        let mut steps = vec![first];
        loop {
            let step = svc.next_on(&id, "ota/status", UPDATE).await;
            let done = step["state"] == "healthy" || step["state"] == "failed";
            steps.push(step);
            if done {
                break;
            }
        }
        assert_eq!(
            states(&steps),
            [
                "queued",
                "downloading",
                "verifying",
                "installing",
                "rebooting",
                "healthy"
            ],
            "{steps:?}"
        );
        assert!(steps.iter().all(|s| s["rollout"] == "r-1"), "{steps:?}");
        agent.terminate();
    });
}
