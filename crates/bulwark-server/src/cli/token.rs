//! `bulwark token ...`: operator API tokens (admin only on the server).

use std::process::ExitCode;

use bulwark_api_types::CreateOperatorToken;
use bulwark_types::{OperatorToken, Role};
use time::OffsetDateTime;

use super::duration::parse_ttl;
use super::output::{emit, emit_json, key_values, opt_ts, ts, Table};
use super::Ctx;

/// Operator API tokens: create, list and revoke.
#[derive(clap::Args, Debug)]
pub struct TokenCmd {
    #[command(subcommand)]
    cmd: TokenSub,
}

#[derive(clap::Subcommand, Debug)]
enum TokenSub {
    /// Create a token; prints only the token, so it can be captured.
    ///
    /// Roles: admin (everything), operator (fleet operations), auditor
    /// (read-only, audit log), enroller (enrollment tokens only). The secret
    /// is shown this once. With --output json the whole record is printed,
    /// token included.
    ///
    /// Example: export BULWARK_TOKEN=$(bulwark token create --name ci --role operator --ttl 30d)
    Create {
        /// A name to recognise the token by.
        #[arg(long, value_name = "NAME")]
        name: String,
        /// admin, operator, auditor or enroller.
        #[arg(long, value_name = "ROLE", value_parser = parse_role)]
        role: Role,
        /// Lifetime: 1h, 30d, 90d, ... (server default 90d, at most 365d).
        #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
        ttl: Option<u64>,
    },
    /// List tokens (never their secrets).
    ///
    /// Example: bulwark token ls
    Ls,
    /// Revoke a token; requests made with it fail from now on.
    ///
    /// Example: bulwark token revoke 7f3c2a
    Revoke {
        /// The token id, as `bulwark token ls` shows it.
        id: String,
    },
}

pub(super) async fn run(cmd: TokenCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match cmd.cmd {
        TokenSub::Create { name, role, ttl } => {
            let req = CreateOperatorToken {
                name,
                role,
                ttl_seconds: ttl,
            };
            let created = ctx.client.create_token(&req).await?;
            if ctx.json() {
                emit_json(&created)?;
            } else {
                emit(&created.token)?;
            }
        }
        TokenSub::Ls => {
            let tokens = ctx.client.list_tokens().await?;
            if ctx.json() {
                emit_json(&tokens)?;
            } else {
                emit(&token_table(&tokens, OffsetDateTime::now_utc()))?;
            }
        }
        TokenSub::Revoke { id } => {
            let token = ctx.client.revoke_token(&id).await?;
            if ctx.json() {
                emit_json(&token)?;
            } else {
                emit(&key_values(&[
                    ("id", token.id.clone()),
                    ("name", token.name.clone()),
                    ("role", token.role.to_string()),
                    ("revoked", opt_ts(token.revoked_at)),
                ]))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn token_table(tokens: &[OperatorToken], now: OffsetDateTime) -> String {
    let mut t = Table::new(&["ID", "NAME", "ROLE", "CREATED", "EXPIRES", "STATUS"]);
    for tok in tokens {
        let status = match tok.revoked_at {
            Some(at) => format!("revoked at {}", ts(at)),
            None if now > tok.expires_at => "expired".to_owned(),
            None => "active".to_owned(),
        };
        t.row(vec![
            tok.id.clone(),
            tok.name.clone(),
            tok.role.to_string(),
            ts(tok.created_at),
            ts(tok.expires_at),
            status,
        ]);
    }
    t.render()
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(&s.trim().to_ascii_lowercase())
        .ok_or_else(|| format!("unknown role {s:?}; one of admin, operator, auditor, enroller"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles() {
        for role in Role::ALL {
            assert_eq!(parse_role(role.as_str()), Ok(role));
        }
        assert_eq!(parse_role("Admin"), Ok(Role::Admin));
        assert!(parse_role("root").unwrap_err().contains("auditor"));
    }
}
