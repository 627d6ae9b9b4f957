//! Bring-your-own manufacturer CA with just-in-time registration, over
//! real sockets: a manufacturer's CA and device certificates made here with
//! rcgen, the real `bulwark` server, the project's raw MQTT client (exact
//! CONNACK reason codes) and `mosquitto_pub` for interop.
//!
//! Refusals first: bad CA certificates and unauthorized operators at the
//! API, unregistered and impostor CAs at the TLS handshake, unknown,
//! pending, misnamed, expired and takeover certificates at CONNECT; then
//! what works (JIT off with a pre-registered device, pending then
//! activated, active under the default device policy) and what stops it
//! (removing the CA cuts live sessions, decommissioning revokes).

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bulwark_api_types::{
    CreateEnrollToken, CreateGroup, CreateManufacturerCa, CreateOperatorToken, ManufacturerCaDetail,
};
use bulwark_mqtt::{Packet, ProtocolVersion, QoS, ReasonCode};
use bulwark_types::{DeviceId, DeviceState, GroupId, JitMode, ManufacturerCaName, Role};
use common::mqtt::{connect_packet, enroll, Creds, Raw};
use common::{problem, rt, Server};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;

/// Many refusals come from one address in these tests: no back-off.
const CONFIG: &str = "[mqtt]\nauth_failures_before_backoff = 1000\n";
const T: Duration = Duration::from_secs(5);

/// A manufacturer's CA: its certificate (PEM), parameters and key.
struct Mfr {
    pem: String,
    params: CertificateParams,
    key: KeyPair,
}

static FILES: AtomicUsize = AtomicUsize::new(0);

impl Mfr {
    fn new(cn: &str) -> Mfr {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.distinguished_name
            .push(DnType::OrganizationName, "Acme Devices");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = OffsetDateTime::now_utc() - time::Duration::days(1);
        p.not_after = OffsetDateTime::now_utc() + time::Duration::days(365);
        let key = KeyPair::generate().unwrap();
        let pem = p.self_signed(&key).unwrap().pem();
        Mfr {
            pem,
            params: p,
            key,
        }
    }

    /// Writes the CA certificate to a file.
    fn pem_file(&self, server: &Server) -> PathBuf {
        let n = FILES.fetch_add(1, Ordering::Relaxed);
        common::write(server.dir.path(), &format!("mfr-ca-{n}.pem"), &self.pem)
    }

    /// A device certificate for `cn`, in memory and as PEM files.
    fn device(&self, server: &Server, cn: &str) -> Creds {
        self.device_with(server, cn, |_| {})
    }

