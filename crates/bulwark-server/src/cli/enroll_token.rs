//! `bulwark enroll-token ...`: one-time tokens a device trades for its
//! first certificate over EST.

use std::process::ExitCode;

use bulwark_api_types::CreateEnrollToken;
use bulwark_types::{DeviceId, EnrollToken, GroupId};
use time::OffsetDateTime;

use super::duration::parse_ttl;
use super::output::{emit, emit_json, opt, ts, Table};
use super::Ctx;

/// One-time enrollment tokens: create and list.
#[derive(clap::Args, Debug)]
pub struct EnrollTokenCmd {
    #[command(subcommand)]
    cmd: EnrollTokenSub,
}

#[derive(clap::Subcommand, Debug)]
enum EnrollTokenSub {
    /// Create a token; prints only the token, so it can be captured.
    ///
    /// The secret is shown this once. With --output json the whole record
    /// is printed, token included.
    ///
    /// Example: T=$(bulwark enroll-token create --group floor-3 --device-id sensor-01 --ttl 15m)
    Create {
        /// The group the enrolling device joins.
        #[arg(long, value_name = "GROUP")]
        group: GroupId,
        /// Bind the token to one device id; without it any id may enroll with it.
        #[arg(long, value_name = "ID")]
        device_id: Option<DeviceId>,
        /// Lifetime: 30s, 15m, 1h, 7d, ... (server default 1h, at most 30d).
        #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
        ttl: Option<u64>,
    },
    /// List tokens (never their secrets) and whether they were used.
    ///
    /// Example: bulwark enroll-token ls
    Ls,
}

pub(super) async fn run(cmd: EnrollTokenCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match cmd.cmd {
        EnrollTokenSub::Create {
            group,
            device_id,
            ttl,
        } => {
            let req = CreateEnrollToken {
                group,
                device_id,
                ttl_seconds: ttl,
            };
            let created = ctx.client.create_enroll_token(&req).await?;
            if ctx.json() {
                emit_json(&created)?;
            } else {
                emit(&created.token)?;
            }
        }
        EnrollTokenSub::Ls => {
            let tokens = ctx.client.list_enroll_tokens().await?;
            if ctx.json() {
                emit_json(&tokens)?;
            } else {
                emit(&token_table(&tokens, OffsetDateTime::now_utc()))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn token_table(tokens: &[EnrollToken], now: OffsetDateTime) -> String {
    let mut t = Table::new(&["ID", "GROUP", "DEVICE", "EXPIRES", "STATUS"]);
    for tok in tokens {
        let status = match (&tok.used_by, tok.used_at) {
            (Some(by), Some(at)) => format!("used by {by} at {}", ts(at)),
            (Some(by), None) => format!("used by {by}"),
            (None, Some(at)) => format!("used at {}", ts(at)),
            (None, None) if now > tok.expires_at => "expired".to_owned(),
            (None, None) => "unused".to_owned(),
        };
        t.row(vec![
            tok.id.clone(),
            tok.group.to_string(),
            opt(tok.device_id.as_ref()),
            ts(tok.expires_at),
            status,
        ]);
    }
    t.render()
}
