//! The device agent (`bulwark-agent`, as a library) against a real
//! `bulwark server --dev`: first enrollment over EST with an enrollment
//! token, an mTLS MQTT connection with the identity it stored, then the
//! automatic renewal (`simplereenroll` with a fresh key, at two thirds of
//! the certificate's lifetime) published on the identity `watch`.

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bulwark_agent::config::Config;
use bulwark_agent::enroll::{load_roots, renew_due, run_renewal, Enroller, Identity};
use bulwark_agent::keys::KeyStore;
use bulwark_api_types::{CreateEnrollToken, CreateGroup};
use bulwark_mqtt::{Decoder, Encoder, Packet, ProtocolVersion, ReasonCode};
use bulwark_types::{DeviceId, GroupId};
use bytes::BytesMut;
use common::{rt, Server};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Connects to the mTLS MQTT listener presenting `identity` (the TLS
/// configuration the MQTT link will use) and returns the CONNACK's reason.
async fn mqtt_connect(
    server: &Server,
    identity: &Identity,
    roots: &rustls::RootCertStore,
) -> ReasonCode {
    let config = identity.client_config(Arc::new(roots.clone())).unwrap();
    let tcp = tokio::net::TcpStream::connect(&server.mqtt_addr)
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .expect("TLS handshake with the device certificate");
    let connect = common::mqtt::connect_packet(ProtocolVersion::V5, identity.device_id());
    let mut out = BytesMut::new();
    Encoder::new(ProtocolVersion::V5)
        .encode(&Packet::Connect(Box::new(connect)), &mut out)
        .unwrap();
    tls.write_all(&out).await.unwrap();
    let mut decoder = Decoder::with_version(ProtocolVersion::V5, 1 << 16);
    let mut buf = BytesMut::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(packet) = decoder.decode(&mut buf).unwrap() {
            match packet {
                Packet::ConnAck(ack) => return ack.reason_code,
                other => panic!("expected CONNACK, got {other:?}"),
            }
        }
        buf.reserve(1024);
        let n = tokio::time::timeout_at(deadline, tls.read_buf(&mut buf))
            .await
            .expect("CONNACK in time")
            .unwrap();
        assert!(n > 0, "connection closed before CONNACK");
    }
}

#[test]
fn agent_enrolls_with_a_token_then_renews_with_a_fresh_key() {
    enroll_then_renew("", &|state, key| {
        let key_mode = std::fs::metadata(state.join("device.key")).unwrap().mode();
        assert_eq!(
            key_mode & 0o777,
            0o600,
            "the key file is the device's alone"
        );
        assert!(key.private_pem().is_some());
        assert!(!state.join("device.key.next").exists());
    });
}

