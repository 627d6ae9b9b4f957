//! The `bulwark` binary as a process: configuration refusals before binding,
//! first start and restart of a passphrase-protected instance, the dev-mode
//! `dev.env`, SIGTERM, and the operator CLI against a running server.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use bulwark_client::Client;
use bulwark_types::CertSerial;
use common::{bin, csr, leaf_pem, rt, Server};
use x509_parser::prelude::{FromDer, X509Certificate};

/// `bulwark server` with none of the server's settings inherited from the
/// environment that runs the tests.
fn server_cmd() -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("server").env("RUST_LOG", "info");
    for var in [
        "BULWARK_CONFIG",
        "BULWARK_DATA_DIR",
        "BULWARK_API_ADDR",
        "BULWARK_MQTT_ADDR",
        "BULWARK_DEV_MQTT_PLAIN_ADDR",
        "BULWARK_PASSPHRASE",
        "BULWARK_PASSPHRASE_FILE",
        "BULWARK_LOG_FORMAT",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs a command that must exit on its own within 30 s.
fn run_to_exit(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{cmd:?} is still running: it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

/// A port that was free a moment ago.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[test]
fn bad_configuration_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let a_dir = dir.path().to_path_buf();
    // (config text or path, --api-addr, what stderr must say)
    let cases: Vec<(Result<&str, &Path>, &str, String)> = vec![
        (
            Ok("bogus = 1\n"),
            "127.0.0.1:0",
            "unknown field `bogus`".into(),
        ),
        (
            Ok("[api]\nport = 1\n"),
            "127.0.0.1:0",
            "unknown field `port`".into(),
        ),
        (
            Ok("[ca]\ndevice_cert_days = 0\n"),
            "127.0.0.1:0",
            "error: [ca] device_cert_days must be between 1 and 825 (got 0)".into(),
        ),
        (
            Ok("[limits]\nper_ip_per_sec = 0\n"),
            "127.0.0.1:0",
            "error: limits.per_ip_per_sec must be at least 1".into(),
        ),
        (
            Ok("[log]\nformat = \"xml\"\n"),
            "127.0.0.1:0",
            "error: log format must be text or json (got \"xml\")".into(),
        ),
        (
            Ok(""),
            "0.0.0.0:0",
            "error: --api-addr 0.0.0.0:0: --dev listens on loopback addresses only".into(),
        ),
        (
            Ok("[mqtt]\ndev_plain_addr = \"0.0.0.0:1884\"\n"),
            "127.0.0.1:0",
            "the plaintext MQTT listener may only bind a loopback address".into(),
        ),
        (
            Ok("[mqtt]\nmax_inflight = 0\n"),
            "127.0.0.1:0",
            "error: mqtt.max_inflight must be greater than 0".into(),
        ),
        (
            Ok("[mqtt]\nmax_packet_size_unauthenticated = 999999999\n"),
            "127.0.0.1:0",
            "mqtt.max_packet_size_unauthenticated must not exceed mqtt.max_packet_size".into(),
        ),
        (
            Err(&missing),
            "127.0.0.1:0",
            format!("error: cannot read config file {}", missing.display()),
        ),
        (
            Err(&a_dir),
            "127.0.0.1:0",
            format!("error: cannot read config file {}", a_dir.display()),
        ),
    ];
    for (i, (config, api_addr, want)) in cases.into_iter().enumerate() {
        let path = match config {
            Ok(toml) => common::write(dir.path(), &format!("c{i}.toml"), toml),
            Err(p) => p.to_path_buf(),
        };
        let data = dir.path().join(format!("data{i}"));
        let out = run_to_exit(
            server_cmd()
                .args(["--dev", "--api-addr", api_addr, "--config"])
                .arg(&path)
                .arg("--data-dir")
                .arg(&data),
        );
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "case {i}: {stderr}");
        assert!(
            stderr.contains(&want),
            "case {i}: {stderr:?} lacks {want:?}"
        );
        assert!(!data.exists(), "case {i}: the data directory was created");
    }
}

