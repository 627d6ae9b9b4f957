//! Tests of the configuration: the shipped example parses, and each
//! validation names the offending key.

use super::*;

const MINIMAL: &str = r#"
state_dir = "/var/lib/bulwark-agent"
hardware_model = "m1"
[server]
api_url = "https://127.0.0.1:8443"
mqtt_addr = "127.0.0.1:8883"
mqtt_server_name = "localhost"
ca_bundle = "/etc/ca.pem"
[firmware]
source = "static"
version = "1.0.0"
[health_check]
command = ["/bin/true"]
[slots]
backend = "directory"
root = "/var/lib/bulwark-agent/slots"
"#;

fn refused(extra_or_replaced: &str, expect: &str) {
    let err = Config::parse(extra_or_replaced).unwrap_err();
    let text = format!(
        "{err}: {:?}",
        std::error::Error::source(&err).map(|s| s.to_string())
    );
    assert!(text.contains(expect), "expected {expect:?} in {text}");
}

#[test]
fn example_config_parses() {
    let text = include_str!("../agent.example.toml");
    let c = Config::parse(text).unwrap();
    assert_eq!(c.hardware_model, "acme-gw-2");
    assert!(matches!(c.keys, KeyStorage::File));
    assert!(matches!(c.slots, SlotBackend::Directory { .. }));
    assert!(c.enrollment.token.is_some());
}

#[test]
fn minimal_config_has_secure_defaults() {
    let c = Config::parse(MINIMAL).unwrap();
    assert!(matches!(c.keys, KeyStorage::File));
    assert_eq!(c.report_interval_secs, 300);
    assert_eq!(c.health_check.timeout_secs, 120);
    assert!(c.device_id.is_none());
}

#[test]
fn unknown_keys_are_refused() {
    refused(&format!("{MINIMAL}\nverbose = true\n"), "unknown field");
    refused(
        &MINIMAL.replace("[server]", "[server]\ninsecure = true"),
        "unknown field",
    );
}

#[test]
fn api_url_must_be_https() {
    refused(
        &MINIMAL.replace("https://127.0.0.1:8443", "http://127.0.0.1:8443"),
        "must start with https://",
    );
    refused(
        &MINIMAL.replace("https://127.0.0.1:8443", "https://"),
        "needs a host",
    );
}

#[test]
fn bad_addresses_and_paths_are_refused() {
    refused(&MINIMAL.replace("127.0.0.1:8883", "127.0.0.1"), "host:port");
    refused(
        &MINIMAL.replace("127.0.0.1:8883", "h:0"),
        "port in 1..=65535",
    );
    refused(
        &MINIMAL.replace("\"localhost\"", "\"not a name\""),
        "mqtt_server_name",
    );
    refused(
        &MINIMAL.replace("\"/etc/ca.pem\"", "\"ca.pem\""),
        "absolute path",
    );
    refused(
        &MINIMAL.replace(
            "hardware_model = \"m1\"",
            "hardware_model = \"m1\"\ndevice_id = \"a/b\"",
        ),
        "device_id",
    );
    refused(
        &MINIMAL.replace("report_interval_secs", "x").replace(
            "hardware_model = \"m1\"",
            "hardware_model = \"m1\"\nreport_interval_secs = 1",
        ),
        "report_interval_secs",
    );
}

#[test]
fn inline_secrets_need_an_explicit_mark() {
    let base = format!("{MINIMAL}\n[enrollment]\n");
    refused(
        &format!("{base}token = {{ inline = \"abc\" }}\n"),
        "allow_inline = true",
    );
    let c = Config::parse(&format!(
        "{base}token = {{ inline = \"abc\", allow_inline = true }}\n"
    ))
    .unwrap();
    assert_eq!(*c.enrollment.token.unwrap().read("token").unwrap(), "abc");
    refused(
        &format!("{base}token = {{ file = \"/t\", env = \"T\" }}\n"),
        "exactly one of",
    );
}

#[test]
fn secret_debug_is_redacted() {
    let s = SecretSource {
        inline: Some("hunter2".to_owned()),
        allow_inline: true,
        ..SecretSource::default()
    };
    assert!(!format!("{s:?}").contains("hunter2"));
}

#[test]
fn enrollment_credentials_are_exclusive() {
    let base = format!("{MINIMAL}\n[enrollment]\n");
    refused(&format!("{base}claim_cert = \"/c.pem\"\n"), "go together");
    refused(
        &format!(
            "{base}claim_cert = \"/c.pem\"\nclaim_key = \"/k.pem\"\ntoken = {{ env = \"T\" }}\n"
        ),
        "not both",
    );
}

#[test]
fn command_placeholders_must_be_whole_arguments() {
    let hooks = |install: &str| {
        MINIMAL.replace(
            "backend = \"directory\"\nroot = \"/var/lib/bulwark-agent/slots\"",
            &format!(
                "backend = \"command\"\nstatus = [\"/s\"]\ninstall = {install}\nmark_trial = [\"/m\", \"{{slot}}\"]\nconfirm = [\"/c\"]\nrollback = [\"/r\", \"{{slot}}\"]"
            ),
        )
    };
    let ok = Config::parse(&hooks(r#"["/usr/bin/rauc", "install", "{artifact}"]"#)).unwrap();
    let SlotBackend::Command(h) = ok.slots else {
        panic!("not command slots");
    };
    assert_eq!(h.slot_names, ["a".to_owned(), "b".to_owned()]);
    refused(
        &hooks(r#"["/bin/sh", "-c", "rauc install {artifact}"]"#),
        "whole argument",
    );
    refused(
        &hooks(r#"["/usr/bin/rauc", "install"]"#),
        "must pass {artifact}",
    );
    refused(
        &MINIMAL.replace("[\"/bin/true\"]", "[\"/bin/check\", \"{slot}\"]"),
        "no meaning here",
    );
    refused(&MINIMAL.replace("[\"/bin/true\"]", "[]"), "empty command");
}

#[test]
fn firmware_source_is_tagged() {
    let c = Config::parse(&MINIMAL.replace(
        "source = \"static\"\nversion = \"1.0.0\"",
        "source = \"file\"\npath = \"/etc/fw\"",
    ))
    .unwrap();
    assert!(matches!(c.firmware, FirmwareSource::File { .. }));
    refused(
        &MINIMAL.replace("source = \"static\"", "source = \"registry\""),
        "unknown variant",
    );
}

#[cfg(not(feature = "pkcs11"))]
#[test]
fn pkcs11_needs_the_feature() {
    refused(
        &format!("{MINIMAL}\n[keys]\nstorage = \"pkcs11\"\nmodule = \"/m.so\"\ntoken_label = \"t\"\npin = {{ env = \"P\" }}\n"),
        "pkcs11` feature",
    );
}
