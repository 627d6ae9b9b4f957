//! `bulwark cert ...`: look up and revoke issued certificates by serial.
//!
//! Serials are taken as `openssl x509 -noout -serial` prints them: hex, any
//! case, colons allowed, an optional `serial=` prefix.

use std::process::ExitCode;

use bulwark_api_types::RevokeCertificate;
use bulwark_types::{CertSerial, Certificate, RevocationReason};
use time::OffsetDateTime;

use super::output::{emit, emit_json, key_values, opt_ts, ts, Table};
use super::Ctx;

/// Issued certificates: show and revoke.
#[derive(clap::Args, Debug)]
pub struct CertCmd {
    #[command(subcommand)]
    cmd: CertSub,
}

#[derive(clap::Subcommand, Debug)]
enum CertSub {
    /// Show a certificate: subject, validity, fingerprint, revocation.
    ///
    /// Example: bulwark cert show "$(openssl x509 -in device.pem -noout -serial)"
    Show {
        /// The serial in hex (case and colons ignored, "serial=" prefix allowed).
        serial: CertSerial,
    },
    /// Revoke a certificate; the next CRL lists it and the gateway refuses it.
    ///
    /// Reasons: unspecified, key-compromise, ca-compromise, affiliation-changed,
    /// superseded, cessation-of-operation, certificate-hold, privilege-withdrawn.
    ///
    /// Example: bulwark cert revoke 5F:3A:9C:0D --reason key-compromise
    Revoke {
        /// The serial in hex (case and colons ignored, "serial=" prefix allowed).
        serial: CertSerial,
        /// The RFC 5280 revocation reason.
        #[arg(long, value_name = "REASON", value_parser = parse_reason)]
        reason: Option<RevocationReason>,
    },
}

pub(super) async fn run(cmd: CertCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match cmd.cmd {
        CertSub::Show { serial } => {
            let cert = ctx.client.get_certificate(&serial).await?;
            if ctx.json() {
                emit_json(&cert)?;
            } else {
                emit(&certificate_kv(&cert, OffsetDateTime::now_utc()))?;
            }
        }
        CertSub::Revoke { serial, reason } => {
            let cert = ctx
                .client
                .revoke_certificate(&serial, &RevokeCertificate { reason })
                .await?;
            if ctx.json() {
                emit_json(&cert)?;
            } else {
                let reason = cert
                    .revocation_reason
                    .unwrap_or_default()
                    .as_str()
                    .replace('_', "-");
                emit(&format!(
                    "revoked certificate {} of {} {} (reason {reason})",
                    cert.serial,
                    cert.kind.as_str(),
                    cert.subject
                ))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per certificate: serial, kind, subject, validity, status.
pub(super) fn certificate_table(certs: &[Certificate]) -> String {
    let now = OffsetDateTime::now_utc();
    let mut t = Table::new(&["SERIAL", "KIND", "SUBJECT", "NOT AFTER", "STATUS"]);
    for c in certs {
        t.row(vec![
            c.serial.to_string(),
            c.kind.as_str().to_owned(),
            c.subject.clone(),
            ts(c.not_after),
            status(c, now),
        ]);
    }
    t.render()
}

fn certificate_kv(c: &Certificate, now: OffsetDateTime) -> String {
    key_values(&[
        ("serial", c.serial.to_string()),
        ("kind", c.kind.as_str().to_owned()),
        ("subject", c.subject.clone()),
        ("sha256", c.fingerprint_sha256.clone()),
        ("not before", ts(c.not_before)),
        ("not after", ts(c.not_after)),
        ("status", status(c, now)),
        ("revoked", opt_ts(c.revoked_at)),
        (
            "reason",
            c.revocation_reason
                .map(|r| r.as_str().replace('_', "-"))
                .unwrap_or_else(|| "-".to_owned()),
        ),
    ])
}

/// `revoked (reason)`, `expired`, `not yet valid` or `valid`, as of `now`.
fn status(c: &Certificate, now: OffsetDateTime) -> String {
    if c.revoked_at.is_some() {
        match c.revocation_reason {
            Some(r) => format!("revoked ({})", r.as_str().replace('_', "-")),
            None => "revoked".to_owned(),
        }
    } else if now > c.not_after {
        "expired".to_owned()
    } else if now < c.not_before {
        "not yet valid".to_owned()
    } else {
        "valid".to_owned()
    }
}

/// A revocation reason, kebab or snake case, any letter case.
fn parse_reason(s: &str) -> Result<RevocationReason, String> {
    let norm = s.trim().to_ascii_lowercase().replace('-', "_");
    RevocationReason::parse(&norm).ok_or_else(|| {
        format!(
            "unknown reason {s:?}; one of unspecified, key-compromise, ca-compromise, \
             affiliation-changed, superseded, cessation-of-operation, certificate-hold, \
             privilege-withdrawn"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_types::CertKind;
    use time::macros::datetime;

    #[test]
    fn reasons() {
        assert_eq!(
            parse_reason("key-compromise"),
            Ok(RevocationReason::KeyCompromise)
        );
        assert_eq!(
            parse_reason("Key_Compromise"),
            Ok(RevocationReason::KeyCompromise)
        );
        assert_eq!(parse_reason("superseded"), Ok(RevocationReason::Superseded));
        assert!(parse_reason("stolen")
            .unwrap_err()
            .contains("key-compromise"));
    }

    #[test]
    fn statuses() {
        let mut c = Certificate {
            serial: CertSerial::parse_hex("0A").unwrap(),
            kind: CertKind::Device,
            subject: "sensor-01".into(),
            fingerprint_sha256: "ab".into(),
            not_before: datetime!(2025-01-01 0:00 UTC),
            not_after: datetime!(2026-01-01 0:00 UTC),
            revoked_at: None,
            revocation_reason: None,
        };
        assert_eq!(status(&c, datetime!(2025-06-01 0:00 UTC)), "valid");
        assert_eq!(status(&c, datetime!(2024-06-01 0:00 UTC)), "not yet valid");
        assert_eq!(status(&c, datetime!(2027-06-01 0:00 UTC)), "expired");
        c.revoked_at = Some(datetime!(2025-02-01 0:00 UTC));
        c.revocation_reason = Some(RevocationReason::KeyCompromise);
        assert_eq!(
            status(&c, datetime!(2025-06-01 0:00 UTC)),
            "revoked (key-compromise)"
        );
    }

    #[test]
    fn serials_accept_openssl_output() {
        for s in ["serial=5F3A9C", "5f:3a:9c", "5F3A9C"] {
            let serial: CertSerial = s.parse().unwrap();
            assert_eq!(serial.to_hex(), "5F3A9C");
        }
    }
}
