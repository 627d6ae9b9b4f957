//! The update repository end to end: `bulwark ota release create` against a
//! real server, a real device (EST-enrolled, mTLS) verifying the TUF chain
//! with tough and downloading the artifact, curl resuming with `Range`, and
//! the refusals: wrong role, a targets signature by a key the root does not
//! name, a taken name, path traversal, no credentials. Root rotation by a
//! dev server (which holds its root key) and a real agent that trusts
//! root v1 installing a release published after it; the offline-key
//! rotation is in `cli.rs`, which runs a non-dev server.

mod common;

use std::path::Path;
use std::process::Command;

use bulwark_api_types::CreateOperatorToken;
use bulwark_ota::{Device, HardwareModel, HttpsTransport, OtaError, TargetName, UpdateClient};
use bulwark_types::Role;
use common::mqtt::enroll;
use common::{rt, write, Server};

/// A recognisable artifact of `len` bytes.
fn artifact(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn create_release(
    server: &Server,
    token: &str,
    file: &Path,
    name: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut args = vec![
        "ota",
        "release",
        "create",
        file.to_str().unwrap(),
        "--name",
        name,
        "--version",
        "2.1.0",
        "--hardware",
        "gw-v2",
        "--floor",
        "2.0.0",
    ];
    args.extend_from_slice(extra);
    server.cli_with_token(token, &args)
}

async fn token(server: &Server, role: Role) -> String {
    server
        .client()
        .create_token(&CreateOperatorToken {
            name: role.to_string(),
            role,
            ttl_seconds: None,
        })
        .await
        .unwrap()
        .token
}

#[test]
fn a_published_release_is_verified_and_downloaded_by_a_device_over_mtls() {
    let server = Server::start("");
    let body = artifact(300_000);
    let file = write(server.dir.path(), "fw.img", &body);
    let out = create_release(&server, &server.token, &file, "gw-fw-2.1.0", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("published gw-fw-2.1.0 2.1.0"));

    rt().block_on(async {
        let rel = server.client().get_release("gw-fw-2.1.0").await.unwrap();
        assert_eq!((rel.version.as_str(), rel.length), ("2.1.0", 300_000));
        assert_eq!(rel.hardware, vec!["gw-v2".to_string()]);
        assert_eq!(rel.floor.as_deref(), Some("2.0.0"));

        let creds = enroll(&server, "gateways", "gw-1").await;
        let http = creds.https_client(&server);
        let base = reqwest::Url::parse(&format!("{}/v1/ota/tuf/", server.addr)).unwrap();
        // The device's trust anchor: the first root, fetched over mTLS.
        let root = http
            .get(base.join("1.root.json").unwrap())
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let store = tempfile::tempdir().unwrap();
        let transport = HttpsTransport::new(http);
        let client = UpdateClient::load(
            &root,
            &store.path().join("tuf"),
            base.clone(),
            base.join("targets/").unwrap(),
            transport.clone(),
        )
        .await
        .unwrap();
        let name = TargetName::new("gw-fw-2.1.0").unwrap();
        let device = Device {
            model: HardwareModel::new("gw-v2").unwrap(),
            floor: None,
        };
        let candidate = client.check(&name, &device).unwrap();
        let verified = client
            .download(&candidate, &transport, store.path())
            .await
            .unwrap();
        assert_eq!(std::fs::read(verified.path()).unwrap(), body);
        assert_eq!(verified.version().to_string(), "2.1.0");

        // Another model is refused, with the reason.
        let other = Device {
            model: HardwareModel::new("sensor-v1").unwrap(),
            floor: None,
        };
        let e = client.check(&name, &other).unwrap_err();
        assert!(matches!(e, OtaError::WrongHardware { .. }), "{e}");
    });
}

#[test]
fn artifacts_resume_with_range_and_the_repository_serves_nothing_else() {
    let server = Server::start("");
    let body = artifact(4096);
    let file = write(server.dir.path(), "fw.img", &body);
    let out = create_release(&server, &server.token, &file, "fw-range", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let creds = rt().block_on(enroll(&server, "gateways", "gw-2"));
    let rel = rt()
        .block_on(server.client().get_release("fw-range"))
        .unwrap();
    let url = format!("{}/v1/ota/tuf/targets/{}.fw-range", server.addr, rel.sha256);
    let curl = |extra: &[&str], url: &str| {
        let out = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(&server.cacert)
            .arg("--cert")
            .arg(&creds.cert)
            .arg("--key")
            .arg(&creds.key)
            .args(["-o", "-", "-w", "\n%{http_code}"])
            .args(extra)
            .arg(url)
            .output()
            .expect("curl");
        let text = out.stdout;
        let split = text.iter().rposition(|&b| b == b'\n').unwrap();
        let status = String::from_utf8_lossy(&text[split + 1..]).to_string();
        (status, text[..split].to_vec())
    };
    // A resumed download: the rest, from byte 1000.
    let (status, part) = curl(&["-r", "1000-"], &url);
    assert_eq!(status, "206");
    assert_eq!(part, &body[1000..]);
    let (status, all) = curl(&[], &url);
    assert_eq!((status.as_str(), all.len()), ("200", body.len()));

    // Only the repository's own file forms resolve; traversal never does.
    for bad in [
        "../bulwark.db",
        "..%2F..%2Fbulwark.db",
        "%2e%2e/%2e%2e/ca/keys/kek.json",
        "targets/../../ca/keys/kek.json",
        "targets/%2e%2e%2fkek.json",
        "1.root.json%00.png",
        "/etc/passwd",
        "root.json.bak",
    ] {
        let (status, _) = curl(
            &["--path-as-is"],
            &format!("{}/v1/ota/tuf/{bad}", server.addr),
        );
        assert_eq!(status, "404", "{bad}");
    }

    // No certificate and no token: refused.
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(&server.cacert)
        .arg(format!("{}/v1/ota/tuf/timestamp.json", server.addr))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");
}

#[test]
fn only_release_managers_publish_and_a_foreign_targets_signature_is_refused() {
    let server = Server::start("");
    let file = write(server.dir.path(), "fw.img", artifact(1000));
    let (operator, release_manager) = rt().block_on(async {
        (
            token(&server, Role::Operator).await,
            token(&server, Role::ReleaseManager).await,
        )
    });

    let out = create_release(&server, &operator, &file, "fw-role", &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("manage OTA releases"), "{err}");

    // A targets key the repository's root does not name: the server
    // refuses the metadata, whatever it lists (arbitrary software).
    let key = server.dir.path().join("rogue.pem");
    let out = server.cli(&["ota", "keygen", "--out", key.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = create_release(
        &server,
        &release_manager,
        &file,
        "fw-rogue",
        &["--targets-key", key.to_str().unwrap()],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("signature"), "{err}");
    let rels = rt().block_on(server.client().list_releases()).unwrap();
    assert!(rels.is_empty(), "nothing published: {rels:?}");

    let out = create_release(&server, &release_manager, &file, "fw-ok", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Immutable: the name is taken.
    let out = create_release(&server, &release_manager, &file, "fw-ok", &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
    // Hostile names never reach the repository.
    for bad in ["../evil", "a/b", ".hidden"] {
        let out = create_release(&server, &release_manager, &file, bad, &[]);
        assert!(!out.status.success(), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("invalid target name"),
            "{bad}"
        );
    }

    // The audit log names the release and who published it.
    let out = server.cli(&["audit", "ls", "--output", "json"]);
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        log.contains("ota_release_published") && log.contains("fw-ok"),
        "{log}"
    );
}

#[test]
fn a_dev_server_rotates_its_root_and_an_agent_on_root_v1_still_installs() {
    use bulwark_api_types::{RootRoleChange, RotateRoot};
    use common::agent::{self, ready, states, update};
    use serde_json::json;

    let server = Server::start("");
    let client = server.client();
    // Refusals first: a snapshot key the server does not hold (it could
    // no longer sign snapshots), a new root key the server cannot sign
    // with, a signed root sent to prepare.
    let foreign = server.dir.path().join("foreign.pem");
    let out = server.cli(&["ota", "keygen", "--out", foreign.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let foreign_pub = std::fs::read_to_string(server.dir.path().join("foreign.pub")).unwrap();
    let with = |change: RootRoleChange| RotateRoot {
        snapshot: Some(change),
        ..RotateRoot::default()
    };
    rt().block_on(async {
        let e = client
            .prepare_root(&with(RootRoleChange {
                keys: Some(vec![foreign_pub.clone()]),
                threshold: None,
            }))
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400), "{e}");
        assert!(
            e.to_string()
                .contains("snapshot keys must stay ones the server holds"),
            "{e}"
        );
        let e = client
            .prepare_root(&with(RootRoleChange {
                keys: Some(vec!["not a key".into()]),
                threshold: None,
            }))
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400), "{e}");
        assert!(e.to_string().contains("snapshot key 1"), "{e}");
        let e = client
            .prepare_root(&RotateRoot {
                root: Some(RootRoleChange {
                    keys: None,
                    threshold: Some(2),
                }),
                ..RotateRoot::default()
            })
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("threshold 2 is above its 1 keys"),
            "{e}"
        );
        let e = client
            .publish_root(&RotateRoot {
                root: Some(RootRoleChange {
                    keys: Some(vec![foreign_pub.clone()]),
                    threshold: None,
                }),
                ..RotateRoot::default()
            })
            .await
            .unwrap_err();
        assert!(e.to_string().contains("its own (new) root keys"), "{e}");
        assert_eq!(client.ota_root().await.unwrap().version, 1);
    });

    // The dev server signs a new root with its own key (same keys: the
    // yearly re-signing before the root expires).
    let out = server.cli(&["ota", "root", "rotate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("published root version 2"));
    let root = rt().block_on(client.ota_root()).unwrap();
    assert_eq!(root.version, 2);

    // A release after the rotation; the agent starts from 1.root.json.
    let body = agent::artifact(50_000);
    agent::publish_release(&server, "rig-fw-after-root", "rig-1", &body);
    rt().block_on(async {
        let (mut svc, agent) = ready(&server, "ota-root-2", &["/bin/true"]).await;
        let steps = update(
            &mut svc,
            &agent,
            json!({"release": "rig-fw-after-root", "rollout": "r-root"}),
        )
        .await;
        assert_eq!(states(&steps).last(), Some(&"healthy"), "{steps:?}");
        assert_eq!(std::fs::read(agent.slot_image("b")).unwrap(), body);
    });
}
