//! Attacks on a real `bulwark-agent` through the repository it downloads
//! from: an attacker who controls the server's files (or the network)
//! serves a tampered artifact, a replayed older timestamp, expired
//! metadata, metadata of different publications mixed together, or a
//! release below the device's floor. Each is refused by the agent: `failed`
//! with a reason naming the attack, and nothing written to the inactive
//! slot. (Wrong hardware is covered in `agent_ota.rs`.)

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::agent::*;
use common::{rt, Server};
use serde_json::{json, Value};

const INSTALLED: [&str; 6] = [
    "queued",
    "downloading",
    "verifying",
    "installing",
    "rebooting",
    "healthy",
];

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The version of `role` (`snapshot.json`, `targets.json`) that the
/// metadata in `file` lists.
fn listed_version(file: &Path, role: &str) -> u64 {
    read_json(file)["signed"]["meta"][role]["version"]
        .as_u64()
        .unwrap()
}

fn version_of(file: &Path) -> u64 {
    read_json(file)["signed"]["version"].as_u64().unwrap()
}

/// The reason of a single `failed` report.
fn refusal(steps: &[Value]) -> &str {
    assert_eq!(states(steps).last(), Some(&"failed"), "{steps:?}");
    steps.last().unwrap()["reason"].as_str().unwrap()
}

/// The served file of target `name` (`targets/<sha256>.<name>`).
fn target_file(server: &Server, name: &str) -> PathBuf {
    let suffix = format!(".{name}");
    std::fs::read_dir(repository_dir(server).join("targets"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(&suffix))
        .unwrap_or_else(|| panic!("no served file for {name}"))
}

/// The URL the agent fetches a repository file from.
fn tuf_url(server: &Server, file: &Path) -> String {
    let name = file.file_name().unwrap().to_string_lossy();
    format!("{}/v1/ota/tuf/{name}", server.addr)
}

#[test]
fn a_tampered_artifact_is_refused_as_a_hash_mismatch_and_never_installed() {
    let server = Server::start("");
    let body = artifact(100_000);
    publish_release(&server, "rig-fw-tampered", "rig-1", &body);
    // The attacker rewrites the stored artifact in place: same length,
    // other bytes. The served name is a hard link to the same inode.
    let served = target_file(&server, "rig-fw-tampered");
    let sha = served.file_name().unwrap().to_string_lossy()[..64].to_owned();
    let stored = server.data_dir().join("ota").join("artifacts").join(&sha);
    let evil: Vec<u8> = body.iter().map(|b| b ^ 0x5a).collect();
    {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&stored)
            .unwrap();
        f.write_all(&evil).unwrap();
        f.sync_all().unwrap();
    }
    assert_eq!(std::fs::read(&served).unwrap(), evil, "one inode");

    rt().block_on(async {
        let (mut svc, mut agent) = ready(&server, "atk-tampered", &["/bin/true"]).await;
        let steps = update(
            &mut svc,
            &agent,
            json!({"release": "rig-fw-tampered", "rollout": "r-tamper"}),
        )
        .await;
        assert_eq!(
            states(&steps),
            ["queued", "downloading", "failed"],
            "{steps:?}"
        );
        assert_eq!(refusal(&steps), "hash mismatch for target rig-fw-tampered");
        assert!(!agent.slot_image("b").exists(), "nothing installed");
        let downloads = agent.dir.path().join("state/ota/downloads");
        assert_eq!(
            std::fs::read_dir(&downloads).unwrap().count(),
            0,
            "the rejected download is deleted"
        );
        let inventory = svc.next_on(&agent.id, "inventory", UPDATE).await;
        assert_eq!(
            (&inventory["active_slot"], &inventory["release"]),
            (&json!("a"), &Value::Null),
            "{inventory}"
        );

        // With the genuine bytes back, the same instruction installs them.
        std::fs::write(&stored, &body).unwrap();
        let steps = update(&mut svc, &agent, json!({"release": "rig-fw-tampered"})).await;
        assert_eq!(states(&steps), INSTALLED, "{steps:?}");
        assert_eq!(std::fs::read(agent.slot_image("b")).unwrap(), body);
        agent.terminate();
    });
}

