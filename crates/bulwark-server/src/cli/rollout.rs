//! `bulwark ota rollout ...`: staged rollouts of a release over the fleet.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use bulwark_api_types::{CreateRollout, Rollout, RolloutDevice};
use bulwark_types::{GroupId, RolloutPhase, RolloutPlan, RolloutSelector};

use super::duration::parse_ttl;
use super::output::{emit, emit_json, key_values, opt, opt_ts, ts, Table};
use super::Ctx;

#[derive(clap::Subcommand, Debug)]
pub(super) enum RolloutSub {
    /// Start a rollout of a published release.
    ///
    /// Active devices matching --group, every --label and --hardware are
    /// split into --phases (counts or percentages of the selection; the
    /// last phase takes the rest). A phase starts when the previous one
    /// finished with at least --min-healthy percent healthy and stayed so
    /// for --soak. Failures (install failures, rollbacks, time-outs) at or
    /// above --max-failures percent of finished devices, once at least
    /// --min-failures failed, pause (or with --on-abort cancel) the rollout.
    /// An updated device that then fails MQTT authentication, or has no
    /// session for --silence, counts as failed too.
    ///
    /// Example: bulwark ota rollout create --release gw-fw-2.1.0 --group gateways --phases 1,10%,100% --soak 10m
    Create {
        #[arg(long, value_name = "NAME")]
        release: String,
        #[arg(long, value_name = "GROUP")]
        group: Option<GroupId>,
        /// A label the devices must carry (repeat for several).
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        #[arg(long, value_name = "MODEL")]
        hardware: Option<String>,
        /// Phase sizes, comma-separated: counts or percentages.
        #[arg(long, value_name = "SIZES", default_value = "1,10%,100%")]
        phases: String,
        /// How long a successful phase is watched before the next starts.
        #[arg(long, value_name = "DURATION", default_value = "0", value_parser = parse_soak)]
        soak: u64,
        #[arg(long, value_name = "PERCENT", default_value_t = 90)]
        min_healthy: u8,
        #[arg(long, value_name = "PERCENT", default_value_t = 20)]
        max_failures: u8,
        #[arg(long, value_name = "COUNT", default_value_t = 1)]
        min_failures: u32,
        /// What an abort does: pause or cancel.
        #[arg(long, value_name = "ACTION", default_value = "pause")]
        on_abort: String,
        /// A notified device must finish within this.
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_ttl)]
        device_timeout: u64,
        /// Times a failed device is told again.
        #[arg(long, value_name = "COUNT", default_value_t = 0)]
        retries: u32,
        /// An updated device with no MQTT session for this long counts as a
        /// failure (as does one that fails authentication after updating).
        #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_ttl)]
        silence: u64,
    },
    /// List rollouts.
    #[command(alias = "ls")]
    List,
    /// A rollout's progress; --watch redraws it until it ends.
    ///
    /// Example: bulwark ota rollout status r-1a2b3c4d5e6f --watch
    Status {
        id: String,
        #[arg(long)]
        watch: bool,
        /// Also list every device with its step.
        #[arg(long)]
        devices: bool,
    },
    /// Stop notifying devices (devices already updating finish).
    Pause {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Go on after a pause.
    Resume { id: String },
    /// Stop for good.
    Cancel {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

/// A soak time: `0` (none) or a duration like `10m`.
fn parse_soak(s: &str) -> Result<u64, String> {
    match s.trim() {
        "0" | "0s" => Ok(0),
        other => parse_ttl(other),
    }
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("label {s:?}: expected KEY=VALUE"))
}

pub(super) async fn run(cmd: RolloutSub, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match cmd {
        RolloutSub::Create {
            release,
            group,
            labels,
            hardware,
            phases,
            soak,
            min_healthy,
            max_failures,
            min_failures,
            on_abort,
            device_timeout,
            retries,
            silence,
        } => {
            let phases = phases
                .split(',')
                .map(|p| RolloutPhase {
                    size: p.trim().to_owned(),
                    min_soak_secs: soak,
                })
                .collect();
            let r = ctx
                .client
                .create_rollout(&CreateRollout {
                    release,
                    selector: RolloutSelector {
                        group,
                        labels: labels.into_iter().collect(),
                        hardware_model: hardware,
                    },
                    plan: RolloutPlan {
                        phases,
                        min_healthy_percent: min_healthy,
                        max_failure_percent: max_failures,
                        min_failures,
                        abort_action: on_abort,
                        device_timeout_secs: device_timeout,
                        max_retries: retries,
                        silence_secs: silence,
                    },
                })
                .await?;
            if ctx.json() {
                emit_json(&r)?;
            } else {
                let total: u32 = r.phases.iter().map(|p| p.total).sum();
                emit(&format!(
                    "rollout {} of {} started over {total} devices in {} phases",
                    r.id,
                    r.release,
                    r.phases.len()
                ))?;
            }
        }
        RolloutSub::List => {
            let all = ctx.client.list_rollouts().await?;
            if ctx.json() {
                emit_json(&all)?;
            } else {
                let mut t = Table::new(&[
                    "ID", "RELEASE", "STATUS", "PHASE", "HEALTHY", "FAILED", "CREATED",
                ]);
                for r in &all {
                    let (healthy, failed, total) = totals(r);
                    t.row(vec![
                        r.id.clone(),
                        r.release.clone(),
                        r.status.clone(),
                        phase_text(r),
                        format!("{healthy}/{total}"),
                        failed.to_string(),
                        ts(r.created_at),
                    ]);
                }
                emit(&t.render())?;
            }
        }
        RolloutSub::Status { id, watch, devices } => {
            if watch && !ctx.json() {
                return watch_rollout(ctx, &id).await;
            }
            let r = ctx.client.get_rollout(&id).await?;
            let list = if devices {
                Some(ctx.client.rollout_devices(&id).await?)
            } else {
                None
            };
            if ctx.json() {
                emit_json(&serde_json::json!({ "rollout": r, "devices": list }))?;
            } else {
                emit(&status_text(&r))?;
                if let Some(list) = list {
                    emit(&device_table(&list))?;
                }
            }
        }
        RolloutSub::Pause { id, reason } => control(ctx, &id, "pause", reason).await?,
        RolloutSub::Resume { id } => control(ctx, &id, "resume", None).await?,
        RolloutSub::Cancel { id, reason } => control(ctx, &id, "cancel", reason).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn control(ctx: &Ctx, id: &str, command: &str, reason: Option<String>) -> anyhow::Result<()> {
    let r = ctx.client.control_rollout(id, command, reason).await?;
    if ctx.json() {
        emit_json(&r)?;
    } else {
        emit(&format!("rollout {} is {}", r.id, r.status))?;
    }
    Ok(())
}

fn totals(r: &Rollout) -> (u32, u32, u32) {
    r.phases.iter().fold((0, 0, 0), |(h, f, t), p| {
        (h + p.healthy, f + p.failed + p.flagged, t + p.total)
    })
}

fn phase_text(r: &Rollout) -> String {
    match r.phase {
        Some(p) => format!("{}/{}", p + 1, r.phases.len()),
        None => format!("-/{}", r.phases.len()),
    }
}

fn bar(done: u32, total: u32, width: usize) -> String {
    let filled = if total == 0 {
        width
    } else {
        (done as usize * width) / total as usize
    };
    format!(
        "[{}{}]",
        "#".repeat(filled),
        "-".repeat(width - filled.min(width))
    )
}

fn status_text(r: &Rollout) -> String {
    let (healthy, failed, total) = totals(r);
    let done = healthy + failed;
    let mut text = key_values(&[
        ("rollout", r.id.clone()),
        ("release", r.release.clone()),
        ("status", r.status.clone()),
        ("reason", opt(r.reason.as_ref())),
        ("phase", phase_text(r)),
        ("soak since", opt_ts(r.soak_started_at)),
        (
            "progress",
            format!(
                "{} {done}/{total} finished, {healthy} healthy, {failed} failed",
                bar(done, total, 30)
            ),
        ),
    ]);
    let mut t = Table::new(&[
        "PHASE", "DEVICES", "QUEUED", "UPDATING", "HEALTHY", "FAILED", "FLAGGED",
    ]);
    for (i, p) in r.phases.iter().enumerate() {
        t.row(vec![
            (i + 1).to_string(),
            p.total.to_string(),
            p.queued.to_string(),
            p.in_progress.to_string(),
            p.healthy.to_string(),
            p.failed.to_string(),
            p.flagged.to_string(),
        ]);
    }
    text.push('\n');
    text.push_str(&t.render());
    text
}

fn device_table(list: &[RolloutDevice]) -> String {
    let mut t = Table::new(&["DEVICE", "PHASE", "STEP", "ATTEMPTS", "UPDATED", "REASON"]);
    for d in list {
        t.row(vec![
            d.device.to_string(),
            (d.phase + 1).to_string(),
            d.step.clone(),
            d.attempts.to_string(),
            ts(d.updated_at),
            opt(d.reason.as_ref()),
        ]);
    }
    t.render()
}

/// Redraws the status every second until the rollout completes, is
/// cancelled or paused.
async fn watch_rollout(ctx: &Ctx, id: &str) -> anyhow::Result<ExitCode> {
    let mut lines = 0usize;
    loop {
        let r = ctx.client.get_rollout(id).await?;
        let text = status_text(&r);
        let mut out = std::io::stdout().lock();
        if lines > 0 {
            // Move up and clear what the last frame drew.
            write!(out, "\x1b[{lines}A\x1b[J")?;
        }
        writeln!(out, "{text}")?;
        out.flush()?;
        lines = text.lines().count();
        match r.status.as_str() {
            "completed" => return Ok(ExitCode::SUCCESS),
            "cancelled" | "paused" => return Ok(ExitCode::from(1)),
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_bars() {
        assert_eq!(parse_label("site=a"), Ok(("site".into(), "a".into())));
        assert!(parse_label("=a").is_err());
        assert!(parse_label("nolabel").is_err());
        assert_eq!(bar(1, 4, 8), "[##------]");
        assert_eq!(bar(0, 0, 4), "[####]");
        assert_eq!(bar(4, 4, 4), "[####]");
        assert_eq!(parse_soak("0"), Ok(0));
        assert_eq!(parse_soak("10m"), Ok(600));
        assert!(parse_soak("-1").is_err());
    }
}
