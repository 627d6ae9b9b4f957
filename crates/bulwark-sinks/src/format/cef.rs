//! ArcSight Common Event Format (CEF) rev. 25:
//! `CEF:0|Bulwark|Bulwark|<version>|<class id>|<name>|<severity>|<extension>`.
//!
//! - Header: `\` and `|` are escaped with `\`; CR and LF (which CEF does
//!   not allow there) become spaces.
//! - Extension values: `\` and `=` are escaped with `\`, CR and LF are
//!   written `\r` and `\n`; `|` needs no escape there.
//! - Device Event Class ID is the detector for an alert and
//!   `action:<kind>` for a response action; Name is the notice summary.
//! - Severity 0–10: info 1, low 3, medium 5, high 8, critical 10 (CEF's
//!   bands: 0–3 low, 4–6 medium, 7–8 high, 9–10 very high).
//! - Extension keys (CEF dictionary names): `rt` (the notice time), `start`
//!   and `end` (first and last seen; milliseconds since the epoch),
//!   `externalId` (alert id), `cnt` (folded findings), `dvchost` (this
//!   Bulwark), `cs1`–`cs5` with labels `device`, `entity`, `kind`, `state`,
//!   `bundleSha256`; for actions `act` (action), `outcome` (its state),
//!   `reason`, `cn1` (`actionId`).

use std::fmt::Write as _;

use bulwark_types::Severity;
use time::OffsetDateTime;

use crate::notice::Notice;

/// CEF severity of one of ours.
pub fn severity(s: Severity) -> u8 {
    match s {
        Severity::Info => 1,
        Severity::Low => 3,
        Severity::Medium => 5,
        Severity::High => 8,
        Severity::Critical => 10,
    }
}

/// Escapes a header field.
pub fn escape_header(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '|' => out.push_str("\\|"),
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Escapes an extension value.
pub fn escape_extension(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '=' => out.push_str("\\="),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn millis(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos() / 1_000_000
}

/// The CEF record of `notice`. `version` is Bulwark's version and
/// `dvchost` the name of this Bulwark host.
pub fn cef(notice: &Notice, version: &str, dvchost: &str) -> String {
    let alert = notice.alert();
    let class_id = match notice.action() {
        None => alert.detector.clone(),
        Some(a) => format!("action:{}", a.action.as_str()),
    };
    let mut out = format!(
        "CEF:0|Bulwark|Bulwark|{}|{}|{}|{}|",
        escape_header(version),
        escape_header(&class_id),
        escape_header(&notice.summary()),
        severity(alert.severity),
    );
    let mut first = true;
    let mut ext = |key: &str, value: &str| {
        if !first {
            out.push(' ');
        }
        first = false;
        // Writing to a String cannot fail.
        let _ = write!(out, "{key}={}", escape_extension(value));
    };
    ext("rt", &millis(notice.time()).to_string());
    ext("start", &millis(alert.first_seen).to_string());
    ext("end", &millis(alert.last_seen).to_string());
    ext("externalId", &alert.id.to_string());
    ext("cnt", &alert.count.to_string());
    ext("dvchost", dvchost);
    if let Some(device) = &alert.device {
        ext("cs1Label", "device");
        ext("cs1", device.as_str());
    }
    ext("cs2Label", "entity");
    ext("cs2", &alert.entity);
    ext("cs3Label", "kind");
    ext("cs3", notice.kind());
    ext("cs4Label", "state");
    ext("cs4", alert.state.as_str());
    if let Some(sha) = &alert.bundle_sha256 {
        ext("cs5Label", "bundleSha256");
        ext("cs5", sha);
    }
    if let Some(action) = notice.action() {
        ext("act", action.action.as_str());
        ext("outcome", action.state.as_str());
        if let Some(reason) = &action.reason {
            ext("reason", reason);
        }
        ext("cn1Label", "actionId");
        ext("cn1", &action.id.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{action_notice, alert};

    fn check(f: fn(&str) -> String, input: &str, expect: &str) {
        assert_eq!(f(input), expect, "input {input:?}");
    }

    #[test]
    fn header_escaping() {
        check(escape_header, "plain", "plain");
        check(escape_header, "a|b", "a\\|b");
        check(escape_header, "a\\b", "a\\\\b");
        check(escape_header, "a\\|b", "a\\\\\\|b");
        check(escape_header, "a=b", "a=b");
        check(escape_header, "line\r\nbreak", "line  break");
    }

    #[test]
    fn extension_escaping() {
        check(escape_extension, "plain text", "plain text");
        check(escape_extension, "a=b", "a\\=b");
        check(escape_extension, "a\\b", "a\\\\b");
        check(escape_extension, "a|b", "a|b");
        check(escape_extension, "l1\nl2\rl3", "l1\\nl2\\rl3");
        check(escape_extension, "x\\=y", "x\\\\\\=y");
    }

    #[test]
    fn alert_record() {
        let mut a = alert();
        a.title = "bad|title\\ with=eq".to_owned();
        a.detector = "rule:auth|fail".to_owned();
        a.entity = "source:10.0.0.1\nrt=0".to_owned();
        let n = Notice::Alert(a);
        let got = cef(&n, "0.1.0", "bulwark-1");
        assert_eq!(
            got,
            "CEF:0|Bulwark|Bulwark|0.1.0|rule:auth\\|fail|bad\\|title\\\\ with=eq|8|\
             rt=1767323045123 start=1767323045123 end=1767323045123 externalId=42 cnt=1 \
             dvchost=bulwark-1 cs1Label=device cs1=dev-1 cs2Label=entity \
             cs2=source:10.0.0.1\\nrt\\=0 cs3Label=kind cs3=alert.opened \
             cs4Label=state cs4=open"
        );
        // Exactly seven unescaped pipes separate the header from the extension.
        let unescaped = got
            .char_indices()
            .filter(|(i, c)| *c == '|' && !got[..*i].ends_with('\\'))
            .count();
        assert_eq!(unescaped, 7);
    }

    #[test]
    fn action_record() {
        let got = cef(&action_notice(), "0.1.0", "h");
        assert!(got.starts_with("CEF:0|Bulwark|Bulwark|0.1.0|action:revoke|revoke applied: "));
        assert!(got.contains("|8|rt="));
        assert!(got.ends_with(
            " act=revoke outcome=applied reason=approved by ops\\=alice cn1Label=actionId cn1=7"
        ));
    }

    #[test]
    fn severities() {
        for (s, n) in [
            (Severity::Info, 1),
            (Severity::Low, 3),
            (Severity::Medium, 5),
            (Severity::High, 8),
            (Severity::Critical, 10),
        ] {
            assert_eq!(severity(s), n);
        }
    }
}
