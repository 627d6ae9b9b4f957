//! `bulwark mqtt ...` and `bulwark metrics`: the operator's view of the
//! MQTT gateway (its sessions, kicking one) and the Prometheus metrics.

use std::process::ExitCode;

use bulwark_api_types::{MqttCounters, MqttSession};

use super::output::{emit, emit_json, key_values, opt, Table};
use super::Ctx;

/// The MQTT gateway's sessions: list them, disconnect one.
#[derive(clap::Args, Debug)]
pub struct MqttCmd {
    #[command(subcommand)]
    cmd: MqttSub,
}

#[derive(clap::Subcommand, Debug)]
enum MqttSub {
    /// List the gateway's sessions: connected ones, and persistent ones
    /// waiting for their client to come back (CONNECTED no).
    ///
    /// KIND is device, service or dev (the plaintext dev listener);
    /// QUEUED counts messages waiting for delivery, INFLIGHT QoS 1/2
    /// deliveries not yet acknowledged. Roles that may read the inventory
    /// (admin, operator, auditor).
    ///
    /// Example: bulwark mqtt sessions --output json
    #[command(alias = "ls")]
    Sessions,
    /// Disconnect a live session (admin, operator; audited).
    ///
    /// An MQTT 5 client is told why: DISCONNECT with reason 0x98
    /// (administrative action). Its persistent session, if any, is kept
    /// and it may connect again: to keep a device out, quarantine or
    /// decommission it. Exits 1 when no live session has that client id.
    ///
    /// Example: bulwark mqtt disconnect sensor-01
    Disconnect {
        /// The MQTT client identifier (a device's is its device id).
        client_id: String,
        /// device, service or dev: needed only when live sessions of
        /// several kinds share the client id.
        #[arg(long, value_name = "KIND", value_parser = ["device", "service", "dev"])]
        kind: Option<String>,
    },
}

pub(super) async fn run(cmd: MqttCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match cmd.cmd {
        MqttSub::Sessions => {
            let sessions = ctx.client.mqtt_sessions().await?;
            if ctx.json() {
                emit_json(&sessions)?;
            } else {
                emit(&session_table(&sessions))?;
            }
        }
        MqttSub::Disconnect { client_id, kind } => {
            ctx.client
                .disconnect_mqtt_session(&client_id, kind.as_deref())
                .await?;
            if ctx.json() {
                emit_json(&serde_json::json!({ "disconnected": client_id, "kind": kind }))?;
            } else {
                emit(&format!("disconnected MQTT session {client_id}"))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `bulwark metrics`: the Prometheus text, printed as the server sent it.
pub(super) async fn metrics(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let text = ctx.client.metrics().await?;
    emit(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn session_table(sessions: &[MqttSession]) -> String {
    let mut t = Table::new(&[
        "CLIENT ID",
        "KIND",
        "PRINCIPAL",
        "CONNECTED",
        "REMOTE",
        "QUEUED",
        "INFLIGHT",
        "SUBSCRIPTIONS",
    ]);
    for s in sessions {
        t.row(vec![
            s.client_id.clone(),
            s.kind.clone(),
            s.principal.clone(),
            if s.connected { "yes" } else { "no" }.to_owned(),
            opt(s.remote.as_deref()),
            s.queued.to_string(),
            s.inflight.to_string(),
            if s.subscriptions.is_empty() {
                "-".to_owned()
            } else {
                s.subscriptions.join(", ")
            },
        ]);
    }
    t.render()
}

/// The `mqtt:` block of `bulwark device show`.
pub(super) fn counters_block(c: &MqttCounters) -> String {
    let block = key_values(&[
        (
            "messages in",
            format!("{} ({} bytes)", c.messages_in, c.bytes_in),
        ),
        (
            "messages out",
            format!("{} ({} bytes)", c.messages_out, c.bytes_out),
        ),
        ("connects", c.connects.to_string()),
        ("auth failures", c.auth_failures.to_string()),
        ("denials", c.denials.to_string()),
    ]);
    let indented: String = block.lines().map(|l| format!("  {l}\n")).collect();
    format!("mqtt (since the server started):\n{indented}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_table_shows_absent_values_as_dashes() {
        let s = MqttSession {
            client_id: "d1".into(),
            kind: "device".into(),
            principal: "d1".into(),
            connected: false,
            remote: None,
            subscriptions: Vec::new(),
            queued: 2,
            inflight: 0,
        };
        assert_eq!(
            session_table(&[s]),
            "CLIENT ID  KIND    PRINCIPAL  CONNECTED  REMOTE  QUEUED  INFLIGHT  SUBSCRIPTIONS\n\
             d1         device  d1         no         -       2       0         -\n"
        );
    }
}