#[test]
fn a_real_instance_needs_a_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let empty = common::write(dir.path(), "empty-pass", "");
    let missing = dir.path().join("no-such-file");
    // (BULWARK_PASSPHRASE, --passphrase-file, what stderr must say)
    let cases: [(Option<&str>, Option<&Path>, &str); 4] = [
        (
            None,
            None,
            "no passphrase for the CA keys: set BULWARK_PASSPHRASE or pass --passphrase-file",
        ),
        (
            Some(""),
            None,
            "error: BULWARK_PASSPHRASE: passphrase must not be empty",
        ),
        (None, Some(&empty), "passphrase must not be empty"),
        (None, Some(&missing), "error: passphrase file"),
    ];
    for (i, (env, file, want)) in cases.into_iter().enumerate() {
        let data = dir.path().join(format!("data{i}"));
        let mut cmd = server_cmd();
        cmd.args(["--api-addr", "127.0.0.1:0", "--data-dir"])
            .arg(&data);
        if let Some(p) = env {
            cmd.env("BULWARK_PASSPHRASE", p);
        }
        if let Some(f) = file {
            cmd.arg("--passphrase-file").arg(f);
        }
        let out = run_to_exit(&mut cmd);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "case {i}: {stderr}");
        assert!(stderr.contains(want), "case {i}: {stderr:?} lacks {want:?}");
        assert!(!data.join("ca").exists(), "case {i}: a CA was created");
        assert!(!data.join("initial-admin-token").exists());
    }
}

/// A non-dev server process on a fixed port.
struct Instance {
    child: std::process::Child,
    addr: String,
}

impl Instance {
    fn start(data: &Path, log: &Path, port: u16, passphrase: &str) -> Instance {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = server_cmd()
            .args(["--api-addr", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data)
            .env("BULWARK_PASSPHRASE", passphrase)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Instance {
            child,
            addr: format!("https://127.0.0.1:{port}"),
        }
    }

    /// Waits until `/v1/health` answers over TLS trusting the data directory's CA.
    fn wait_healthy(&mut self, data: &Path, log: &Path) -> Client {
        let bundle = data.join("ca").join("ca-bundle.pem");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                panic!(
                    "server exited ({s}): {}",
                    std::fs::read_to_string(log).unwrap()
                );
            }
            if let Ok(ca) = std::fs::read(&bundle) {
                let c = Client::new(&self.addr, None, &ca).unwrap();
                if rt().block_on(c.health()).is_ok() {
                    return c;
                }
            }
            assert!(Instant::now() < deadline, "server did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        common::run(Command::new("kill").args(["-TERM", &pid]));
        self.child.wait().unwrap()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn first_start_writes_private_files_and_a_working_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let pass = "correct horse battery staple";
    let port = free_port();

    let mut server = Instance::start(&data, &log, port, pass);
    server.wait_healthy(&data, &log);
    let token_file = data.join("initial-admin-token");
    let token = std::fs::read_to_string(&token_file).unwrap();
    assert!(
        token.starts_with("bwk_") && token.ends_with('\n'),
        "{token:?}"
    );
    assert_eq!(token.lines().count(), 1);
    let token = token.trim().to_string();
    assert_eq!(mode(&token_file), 0o600);
    assert_eq!(mode(&data), 0o700);
    let keys = data.join("ca").join("keys");
    assert_eq!(mode(&keys), 0o700);
    let mut names: Vec<String> = std::fs::read_dir(&keys)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            assert_eq!(mode(&e.path()), 0o600, "{}", e.path().display());
            e.file_name().to_string_lossy().into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "audit.key.enc",
            "issuing.key.enc",
            "kek.json",
            "ota-snapshot.key.enc",
            "ota-timestamp.key.enc",
            "root.key.enc"
        ]
    );
    // The OTA root and targets keys are not in the key store: written once,
    // private, for the operator to move off the machine.
    let offline = data.join("ota-offline");
    for key in ["root.pem", "targets.pem"] {
        assert_eq!(mode(&offline.join(key)), 0o600, "{key}");
    }
    assert!(!data.join("dev-passphrase").exists());
    assert!(!data.join("dev.env").exists());

