//! Syslog messages (RFC 5424) and octet-counting framing (RFC 6587 §3.4.1,
//! RFC 5425 §4.3): `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`.
//!
//! - PRI is `facility * 8 + severity`; our severities map to syslog's as
//!   critical → 2 (crit), high → 3 (err), medium → 4 (warning), low → 5
//!   (notice), info → 6 (informational).
//! - TIMESTAMP is the notice's time in UTC with microseconds
//!   (`2026-01-02T03:04:05.123456Z`; RFC 5424 allows at most six digits).
//! - HOSTNAME, APP-NAME, PROCID and MSGID are PRINTUSASCII (33–126) of at
//!   most 255, 48, 128 and 32 characters; the configured ones are checked
//!   when the sink is configured ([`check_header_field`]), and MSGID is the
//!   notice kind (at most 24 characters).
//! - SD is one element, `[<sd_id> kind=… alert=… device=… entity=…
//!   detector=… severity=… state=… count=…]` (+ `action=`, `action_state=`
//!   for actions); `"`, `\` and `]` in values are escaped with `\`
//!   (RFC 5424 §6.3.3), everything else is kept as UTF-8.
//! - MSG is the UTF-8 BOM and the notice's summary, cut at a character
//!   boundary so the message fits `max_len` bytes.
//! - CEF travels as the MSG of the same header with no structured data
//!   (`-`) and no BOM, which is what CEF-over-syslog collectors expect.

use std::fmt::Write as _;

use bulwark_types::Severity;
use serde::Deserialize;
use time::{OffsetDateTime, UtcOffset};

use crate::notice::Notice;

/// The UTF-8 byte order mark that starts an RFC 5424 MSG-UTF8.
pub const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Longest HOSTNAME, APP-NAME, PROCID, MSGID and SD-NAME (RFC 5424 §6).
pub const MAX_HOSTNAME: usize = 255;
pub const MAX_APP_NAME: usize = 48;
pub const MAX_PROCID: usize = 128;
pub const MAX_MSGID: usize = 32;
pub const MAX_SD_NAME: usize = 32;

/// A syslog facility (RFC 5424 §6.2.1), configured by name.
///
/// The default is `auth` (4, "security/authorization messages"): alerts are
/// security events, and `auth` is the facility collectors route to the
/// security pipeline. `authpriv` (10), `audit` (13) or `local0`–`local7`
/// (16–23) are common alternatives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Facility {
    Kern,
    User,
    Mail,
    Daemon,
    #[default]
    Auth,
    Syslog,
    Lpr,
    News,
    Uucp,
    Cron,
    Authpriv,
    Ftp,
    Ntp,
    Audit,
    Alert,
    Clock,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

impl Facility {
    /// The facility's number (0–23).
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// The syslog severity of one of ours (RFC 5424 §6.2.1, table 2).
pub fn severity_code(s: Severity) -> u8 {
    match s {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Medium => 4,
        Severity::Low => 5,
        Severity::Info => 6,
    }
}

/// PRI: `facility * 8 + severity` (0–191).
pub fn pri(facility: Facility, s: Severity) -> u8 {
    facility.code() * 8 + severity_code(s)
}

/// Checks a header field: 1 to `max` PRINTUSASCII characters (33–126).
pub fn check_header_field(value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if value.len() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if !value.bytes().all(|b| (33..=126).contains(&b)) {
        return Err("may contain only printable ASCII without spaces".to_owned());
    }
    Ok(())
}

/// Checks an SD-ID: an SD-NAME (1–32 PRINTUSASCII except `=`, `]`, `"`)
/// that contains `@` followed by a private enterprise number (RFC 5424
/// §6.3.2: names without `@` are reserved for IANA).
pub fn check_sd_id(value: &str) -> Result<(), String> {
    check_header_field(value, MAX_SD_NAME)?;
    if value.bytes().any(|b| matches!(b, b'=' | b']' | b'"')) {
        return Err("may not contain '=', ']' or '\"'".to_owned());
    }
    match value.split_once('@') {
        Some((name, pen))
            if !name.is_empty()
                && !pen.is_empty()
                && pen.bytes().all(|b| b.is_ascii_digit() || b == b'.') =>
        {
            Ok(())
        }
        _ => Err("must be <name>@<private enterprise number>".to_owned()),
    }
}

/// The fixed part of every message a sink sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub facility: Facility,
    pub hostname: String,
    pub app_name: String,
    pub procid: String,
    pub sd_id: String,
}

