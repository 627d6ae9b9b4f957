//! Over-the-air updates end to end with real processes: `bulwark server
//! --dev`, a release published with the CLI, a real `bulwark-agent run`
//! process (enrolled with a token, directory slots in a temp dir, a
//! health-check command) and a service principal that sends the update
//! instruction over MQTT and reads the agent's reports:
//! `devices/{id}/commands/ota` in, `devices/{id}/ota/status` and
//! `devices/{id}/inventory` out.

mod common;

use common::agent::*;
use common::{rt, Server};
use serde_json::{json, Value};

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