    fn device_with(
        &self,
        server: &Server,
        cn: &str,
        tweak: impl FnOnce(&mut CertificateParams),
    ) -> Creds {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.not_before = OffsetDateTime::now_utc() - time::Duration::hours(1);
        p.not_after = OffsetDateTime::now_utc() + time::Duration::days(30);
        tweak(&mut p);
        let key = KeyPair::generate().unwrap();
        let cert = p
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .unwrap();
        let dir = server.dir.path().join("mfr-creds");
        std::fs::create_dir_all(&dir).unwrap();
        let n = FILES.fetch_add(1, Ordering::Relaxed);
        let cert_path = dir.join(format!("device-{n}.crt"));
        let key_path = dir.join(format!("device-{n}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        Creds {
            id: cn.to_owned(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
            cert: cert_path,
            key: key_path,
        }
    }
}

fn ca_name(s: &str) -> ManufacturerCaName {
    ManufacturerCaName::new(s).unwrap()
}

fn device_id(s: &str) -> DeviceId {
    DeviceId::new(s).unwrap()
}

async fn group(server: &Server, name: &str) {
    server
        .client()
        .create_group(&CreateGroup {
            name: GroupId::new(name).unwrap(),
            description: String::new(),
        })
        .await
        .unwrap();
}

fn request(name: &str, pem: &str, group: Option<&str>, jit: JitMode) -> CreateManufacturerCa {
    CreateManufacturerCa {
        name: ca_name(name),
        certificate_pem: pem.to_owned(),
        group: group.map(|g| GroupId::new(g).unwrap()),
        jit,
    }
}

/// Registers `mfr` as `name`, JIT devices going to group `sensors`.
async fn register(server: &Server, name: &str, mfr: &Mfr, jit: JitMode) -> ManufacturerCaDetail {
    let group = (jit != JitMode::Off).then_some("sensors");
    server
        .client()
        .create_manufacturer_ca(&request(name, &mfr.pem, group, jit))
        .await
        .unwrap()
}

/// What a CONNECT with a client certificate came to.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// The TLS handshake failed (TLS 1.3 may report it only at the first
    /// read: then no CONNACK came).
    TlsRefused,
    /// A CONNACK with this reason code and reason string.
    Ack(ReasonCode, String),
}

async fn attempt(server: &Server, creds: &Creds) -> Outcome {
    let Ok(mut r) = Raw::tls(server, Some(creds)).await else {
        return Outcome::TlsRefused;
    };
    match r
        .handshake(connect_packet(ProtocolVersion::V5, &creds.id))
        .await
    {
        None => Outcome::TlsRefused,
        Some(a) => Outcome::Ack(
            a.reason_code,
            a.properties.reason_string.unwrap_or_default(),
        ),
    }
}

/// Asserts a CONNACK refusal with `code` whose reason contains `expect`.
async fn refused(server: &Server, creds: &Creds, code: ReasonCode, expect: &str) {
    match attempt(server, creds).await {
        Outcome::Ack(c, reason) => {
            assert_eq!(c, code, "{reason}");
            assert!(reason.contains(expect), "{reason:?} lacks {expect:?}");
        }
        other => panic!("expected CONNACK {code:?}, got {other:?}"),
    }
}

/// A live MQTT 5 session (panics unless accepted).
async fn session(server: &Server, creds: &Creds) -> Raw {
    let mut r = Raw::tls(server, Some(creds)).await.expect("TLS handshake");
    let ack = r
        .handshake(connect_packet(ProtocolVersion::V5, &creds.id))
        .await
        .expect("CONNACK");
    assert_eq!(ack.reason_code, ReasonCode::Success, "{ack:?}");
    r
}

/// The PUBACK reason of a QoS 1 publish on `topic`.
async fn publish(r: &mut Raw, topic: &str, id: u16) -> ReasonCode {
    r.publish(topic, "x", QoS::AtLeastOnce, id).await;
    loop {
        match r.recv(T).await {
            Some(Packet::PubAck(a)) if a.packet_id.get() == id => return a.reason_code,
            Some(_) => continue,
            None => panic!("no PUBACK for {topic}"),
        }
    }
}

/// `mosquitto_pub` (Debian `mosquitto-clients`) with `creds` as its client
/// certificate, publishing one QoS 1 message on `topic`.
fn mosquitto_pub(server: &Server, creds: &Creds, topic: &str) -> Output {
    let (_, port) = server.mqtt_addr.rsplit_once(':').unwrap();
    Command::new("mosquitto_pub")
        .args(["-h", "localhost", "-p", port, "-V", "mqttv5"])
        .args(["-i", &creds.id, "-q", "1", "-t", topic, "-m", "hello"])
        .arg("--cafile")
        .arg(&server.cacert)
        .arg("--cert")
        .arg(&creds.cert)
        .arg("--key")
        .arg(&creds.key)
        .output()
        .expect("mosquitto_pub (Debian mosquitto-clients)")
}

fn cli_json(server: &Server, args: &[&str]) -> serde_json::Value {
    let mut all = args.to_vec();
    all.extend(["--output", "json"]);
    let out = server.cli(&all);
    assert!(
        out.status.success(),
        "bulwark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn cli_text(server: &Server, args: &[&str]) -> String {
    let out = server.cli(args);
    assert!(
        out.status.success(),
        "bulwark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn audit_count(server: &Server, kind: &str) -> usize {
    server
        .client()
        .list_audit(None, Some(10_000))
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event["type"] == kind)
        .count()
}

#[test]
fn registration_refuses_bad_certificates_duplicates_and_operators_without_the_role() {
    let server = Server::start(CONFIG);
    rt().block_on(async {
        let admin = server.client();
        group(&server, "sensors").await;
        let acme = Mfr::new("Acme Devices CA");
        let leaf = std::fs::read_to_string(acme.device(&server, "acme-1").cert).unwrap();
        let bundle = std::fs::read_to_string(&server.cacert).unwrap();
        let end = "-----END CERTIFICATE-----\n";
        let ours = &bundle[..bundle.find(end).unwrap() + end.len()];
        let oversized = format!("{}\n{}", "#".repeat(20_000), acme.pem);
        let two = format!("{}{}", acme.pem, Mfr::new("Other").pem);
        for (pem, expect) in [
            ("garbage", "no PEM CERTIFICATE block"),
            (leaf.as_str(), "not a CA certificate"),
            (ours, "Bulwark's own CA"),
            (oversized.as_str(), "at most 16384"),
            (two.as_str(), "exactly one certificate, found 2"),
        ] {
            let e = admin
                .create_manufacturer_ca(&request("acme", pem, None, JitMode::Off))
                .await
                .unwrap_err();
            let (status, detail) = problem(e);
            assert_eq!(status, 400, "{detail}");
            assert!(detail.contains(expect), "{detail:?} lacks {expect:?}");
        }
        let e = admin
            .create_manufacturer_ca(&request("acme", &acme.pem, None, JitMode::Active))
            .await
            .unwrap_err();
        let (status, detail) = problem(e);
        assert_eq!(status, 400);
        assert!(detail.contains("needs a target group"), "{detail}");
        let e = admin
            .create_manufacturer_ca(&request("acme", &acme.pem, Some("nope"), JitMode::Active))
            .await
            .unwrap_err();
        assert_eq!(problem(e).0, 422);

        // Roles: only an admin registers; operators and auditors read;
        // a refusal changes nothing and is audited.
        let mut tokens = Vec::new();
        for role in [Role::Operator, Role::Auditor, Role::Enroller] {
            let t = admin
                .create_token(&CreateOperatorToken {
                    name: role.to_string(),
                    role,
                    ttl_seconds: None,
                })
                .await
                .unwrap()
                .token;
            tokens.push(t);
        }
        for token in &tokens[..2] {
            let c = server.client_with(Some(token.clone()));
            let e = c
                .create_manufacturer_ca(&request("acme", &acme.pem, None, JitMode::Off))
                .await
                .unwrap_err();
            let (status, detail) = problem(e);
            assert_eq!(status, 403);
            assert!(detail.contains("manage manufacturer CAs"), "{detail}");
            assert!(c.list_manufacturer_cas().await.unwrap().is_empty());
        }
        let enroller = server.client_with(Some(tokens[2].clone()));
        assert_eq!(
            problem(enroller.list_manufacturer_cas().await.unwrap_err()).0,
            403
        );
        let file = acme.pem_file(&server);
        let file = file.to_str().unwrap();
        let out = server.cli_with_token(
            &tokens[0],
            &["manufacturer-ca", "add", file, "--name", "acme"],
        );
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("may not manage manufacturer CAs"),
            "{stderr}"
        );
        assert!(admin.list_manufacturer_cas().await.unwrap().is_empty());
        assert!(audit_count(&server, "authorization_denied").await >= 3);
        assert_eq!(audit_count(&server, "manufacturer_ca_registered").await, 0);

        // The admin, through the CLI.
        let help = cli_text(&server, &["manufacturer-ca", "add", "--help"]);
        assert!(help.contains("--jit") && help.contains("pending"), "{help}");
        let added = cli_json(
            &server,
            &[
                "manufacturer-ca",
                "add",
                file,
                "--name",
                "acme",
                "--group",
                "sensors",
                "--jit",
                "pending",
            ],
        );
        assert_eq!(added["name"], "acme");
        assert_eq!(added["jit"], "pending");
        assert_eq!(added["group"], "sensors");
        assert_eq!(added["devices"], 0);
        assert!(added["certificate_pem"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"));
        // Duplicates: the same name, or the same certificate under another.
        for (name, expect) in [
            ("acme", "already registered"),
            ("acme-2", "already registered as manufacturer CA acme"),
        ] {
            let e = admin
                .create_manufacturer_ca(&request(name, &acme.pem, None, JitMode::Off))
                .await
                .unwrap_err();
            let (status, detail) = problem(e);
            assert_eq!(status, 409, "{detail}");
            assert!(detail.contains(expect), "{detail:?} lacks {expect:?}");
        }
        let auditor = server.client_with(Some(tokens[1].clone()));
        let listed = auditor.list_manufacturer_cas().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].fingerprint_sha256, added["fingerprint_sha256"]);
        let table = cli_text(&server, &["manufacturer-ca", "list"]);
        assert!(
            table.contains("acme") && table.contains("pending"),
            "{table}"
        );
        let shown = cli_text(&server, &["manufacturer-ca", "show", "acme"]);
        assert!(shown.contains("CN=Acme Devices CA"), "{shown}");
        assert_eq!(
            problem(
                admin
                    .get_manufacturer_ca(&ca_name("nope"))
                    .await
                    .unwrap_err()
            )
            .0,
            404
        );
        let removed = cli_text(&server, &["manufacturer-ca", "remove", "acme"]);
        assert!(
            removed.contains("removed manufacturer CA acme"),
            "{removed}"
        );
        assert!(admin.list_manufacturer_cas().await.unwrap().is_empty());
        assert_eq!(audit_count(&server, "manufacturer_ca_registered").await, 1);
        assert_eq!(audit_count(&server, "manufacturer_ca_removed").await, 1);
    });
}

#[test]
fn certificates_of_unregistered_or_impostor_cas_fail_the_handshake() {
    let server = Server::start(CONFIG);
    rt().block_on(async {
        group(&server, "sensors").await;
        let acme = Mfr::new("Acme Devices CA");
        register(&server, "acme", &acme, JitMode::Active).await;
        // A CA nobody registered.
        let stranger = Mfr::new("Stranger CA").device(&server, "acme-1");
        assert_eq!(attempt(&server, &stranger).await, Outcome::TlsRefused);
        // Same issuer name as the registered CA, another key.
        let impostor = Mfr::new("Acme Devices CA").device(&server, "acme-1");
        assert_eq!(attempt(&server, &impostor).await, Outcome::TlsRefused);
        let out = mosquitto_pub(&server, &impostor, "devices/acme-1/telemetry");
        assert!(
            !out.status.success(),
            "mosquitto_pub got in with a forged certificate"
        );
        let e = server
            .client()
            .get_device(&device_id("acme-1"))
            .await
            .unwrap_err();
        assert_eq!(problem(e).0, 404, "nothing was registered");
        // The registered CA's certificate for the same device connects.
        session(&server, &acme.device(&server, "acme-1")).await;
    });
}

#[test]
fn jit_off_refuses_unknown_devices_until_an_operator_registers_them() {
    let server = Server::start(CONFIG);
    rt().block_on(async {
        group(&server, "sensors").await;
        let acme = Mfr::new("Acme Devices CA");
        register(&server, "acme", &acme, JitMode::Off).await;
        let creds = acme.device(&server, "acme-1");
        refused(
            &server,
            &creds,
            ReasonCode::NotAuthorized,
            "is not registered",
        )
        .await;
        let e = server
            .client()
            .get_device(&device_id("acme-1"))
            .await
            .unwrap_err();
        assert_eq!(problem(e).0, 404);
        // Registered for the CA: its first certificate enrolls it.
        let created = cli_json(
            &server,
            &[
                "device",
                "create",
                "acme-1",
                "--group",
                "sensors",
                "--manufacturer-ca",
                "acme",
            ],
        );
        assert_eq!(created["state"], "pending");
        assert_eq!(created["manufacturer_ca"], "acme");
        session(&server, &creds).await;
        let shown = cli_json(&server, &["device", "show", "acme-1"]);
        assert_eq!(shown["state"], "active");
        let certs = shown["manufacturer_certificates"].as_array().unwrap();
        assert_eq!(certs.len(), 1);
        assert_eq!(certs[0]["manufacturer_ca"], "acme");
        assert_eq!(certs[0]["fingerprint_sha256"].as_str().unwrap().len(), 64);
        // A device bound to a manufacturer CA cannot enroll through EST.
        let token = server
            .client()
            .create_enroll_token(&CreateEnrollToken {
                group: GroupId::new("sensors").unwrap(),
                device_id: Some(device_id("acme-1")),
                ttl_seconds: None,
            })
            .await
            .unwrap()
            .token;
        let (_, csr) = common::csr("acme-1");
        let e = server
            .client_with(None)
            .est_simpleenroll_bearer(&token, &csr)
            .await
            .unwrap_err();
        let (status, detail) = problem(e);
        assert_eq!(status, 409, "{detail}");
        assert!(detail.contains("bound to manufacturer CA acme"), "{detail}");
        // Binding to a CA that is not registered is refused.
        let out = server.cli(&[
            "device",
            "create",
            "x-1",
            "--group",
            "sensors",
            "--manufacturer-ca",
            "nope",
        ]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("manufacturer CA not found"));
    });
}

#[test]
fn jit_pending_devices_are_refused_until_activated() {
    let server = Server::start(CONFIG);
    rt().block_on(async {
        group(&server, "sensors").await;
        let acme = Mfr::new("Acme Devices CA");
        register(&server, "acme", &acme, JitMode::Pending).await;
        let creds = acme.device(&server, "acme-2");
        for _ in 0..2 {
            refused(
                &server,
                &creds,
                ReasonCode::NotAuthorized,
                "an operator must activate it",
            )
            .await;
        }
        assert!(
            !mosquitto_pub(&server, &creds, "devices/acme-2/telemetry")
                .status
                .success(),
            "mosquitto_pub got in as a pending device"
        );
        let pending = cli_json(&server, &["device", "ls", "--state", "pending"]);
        let listed = pending.as_array().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0]["id"], "acme-2");
        assert_eq!(listed[0]["group"], "sensors");
        assert_eq!(audit_count(&server, "device_jit_registered").await, 1);
        let activated = cli_text(
            &server,
            &["device", "activate", "acme-2", "--reason", "checked"],
        );
        assert!(activated.contains("is now active"), "{activated}");
        session(&server, &creds).await;
        // Only a pending device can be activated.
        let out = server.cli(&["device", "activate", "acme-2"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("only a pending device"));
    });
}