#[test]
fn a_replayed_older_timestamp_is_refused_as_a_rollback() {
    let server = Server::start("");
    let repo = repository_dir(&server);
    let body_a = artifact(30_000);
    publish_release(&server, "rig-fw-a", "rig-1", &body_a);
    // The attacker keeps the timestamp of publication A (and the snapshot
    // it names stays on disk: consistent snapshots are never deleted).
    let old_timestamp = std::fs::read(repo.join("timestamp.json")).unwrap();
    let old_version = version_of(&repo.join("timestamp.json"));
    publish_release(&server, "rig-fw-b", "rig-1", &artifact(40_000));
    let new_version = version_of(&repo.join("timestamp.json"));
    assert!(new_version > old_version);

    rt().block_on(async {
        let (mut svc, mut agent) = ready(&server, "atk-rollback", &["/bin/true"]).await;
        // Installing A now makes the agent verify (and keep) the newer
        // timestamp, which already lists B.
        let steps = update(&mut svc, &agent, json!({"release": "rig-fw-a"})).await;
        assert_eq!(states(&steps), INSTALLED, "{steps:?}");
        let inventory = svc.next_on(&agent.id, "inventory", UPDATE).await;
        assert_eq!(inventory["active_slot"], "b", "{inventory}");

        // Replay the older timestamp, which hides B.
        replace_file(&repo.join("timestamp.json"), &old_timestamp);
        let steps = update(
            &mut svc,
            &agent,
            json!({"release": "rig-fw-b", "rollout": "r-rollback"}),
        )
        .await;
        assert_eq!(states(&steps), ["failed"], "{steps:?}");
        let reason = refusal(&steps);
        assert!(
            reason.starts_with(
                "rollback of timestamp metadata refused: a newer version was seen before"
            ),
            "{reason}"
        );
        assert!(
            reason.contains(&format!(
                "Found version {old_version} of timestamp metadata \
                 when we had previously fetched version {new_version}"
            )),
            "{reason}"
        );
        assert_eq!(steps[0]["rollout"], "r-rollback");
        assert_eq!(
            std::fs::read(repo.join("timestamp.json")).unwrap(),
            old_timestamp,
            "the replayed file was served"
        );
        // Nothing in the inactive slot (a), A still in the active one.
        assert!(!agent.slot_image("a").exists());
        assert_eq!(std::fs::read(agent.slot_image("b")).unwrap(), body_a);
        let inventory = svc.next_on(&agent.id, "inventory", UPDATE).await;
        assert_eq!(
            (&inventory["active_slot"], &inventory["release"]),
            (
                &json!("b"),
                &json!({"target": "rig-fw-a", "version": "2.0.0"})
            ),
            "{inventory}"
        );
        agent.terminate();
    });
}

#[test]
fn an_expired_timestamp_replayed_to_a_fresh_agent_is_refused_as_a_freeze() {
    let server = Server::start("[ota]\ntimestamp_expiry_secs = 4\n");
    let repo = repository_dir(&server);
    let ts = repo.join("timestamp.json");
    let body = artifact(20_000);
    publish_release(&server, "rig-fw-frozen", "rig-1", &body);
    let stale = std::fs::read(&ts).unwrap();
    let stale_version = version_of(&ts);
    // Past its 4 s lifetime; the server has re-signed meanwhile.
    std::thread::sleep(Duration::from_millis(5_200));
    assert!(
        version_of(&ts) > stale_version,
        "the server re-signs the timestamp"
    );

    // The attacker freezes the repository. Permissions do not stop the
    // server (tests may run as root), so its re-signing is stopped by a
    // directory where the next root would be: the server can no longer
    // read its repository, while to a client `2.root.json` is simply not
    // found (there is no newer root).
    let roots = std::fs::read_dir(&repo)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".root.json")
        })
        .count();
    let blocker = repo.join(format!("{}.root.json", roots + 1));
    std::fs::create_dir(&blocker).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server
        .log()
        .contains("could not re-sign the OTA timestamp/snapshot")
    {
        assert!(Instant::now() < deadline, "re-signing not stopped");
        std::thread::sleep(Duration::from_millis(50));
    }
    replace_file(&ts, &stale);

    rt().block_on(async {
        let (mut svc, mut agent) = ready(&server, "atk-freeze", &["/bin/true"]).await;
        let steps = update(
            &mut svc,
            &agent,
            json!({"release": "rig-fw-frozen", "rollout": "r-freeze"}),
        )
        .await;
        assert_eq!(states(&steps), ["failed"], "{steps:?}");
        let reason = refusal(&steps);
        assert!(
            reason.starts_with("timestamp metadata has expired (freeze attack)"),
            "{reason}"
        );
        assert_eq!(
            std::fs::read(&ts).unwrap(),
            stale,
            "the stale file was served"
        );
        assert!(!agent.slot_image("b").exists(), "nothing installed");
        assert!(
            !agent.dir.path().join("state/ota/root.json").exists(),
            "no root pinned from a refused repository"
        );

        // Once the server re-signs again, the same agent installs.
        std::fs::remove_dir(&blocker).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read(&ts).unwrap() == stale {
            assert!(Instant::now() < deadline, "no re-signing");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let steps = update(&mut svc, &agent, json!({"release": "rig-fw-frozen"})).await;
        assert_eq!(states(&steps), INSTALLED, "{steps:?}");
        assert_eq!(std::fs::read(agent.slot_image("b")).unwrap(), body);
        agent.terminate();
    });
}

