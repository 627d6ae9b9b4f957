//! Unit tests that need no server: configuration, URL building, serials.

use std::collections::HashMap;

use bulwark_types::{CertSerial, DeviceId, DeviceState, GroupId};

use crate::api::{certificate_url, devices_url};
use crate::policy::attachment_url;
use crate::{Client, ClientError};

fn ca_pem() -> String {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    ck.cert.pem()
}

fn client(base: &str) -> Client {
    Client::new(base, Some("secret-token".to_owned()), ca_pem().as_bytes()).unwrap()
}

fn check_url(base: &str, segments: &[&str], query: &[(&str, Option<String>)], expect: &str) {
    assert_eq!(client(base).url(segments, query).as_str(), expect);
}

#[test]
fn urls() {
    check_url(
        "https://127.0.0.1:8443",
        &["v1", "health"],
        &[],
        "https://127.0.0.1:8443/v1/health",
    );
    check_url(
        "https://bulwark.example/",
        &["v1", "devices", "sensor-01"],
        &[],
        "https://bulwark.example/v1/devices/sensor-01",
    );
    // A base with a path prefix keeps it.
    check_url(
        "https://proxy.example/bulwark/",
        &["v1", "groups"],
        &[],
        "https://proxy.example/bulwark/v1/groups",
    );
    // Segments are escaped, never interpreted.
    check_url(
        "https://h",
        &["v1", "tokens", "a/../b?c", "revoke"],
        &[],
        "https://h/v1/tokens/a%2F..%2Fb%3Fc/revoke",
    );
    check_url(
        "https://h",
        &["v1", "audit"],
        &[("after", Some("41".into())), ("limit", None)],
        "https://h/v1/audit?after=41",
    );
}

#[test]
fn device_list_query() {
    let c = client("https://h:8443");
    let group = GroupId::new("floor-3").unwrap();
    assert_eq!(
        devices_url(&c, Some(&group), Some(DeviceState::Quarantined)).as_str(),
        "https://h:8443/v1/devices?group=floor-3&state=quarantined"
    );
    assert_eq!(
        devices_url(&c, None, None).as_str(),
        "https://h:8443/v1/devices"
    );
}

#[test]
fn serials_are_normalised() {
    let c = client("https://h");
    for input in ["serial=0a:1b:2c", "0A1B2C", "a1b2c", " 0a1B2c "] {
        let serial = CertSerial::parse_hex(input).unwrap();
        assert_eq!(
            certificate_url(&c, &serial, Some("revoke")).as_str(),
            "https://h/v1/certificates/0A1B2C/revoke",
            "{input}"
        );
    }
    let serial = CertSerial::parse_hex("00:FF").unwrap();
    assert_eq!(
        certificate_url(&c, &serial, None).as_str(),
        "https://h/v1/certificates/FF"
    );
}

#[test]
fn device_ids_go_into_the_path_verbatim() {
    let c = client("https://h");
    let id = DeviceId::new("gw.floor-3_a").unwrap();
    assert_eq!(
        c.url(&["v1", "devices", id.as_str(), "quarantine"], &[])
            .as_str(),
        "https://h/v1/devices/gw.floor-3_a/quarantine"
    );
}

#[test]
fn bad_base_urls_are_config_errors() {
    let pem = ca_pem();
    for (base, needle) in [
        ("127.0.0.1:8443", "https"),
        ("http://127.0.0.1:8443", "https"),
        ("not a url", "not a URL"),
        ("https://h/?x=1", "query"),
    ] {
        match Client::new(base, None, pem.as_bytes()) {
            Err(ClientError::Config(msg)) => assert!(msg.contains(needle), "{base}: {msg}"),
            other => panic!("{base}: unexpected {other:?}"),
        }
    }
}

#[test]
fn ca_bundle_must_hold_a_certificate() {
    match Client::new("https://h", None, b"") {
        Err(ClientError::Config(msg)) => assert!(msg.contains("no PEM certificate"), "{msg}"),
        other => panic!("unexpected {other:?}"),
    }
}

