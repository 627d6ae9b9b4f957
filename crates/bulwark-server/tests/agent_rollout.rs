//! Rollouts with real `bulwark-agent` processes: the server tells each
//! phase's agents over MQTT, the agents verify, install, boot on trial,
//! run their health check and report every step over HTTPS; a phased
//! rollout completes, and failing installs pause it at its threshold while
//! the later phase's agents are never touched.

mod common;

use std::time::Duration;

use bulwark_api_types::Rollout;
use common::agent::*;
use common::{rt, Server};

fn create_rollout(server: &Server, release: &str, phases: &str) -> String {
    let out = server.cli(&[
        "ota",
        "rollout",
        "create",
        "--release",
        release,
        "--group",
        "ota-agents",
        "--phases",
        phases,
        "--max-failures",
        "50",
        "--min-failures",
        "1",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.split_whitespace()
        .nth(1)
        .filter(|id| id.starts_with("r-"))
        .unwrap_or_else(|| panic!("no rollout id in {text:?}"))
        .to_owned()
}

async fn until(server: &Server, id: &str, what: &str, ok: impl Fn(&Rollout) -> bool) -> Rollout {
    let client = server.client();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let r = client.get_rollout(id).await.unwrap();
        if ok(&r) {
            return r;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rollout {id}: {what} did not happen: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn a_phased_rollout_across_real_agents_completes() {
    let server = Server::start("");
    let body = artifact(150_000);
    publish_release(&server, "rig-fw-3", "rig-1", &body);
    rt().block_on(async {
        let mut svc = console(&server).await;
        let mut agents = Vec::new();
        for i in 0..3 {
            let id = format!("fleet-{i}");
            agents.push(Agent::start(&server, &id, "rig-1", &["/bin/true"]).await);
            // Connected and subscribed: its first inventory arrived.
            svc.next_on(&id, "inventory", UPDATE).await;
        }
        let id = create_rollout(&server, "rig-fw-3", "1,100%");
        let done = until(&server, &id, "completion", |r| r.status == "completed").await;
        assert_eq!(
            done.phases.iter().map(|p| p.healthy).collect::<Vec<_>>(),
            vec![1, 2]
        );
        for a in &agents {
            assert_eq!(std::fs::read(a.slot_image("b")).unwrap(), body, "{}", a.id);
        }
        // Every device went through every step, in order, with times.
        let devices = server.client().rollout_devices(&id).await.unwrap();
        assert!(
            devices
                .iter()
                .all(|d| d.step == "healthy" && d.attempts == 1),
            "{devices:?}"
        );
        // The CLI's live view ends at completion with exit 0.
        let out = server.cli(&["ota", "rollout", "status", &id, "--watch"]);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains("3/3 finished, 3 healthy"));
    });
}

#[test]
fn failing_installs_pause_the_rollout_at_its_threshold_and_spare_the_next_phase() {
    let server = Server::start("");
    let body = artifact(50_000);
    publish_release(&server, "rig-fw-bad", "rig-1", &body);
    rt().block_on(async {
        let mut svc = console(&server).await;
        // Phases go by device id: the two "bad-*" agents first.
        let mut agents = Vec::new();
        for (id, health) in [
            ("bad-0", "/bin/false"),
            ("bad-1", "/bin/false"),
            ("good-0", "/bin/true"),
            ("good-1", "/bin/true"),
        ] {
            agents.push(Agent::start(&server, id, "rig-1", &[health]).await);
            svc.next_on(id, "inventory", UPDATE).await;
        }
        let id = create_rollout(&server, "rig-fw-bad", "2,100%");
        let paused = until(&server, &id, "the abort", |r| r.status == "paused").await;
        let reason = paused.reason.clone().unwrap_or_default();
        assert!(reason.contains("failed"), "{reason}");
        // The failing agents rolled back and say so.
        let devices = server.client().rollout_devices(&id).await.unwrap();
        let rolled: Vec<_> = devices
            .iter()
            .filter(|d| d.step == "rolled_back")
            .map(|d| d.device.as_str())
            .collect();
        assert!(!rolled.is_empty(), "{devices:?}");
        assert!(rolled.iter().all(|d| d.starts_with("bad-")), "{rolled:?}");
        let reason = devices
            .iter()
            .find(|d| d.step == "rolled_back")
            .and_then(|d| d.reason.clone())
            .unwrap_or_default();
        assert!(reason.contains("health check"), "{reason}");
        // Phase 2 was never told: still queued, nothing written to its slots.
        assert_eq!(paused.phases[1].queued, 2, "{:?}", paused.phases);
        for a in agents.iter().filter(|a| a.id.starts_with("good-")) {
            assert!(!a.slot_image("b").exists(), "{} was updated", a.id);
        }
        // The watcher exits non-zero on a paused rollout.
        let out = server.cli(&["ota", "rollout", "status", &id, "--watch"]);
        assert_eq!(out.status.code(), Some(1));
    });
}