#[test]
fn snapshot_or_targets_of_another_publication_are_refused_as_mix_and_match() {
    let server = Server::start("");
    let repo = repository_dir(&server);
    let ts = repo.join("timestamp.json");
    publish_release(&server, "rig-fw-a", "rig-1", &artifact(10_000));
    let snapshot_a = repo.join(format!(
        "{}.snapshot.json",
        listed_version(&ts, "snapshot.json")
    ));
    let targets_a = repo.join(format!(
        "{}.targets.json",
        listed_version(&snapshot_a, "targets.json")
    ));
    let body_b = artifact(12_000);
    publish_release(&server, "rig-fw-b", "rig-1", &body_b);
    let snapshot_b = repo.join(format!(
        "{}.snapshot.json",
        listed_version(&ts, "snapshot.json")
    ));
    let targets_b = repo.join(format!(
        "{}.targets.json",
        listed_version(&snapshot_b, "targets.json")
    ));
    assert_ne!(snapshot_a, snapshot_b);
    assert_ne!(targets_a, targets_b);
    let genuine_snapshot = std::fs::read(&snapshot_b).unwrap();
    let genuine_targets = std::fs::read(&targets_b).unwrap();

    rt().block_on(async {
        let (mut svc, mut agent) = ready(&server, "atk-mix", &["/bin/true"]).await;

        // A's snapshot served under the name the current timestamp lists.
        replace_file(&snapshot_b, &std::fs::read(&snapshot_a).unwrap());
        let steps = update(&mut svc, &agent, json!({"release": "rig-fw-b"})).await;
        assert_eq!(states(&steps), ["failed"], "{steps:?}");
        let reason = refusal(&steps);
        assert!(
            reason.starts_with(
                "mix-and-match: snapshot metadata does not match what the metadata listing it says"
            ) && reason.contains(&format!(
                "Hash mismatch for {}",
                tuf_url(&server, &snapshot_b)
            )),
            "{reason}"
        );
        replace_file(&snapshot_b, &genuine_snapshot);

        // A's targets served under the name B's snapshot lists.
        replace_file(&targets_b, &std::fs::read(&targets_a).unwrap());
        let steps = update(&mut svc, &agent, json!({"release": "rig-fw-b"})).await;
        assert_eq!(states(&steps), ["failed"], "{steps:?}");
        let reason = refusal(&steps);
        assert!(
            reason.starts_with(
                "mix-and-match: targets metadata does not match what the metadata listing it says"
            ) && reason.contains(&format!(
                "Hash mismatch for {}",
                tuf_url(&server, &targets_b)
            )),
            "{reason}"
        );
        assert!(!agent.slot_image("b").exists(), "nothing installed");

        // The genuine metadata installs B.
        replace_file(&targets_b, &genuine_targets);
        let steps = update(&mut svc, &agent, json!({"release": "rig-fw-b"})).await;
        assert_eq!(states(&steps), INSTALLED, "{steps:?}");
        assert_eq!(std::fs::read(agent.slot_image("b")).unwrap(), body_b);
        agent.terminate();
    });
}

#[test]
fn a_release_below_the_installed_floor_is_refused_and_the_agent_keeps_its_version() {
    let server = Server::start("");
    let body_2 = artifact(25_000);
    publish_version(&server, "fw-2", "2.0.0", "rig-1", Some("2.0.0"), &body_2);
    rt().block_on(async {
        let (mut svc, mut agent) = ready(&server, "atk-floor", &["/bin/true"]).await;
        let steps = update(&mut svc, &agent, json!({"release": "fw-2"})).await;
        assert_eq!(states(&steps), INSTALLED, "{steps:?}");
        let inventory = svc.next_on(&agent.id, "inventory", UPDATE).await;
        assert_eq!(inventory["active_slot"], "b", "{inventory}");

        // A validly signed older release (no floor of its own).
        publish_version(&server, "fw-1", "1.5.0", "rig-1", None, &artifact(26_000));
        let steps = update(
            &mut svc,
            &agent,
            json!({"release": "fw-1", "rollout": "r-downgrade"}),
        )
        .await;
        assert_eq!(states(&steps), ["failed"], "{steps:?}");
        assert_eq!(
            refusal(&steps),
            "below floor: version 1.5.0 is below the version floor 2.0.0"
        );
        assert_eq!(
            (&steps[0]["target"], &steps[0]["rollout"]),
            (&json!("fw-1"), &json!("r-downgrade"))
        );
        assert!(
            !agent.slot_image("a").exists(),
            "nothing in the inactive slot"
        );
        assert_eq!(std::fs::read(agent.slot_image("b")).unwrap(), body_2);
        let inventory = svc.next_on(&agent.id, "inventory", UPDATE).await;
        assert_eq!(
            (&inventory["active_slot"], &inventory["release"]),
            (&json!("b"), &json!({"target": "fw-2", "version": "2.0.0"})),
            "{inventory}"
        );
        assert!(agent.is_running(), "{}", agent.log());
        agent.terminate();
    });
}