/// RFC 5424 TIMESTAMP: UTC, microseconds, `Z`. Years outside 0000–9999
/// (which RFC 3339 cannot express) give the NILVALUE `-`.
pub fn timestamp(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    if !(0..=9999).contains(&t.year()) {
        return "-".to_owned();
    }
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// Escapes a PARAM-VALUE: `"`, `\` and `]` get a `\` before them.
pub fn escape_param_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A header field that came from somewhere we do not control, made valid:
/// non-PRINTUSASCII bytes become `_`, cut to `max`, empty becomes `-`.
fn header_value(value: &str, max: usize) -> String {
    let v: String = value
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(max)
        .collect();
    if v.is_empty() {
        "-".to_owned()
    } else {
        v
    }
}

fn head(header: &Header, notice: &Notice) -> String {
    format!(
        "<{}>1 {} {} {} {} {} ",
        pri(header.facility, notice.severity()),
        timestamp(notice.time()),
        header_value(&header.hostname, MAX_HOSTNAME),
        header_value(&header.app_name, MAX_APP_NAME),
        header_value(&header.procid, MAX_PROCID),
        header_value(notice.kind(), MAX_MSGID),
    )
}

/// The structured-data element of a notice.
pub fn structured_data(sd_id: &str, notice: &Notice) -> String {
    let alert = notice.alert();
    let mut sd = format!("[{sd_id}");
    let mut param = |name: &str, value: &str| {
        // Writing to a String cannot fail.
        let _ = write!(sd, " {name}=\"{}\"", escape_param_value(value));
    };
    param("kind", notice.kind());
    param("alert", &alert.id.to_string());
    if let Some(device) = &alert.device {
        param("device", device.as_str());
    }
    param("entity", &alert.entity);
    param("detector", &alert.detector);
    param("severity", alert.severity.as_str());
    param("state", alert.state.as_str());
    param("count", &alert.count.to_string());
    if let Some(action) = notice.action() {
        param("action", action.action.as_str());
        param("action_state", action.state.as_str());
    }
    sd.push(']');
    sd
}

/// Appends `msg` to `out`, cut at a character boundary so `out` stays
/// within `max_len` bytes.
fn push_cut(out: &mut Vec<u8>, msg: &str, max_len: usize) {
    let room = max_len.saturating_sub(out.len());
    let mut end = msg.len().min(room);
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    out.extend_from_slice(&msg.as_bytes()[..end]);
}

/// An RFC 5424 message for `notice`, at most `max_len` bytes unless the
/// header and structured data alone are longer (then MSG is empty).
pub fn rfc5424(header: &Header, notice: &Notice, max_len: usize) -> Vec<u8> {
    let mut out = head(header, notice).into_bytes();
    out.extend_from_slice(structured_data(&header.sd_id, notice).as_bytes());
    out.push(b' ');
    out.extend_from_slice(BOM);
    push_cut(&mut out, &notice.summary(), max_len);
    out
}

/// An RFC 5424 message carrying a CEF record as its MSG (no SD, no BOM).
pub fn rfc5424_cef(header: &Header, notice: &Notice, cef: &str, max_len: usize) -> Vec<u8> {
    let mut out = head(header, notice).into_bytes();
    out.extend_from_slice(b"- ");
    push_cut(&mut out, cef, max_len);
    out
}

/// Octet-counting framing: `MSG-LEN SP SYSLOG-MSG`.
pub fn octet_frame(msg: &[u8]) -> Vec<u8> {
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg);
    out
}

#[cfg(test)]
mod tests;
