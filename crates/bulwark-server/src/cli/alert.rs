//! `bulwark alert ...`: the alerts detection raised, their lifecycle and
//! response actions.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use bulwark_api_types::{ActionKind, Alert, AlertQuery, Escalate};

use super::duration::parse_ttl;
use super::output::{emit, emit_json, key_values, opt, opt_ts, ts, Table};
use super::Ctx;

/// Alerts raised by detection and the response actions on them.
#[derive(clap::Args, Debug)]
pub struct AlertCmd {
    #[command(subcommand)]
    cmd: AlertSub,
}

#[derive(clap::Subcommand, Debug)]
enum AlertSub {
    /// List alerts, oldest first; --watch keeps printing new ones.
    ///
    /// Roles that may read alerts: admin, operator, auditor.
    ///
    /// Example: bulwark alert ls --state open --watch
    #[command(alias = "ls")]
    List {
        /// Only alerts about this device.
        #[arg(long, value_name = "ID")]
        device: Option<String>,
        /// open, acknowledged or resolved.
        #[arg(long, value_name = "STATE")]
        state: Option<String>,
        /// At most this many (at most 1000).
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: u32,
        /// Keep running and print alerts as they are raised (Ctrl-C stops).
        #[arg(long)]
        watch: bool,
    },
    /// One alert: its evidence and response actions.
    Show { id: i64 },
    /// The evidence bundle captured when the alert opened (JSON), whose
    /// SHA-256 the audit log holds.
    Bundle { id: i64 },
    /// Acknowledge an open alert.
    #[command(alias = "ack")]
    Acknowledge {
        id: i64,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resolve an alert; its actions still scheduled or awaiting approval
    /// are cancelled.
    Resolve {
        id: i64,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Let an action awaiting approval (an irreversible step) run now.
    ///
    /// Example: bulwark alert approve 17 42
    Approve { id: i64, action: i64 },
    /// Refuse an action awaiting approval, or cancel a scheduled one.
    Reject { id: i64, action: i64 },
    /// Undo an applied throttle or restriction now.
    Release { id: i64, action: i64 },
    /// Carry out an action on the alert's device now: throttle, restrict
    /// (quarantine), disconnect, revoke or decommission; or block the
    /// source address of an alert about one.
    ///
    /// Example: bulwark alert escalate 17 restrict --release-after 1h
    Escalate {
        id: i64,
        #[arg(value_parser = parse_action)]
        action: ActionKind,
        /// Undo a throttle, restriction or block after this long.
        #[arg(long, value_name = "DURATION", value_parser = parse_ttl)]
        release_after: Option<u64>,
    },
}

fn parse_action(s: &str) -> Result<ActionKind, String> {
    ActionKind::parse(s).ok_or_else(|| {
        format!(
            "unknown action {s:?}: notify, throttle, restrict, disconnect, revoke or decommission"
        )
    })
}

pub async fn run(cmd: AlertCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match cmd.cmd {
        AlertSub::List {
            device,
            state,
            limit,
            watch,
        } => {
            let q = AlertQuery {
                after: None,
                device,
                state,
                limit: Some(limit),
            };
            if watch {
                return watch_alerts(ctx, q).await;
            }
            let alerts = ctx.client.list_alerts(&q).await?;
            if ctx.json() {
                emit_json(&alerts)?;
            } else {
                emit(&table(&alerts, true))?;
            }
        }
        AlertSub::Show { id } => {
            let a = ctx.client.get_alert(id).await?;
            if ctx.json() {
                emit_json(&a)?;
            } else {
                emit(&detail(&a))?;
            }
        }
        AlertSub::Bundle { id } => {
            let body = ctx.client.alert_bundle(id).await?;
            let mut out = std::io::stdout().lock();
            out.write_all(&body)?;
            out.write_all(b"\n")?;
        }
        AlertSub::Acknowledge { id, reason } => show(
            ctx,
            ctx.client
                .set_alert_state(id, "acknowledge", reason)
                .await?,
        )?,
        AlertSub::Resolve { id, reason } => show(
            ctx,
            ctx.client.set_alert_state(id, "resolve", reason).await?,
        )?,
        AlertSub::Approve { id, action } => {
            show(ctx, ctx.client.alert_action(id, action, "approve").await?)?
        }
        AlertSub::Reject { id, action } => {
            show(ctx, ctx.client.alert_action(id, action, "reject").await?)?
        }
        AlertSub::Release { id, action } => {
            show(ctx, ctx.client.alert_action(id, action, "release").await?)?
        }
        AlertSub::Escalate {
            id,
            action,
            release_after,
        } => {
            let req = Escalate {
                action,
                release_after_secs: release_after,
            };
            show(ctx, ctx.client.escalate_alert(id, &req).await?)?
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show(ctx: &Ctx, a: Alert) -> anyhow::Result<()> {
    if ctx.json() {
        emit_json(&a)
    } else {
        Ok(emit(&detail(&a))?)
    }
}

/// Prints the existing alerts, then new ones as they come (one JSON object
/// a line with `--output json`), polling every second.
async fn watch_alerts(ctx: &Ctx, mut q: AlertQuery) -> anyhow::Result<ExitCode> {
    let mut header = true;
    loop {
        let alerts = ctx.client.list_alerts(&q).await?;
        if let Some(last) = alerts.last() {
            q.after = Some(last.id);
        }
        if ctx.json() {
            for a in &alerts {
                println!("{}", serde_json::to_string(a)?);
            }
        } else if !alerts.is_empty() || header {
            emit(&table(&alerts, header))?;
            header = false;
        }
        std::io::stdout().flush()?;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn actions_text(a: &Alert) -> String {
    a.actions
        .iter()
        .map(|x| format!("{} {}", x.action.as_str(), x.state.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn table(alerts: &[Alert], header: bool) -> String {
    let mut t = Table::new(&[
        "ID",
        "SEVERITY",
        "STATE",
        "ENTITY",
        "DETECTOR",
        "COUNT",
        "FIRST SEEN",
        "ACTIONS",
        "TITLE",
    ]);
    for a in alerts {
        t.row(vec![
            a.id.to_string(),
            a.severity.to_string(),
            a.state.as_str().to_owned(),
            a.entity.clone(),
            a.detector.clone(),
            a.count.to_string(),
            ts(a.first_seen),
            actions_text(a),
            a.title.clone(),
        ]);
    }
    let text = t.render();
    if header {
        text
    } else {
        // Without its header line (the watch already printed it).
        text.split_once('\n')
            .map_or(String::new(), |(_, rest)| rest.to_owned())
    }
}

fn detail(a: &Alert) -> String {
    let mut text = key_values(&[
        ("alert", a.id.to_string()),
        ("title", a.title.clone()),
        ("severity", a.severity.to_string()),
        ("state", a.state.as_str().to_owned()),
        ("entity", a.entity.clone()),
        ("device", opt(a.device.as_ref())),
        ("detector", a.detector.clone()),
        ("count", a.count.to_string()),
        ("first seen", ts(a.first_seen)),
        ("last seen", ts(a.last_seen)),
        ("bundle sha256", opt(a.bundle_sha256.as_ref())),
        (
            "evidence",
            serde_json::to_string(&a.evidence).unwrap_or_default(),
        ),
    ]);
    if !a.actions.is_empty() {
        let mut t = Table::new(&[
            "ACTION ID",
            "STEP",
            "ACTION",
            "STATE",
            "PLAYBOOK",
            "DUE",
            "APPLIED",
            "RELEASE",
            "REASON",
        ]);
        for x in &a.actions {
            t.row(vec![
                x.id.to_string(),
                (x.step + 1).to_string(),
                x.action.as_str().to_owned(),
                x.state.as_str().to_owned(),
                opt(x.playbook.as_ref()),
                opt_ts(x.due_at),
                opt_ts(x.applied_at),
                opt_ts(x.release_at),
                opt(x.reason.as_ref()),
            ]);
        }
        text.push('\n');
        text.push_str(&t.render());
    }
    text
}