    // The token is an admin's.
    let ca = std::fs::read(data.join("ca").join("ca-bundle.pem")).unwrap();
    let admin = Client::new(&server.addr, Some(token.clone()), &ca).unwrap();
    rt().block_on(async {
        let tokens = admin.list_tokens().await.unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].name, "initial-admin");
        assert_eq!(tokens[0].role.as_str(), "admin");
        admin
            .create_group(&bulwark_api_types::CreateGroup {
                name: "kept".parse().unwrap(),
                description: String::new(),
            })
            .await
            .unwrap();
    });
    // Outside dev mode the server holds no targets key: a release is signed
    // offline, with the key file, or refused with the way to do it.
    let bundle = data.join("ca").join("ca-bundle.pem");
    let artifact = dir.path().join("fw.img");
    std::fs::write(&artifact, vec![7u8; 2048]).unwrap();
    let release = |extra: &[&std::ffi::OsStr]| {
        Command::new(bin())
            .args(["ota", "release", "create"])
            .arg(&artifact)
            .args([
                "--name",
                "fw-1.0.0",
                "--version",
                "1.0.0",
                "--hardware",
                "gw-v2",
            ])
            .args(extra)
            .env("BULWARK_ADDR", &server.addr)
            .env("BULWARK_TOKEN", &token)
            .env("BULWARK_CACERT", &bundle)
            .output()
            .unwrap()
    };
    let out = release(&[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("sign the release offline"),
        "{}",
        text(&out.stderr)
    );
    let key = offline.join("targets.pem");
    let out = release(&["--targets-key".as_ref(), key.as_os_str()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("published fw-1.0.0 1.0.0"));
    assert!(server.terminate().success());

    // A wrong passphrase: a clear refusal, nothing served.
    let out = run_to_exit(
        server_cmd()
            .args(["--api-addr", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(&data)
            .env("BULWARK_PASSPHRASE", "not the passphrase"),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot open the certificate authority: wrong passphrase for key store"),
        "{stderr}"
    );

    // The right one: same data, same token, no new initial token.
    let mut server = Instance::start(&data, &log, port, pass);
    server.wait_healthy(&data, &log);
    rt().block_on(async {
        let groups = admin.list_groups().await.unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].name.as_str(), "kept");
        assert_eq!(admin.list_tokens().await.unwrap().len(), 1);
    });
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), token);
    assert!(server.terminate().success());

    // Secrets never reach the log.
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(log.contains("first admin token written"), "{log}");
    for secret in ["PRIVATE KEY", pass, token.as_str()] {
        assert!(!log.contains(secret), "the log contains {secret:?}");
    }
    assert!(!stderr.contains("PRIVATE KEY") && !stderr.contains(pass));
}