/// The same with the key on a PKCS#11 token (SoftHSM2): enrollment,
/// mTLS MQTT and renewal all sign inside the token; no key file exists.
/// Needs the agent's `pkcs11` feature and the Debian package `softhsm2`
/// (`.ci/run` runs it with `--features pkcs11`).
#[cfg(feature = "pkcs11")]
#[test]
fn agent_with_a_pkcs11_key_enrolls_and_renews_inside_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir_all(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    // The only test in this binary that loads the module.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let out = std::process::Command::new("softhsm2-util")
        .args([
            "--init-token",
            "--free",
            "--label",
            "agent",
            "--pin",
            "1234",
            "--so-pin",
            "5678",
        ])
        .output()
        .expect("softhsm2-util (apt-get install softhsm2)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::env::set_var("BULWARK_TEST_PIN", "1234");
    let keys = "[keys]\nstorage = \"pkcs11\"\nmodule = \"/usr/lib/softhsm/libsofthsm2.so\"\n\
                token_label = \"agent\"\npin = { env = \"BULWARK_TEST_PIN\" }\n";
    enroll_then_renew(keys, &|state, key| {
        assert!(key.private_pem().is_none(), "a token key has no PEM");
        assert!(
            !state.join("device.key").exists(),
            "no key file for a token key"
        );
    });
}

/// Enrolls `agent-1` with the `[keys]` section `keys`, connects over mTLS
/// MQTT, lets the automatic renewal run and checks the result; `check_key`
/// looks at the key's storage after the first enrollment and after the
/// renewal.
fn enroll_then_renew(
    keys: &str,
    check_key: &dyn Fn(&std::path::Path, &bulwark_agent::keys::DeviceKey),
) {
    // 45 s certificates (backdated 60 s by the CA): renewal is due ~10 s
    // after issuance.
    let server = Server::start("[ca]\ndevice_cert_secs = 45\n");
    rt().block_on(async {
        let admin = server.client();
        admin
            .create_group(&CreateGroup {
                name: GroupId::new("agents").unwrap(),
                description: String::new(),
            })
            .await
            .unwrap();
        let token = admin
            .create_enroll_token(&CreateEnrollToken {
                group: GroupId::new("agents").unwrap(),
                device_id: Some(DeviceId::new("agent-1").unwrap()),
                ttl_seconds: None,
            })
            .await
            .unwrap()
            .token;

        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, &token).unwrap();
        std::fs::set_permissions(
            &token_file,
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let config_text = format!(
            r#"
state_dir = "{state}"
hardware_model = "test-rig"
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
command = ["/bin/true"]
[slots]
backend = "directory"
root = "{slots}"
{keys}
"#,
            state = state.display(),
            api = server.addr,
            mqtt = server.mqtt_addr,
            ca = server.cacert.display(),
            token = token_file.display(),
            slots = dir.path().join("slots").display(),
            keys = keys,
        );
        let config_path = dir.path().join("agent.toml");
        std::fs::write(&config_path, config_text).unwrap();
        let config = Config::load(&config_path).unwrap();
        let enroller = Enroller::new(&config, KeyStore::from_config(&config).unwrap()).unwrap();
        let roots = load_roots(&enroller.ca_pem().unwrap()).unwrap();

        // First start: key generated on the device, enrolled with the token.
        let v1 = enroller.ensure_enrolled().await.unwrap();
        assert_eq!(v1.device_id(), "agent-1");
        check_key(&state, v1.key());
        assert!(!renew_due(v1.leaf_der(), SystemTime::now()).unwrap());
        // A restart loads the stored identity instead of enrolling again
        // (the single-use token would be refused).
        let reloaded = enroller.ensure_enrolled().await.unwrap();
        assert_eq!(reloaded.leaf_der(), v1.leaf_der());
        assert!(enroller.enroll().await.is_err(), "the token is single-use");
        let after_refusal = enroller.load().unwrap().unwrap();
        assert_eq!(
            after_refusal.leaf_der(),
            v1.leaf_der(),
            "a failed enrollment keeps the identity"
        );

        // The stored identity works over mTLS MQTT.
        assert_eq!(
            mqtt_connect(&server, &v1, &roots).await,
            ReasonCode::Success
        );

        // Automatic renewal at two thirds of the lifetime.
        let (tx, mut rx) = tokio::sync::watch::channel(Arc::new(v1.clone()));
        let renewal = tokio::spawn(run_renewal(enroller.clone(), tx));
        // Until the swap the old identity is the one in use and on disk.
        assert_eq!(rx.borrow().leaf_der(), v1.leaf_der());
        assert_eq!(enroller.load().unwrap().unwrap().leaf_der(), v1.leaf_der());
        assert_eq!(
            mqtt_connect(&server, &v1, &roots).await,
            ReasonCode::Success
        );
        tokio::time::timeout(Duration::from_secs(60), rx.changed())
            .await
            .expect("renewal within 60 s")
            .unwrap();
        let renewed_at = SystemTime::now();
        renewal.abort();
        let v2 = rx.borrow().clone();
        assert!(
            renewed_at >= v1.renew_at(),
            "renewed before two thirds of the lifetime"
        );

        // A new certificate for a new key and the same device, valid now.
        assert_ne!(v2.leaf_der(), v1.leaf_der());
        assert_ne!(v2.key().spki_der(), v1.key().spki_der(), "a fresh key");
        assert_eq!(v2.device_id(), "agent-1");
        assert!(v2.not_before() <= renewed_at && renewed_at < v2.not_after());
        assert!(v2.not_after() > v1.not_after());
        assert!(!renew_due(v2.leaf_der(), renewed_at).unwrap());
        assert_eq!(
            mqtt_connect(&server, &v2, &roots).await,
            ReasonCode::Success
        );

        // Swapped on disk, nothing left over; a restart picks up the new identity.
        let loaded = enroller.load().unwrap().unwrap();
        assert_eq!(loaded.leaf_der(), v2.leaf_der());
        assert_eq!(loaded.key().spki_der(), v2.key().spki_der());
        assert!(!state.join("device.crt.next").exists());
        check_key(&state, loaded.key());

        // The registry shows the device with both certificates in its history.
        let device = admin
            .get_device(&DeviceId::new("agent-1").unwrap())
            .await
            .unwrap();
        assert_eq!(device.device.state, bulwark_types::DeviceState::Active);
        assert_eq!(
            device.certificates.len(),
            2,
            "the enrolled and the renewed certificate"
        );
    });
}