fn from_vars(vars: &[(&str, &str)]) -> Result<Client, ClientError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Client::from_lookup(|name| map.get(name).cloned())
}

#[test]
fn env_errors_name_the_variable() {
    let err = from_vars(&[]).unwrap_err();
    assert!(err.to_string().contains("BULWARK_ADDR"), "{err}");

    let err = from_vars(&[("BULWARK_ADDR", "https://h")]).unwrap_err();
    assert!(err.to_string().contains("BULWARK_CACERT"), "{err}");

    let err = from_vars(&[("BULWARK_ADDR", "  "), ("BULWARK_CACERT", "/x")]).unwrap_err();
    assert!(err.to_string().contains("BULWARK_ADDR"), "{err}");

    let err = from_vars(&[
        ("BULWARK_ADDR", "https://h"),
        ("BULWARK_CACERT", "/nonexistent/bulwark-ca.pem"),
    ])
    .unwrap_err();
    assert!(
        matches!(&err, ClientError::ReadFile { path, .. } if path.ends_with("bulwark-ca.pem")),
        "{err:?}"
    );
}

#[test]
fn env_reads_the_bundle_and_token() {
    let dir = std::env::temp_dir().join(format!("bulwark-client-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ca.pem");
    std::fs::write(&path, ca_pem()).unwrap();
    let c = from_vars(&[
        ("BULWARK_ADDR", "https://127.0.0.1:8443"),
        ("BULWARK_CACERT", path.to_str().unwrap()),
        ("BULWARK_TOKEN", "tok"),
    ])
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(c.base_url().as_str(), "https://127.0.0.1:8443/");
    assert_eq!(c.token.as_deref(), Some("tok"));
    assert!(!c.has_identity());
}

#[test]
fn debug_redacts_the_token() {
    let shown = format!("{:?}", client("https://h"));
    assert!(!shown.contains("secret-token"), "{shown}");
    assert!(shown.contains("redacted"), "{shown}");
}

#[test]
fn identity_is_checked_and_required() {
    let c = client("https://h");
    let err = c.require_identity("est_simplereenroll").unwrap_err();
    assert!(err.to_string().contains("with_identity"), "{err}");

    assert!(matches!(
        c.clone().with_identity(b"nope", b"nope"),
        Err(ClientError::Tls { .. })
    ));

    let ck = rcgen::generate_simple_self_signed(vec!["sensor-01".to_owned()]).unwrap();
    let c = c
        .with_identity(
            ck.cert.pem().as_bytes(),
            ck.signing_key.serialize_pem().as_bytes(),
        )
        .unwrap();
    assert!(c.has_identity());
    assert!(c.require_identity("est_simplereenroll").is_ok());
}

#[tokio::test]
async fn mtls_calls_without_identity_fail_before_the_network() {
    let c = client("https://127.0.0.1:1");
    let err = c.est_simplereenroll(b"csr").await.unwrap_err();
    assert!(matches!(err, ClientError::Config(_)), "{err:?}");
    let err = c.est_simpleenroll_mtls(b"csr").await.unwrap_err();
    assert!(matches!(err, ClientError::Config(_)), "{err:?}");
}

#[test]
fn policy_attachment_urls() {
    use bulwark_types::{PolicyName, PolicyTarget, ServiceName};
    let c = client("https://h");
    let p = PolicyName::new("sensors-rw").unwrap();
    let g = PolicyTarget::Group(GroupId::new("floor-3").unwrap());
    let s = PolicyTarget::Service(ServiceName::new("billing").unwrap());
    assert_eq!(
        attachment_url(&c, &p, &g).as_str(),
        "https://h/v1/groups/floor-3/policies/sensors-rw"
    );
    assert_eq!(
        attachment_url(&c, &p, &s).as_str(),
        "https://h/v1/services/billing/policies/sensors-rw"
    );
}