/// Root rotation outside dev mode: the root key is offline, so the new
/// root must arrive signed by the old and the new root keys; only admins
/// publish it; a device that trusts root v1 follows the chain and installs
/// a release published after the rotation.
#[test]
fn root_rotation_needs_the_old_and_the_new_root_keys_and_devices_follow_it() {
    use bulwark_api_types::{CreateOperatorToken, RotateRoot};
    use bulwark_ota::{Device, HardwareModel, HttpsTransport, TargetName, UpdateClient};
    use bulwark_types::Role;

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("server.log");
    let mut server = Instance::start(&data, &log, free_port(), "rotate the root, not the key");
    server.wait_healthy(&data, &log);
    let token = std::fs::read_to_string(data.join("initial-admin-token")).unwrap();
    let token = token.trim().to_string();
    let bundle = data.join("ca").join("ca-bundle.pem");
    let ca = std::fs::read(&bundle).unwrap();
    let admin = Client::new(&server.addr, Some(token.clone()), &ca).unwrap();
    let cli = |token: &str, args: &[&std::ffi::OsStr]| {
        Command::new(bin())
            .args(args)
            .env("BULWARK_ADDR", &server.addr)
            .env("BULWARK_TOKEN", token)
            .env("BULWARK_CACERT", &bundle)
            .output()
            .unwrap()
    };
    let offline = data.join("ota-offline");
    let old_root = offline.join("root.pem");
    let new_root = dir.path().join("root-2.pem");
    let out = cli(
        &token,
        &[
            "ota".as_ref(),
            "keygen".as_ref(),
            "--out".as_ref(),
            new_root.as_os_str(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let new_pub = dir.path().join("root-2.pub");
    let new_id = bulwark_ota::SigningKey::read_file(&new_root)
        .unwrap()
        .key_id();
    let rotate = |token: &str, sign: &[&Path]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "ota".as_ref(),
            "root".as_ref(),
            "rotate".as_ref(),
            "--new-root-pub".as_ref(),
            new_pub.as_os_str(),
        ];
        for key in sign {
            args.extend(["--sign-key".as_ref(), key.as_os_str()]);
        }
        cli(token, &args)
    };

    // Refusals first, each with its reason; nothing is published.
    let out = rotate(&token, &[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("holds no root key"),
        "{}",
        text(&out.stderr)
    );
    let out = rotate(&token, &[&old_root]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not signed by a threshold of its own (new) root keys"),
        "{}",
        text(&out.stderr)
    );
    let out = rotate(&token, &[&new_root]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr)
            .contains("not signed by a threshold of the current root (version 1)'s root keys"),
        "{}",
        text(&out.stderr)
    );
    rt().block_on(async {
        // Not root metadata at all.
        let e = admin
            .publish_root(&RotateRoot {
                signed_root: Some("{\"signed\": 1}".into()),
                ..RotateRoot::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.status(), Some(400), "{e}");
        assert!(e.to_string().contains("malformed root metadata"), "{e}");
        // Only admins: an operator and an auditor may neither prepare nor publish.
        for role in [Role::Operator, Role::Auditor, Role::ReleaseManager] {
            let t = admin
                .create_token(&CreateOperatorToken {
                    name: role.to_string(),
                    role,
                    ttl_seconds: None,
                })
                .await
                .unwrap()
                .token;
            let other = Client::new(&server.addr, Some(t), &ca).unwrap();
            let e = other
                .prepare_root(&RotateRoot::default())
                .await
                .unwrap_err();
            assert_eq!(e.status(), Some(403), "{role}: {e}");
            assert!(e.to_string().contains("may not rotate the OTA root"), "{e}");
            let e = other
                .publish_root(&RotateRoot::default())
                .await
                .unwrap_err();
            assert_eq!(e.status(), Some(403), "{role}: {e}");
        }
        assert_eq!(admin.ota_root().await.unwrap().version, 1);
    });
    let root_v1 = rt().block_on(admin.tuf_file("1.root.json")).unwrap();
    assert!(rt().block_on(admin.tuf_file("2.root.json")).is_err());

    // Old and new root keys: accepted, served, audited.
    let out = rotate(&token, &[&old_root, &new_root]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("published root version 2"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("root version 1 → 2"),
        "{}",
        text(&out.stderr)
    );
    let root_v2 = rt().block_on(admin.tuf_file("2.root.json")).unwrap();
    let summary = bulwark_ota::describe_root(&root_v2).unwrap();
    assert_eq!(summary.version, 2);
    assert_eq!(summary.roles[0].key_ids, vec![new_id.clone()]);
    let out = cli(&token, &["ota".as_ref(), "root".as_ref(), "show".as_ref()]);
    assert!(
        text(&out.stdout).contains(new_id.as_str()),
        "{}",
        text(&out.stdout)
    );
    // Replayed: version 2 again is not the next version.
    let e = rt()
        .block_on(admin.publish_root(&RotateRoot {
            signed_root: Some(String::from_utf8(root_v2.clone()).unwrap()),
            ..RotateRoot::default()
        }))
        .unwrap_err();
    assert_eq!(e.status(), Some(400), "{e}");
    assert!(e.to_string().contains("is not the next version 3"), "{e}");
    // The retired key alone can no longer rotate.
    let out = rotate(&token, &[&old_root]);
    assert!(!out.status.success());
    let out = cli(
        &token,
        &[
            "audit".as_ref(),
            "ls".as_ref(),
            "--output".as_ref(),
            "json".as_ref(),
        ],
    );
    assert!(
        text(&out.stdout).contains("ota_root_published"),
        "{}",
        text(&out.stdout)
    );

    // A release published after the rotation (targets key unchanged).
    let artifact = dir.path().join("fw.img");
    std::fs::write(&artifact, vec![9u8; 4096]).unwrap();
    let out = cli(
        &token,
        &[
            "ota".as_ref(),
            "release".as_ref(),
            "create".as_ref(),
            artifact.as_os_str(),
            "--name".as_ref(),
            "fw-after".as_ref(),
            "--version".as_ref(),
            "1.1.0".as_ref(),
            "--hardware".as_ref(),
            "gw-v2".as_ref(),
            "--targets-key".as_ref(),
            offline.join("targets.pem").as_os_str(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    // A device provisioned with root v1 chains to v2 and verifies it.
    rt().block_on(async {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        let http = reqwest::Client::builder()
            .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
            .default_headers(headers)
            .build()
            .unwrap();
        let base = reqwest::Url::parse(&format!("{}/v1/ota/tuf/", server.addr)).unwrap();
        let store = tempfile::tempdir().unwrap();
        let transport = HttpsTransport::new(http);
        let client = UpdateClient::load(
            &root_v1,
            &store.path().join("tuf"),
            base.clone(),
            base.join("targets/").unwrap(),
            transport.clone(),
        )
        .await
        .unwrap();
        assert_eq!(client.tough().root().signed.version.get(), 2);
        let device = Device {
            model: HardwareModel::new("gw-v2").unwrap(),
            floor: None,
        };
        let candidate = client
            .check(&TargetName::new("fw-after").unwrap(), &device)
            .unwrap();
        let verified = client
            .download(&candidate, &transport, store.path())
            .await
            .unwrap();
        assert_eq!(std::fs::read(verified.path()).unwrap(), vec![9u8; 4096]);
    });
    assert!(server.terminate().success());
}

/// The plaintext MQTT listener exists only in dev mode.
#[test]
fn plaintext_mqtt_listener_is_refused_outside_dev_mode() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_to_exit(
        server_cmd()
            .args(["--dev-mqtt-plain-addr", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .env("BULWARK_PASSPHRASE", "a passphrase long enough"),
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("exists only in --dev mode"), "{stderr}");
    assert!(!dir.path().join("data").exists());
}

#[test]
fn dev_env_is_exactly_the_sourceable_exports() {
    let server = Server::start("");
    let file = server.data_dir().join("dev.env");
    assert_eq!(mode(&file), 0o600, "dev.env holds the admin token");
    let env = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = env.lines().collect();
    let port = server.addr.rsplit(':').next().unwrap();
    assert!(port.parse::<u16>().is_ok(), "{}", server.addr);
    assert_eq!(
        lines,
        [
            format!("export BULWARK_ADDR='https://127.0.0.1:{port}'"),
            format!("export BULWARK_TOKEN='{}'", server.token),
            format!("export BULWARK_MQTT_ADDR='{}'", server.mqtt_addr),
            format!("export BULWARK_MQTT_DEV_ADDR='{}'", server.mqtt_dev_addr),
            format!("export BULWARK_CACERT='{}'", server.cacert.display()),
        ]
    );
    assert!(server.token.starts_with("bwk_"));
    assert!(server.cacert.is_absolute());

    let script = format!(
        "source '{}' && curl -sf --cacert \"$BULWARK_CACERT\" \"$BULWARK_ADDR/v1/health\" \
         && curl -sf --cacert \"$BULWARK_CACERT\" -H \"Authorization: Bearer $BULWARK_TOKEN\" \
         \"$BULWARK_ADDR/v1/groups\"",
        file.display()
    );
    let path = std::env::var("PATH").unwrap_or_default();
    let out = common::run(
        Command::new("bash")
            .args(["-c", &script])
            .env_clear()
            .env("PATH", path),
    );
    let (health, groups) = out.split_once('}').expect("two answers");
    let health: serde_json::Value = serde_json::from_str(&format!("{health}}}")).unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(groups, "[]");
}

#[test]
fn sigterm_exits_zero_after_a_final_audit_checkpoint() {
    let mut server = Server::start("");
    rt().block_on(async {
        server.client().list_groups().await.unwrap();
    });
    let status = server.terminate();
    assert_eq!(status.code(), Some(0), "{}", server.log());
    let log = server.log();
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("shutting down"), "{log}");

    // Offline, every entry is covered by a signed checkpoint.
    let out = Command::new(bin())
        .args(["audit", "verify", "--data-dir"])
        .arg(server.data_dir())
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.starts_with("audit log OK: "), "{stdout}");
    assert_eq!(
        stdout.lines().count(),
        1,
        "nothing left uncovered: {stdout}"
    );
}

/// Exit code, stdout and stderr of a CLI run.
fn cli(out: Output) -> (Option<i32>, String, String) {
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn operator_cli_against_a_dev_server() {
    let server = Server::start("");

    let (code, out, err) = cli(server.cli(&["group", "create", "g1"]));
    assert_eq!(code, Some(0), "{err}");
    let first: Vec<&str> = out.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(first, ["name:", "g1"]);

    // An enrollment token alone on stdout.
    let (code, token, err) =
        cli(server.cli(&["enroll-token", "create", "--group", "g1", "--ttl", "1h"]));
    assert_eq!((code, err.as_str()), (Some(0), ""));
    assert_eq!(token.lines().count(), 1, "{token:?}");
    assert!(
        token.starts_with("bwe_") && token.ends_with('\n'),
        "{token:?}"
    );
    let token = token.trim();

    let (id, serial) = rt().block_on(async {
        let listed = server.client().list_enroll_tokens().await.unwrap();
        assert_eq!(listed.len(), 1);
        // --ttl 1h: an hour, give or take the moment between two clock reads.
        let ttl = listed[0].expires_at - listed[0].created_at;
        assert!(
            (ttl - time::Duration::hours(1)).abs() < time::Duration::seconds(1),
            "{ttl}"
        );
        let (_, der) = csr("ignored");
        let p7 = server
            .client_with(None)
            .est_simpleenroll_bearer(token, &der)
            .await
            .unwrap();
        let (leaf, _) = leaf_pem(&p7);
        let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
        let cn = cert.subject().iter_common_name().next().unwrap();
        let serial = CertSerial::from_bytes(cert.raw_serial()).unwrap();
        (cn.as_str().unwrap().to_string(), serial)
    });

    // Devices as JSON.
    let (code, out, err) = cli(server.cli(&["device", "ls", "--output", "json"]));
    assert_eq!(code, Some(0), "{err}");
    let devices: serde_json::Value = serde_json::from_str(&out).unwrap();
    let devices = devices.as_array().expect("an array");
    assert_eq!(devices.len(), 1, "{out}");
    assert_eq!(devices[0]["id"], id.as_str());
    assert_eq!(devices[0]["state"], "active");

    // Revoke by the serial as `openssl x509 -serial` might print it.
    let hex = serial.to_hex().to_lowercase();
    let colons: Vec<&str> = hex
        .as_bytes()
        .chunks(2)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let written = format!("serial={}", colons.join(":"));
    let (code, out, err) = cli(server.cli(&["cert", "revoke", &written]));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        format!("revoked certificate {serial} of device {id} (reason unspecified)\n")
    );
    let (code, out, err) = cli(server.cli(&["cert", "show", &serial.to_hex()]));
    assert_eq!(code, Some(0), "{err}");
    let status: Vec<&str> = out
        .lines()
        .find(|l| l.starts_with("status:"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(status, ["status:", "revoked", "(unspecified)"], "{out}");
    let (_, out, _) = cli(server.cli(&["cert", "show", &written, "--output", "json"]));
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(shown["revoked_at"].is_string(), "{out}");

    // An operator token alone on stdout; an auditor may not create groups.
    let (code, auditor, err) =
        cli(server.cli(&["token", "create", "--name", "x", "--role", "auditor"]));
    assert_eq!((code, err.as_str()), (Some(0), ""));
    assert_eq!(auditor.lines().count(), 1, "{auditor:?}");
    assert!(auditor.starts_with("bwk_"), "{auditor:?}");
    let auditor = auditor.trim();
    let (code, out, err) = cli(server.cli_with_token(auditor, &["group", "create", "g2"]));
    assert_eq!(code, Some(1));
    assert_eq!(out, "");
    assert_eq!(
        err,
        "error: Forbidden: role auditor may not manage groups (HTTP 403)\n"
    );
    let (code, out, _) = cli(server.cli_with_token(auditor, &["group", "ls", "--output", "json"]));
    assert_eq!(code, Some(0));
    let groups: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(groups.as_array().unwrap().len(), 1, "g2 was not created");

    // No token at all: the answer and a hint.
    let (code, _, err) = cli(server.cli_with_token("", &["group", "ls"]));
    assert_eq!(code, Some(1));
    assert!(
        err.ends_with("\nhint: no operator token was given; pass --token or set BULWARK_TOKEN\n"),
        "{err}"
    );

    // A malformed serial is a usage error, before any request.
    let (code, _, err) = cli(server.cli(&["cert", "revoke", "xyz"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("serial must be hex digits"), "{err}");

    let (code, out, err) = cli(server.cli(&["audit", "verify"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("audit log ok: "), "{out}");
}

#[test]
fn help_exits_zero() {
    for (args, mentions) in [
        (&["--help"][..], "Usage: bulwark"),
        (&["server", "--help"][..], "--passphrase-file"),
        (&["device", "--help"][..], "decommission"),
        (&["cert", "revoke", "--help"][..], "key-compromise"),
        (&["token", "create", "--help"][..], "enroller"),
    ] {
        let out = Command::new(bin()).args(args).output().unwrap();
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(stdout.contains(mentions), "{args:?}: {stdout}");
    }
}
