//! Unit tests of the RFC 5424 formatter and framing, against the RFC text.

use super::*;
use crate::testutil::{action_notice, alert};

fn header() -> Header {
    Header {
        facility: Facility::Auth,
        hostname: "bulwark-1".to_owned(),
        app_name: "bulwark".to_owned(),
        procid: "1234".to_owned(),
        sd_id: "bulwark@32473".to_owned(),
    }
}

#[test]
fn alert_message() {
    let msg = rfc5424(&header(), &Notice::Alert(alert()), 8192);
    let mut expect = b"<35>1 2026-01-02T03:04:05.123456Z bulwark-1 bulwark 1234 alert.opened \
[bulwark@32473 kind=\"alert.opened\" alert=\"42\" device=\"dev-1\" entity=\"device:dev-1\" \
detector=\"rule:auth_fail\" severity=\"high\" state=\"open\" count=\"1\"] "
        .to_vec();
    expect.extend_from_slice(BOM);
    expect.extend_from_slice(b"Repeated auth failures");
    assert_eq!(
        String::from_utf8_lossy(&msg),
        String::from_utf8_lossy(&expect)
    );
    assert_eq!(msg, expect);
}

#[test]
fn action_message() {
    let msg = rfc5424(&header(), &action_notice(), 8192);
    let s = String::from_utf8(msg).unwrap();
    assert!(
        s.starts_with("<35>1 2026-01-02T03:05:00.000000Z bulwark-1 bulwark 1234 action.applied [")
    );
    assert!(s.contains(" action=\"revoke\" action_state=\"applied\"] \u{feff}revoke applied: "));
}

#[test]
fn pri_values() {
    for (f, s, expect) in [
        (Facility::Kern, Severity::Critical, 2),
        (Facility::Auth, Severity::Critical, 34),
        (Facility::Auth, Severity::Info, 38),
        (Facility::Authpriv, Severity::Medium, 84),
        (Facility::Local0, Severity::Low, 133),
        (Facility::Local7, Severity::Info, 190),
    ] {
        assert_eq!(pri(f, s), expect, "{f:?} {s:?}");
    }
}

#[test]
fn param_value_escaping() {
    for (input, expect) in [
        ("plain", "plain"),
        ("a\"b", "a\\\"b"),
        ("a\\b", "a\\\\b"),
        ("a]b", "a\\]b"),
        ("\"]\\", "\\\"\\]\\\\"),
        ("ünïcödé [ok]", "ünïcödé [ok\\]"),
    ] {
        assert_eq!(escape_param_value(input), expect, "{input:?}");
    }
}

#[test]
fn hostile_values_stay_inside_their_param() {
    let mut a = alert();
    a.entity = "x\" injected=\"1\"] [evil@1 a=\"b".to_owned();
    a.detector = "rule:\\".to_owned();
    let sd = structured_data("bulwark@32473", &Notice::Alert(a));
    assert!(sd.contains(r#"entity="x\" injected=\"1\"\] [evil@1 a=\"b""#));
    assert!(sd.contains(r#"detector="rule:\\""#));
    // A reader that honours the escapes sees the element end at the last
    // byte, with the eight parameters we wrote and no others.
    let (end, names) = parse_sd(&sd);
    assert_eq!(end, sd.len() - 1);
    assert_eq!(
        names,
        ["kind", "alert", "device", "entity", "detector", "severity", "state", "count"]
    );
}

/// Minimal RFC 5424 SD-ELEMENT reader: the index of the closing `]` and the
/// parameter names.
fn parse_sd(sd: &str) -> (usize, Vec<String>) {
    let b = sd.as_bytes();
    assert_eq!(b[0], b'[');
    let mut i = 1;
    while b[i] != b' ' && b[i] != b']' {
        i += 1;
    }
    let mut names = Vec::new();
    loop {
        match b[i] {
            b']' => return (i, names),
            b' ' => {
                let start = i + 1;
                let eq = start + sd[start..].find('=').unwrap();
                names.push(sd[start..eq].to_owned());
                assert_eq!(b[eq + 1], b'"');
                i = eq + 2;
                loop {
                    match b[i] {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                i += 1;
            }
            other => panic!("unexpected {:?} at {i}", other as char),
        }
    }
}

#[test]
fn timestamps() {
    use time::macros::datetime;
    assert_eq!(
        timestamp(datetime!(2026-01-02 03:04:05.123456789 UTC)),
        "2026-01-02T03:04:05.123456Z"
    );
    assert_eq!(
        timestamp(datetime!(2026-01-02 05:04:05 +02:00)),
        "2026-01-02T03:04:05.000000Z"
    );
    assert_eq!(timestamp(datetime!(-0001-01-01 0:00 UTC)), "-");
}

#[test]
fn header_fields() {
    assert!(check_header_field("bulwark-1.example", MAX_HOSTNAME).is_ok());
    assert!(check_header_field("", MAX_HOSTNAME).is_err());
    assert!(check_header_field("has space", MAX_HOSTNAME).is_err());
    assert!(check_header_field("tab\t", MAX_HOSTNAME).is_err());
    assert!(check_header_field("ünï", MAX_HOSTNAME).is_err());
    assert!(check_header_field(&"a".repeat(49), MAX_APP_NAME).is_err());
    assert!(check_header_field(&"a".repeat(48), MAX_APP_NAME).is_ok());
    assert!(check_sd_id("bulwark@32473").is_ok());
    assert!(check_sd_id("bulwark").is_err());
    assert!(check_sd_id("bul=wark@1").is_err());
    assert!(check_sd_id("bulwark@x").is_err());
    // Values we do not control are made valid instead of refused.
    let mut h = header();
    h.hostname = "bad host\n".to_owned();
    let msg = rfc5424(&h, &Notice::Alert(alert()), 8192);
    assert!(msg.starts_with(b"<35>1 2026-01-02T03:04:05.123456Z bad_host_ bulwark "));
}

#[test]
fn long_messages_are_cut_at_a_char_boundary() {
    let mut a = alert();
    a.title = "é".repeat(5000);
    let msg = rfc5424(&header(), &Notice::Alert(a), 1001);
    assert!(msg.len() <= 1001 && msg.len() >= 999);
    assert!(std::str::from_utf8(&msg).is_ok());
}

#[test]
fn cef_message_has_no_sd_and_no_bom() {
    let n = Notice::Alert(alert());
    let msg = rfc5424_cef(&header(), &n, "CEF:0|x", 8192);
    assert_eq!(
        msg,
        b"<35>1 2026-01-02T03:04:05.123456Z bulwark-1 bulwark 1234 alert.opened - CEF:0|x"
    );
}

#[test]
fn framing() {
    assert_eq!(octet_frame(b"<34>1 - - - - - -"), b"17 <34>1 - - - - - -");
    assert_eq!(
        octet_frame("\u{feff}é".as_bytes()),
        b"5 \xEF\xBB\xBF\xC3\xA9"
    );
}