#[test]
fn jit_active_devices_connect_under_the_default_policy_and_interoperate() {
    let server = Server::start(CONFIG);
    rt().block_on(async {
        group(&server, "sensors").await;
        let acme = Mfr::new("Acme Devices CA");
        register(&server, "acme", &acme, JitMode::Active).await;
        let creds = acme.device(&server, "acme-3");
        let mut r = session(&server, &creds).await;
        let listed = cli_json(&server, &["device", "ls", "--group", "sensors"]);
        let d = &listed.as_array().unwrap()[0];
        assert_eq!(d["id"], "acme-3");
        assert_eq!(d["state"], "active");
        assert_eq!(d["manufacturer_ca"], "acme");
        // The default device policy: its own space, nothing else.
        assert_eq!(
            publish(&mut r, "devices/acme-3/telemetry", 1).await,
            ReasonCode::Success
        );
        assert_eq!(
            publish(&mut r, "devices/acme-4/telemetry", 2).await,
            ReasonCode::NotAuthorized
        );
        assert_eq!(
            r.subscribe(
                3,
                &[
                    ("devices/acme-3/commands/#", QoS::AtLeastOnce),
                    ("#", QoS::AtMostOnce)
                ]
            )
            .await,
            [ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized]
        );

        // Mosquitto's client, with a certificate the server never saw.
        let other = acme.device(&server, "acme-4");
        let out = mosquitto_pub(&server, &other, "devices/acme-4/telemetry");
        assert!(
            out.status.success(),
            "mosquitto_pub: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log()
        );
        let d = server
            .client()
            .get_device(&device_id("acme-4"))
            .await
            .unwrap();
        assert_eq!(d.device.state, DeviceState::Active);
        assert_eq!(d.device.group.as_str(), "sensors");

        // Re-provisioned: a new certificate from the same CA is accepted
        // and recorded beside the first.
        drop(r);
        session(&server, &acme.device(&server, "acme-3")).await;
        let d = server
            .client()
            .get_device(&device_id("acme-3"))
            .await
            .unwrap();
        assert_eq!(d.manufacturer_certificates.len(), 2);
        assert!(audit_count(&server, "manufacturer_certificate_bound").await >= 1);

        // SIGHUP rotation keeps the live verifier: registered CAs, and
        // those registered after it, still authenticate.
        Command::new("kill")
            .args(["-HUP", &server.pid().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + T;
        while !server.log().contains("MQTT server certificate rotated") {
            assert!(Instant::now() < deadline, "no rotation: {}", server.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        session(&server, &acme.device(&server, "acme-5")).await;
        let beta = Mfr::new("Beta CA");
        register(&server, "beta", &beta, JitMode::Active).await;
        session(&server, &beta.device(&server, "beta-1")).await;
    });
}

#[test]
fn certificates_that_claim_other_devices_bad_names_or_are_expired_are_refused() {
    let server = Server::start(CONFIG);
    rt().block_on(async {
        let d1 = enroll(&server, "sensors", "d1").await;
        let acme = Mfr::new("Acme Devices CA");
        let other = Mfr::new("Other Devices CA");
        register(&server, "acme", &acme, JitMode::Active).await;
        register(&server, "other", &other, JitMode::Active).await;

        // A device enrolled through Bulwark's CA cannot be taken over...
        let takeover = acme.device(&server, "d1");
        refused(
            &server,
            &takeover,
            ReasonCode::NotAuthorized,
            "enrolled through Bulwark's CA",
        )
        .await;
        session(&server, &d1).await;
        // ...nor one bound to another manufacturer CA.
        session(&server, &acme.device(&server, "acme-7")).await;
        refused(
            &server,
            &other.device(&server, "acme-7"),
            ReasonCode::NotAuthorized,
            "bound to manufacturer CA acme",
        )
        .await;
        assert_eq!(
            audit_count(&server, "manufacturer_certificate_refused").await,
            2
        );

        // The CN must be a device id.
        refused(
            &server,
            &acme.device(&server, "has space"),
            ReasonCode::NotAuthorized,
            "not a valid device id",
        )
        .await;
        let no_cn = acme.device_with(&server, "ignored", |p| {
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.distinguished_name
                .push(DnType::OrganizationName, "Acme Devices");
        });
        refused(&server, &no_cn, ReasonCode::NotAuthorized, "no subject CN").await;

        // Expired: a CONNACK with the reason, not a bare TLS alert.
        let expired = acme.device_with(&server, "acme-old", |p| {
            p.not_before = OffsetDateTime::now_utc() - time::Duration::days(2);
            p.not_after = OffsetDateTime::now_utc() - time::Duration::hours(1);
        });
        refused(&server, &expired, ReasonCode::NotAuthorized, "expired").await;
        let e = server
            .client()
            .get_device(&device_id("acme-old"))
            .await
            .unwrap_err();
        assert_eq!(
            problem(e).0,
            404,
            "an expired certificate registers nothing"
        );
    });
}

#[test]
fn removing_the_ca_cuts_live_sessions_within_a_second_and_refuses_new_ones() {
    let server = Server::start(CONFIG);
    rt().block_on(async {
        let d1 = enroll(&server, "sensors", "d1").await;
        let acme = Mfr::new("Acme Devices CA");
        register(&server, "acme", &acme, JitMode::Active).await;
        let creds = acme.device(&server, "acme-8");
        let mut live = session(&server, &creds).await;
        let mut ours = session(&server, &d1).await;

        let started = Instant::now();
        let removed = server
            .client()
            .delete_manufacturer_ca(&ca_name("acme"))
            .await
            .unwrap();
        assert_eq!(removed.devices, vec![device_id("acme-8")]);
        let (closed, disconnect) = live.closed(Duration::from_secs(1)).await;
        let took = started.elapsed();
        assert!(
            closed,
            "session still open {took:?} after the CA was removed"
        );
        assert_eq!(disconnect.unwrap().reason_code, ReasonCode::NotAuthorized);
        eprintln!("CA removal to disconnect: {took:?}");
        // Bulwark's own devices are untouched.
        assert_eq!(
            publish(&mut ours, "devices/d1/telemetry", 1).await,
            ReasonCode::Success
        );
        // New handshakes with its certificates fail, known device or not.
        assert_eq!(attempt(&server, &creds).await, Outcome::TlsRefused);
        assert_eq!(
            attempt(&server, &acme.device(&server, "acme-new")).await,
            Outcome::TlsRefused
        );
        let d = server
            .client()
            .get_device(&device_id("acme-8"))
            .await
            .unwrap();
        assert_eq!(
            d.device.manufacturer_ca,
            Some(ca_name("acme")),
            "the device stays"
        );
        // The same certificate under the same name brings it back.
        register(&server, "acme", &acme, JitMode::Active).await;
        session(&server, &creds).await;
    });
}

#[test]
fn decommissioning_a_jit_device_revokes_its_manufacturer_certificates() {
    let server = Server::start(CONFIG);
    rt().block_on(async {
        group(&server, "sensors").await;
        let acme = Mfr::new("Acme Devices CA");
        register(&server, "acme", &acme, JitMode::Active).await;
        let creds = acme.device(&server, "acme-9");
        let mut live = session(&server, &creds).await;
        let report = cli_text(&server, &["device", "decommission", "acme-9"]);
        assert!(report.contains("1 manufacturer certificate"), "{report}");
        let (closed, _) = live.closed(Duration::from_secs(1)).await;
        assert!(closed, "the session outlived the decommissioning");
        refused(&server, &creds, ReasonCode::NotAuthorized, "revoked").await;
        // A fresh certificate from the same CA does not revive it.
        refused(
            &server,
            &acme.device(&server, "acme-9"),
            ReasonCode::NotAuthorized,
            "decommissioned",
        )
        .await;
        let d = server
            .client()
            .get_device(&device_id("acme-9"))
            .await
            .unwrap();
        assert_eq!(d.device.state, DeviceState::Decommissioned);
        assert_eq!(d.manufacturer_certificates.len(), 1);
        assert!(d.manufacturer_certificates[0].revoked_at.is_some());
        assert_eq!(
            audit_count(&server, "manufacturer_certificate_revoked").await,
            1
        );
    });
}
