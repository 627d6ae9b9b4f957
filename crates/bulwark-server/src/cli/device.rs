//! `bulwark device ...`: the inventory and the lifecycle moves.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use bulwark_api_types::{CreateDevice, DeviceMetrics, LifecycleAction, MetricsQuery};
use bulwark_client::LifecycleVerb;
use bulwark_types::{
    Certificate, Device, DeviceId, DeviceState, GroupId, Label, ManufacturerCaName,
    ManufacturerCertificate,
};

use super::duration::parse_ttl;
use super::output::{emit, emit_json, key_values, opt, opt_ts, ts, Table};
use super::{cert, Ctx};

/// Devices: list, show, register and move through the lifecycle.
#[derive(clap::Args, Debug)]
pub struct DeviceCmd {
    #[command(subcommand)]
    cmd: DeviceSub,
}

#[derive(clap::Subcommand, Debug)]
enum DeviceSub {
    /// List devices, optionally only those of one group or in one state.
    ///
    /// Example: bulwark device ls --group floor-3 --state quarantined
    ///
    /// Example: bulwark device ls --output json
    Ls {
        /// Only devices of this group.
        #[arg(long, value_name = "GROUP")]
        group: Option<GroupId>,
        /// Only devices in this state: pending, active, quarantined or decommissioned.
        #[arg(long, value_name = "STATE", value_parser = parse_state)]
        state: Option<DeviceState>,
    },
    /// Show a device, its labels, its certificates (newest first) and its
    /// MQTT counters since the server started.
    ///
    /// Example: bulwark device show sensor-01
    Show {
        /// The device id.
        id: DeviceId,
    },
    /// Pre-register a device (state pending) so it can enroll.
    ///
    /// With --manufacturer-ca the device is bound to that registered
    /// manufacturer CA instead: it authenticates with certificates that CA
    /// issued (CN = the device id) and becomes active with the first one,
    /// even when the CA does not register devices just in time.
    ///
    /// Example: bulwark device create sensor-01 --group floor-3 --label site=plant-a --label rack=7
    ///
    /// Example: bulwark device create acme-0042 --group sensors --manufacturer-ca acme
    Create {
        /// The device id: letters, digits, '.', '_' and '-'; it becomes the certificate CN.
        id: DeviceId,
        /// The group the device joins.
        #[arg(long, value_name = "GROUP")]
        group: GroupId,
        /// A label, KEY=VALUE; repeat for more.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// The hardware model, free text.
        #[arg(long, value_name = "MODEL")]
        hardware_model: Option<String>,
        /// Bind the device to this registered manufacturer CA.
        #[arg(long, value_name = "NAME")]
        manufacturer_ca: Option<ManufacturerCaName>,
    },
    /// Activate a pending device that a manufacturer CA's certificate
    /// registered just in time (`bulwark manufacturer-ca add --jit pending`).
    ///
    /// Other pending devices become active by enrolling.
    ///
    /// Example: bulwark device activate acme-0042 --reason "serial checked against the delivery note"
    Activate(Lifecycle),
    /// Contain a device: it may then reach only remediation topics.
    ///
    /// Example: bulwark device quarantine sensor-01 --reason "beaconing to unknown host"
    Quarantine(Lifecycle),
    /// Return a quarantined device to active.
    ///
    /// Example: bulwark device release sensor-01 --reason "reflashed"
    Release(Lifecycle),
    /// Retire a device for good and revoke every certificate it holds.
    ///
    /// This does not ask for confirmation. It prints the certificates it revoked.
    ///
    /// Example: bulwark device decommission sensor-01 --reason "end of life"
    Decommission(Lifecycle),
    /// Show a device's detection metrics, newest first: one row per summary
    /// period (`[response] summary_interval_secs`, default 60 s) in which it
    /// was active, with its main counters; `--output json` prints every
    /// metric.
    ///
    /// Roles that may read them: admin, operator, auditor (as for alerts).
    ///
    /// Example: bulwark device metrics sensor-01 --since 1h
    ///
    /// Example: bulwark device metrics sensor-01 --since 2025-01-31T12:00:00Z --limit 10
    Metrics {
        /// The device id.
        id: DeviceId,
        /// Only periods that started within this long (30m, 6h, 2d) or at
        /// or after this RFC 3339 time.
        #[arg(long, value_name = "DURATION|TIME", value_parser = parse_since)]
        since: Option<Since>,
        /// At most this many periods (1 to 1000).
        #[arg(long, value_name = "N", default_value_t = 100,
            value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
}

/// `--since`: a time, or how long ago.
#[derive(Debug, Clone)]
enum Since {
    At(time::OffsetDateTime),
    Ago(u64),
}

impl Since {
    fn resolve(&self, now: time::OffsetDateTime) -> time::OffsetDateTime {
        match self {
            Since::At(t) => *t,
            Since::Ago(secs) => {
                let ago = time::Duration::seconds(i64::try_from(*secs).unwrap_or(i64::MAX));
                now.checked_sub(ago)
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
            }
        }
    }
}

fn parse_since(s: &str) -> Result<Since, String> {
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    if let Ok(t) = time::OffsetDateTime::parse(s.trim(), rfc3339) {
        return Ok(Since::At(t));
    }
    parse_ttl(s)
        .map(Since::Ago)
        .map_err(|e| format!("{e}; or give an RFC 3339 time such as 2025-01-31T12:00:00Z"))
}

#[derive(clap::Args, Debug)]
struct Lifecycle {
    /// The device id.
    id: DeviceId,
    /// Why, recorded in the audit log.
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

pub(super) async fn run(cmd: DeviceCmd, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    match cmd.cmd {
        DeviceSub::Ls { group, state } => {
            let devices = ctx.client.list_devices(group.as_ref(), state).await?;
            if ctx.json() {
                emit_json(&devices)?;
            } else {
                emit(&device_table(&devices))?;
            }
        }
        DeviceSub::Show { id } => {
            let detail = ctx.client.get_device(&id).await?;
            if ctx.json() {
                emit_json(&detail)?;
            } else {
                let mut text = device_kv(&detail.device);
                text.push('\n');
                text.push_str(&certificates_block(&detail.certificates));
                if !detail.manufacturer_certificates.is_empty() {
                    text.push('\n');
                    text.push_str(&manufacturer_block(&detail.manufacturer_certificates));
                }
                if let Some(c) = &detail.mqtt {
                    text.push('\n');
                    text.push_str(&super::mqtt::counters_block(c));
                }
                emit(&text)?;
            }
        }
        DeviceSub::Create {
            id,
            group,
            labels,
            hardware_model,
            manufacturer_ca,
        } => {
            let req = CreateDevice {
                id,
                group,
                labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                hardware_model,
                manufacturer_ca,
            };
            let device = ctx.client.create_device(&req).await?;
            if ctx.json() {
                emit_json(&device)?;
            } else {
                emit(&device_kv(&device))?;
            }
        }
        DeviceSub::Activate(l) => move_device(ctx, LifecycleVerb::Activate, l).await?,
        DeviceSub::Quarantine(l) => move_device(ctx, LifecycleVerb::Quarantine, l).await?,
        DeviceSub::Release(l) => move_device(ctx, LifecycleVerb::Release, l).await?,
        DeviceSub::Decommission(l) => decommission(ctx, l).await?,
        DeviceSub::Metrics { id, since, limit } => {
            let since = since.map(|s| {
                let t = s.resolve(time::OffsetDateTime::now_utc());
                t.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_else(|_| t.to_string())
            });
            let q = MetricsQuery {
                since,
                limit: Some(limit),
            };
            let m = ctx.client.device_metrics(&id, &q).await?;
            if ctx.json() {
                emit_json(&m)?;
            } else {
                emit(&metrics_table(&m))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn move_device(ctx: &Ctx, verb: LifecycleVerb, l: Lifecycle) -> anyhow::Result<()> {
    let action = LifecycleAction { reason: l.reason };
    let device = ctx.client.device_lifecycle(&l.id, verb, &action).await?;
    if ctx.json() {
        emit_json(&device)?;
    } else {
        emit(&format!("device {} is now {}", device.id, device.state))?;
    }
    Ok(())
}

/// Decommissions and reports which certificates went from valid to revoked,
/// by comparing the device's certificates before and after.
async fn decommission(ctx: &Ctx, l: Lifecycle) -> anyhow::Result<()> {
    let before = ctx.client.get_device(&l.id).await?;
    let action = LifecycleAction { reason: l.reason };
    let device = ctx.client.decommission_device(&l.id, &action).await?;
    let was_valid: BTreeSet<_> = before
        .certificates
        .iter()
        .filter(|c| c.revoked_at.is_none())
        .map(|c| c.serial.clone())
        .collect();
    let was_valid_mfr: BTreeSet<_> = before
        .manufacturer_certificates
        .iter()
        .filter(|c| c.revoked_at.is_none())
        .map(|c| c.fingerprint_sha256.clone())
        .collect();
    let (revoked, revoked_mfr): (Vec<Certificate>, Vec<ManufacturerCertificate>) = match ctx
        .client
        .get_device(&l.id)
        .await
    {
        Ok(after) => (
            after
                .certificates
                .into_iter()
                .filter(|c| c.revoked_at.is_some() && was_valid.contains(&c.serial))
                .collect(),
            after
                .manufacturer_certificates
                .into_iter()
                .filter(|c| c.revoked_at.is_some() && was_valid_mfr.contains(&c.fingerprint_sha256))
                .collect(),
        ),
        Err(err) => {
            // The decommission happened; only the report is degraded.
            eprintln!(
                    "warning: cannot re-read {} after decommissioning ({err}); listing the certificates that were valid before",
                    l.id
                );
            (
                before
                    .certificates
                    .into_iter()
                    .filter(|c| c.revoked_at.is_none())
                    .collect(),
                before
                    .manufacturer_certificates
                    .into_iter()
                    .filter(|c| c.revoked_at.is_none())
                    .collect(),
            )
        }
    };
    if ctx.json() {
        emit_json(&serde_json::json!({
            "device": device,
            "revoked_certificates": revoked,
            "revoked_manufacturer_certificates": revoked_mfr,
        }))?;
        return Ok(());
    }
    let mut text = format!(
        "decommissioned {} (was {})\n",
        device.id, before.device.state
    );
    if revoked.is_empty() && revoked_mfr.is_empty() {
        text.push_str("no certificate needed revoking\n");
    }
    if !revoked.is_empty() {
        let n = revoked.len();
        text.push_str(&format!(
            "revoked {n} certificate{}:\n",
            if n == 1 { "" } else { "s" }
        ));
        text.push_str(&cert::certificate_table(&revoked));
    }
    if !revoked_mfr.is_empty() {
        let n = revoked_mfr.len();
        text.push_str(&format!(
            "revoked {n} manufacturer certificate{}:\n",
            if n == 1 { "" } else { "s" }
        ));
        text.push_str(&manufacturer_table(&revoked_mfr));
    }
    emit(&text)?;
    Ok(())
}

fn device_table(devices: &[Device]) -> String {
    let mut t = Table::new(&["ID", "GROUP", "STATE", "HARDWARE", "FIRMWARE", "LAST SEEN"]);
    for d in devices {
        t.row(vec![
            d.id.to_string(),
            d.group.to_string(),
            d.state.to_string(),
            opt(d.hardware_model.as_deref()),
            opt(d.firmware_version.as_deref()),
            opt_ts(d.last_seen_at),
        ]);
    }
    t.render()
}

/// The columns of `device metrics`: the counters an operator looks at first.
const METRIC_COLUMNS: [&str; 6] = [
    "msgs_in",
    "bytes_in",
    "msgs_out",
    "connects",
    "auth_failures",
    "denials",
];

fn metrics_table(m: &DeviceMetrics) -> String {
    if m.summaries.is_empty() {
        return format!("no metric summaries of {} in that time\n", m.device);
    }
    let mut t = Table::new(&[
        "START",
        "END",
        "WINDOWS",
        "MSGS IN",
        "BYTES IN",
        "MSGS OUT",
        "CONNECTS",
        "AUTH FAILURES",
        "DENIALS",
    ]);
    for p in &m.summaries {
        let mut row = vec![ts(p.start), ts(p.end), p.active_windows.to_string()];
        row.extend(
            METRIC_COLUMNS
                .iter()
                .map(|k| number(p.metrics.get(*k).copied().unwrap_or(0.0))),
        );
        t.row(row);
    }
    t.render()
}

/// Whole numbers without a fraction, others to one decimal.
fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn device_kv(d: &Device) -> String {
    let labels = if d.labels.is_empty() {
        "-".to_owned()
    } else {
        d.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    key_values(&[
        ("id", d.id.to_string()),
        ("group", d.group.to_string()),
        ("state", d.state.to_string()),
        ("labels", labels),
        ("hardware model", opt(d.hardware_model.as_deref())),
        ("firmware", opt(d.firmware_version.as_deref())),
        ("created", ts(d.created_at)),
        ("enrolled", opt_ts(d.enrolled_at)),
        ("last seen", opt_ts(d.last_seen_at)),
        ("manufacturer CA", opt(d.manufacturer_ca.as_ref())),
    ])
}

fn manufacturer_block(certs: &[ManufacturerCertificate]) -> String {
    format!("manufacturer certificates:\n{}", manufacturer_table(certs))
}

fn manufacturer_table(certs: &[ManufacturerCertificate]) -> String {
    let mut t = Table::new(&["SHA256", "CA", "SERIAL", "NOT AFTER", "BOUND", "REVOKED"]);
    for c in certs {
        t.row(vec![
            c.fingerprint_sha256.chars().take(16).collect(),
            c.manufacturer_ca.to_string(),
            c.serial.clone(),
            ts(c.not_after),
            ts(c.bound_at),
            opt_ts(c.revoked_at),
        ]);
    }
    t.render()
}

fn certificates_block(certs: &[Certificate]) -> String {
    if certs.is_empty() {
        "certificates: none\n".to_owned()
    } else {
        format!("certificates:\n{}", cert::certificate_table(certs))
    }
}

fn parse_state(s: &str) -> Result<DeviceState, String> {
    DeviceState::parse(&s.trim().to_ascii_lowercase()).ok_or_else(|| {
        format!("unknown state {s:?}; one of pending, active, quarantined, decommissioned")
    })
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("label {s:?} must be KEY=VALUE"))?;
    let k = Label::new(k).map_err(|e| format!("label key {k:?}: {e}"))?;
    let v = Label::new(v).map_err(|e| format!("label value {v:?}: {e}"))?;
    Ok((k.to_string(), v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states() {
        assert_eq!(parse_state("Quarantined"), Ok(DeviceState::Quarantined));
        assert!(parse_state("broken")
            .unwrap_err()
            .contains("pending, active"));
    }

    #[test]
    fn since_is_a_time_or_how_long_ago() {
        let now = time::macros::datetime!(2025-01-31 12:00 UTC);
        let t = parse_since("2025-01-30T00:00:00Z").map(|s| s.resolve(now));
        assert_eq!(t, Ok(time::macros::datetime!(2025-01-30 0:00 UTC)));
        let t = parse_since("90m").map(|s| s.resolve(now));
        assert_eq!(t, Ok(time::macros::datetime!(2025-01-31 10:30 UTC)));
        let e = parse_since("yesterday").unwrap_err();
        assert!(e.contains("RFC 3339"), "{e}");
    }

    #[test]
    fn metrics_table_shows_the_main_counters() {
        let at = time::macros::datetime!(2025-01-31 12:00 UTC);
        let m = DeviceMetrics {
            device: DeviceId::new("m-1").unwrap(),
            summaries: vec![bulwark_api_types::MetricPeriod {
                start: at,
                end: at + time::Duration::minutes(1),
                active_windows: 12,
                metrics: BTreeMap::from([
                    ("msgs_in".to_owned(), 30.0),
                    ("bytes_in".to_owned(), 150.0),
                    ("payload_mean".to_owned(), 5.0),
                ]),
            }],
        };
        let text = metrics_table(&m);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("START"), "{text}");
        let cells: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(
            cells,
            [
                "2025-01-31T12:00:00Z",
                "2025-01-31T12:01:00Z",
                "12",
                "30",
                "150",
                "0",
                "0",
                "0",
                "0"
            ]
        );
        let empty = DeviceMetrics {
            device: DeviceId::new("m-1").unwrap(),
            summaries: Vec::new(),
        };
        assert!(metrics_table(&empty).contains("no metric summaries"));
        assert_eq!(number(1234.56), "1234.6");
    }

    #[test]
    fn labels() {
        assert_eq!(
            parse_label("site=plant-a"),
            Ok(("site".to_owned(), "plant-a".to_owned()))
        );
        assert!(parse_label("site").is_err());
        assert!(parse_label("=x").is_err());
        assert!(parse_label("a=b=c").is_err());
        assert!(parse_label("a/b=c").is_err());
    }
}
