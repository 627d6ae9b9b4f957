//! Interop with third-party MQTT clients over mutual TLS: Eclipse
//! Mosquitto's `mosquitto_pub`/`mosquitto_sub` (Debian `mosquitto-clients`)
//! and Python `paho-mqtt` (PyPI) for the MQTT 3.1.1 and 5.0 features. Both
//! are installed by `.ci/run`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::mqtt::{attach_lab_policy, enroll, Creds};
use common::{rt, Server};

/// Three devices in group `g`, whose attached policy `lab` lets them talk
/// on `lab/#` and read each other's telemetry.
fn lab(server: &Server) -> Vec<Creds> {
    rt().block_on(async {
        let mut creds = Vec::new();
        for d in ["d1", "d2", "d3"] {
            creds.push(enroll(server, "g", d).await);
        }
        attach_lab_policy(server, "g").await;
        creds
    })
}

fn paho(server: &Server, creds_dir: &PathBuf, scenario: &str) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/interop/paho_features.py"
    );
    let (host, port) = server.mqtt_addr.rsplit_once(':').unwrap();
    let host = if host == "127.0.0.1" {
        "localhost"
    } else {
        host
    };
    let out = Command::new("python3")
        .args([script, scenario, host, port])
        .arg(&server.cacert)
        .arg(creds_dir)
        .output()
        .expect("python3 with paho-mqtt (pip install paho-mqtt)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("OK {scenario}")),
        "paho scenario {scenario} failed:\n{stdout}\n{}\nserver log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log()
    );
}

#[test]
fn paho_mqtt_5_and_3_1_1_features() {
    let server = Server::start("");
    let creds = lab(&server);
    let dir = creds[0].cert.parent().unwrap().to_path_buf();
    for scenario in [
        "retained-v5",
        "retained-v311",
        "qos2",
        "will",
        "will-delay",
        "shared",
        "topic-alias",
        "persistent-v5",
        "persistent-v311",
    ] {
        paho(&server, &dir, scenario);
    }
}

fn mosquitto(tool: &str, server: &Server, c: &Creds) -> Command {
    let (_, port) = server.mqtt_addr.rsplit_once(':').unwrap();
    let mut cmd = Command::new(tool);
    cmd.args(["-h", "localhost", "-p", port, "-V", "mqttv5", "-i", &c.id])
        .arg("--cafile")
        .arg(&server.cacert)
        .arg("--cert")
        .arg(&c.cert)
        .arg("--key")
        .arg(&c.key);
    cmd
}

#[test]
fn mosquitto_clients_over_mtls() {
    let server = Server::start("");
    let creds = lab(&server);
    let (d1, d2) = (&creds[0], &creds[1]);
    // d2 reads every device's telemetry (the lab policy allows it).
    let sub = mosquitto("mosquitto_sub", &server, d2)
        .args([
            "-t",
            "devices/+/telemetry",
            "-C",
            "3",
            "-W",
            "20",
            "-v",
            "-q",
            "1",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    for i in 0..3 {
        let out = mosquitto("mosquitto_pub", &server, d1)
            .args([
                "-t",
                "devices/d1/telemetry",
                "-q",
                "1",
                "-m",
                &format!("t={i}"),
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = sub.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        [
            "devices/d1/telemetry t=0",
            "devices/d1/telemetry t=1",
            "devices/d1/telemetry t=2"
        ],
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // d1 may not publish into d2's space: mosquitto_pub reports the refusal.
    let out = mosquitto("mosquitto_pub", &server, d1)
        .args(["-t", "devices/d2/telemetry", "-q", "1", "-m", "spoof", "-d"])
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("rc135") || all.contains("not authorised") || all.contains("Not authorized"),
        "{all}"
    );

    // Without a client certificate: refused.
    let (_, port) = server.mqtt_addr.rsplit_once(':').unwrap();
    let out = Command::new("mosquitto_pub")
        .args([
            "-h",
            "localhost",
            "-p",
            port,
            "-V",
            "mqttv5",
            "-t",
            "lab/x",
            "-m",
            "x",
        ])
        .arg("--cafile")
        .arg(&server.cacert)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("authori"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Persistent sessions (subscriptions and unacknowledged QoS 1 messages)
/// and retained messages survive `kill -9` and a restart.
#[test]
fn persistent_session_survives_kill_9_with_paho() {
    let mut server = Server::start("");
    let creds = lab(&server);
    let dir = creds[0].cert.parent().unwrap().to_path_buf();
    paho(&server, &dir, "restart-phase1");
    server.kill9();
    server.restart();
    paho(&server, &dir, "restart-phase2");
    assert!(
        server.log().contains("MQTT state restored"),
        "{}",
        server.log()
    );
}
