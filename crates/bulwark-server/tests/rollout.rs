//! Rollouts against a real server: devices (EST-enrolled, mTLS) are told
//! over MQTT when their phase starts and report their steps over HTTPS; the
//! engine advances phases, completes, aborts at the failure threshold
//! without touching later phases, refuses stale or foreign reports, and
//! operators pause, resume and cancel.

mod common;

use std::time::Duration;

use bulwark_api_types::{CreateRollout, DeviceReport, Rollout};
use bulwark_mqtt::QoS;
use bulwark_types::{GroupId, RolloutPhase, RolloutPlan, RolloutSelector};
use common::mqtt::{enroll, Creds, Raw};
use common::{rt, write, Server};

fn publish_release(server: &Server, name: &str) {
    let file = write(server.dir.path(), &format!("{name}.img"), vec![9u8; 4096]);
    let out = server.cli(&[
        "ota",
        "release",
        "create",
        file.to_str().unwrap(),
        "--name",
        name,
        "--version",
        "3.0.0",
        "--hardware",
        "gw-v2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn plan(phases: &[&str], max_failure_percent: u8, min_failures: u32) -> RolloutPlan {
    RolloutPlan {
        phases: phases
            .iter()
            .map(|p| RolloutPhase {
                size: (*p).to_owned(),
                min_soak_secs: 0,
            })
            .collect(),
        min_healthy_percent: 50,
        max_failure_percent,
        min_failures,
        abort_action: "pause".into(),
        device_timeout_secs: 600,
        max_retries: 0,
        silence_secs: 300,
    }
}

async fn report(server: &Server, creds: &Creds, rollout: &str, step: &str) -> u16 {
    creds
        .https_client(server)
        .post(format!("{}/v1/ota/reports", server.addr))
        .json(&DeviceReport {
            rollout: rollout.into(),
            release: "fw-3".into(),
            step: step.into(),
            reason: (step == "failed").then(|| "health check failed".into()),
        })
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// A device connected and subscribed to its command topic.
async fn listening(server: &Server, creds: &Creds) -> Raw {
    let mut raw = Raw::device(server, creds).await;
    let topic = format!("devices/{}/commands/ota", creds.id);
    let codes = raw
        .subscribe(1, &[(topic.as_str(), QoS::AtLeastOnce)])
        .await;
    assert_eq!(codes, vec![bulwark_mqtt::ReasonCode::GrantedQoS1]);
    raw
}

/// Waits for the instruction on the device's command topic.
async fn told(raw: &mut Raw) -> serde_json::Value {
    let p = raw
        .next_publish(Duration::from_secs(10))
        .await
        .expect("an OTA instruction");
    serde_json::from_slice(&p.payload).unwrap()
}

async fn wait_for(server: &Server, id: &str, what: &str, ok: impl Fn(&Rollout) -> bool) -> Rollout {
    let client = server.client();
    for _ in 0..200 {
        let r = client.get_rollout(id).await.unwrap();
        if ok(&r) {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "rollout {id}: {what} never happened: {:?}",
        client.get_rollout(id).await
    );
}

async fn fleet(server: &Server, n: usize) -> Vec<Creds> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(enroll(server, "fleet", &format!("gw-{i:02}")).await);
    }
    out
}

async fn create(server: &Server, plan: RolloutPlan) -> Rollout {
    server
        .client()
        .create_rollout(&CreateRollout {
            release: "fw-3".into(),
            selector: RolloutSelector {
                group: Some(GroupId::new("fleet").unwrap()),
                ..Default::default()
            },
            plan,
        })
        .await
        .unwrap()
}

#[test]
fn a_phased_rollout_advances_on_reports_and_completes() {
    let server = Server::start("");
    publish_release(&server, "fw-3");
    rt().block_on(async {
        let devices = fleet(&server, 3).await;
        let mut conns = Vec::new();
        for d in &devices {
            conns.push(listening(&server, d).await);
        }
        let r = create(&server, plan(&["1", "100%"], 50, 1)).await;
        assert_eq!(
            r.phases.iter().map(|p| p.total).collect::<Vec<_>>(),
            vec![1, 2]
        );

        // Phase 1: only gw-00 is told.
        let msg = told(&mut conns[0]).await;
        assert_eq!(msg["release"], "fw-3");
        assert_eq!(msg["rollout"], r.id.as_str());
        for step in [
            "downloading",
            "verifying",
            "installing",
            "rebooting",
            "healthy",
        ] {
            assert_eq!(
                report(&server, &devices[0], &r.id, step).await,
                204,
                "{step}"
            );
        }
        // A replayed report does not move it back (409), nor does one for a
        // device outside the rollout (404).
        assert_eq!(report(&server, &devices[0], &r.id, "installing").await, 409);
        let outsider = enroll(&server, "elsewhere", "gw-outsider").await;
        assert_eq!(report(&server, &outsider, &r.id, "downloading").await, 404);

        // Phase 2 starts by itself: the other two are told.
        for c in conns.iter_mut().skip(1) {
            assert_eq!(told(c).await["rollout"], r.id.as_str());
        }
        for d in &devices[1..] {
            assert_eq!(report(&server, d, &r.id, "healthy").await, 204);
        }
        let done = wait_for(&server, &r.id, "completion", |r| r.status == "completed").await;
        assert_eq!(done.phases.iter().map(|p| p.healthy).sum::<u32>(), 3);

        // The CLI shows it.
        let out = server.cli(&["ota", "rollout", "status", &r.id, "--devices"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("completed") && text.contains("3/3 finished"),
            "{text}"
        );
    });
}

#[test]
fn failures_at_the_threshold_pause_the_rollout_and_later_phases_are_untouched() {
    let server = Server::start("");
    publish_release(&server, "fw-3");
    rt().block_on(async {
        let devices = fleet(&server, 4).await;
        // Phase 1 takes two devices; abort at 50 % failures.
        let r = create(&server, plan(&["2", "100%"], 50, 1)).await;
        wait_for(&server, &r.id, "phase 1", |r| r.phases[0].in_progress == 2).await;
        assert_eq!(report(&server, &devices[0], &r.id, "failed").await, 204);
        let paused = wait_for(&server, &r.id, "abort", |r| r.status == "paused").await;
        let reason = paused.reason.unwrap_or_default();
        assert!(
            reason.contains("1 of 1 finished devices failed"),
            "{reason}"
        );
        // Phase 2 never started: its devices were never told.
        assert_eq!(paused.phases[1].queued, 2, "{:?}", paused.phases);
        let listed = server.client().rollout_devices(&r.id).await.unwrap();
        for d in listed.iter().filter(|d| d.phase == 1) {
            assert_eq!((d.step.as_str(), d.notified_at), ("queued", None), "{d:?}");
        }
        let failed = listed
            .iter()
            .find(|d| d.device.as_str() == "gw-00")
            .unwrap();
        assert_eq!(failed.reason.as_deref(), Some("health check failed"));

        // An operator may cancel it; a cancelled rollout cannot resume.
        let out = server.cli(&["ota", "rollout", "cancel", &r.id, "--reason", "bad build"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = server.cli(&["ota", "rollout", "resume", &r.id]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("cancelled"));
        // The audit log has the abort and the cancellation.
        let out = server.cli(&["audit", "ls", "--output", "json"]);
        let log = String::from_utf8_lossy(&out.stdout);
        assert!(
            log.contains("rollout_status_changed") && log.contains("bad build"),
            "{log}"
        );
    });
}

#[test]
fn resuming_a_paused_rollout_accepts_its_failures_but_not_new_ones() {
    let server = Server::start("");
    publish_release(&server, "fw-3");
    rt().block_on(async {
        let devices = fleet(&server, 4).await;
        let r = create(&server, plan(&["2", "100%"], 50, 1)).await;
        wait_for(&server, &r.id, "phase 1", |r| r.phases[0].in_progress == 2).await;
        assert_eq!(report(&server, &devices[0], &r.id, "failed").await, 204);
        wait_for(&server, &r.id, "abort", |r| r.status == "paused").await;

        let out = server.cli(&["ota", "rollout", "resume", &r.id]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The engine ticks every second: the failure it paused on does not
        // pause it again.
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        let running = server.client().get_rollout(&r.id).await.unwrap();
        assert_eq!(running.status, "running", "{:?}", running.reason);
        let accepted = running
            .accepted
            .expect("the resume records what it accepted");
        assert_eq!(
            (accepted.failures, accepted.finished, accepted.phase),
            (1, 1, Some(0))
        );

        // The rest of phase 1 finishes; phase 2 starts.
        assert_eq!(report(&server, &devices[1], &r.id, "healthy").await, 204);
        wait_for(&server, &r.id, "phase 2", |r| r.phases[1].in_progress == 2).await;
        // A new failure counts: 1 of 2 finished since the resume is 50 %.
        let phase2: Vec<_> = server
            .client()
            .rollout_devices(&r.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|d| d.phase == 1)
            .collect();
        let creds = devices
            .iter()
            .find(|c| c.id == phase2[0].device.as_str())
            .unwrap();
        assert_eq!(report(&server, creds, &r.id, "failed").await, 204);
        let paused = wait_for(&server, &r.id, "second abort", |r| r.status == "paused").await;
        let reason = paused.reason.unwrap_or_default();
        assert!(reason.contains("1 of 2 finished"), "{reason}");
    });
}

/// Phase 1 of two devices soaks 30 s; an updated device is then watched.
fn watched_plan(silence_secs: u64) -> RolloutPlan {
    let mut p = plan(&["1", "100%"], 50, 1);
    p.phases[0].min_soak_secs = 30;
    p.silence_secs = silence_secs;
    p
}

#[test]
fn an_updated_device_that_raises_an_alert_stops_the_rollout() {
    let server = Server::start("");
    publish_release(&server, "fw-3");
    rt().block_on(async {
        let devices = fleet(&server, 2).await;
        let mut conn = listening(&server, &devices[0]).await;
        let r = create(&server, watched_plan(300)).await;
        told(&mut conn).await;
        assert_eq!(report(&server, &devices[0], &r.id, "healthy").await, 204);
        wait_for(&server, &r.id, "the soak", |r| r.soak_started_at.is_some()).await;
        // The updated device's certificate now also used from another
        // address: detection raises a (high) takeover alert about it.
        let mut clone = Raw::tls_from(
            &server,
            Some(&devices[0]),
            Some("127.0.0.9".parse().unwrap()),
        )
        .await
        .unwrap();
        let ack = clone
            .handshake(common::mqtt::connect_packet(
                bulwark_mqtt::ProtocolVersion::V5,
                "gw-00",
            ))
            .await
            .expect("CONNACK");
        assert_eq!(ack.reason_code, bulwark_mqtt::ReasonCode::Success);
        let paused = wait_for(&server, &r.id, "the abort", |r| r.status == "paused").await;
        assert_eq!(paused.phases[0].flagged, 1, "{:?}", paused.phases);
        assert_eq!(paused.phases[1].queued, 1, "phase 2 never told");
        let d = server.client().rollout_devices(&r.id).await.unwrap();
        let flagged = d.iter().find(|d| d.device.as_str() == "gw-00").unwrap();
        assert!(
            flagged.flagged.as_deref().unwrap_or("").contains("alert"),
            "{flagged:?}"
        );
    });
}

#[test]
fn an_updated_device_that_fails_authentication_or_goes_silent_stops_the_rollout() {
    let server = Server::start("");
    publish_release(&server, "fw-3");
    rt().block_on(async {
        // Authentication failure after updating.
        let devices = fleet(&server, 2).await;
        let mut conn = listening(&server, &devices[0]).await;
        let r = create(&server, watched_plan(300)).await;
        told(&mut conn).await;
        assert_eq!(report(&server, &devices[0], &r.id, "healthy").await, 204);
        wait_for(&server, &r.id, "the soak", |r| r.soak_started_at.is_some()).await;
        // Its certificate now presented with another device's client id:
        // refused at CONNECT, a failed authentication of gw-00.
        let mut bad = Raw::tls(&server, Some(&devices[0])).await.unwrap();
        let ack = bad
            .handshake(common::mqtt::connect_packet(
                bulwark_mqtt::ProtocolVersion::V5,
                "gw-01",
            ))
            .await
            .expect("CONNACK");
        assert_ne!(ack.reason_code, bulwark_mqtt::ReasonCode::Success);
        let paused = wait_for(&server, &r.id, "the abort", |r| r.status == "paused").await;
        assert_eq!(paused.phases[0].flagged, 1, "{:?}", paused.phases);
        assert_eq!(paused.phases[1].queued, 1, "phase 2 never told");
        let d = server.client().rollout_devices(&r.id).await.unwrap();
        let flagged = d.iter().find(|d| d.device.as_str() == "gw-00").unwrap();
        assert!(
            flagged
                .flagged
                .as_deref()
                .unwrap_or("")
                .contains("authentication"),
            "{flagged:?}"
        );
        server
            .client()
            .control_rollout(&r.id, "cancel", None)
            .await
            .unwrap();

        // Silence after updating: the device's session goes away.
        let quiet = enroll(&server, "quiet", "quiet-0").await;
        let _other = enroll(&server, "quiet", "quiet-1").await;
        let mut conn = listening(&server, &quiet).await;
        let r = server
            .client()
            .create_rollout(&CreateRollout {
                release: "fw-3".into(),
                selector: RolloutSelector {
                    group: Some(GroupId::new("quiet").unwrap()),
                    ..Default::default()
                },
                plan: watched_plan(2),
            })
            .await
            .unwrap();
        told(&mut conn).await;
        assert_eq!(report(&server, &quiet, &r.id, "healthy").await, 204);
        drop(conn);
        let paused = wait_for(&server, &r.id, "the abort", |r| r.status == "paused").await;
        let reason = paused.reason.unwrap_or_default();
        assert!(reason.contains("security signals"), "{reason}");
        let d = server.client().rollout_devices(&r.id).await.unwrap();
        let flagged = d.iter().find(|d| d.device.as_str() == "quiet-0").unwrap();
        assert!(
            flagged.flagged.as_deref().unwrap_or("").contains("silent"),
            "{flagged:?}"
        );
    });
}
