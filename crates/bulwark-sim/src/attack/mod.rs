//! `scenario`: attack simulation. A fresh fleet is enrolled and runs a
//! benign background, then one device (or an outside source) attacks;
//! the server's alerts are polled until the attack is detected and
//! contained or the timeout passes, and the run prints how long each took
//! and which benign devices were alerted on.
//!
//! - [`device`]: a device's connection loop, benign and in-device attacks;
//! - [`outside`]: credential stuffing and the cloned certificate;
//! - [`alerts`]: the alerts API poller;
//! - [`summary`]: the verdict, computed without I/O;
//! - [`payload`]: what devices publish, and the daily cycle.

mod alerts;
mod device;
mod outside;
mod payload;
mod summary;

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bulwark_mqtt::ProtocolVersion;
use clap::ValueEnum;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep, Instant};

use crate::identity::{self, TlsSettings};
use crate::mqtt::{Conn, Session};
use crate::net::{self, Broker};
use crate::stats::round;
use crate::{enroll, Kx};

use device::{Counters, Day, InDevice, Role, Shared, Sim};
use summary::Target;

/// How often progress goes to stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// How often alerts are polled before the attack (and during `benign`).
const QUIET_POLL: Duration = Duration::from_secs(1);
/// Keep-alive of the simulated devices, seconds.
const KEEPALIVE: u16 = 60;
/// Most devices in one run.
const MAX_DEVICES: usize = 20_000;
/// Time allowed for one credential-stuffing attempt.
const STUFFING_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for the device tasks to close after the run.
const STOP_GRACE: Duration = Duration::from_secs(10);

pub(crate) const SCENARIO_HELP: &str = "\
Every scenario enrolls --devices N devices into a fresh group over EST (keys
in --work-dir or a temporary directory), connects them over mTLS MQTT from
the --source-ips addresses and runs a benign background for --warmup seconds
(so the server's baselines learn) before the attack starts. Benign devices:
telemetry on devices/<id>/telemetry (QoS 0) at a rate of their own, 0.2-2
msg/s with each gap drawn from 0.5-1.5x the mean; the inventory report
(devices/<id>/inventory, QoS 1, firmware 1.4.2) after every connect; the
posture report (devices/<id>/posture, QoS 1) after every connect and every
8-12 s; a reconnect now and then (exponential, mean 10 min); back-off and
reconnect when the server cuts them off. One random device is the attacker.
After the attack starts, alerts are polled every --poll-ms until the attack
is detected and contained, or detected and not contained --contain-grace
seconds later, or --timeout seconds pass.

  credential-stuffing  from --attacker-ip (default 127.0.0.77): 50 TLS
                connection attempts/s (at most 256 in flight), alternating a
                certificate for a fleet device id signed by a CA made here (the
                server never saw it) with CONNECT as that id, and no certificate
                with a guessed username/password. The attacker is
                source:<attacker-ip>; no device attacks.
  topic-scan    the attacker device, on its own session, 10 operations/s:
                SUBSCRIBE to #, $SYS/#, +/+/#, devices/+/inventory,
                $share/scan/devices/#, other devices' devices/<other>/#,
                .../commands/#, .../telemetry, and PUBLISH (QoS 1) to other
                devices' commands/ota, telemetry, posture and to
                fleet/broadcast; a different other device every 12 steps.
  flood         the attacker publishes to its telemetry topic as fast as the
                connection goes: rounds of 32 QoS 0 messages plus QoS 1 up to
                the broker's Receive Maximum in flight (64-byte payloads).
  exfiltration  the attacker publishes 64 KiB random payloads (QoS 1) to
                devices/<id>/logs/upload, 12/s (768 KiB/s).
  cloned-certificate  a second client with the attacker's own certificate
                and client id connects from --clone-ip (default 127.0.0.78),
                taking the session over, and publishes telemetry every 0.5 s;
                the real device reconnects (back-off 1 s) and takes it back;
                the clone waits 1-2 s and takes it again, back and forth.
                Both the device and source:<clone-ip> count as the attacker.
  port-scan     the attacker's posture reports (one at once, then every
                8-12 s) add a listener on 0.0.0.0:4444/tcp and 400
                established connections to distinct remote addresses (ports
                22, 23, 80, 443, 2323, 8080; new addresses in each report).
  downgrade     the attacker \"reboots\" (disconnects, reconnects 2 s later)
                and its inventory reports firmware 1.2.0 after 1.4.2.
  slow-drift    the attacker's telemetry rate grows linearly by 2% of its
                benign rate every second (2.2x after a minute, 7x after five);
                --timeout defaults to 300.
  benign        no attacker: after the warm-up, a simulated day of
                --day-seconds (default 600): each device's telemetry rate
                follows 1 - 0.6 cos(2 pi t / day) (0.4x at midnight, 1.6x at
                noon); at 08:00-09:12 every device reconnects once (a
                reconnect wave); at 16:00-18:24 every device reboots (3-10 s)
                and reports firmware 1.5.0 (an update wave). Reports the
                devices with any alert (false positives) and the device-hours
                (of N x 24) in which they had one (from the hour of an
                alert's first_seen to that of its last_seen; the warm-up
                counts as hour 0).

For the attacks, false_positive_devices counts benign devices with any alert
during the run (warm-up included). Detection: the first alert about the
attacker (device == attacker, entity device:<attacker> or source:<address>)
whose first_seen is after the attack's start (or an older one whose
last_seen moves past it); time_to_detect_ms = first_seen - start.
Containment: the first applied (or applied, then released) throttle,
restrict, disconnect, revoke or decommission action on such an alert;
time_to_contain_ms = applied_at - start. Server timestamps are compared
with this machine's clock. Only alerts created after the run began are read:
give each run its own --attacker-ip so a source alert still open from an
earlier run is not folded into.

Reads BULWARK_ADDR, BULWARK_TOKEN, BULWARK_CACERT and BULWARK_MQTT_ADDR
(what `bulwark server --dev` writes to dev.env). The server, the broker and
every source address must be loopback addresses. The last stdout line is
the JSON summary; the exit status is 0 whether or not the attack was
detected, non-zero only when the run could not be set up.";

/// The scenarios of `scenario`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Name {
    CredentialStuffing,
    TopicScan,
    Flood,
    Exfiltration,
    ClonedCertificate,
    PortScan,
    Downgrade,
    SlowDrift,
    Benign,
}

impl Name {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Name::CredentialStuffing => "credential-stuffing",
            Name::TopicScan => "topic-scan",
            Name::Flood => "flood",
            Name::Exfiltration => "exfiltration",
            Name::ClonedCertificate => "cloned-certificate",
            Name::PortScan => "port-scan",
            Name::Downgrade => "downgrade",
            Name::SlowDrift => "slow-drift",
            Name::Benign => "benign",
        }
    }

    /// The attack the attacker device runs on its own session.
    fn in_device(self) -> Option<InDevice> {
        Some(match self {
            Name::TopicScan => InDevice::TopicScan,
            Name::Flood => InDevice::Flood,
            Name::Exfiltration => InDevice::Exfiltration,
            Name::PortScan => InDevice::PortScan,
            Name::Downgrade => InDevice::Downgrade,
            Name::SlowDrift => InDevice::SlowDrift,
            Name::CredentialStuffing | Name::ClonedCertificate | Name::Benign => return None,
        })
    }

    /// `--timeout` when not given.
    fn default_timeout(self) -> u64 {
        match self {
            Name::SlowDrift => 300,
            _ => 60,
        }
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct ScenarioArgs {
    /// The scenario (see below).
    #[arg(value_enum)]
    name: Name,
    /// Devices in the fleet (the attacker is one of them).
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Seconds of benign traffic before the attack (or the simulated day).
    #[arg(long, default_value_t = 75)]
    warmup: u64,
    /// Seconds after the attack's start to wait for detection and
    /// containment (default 60; 300 for slow-drift).
    #[arg(long)]
    timeout: Option<u64>,
    /// Seconds to wait for containment once the attack is detected (the
    /// run then ends "detected, not contained").
    #[arg(long, default_value_t = 30)]
    contain_grace: u64,
    /// benign: length of the simulated day, seconds.
    #[arg(long, default_value_t = 600)]
    day_seconds: u64,
    /// How often alerts are polled once the attack started, milliseconds.
    #[arg(long, default_value_t = 100)]
    poll_ms: u64,
    /// MQTT broker, HOST:PORT on loopback.
    #[arg(long, env = "BULWARK_MQTT_ADDR")]
    broker: String,
    /// Name to verify in the broker's certificate.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Addresses the fleet connects from, round-robin (127.0.0.0/8).
    #[arg(long, default_value = "127.0.0.2-127.0.0.41")]
    source_ips: String,
    /// credential-stuffing: the attacker's source address.
    #[arg(long, default_value = "127.0.0.77")]
    attacker_ip: Ipv4Addr,
    /// cloned-certificate: where the clone connects from.
    #[arg(long, default_value = "127.0.0.78")]
    clone_ip: Ipv4Addr,
    /// Group to enroll into (default: sim-<scenario>-<time>-<pid>, new).
    #[arg(long)]
    group: Option<String>,
    /// Directory for the devices' keys and certificates (default: temporary).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Enrollments and MQTT handshakes in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds allowed for one TCP connect + TLS handshake + CONNACK.
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
    /// Seed of the random choices (rates, attacker, jitter); default: random.
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    api: enroll::ApiTarget,
}

impl ScenarioArgs {
    /// The hard cap on the whole run, seconds.
    pub(crate) fn max_seconds(&self) -> u64 {
        let run = match self.name {
            Name::Benign => self.day_seconds,
            n => self.timeout.unwrap_or(n.default_timeout()),
        };
        // Enrollment, connecting, the run, stopping.
        900 + self.warmup + run + 60
    }
}

/// A checked run.
struct Plan {
    name: Name,
    devices: usize,
    warmup: Duration,
    timeout: Duration,
    contain_grace: Duration,
    day: Duration,
    poll: Duration,
    broker: std::net::SocketAddr,
    sources: Vec<Ipv4Addr>,
    attacker_ip: Ipv4Addr,
    clone_ip: Ipv4Addr,
    tls: TlsSettings,
    seed: u64,
}

fn validate(a: &ScenarioArgs) -> Result<Plan> {
    crate::check_range("--devices", a.devices as u64, 1, MAX_DEVICES as u64)?;
    if a.name != Name::Benign && a.devices < 2 {
        bail!("--devices must be at least 2: an attacker and a benign device");
    }
    crate::check_range("--warmup", a.warmup, 0, crate::MAX_SECONDS)?;
    let timeout = a.timeout.unwrap_or(a.name.default_timeout());
    crate::check_range("--timeout", timeout, 1, crate::MAX_SECONDS)?;
    crate::check_range("--contain-grace", a.contain_grace, 0, crate::MAX_SECONDS)?;
    crate::check_range("--day-seconds", a.day_seconds, 24, 24 * 3600)?;
    crate::check_range("--poll-ms", a.poll_ms, 10, 10_000)?;
    crate::check_range("--concurrency", a.concurrency as u64, 1, 1024)?;
    crate::check_range("--connect-timeout", a.connect_timeout, 1, 600)?;
    let broker = net::loopback_socket_addr(&a.broker)?;
    let sources = net::parse_sources(&a.source_ips)?;
    for (what, ip) in [("--attacker-ip", a.attacker_ip), ("--clone-ip", a.clone_ip)] {
        if !ip.is_loopback() {
            bail!("{what} {ip} is not in 127.0.0.0/8");
        }
        if sources.contains(&ip) {
            bail!("{what} {ip} is one of the fleet's --source-ips: the attacker must stand apart");
        }
    }
    if a.attacker_ip == a.clone_ip {
        bail!("--attacker-ip and --clone-ip must differ");
    }
    let tls = TlsSettings::new(&a.api.cacert, &a.server_name, Kx::X25519)?;
    Ok(Plan {
        name: a.name,
        devices: a.devices,
        warmup: Duration::from_secs(a.warmup),
        timeout: Duration::from_secs(timeout),
        contain_grace: Duration::from_secs(a.contain_grace),
        day: Duration::from_secs(a.day_seconds),
        poll: Duration::from_millis(a.poll_ms),
        broker,
        sources,
        attacker_ip: a.attacker_ip,
        clone_ip: a.clone_ip,
        tls,
        seed: a.seed.unwrap_or_else(|| rand::rng().random()),
    })
}

/// The wall-clock time at monotonic instant `at`.
fn wall(at: Instant) -> OffsetDateTime {
    let now = Instant::now();
    let wall = OffsetDateTime::now_utc();
    if at >= now {
        wall + (at - now)
    } else {
        wall - (now - at)
    }
}

fn ms(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| json!(d.as_millis() as u64))
}

pub(crate) async fn run(a: ScenarioArgs) -> Result<Value> {
    let plan = validate(&a)?;
    let t_begin = Instant::now();
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let name = plan.name.as_str();
    eprintln!(
        "scenario {name}: {} devices, warm-up {} s, seed {}",
        plan.devices,
        plan.warmup.as_secs(),
        plan.seed
    );

    // ---- enrollment (checks that the server is on loopback) ----
    let stamp = OffsetDateTime::now_utc().unix_timestamp();
    let group = a
        .group
        .clone()
        .unwrap_or_else(|| format!("sim-{name}-{stamp}-{}", std::process::id()));
    let tmp;
    let dir = match &a.work_dir {
        Some(d) => d.join(&group),
        None => {
            tmp = tempfile::tempdir().context("temporary directory")?;
            tmp.path().to_path_buf()
        }
    };
    let enroll_plan = enroll::Plan::new(
        a.api.clone(),
        plan.devices,
        &group,
        dir.clone(),
        a.concurrency,
    )?;
    // ---- alerts baseline (before anything of this run can raise one;
    // after Plan::new refused a server off loopback) ----
    let ca_pem = std::fs::read(&a.api.cacert)
        .with_context(|| format!("cannot read {}", a.api.cacert.display()))?;
    let mut poller = alerts::Poller::new(&a.api.addr, &a.api.token, &ca_pem)?;
    poller.baseline().await;
    eprintln!(
        "scenario: alerts API {}, alerts after id {} belong to this run",
        poller.api.name(),
        poller.baseline_id()
    );

    let enrolled = enroll::run(enroll_plan).await?;
    let got = enrolled["enrolled"].as_u64().unwrap_or(0) as usize;
    if got < plan.devices {
        bail!(
            "only {got} of {} devices enrolled: {}",
            plan.devices,
            enrolled["error_kinds"]
        );
    }
    let devices = identity::load(&dir, 0, plan.devices, &plan.tls)?;
    let fleet_ids: Vec<String> = devices.iter().map(|d| d.id.to_string()).collect();
    let fleet: HashSet<String> = fleet_ids.iter().cloned().collect();

    // ---- roles ----
    let attacker_index = match plan.name {
        Name::Benign | Name::CredentialStuffing => None,
        _ => Some(rng.random_range(0..plan.devices)),
    };
    let target = Target {
        device: attacker_index.map(|i| fleet_ids[i].clone()),
        sources: match plan.name {
            Name::CredentialStuffing => vec![plan.attacker_ip.to_string()],
            Name::ClonedCertificate => vec![plan.clone_ip.to_string()],
            _ => vec![],
        },
    };

    // ---- connect ----
    let session = Session {
        version: ProtocolVersion::V5,
        keepalive: KEEPALIVE,
        server_name: plan.tls.server_name.clone(),
    };
    let connect_timeout = Duration::from_secs(a.connect_timeout);
    let shared = Arc::new(Shared {
        broker: Broker::new(plan.broker, plan.sources.clone(), connect_timeout),
        session,
        connecting: Semaphore::new(a.concurrency),
        counters: Counters::default(),
        day: std::sync::OnceLock::new(),
        fleet: fleet_ids.clone(),
    });
    eprintln!(
        "scenario: connecting {} devices, {} at a time",
        plan.devices, a.concurrency
    );
    let t_connect = Instant::now();
    let mut opening = Vec::with_capacity(devices.len());
    for d in &devices {
        let (shared, tls, id) = (shared.clone(), d.tls.clone(), d.id.to_string());
        opening.push(tokio::spawn(async move {
            let _permit = shared.connecting.acquire().await;
            Conn::open(&shared.broker, &shared.session, tls, &id, 4096).await
        }));
    }
    let mut conns = Vec::with_capacity(devices.len());
    let mut connect_errors = crate::stats::Errors::default();
    for h in opening {
        match h.await {
            Ok(Ok(c)) => conns.push(Some(c)),
            Ok(Err(e)) => {
                connect_errors.add(&e);
                conns.push(None);
            }
            Err(_) => {
                connect_errors.add("panic in a connection task");
                conns.push(None);
            }
        }
    }
    let connected = conns.iter().filter(|c| c.is_some()).count();
    eprintln!(
        "scenario: {connected} connected ({} failed) in {:.1} s",
        connect_errors.total,
        t_connect.elapsed().as_secs_f64()
    );
    if connected == 0 {
        let mut v = json!({});
        connect_errors.put(&mut v);
        bail!(
            "no device could connect to {}: {}",
            plan.broker,
            v["error_kinds"]
        );
    }
    shared
        .counters
        .connects
        .fetch_add(connected as u64, Ordering::Relaxed);

    // ---- the schedule ----
    let t0 = Instant::now();
    let attack_at = t0 + plan.warmup;
    let day = (plan.name == Name::Benign).then_some(Day {
        start: attack_at,
        period: plan.day,
    });
    if let Some(day) = day {
        let _ = shared.day.set(day);
    }
    let end_at = match plan.name {
        Name::Benign => attack_at + plan.day,
        _ => attack_at + plan.timeout,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::with_capacity(devices.len() + 1);
    for (i, (d, conn)) in devices.into_iter().zip(conns).enumerate() {
        let role = match (attacker_index == Some(i), plan.name.in_device()) {
            (true, Some(attack)) => Role::Attacker {
                attack,
                start: attack_at,
            },
            _ => Role::Benign,
        };
        let waves = match day {
            Some(day) => {
                let hour = day.period / summary::HOURS;
                let reconnect = day.start + hour * 8 + hour.mul_f64(rng.random_range(0.0..1.2));
                let firmware = day.start + hour * 16 + hour.mul_f64(rng.random_range(0.0..2.4));
                (Some(reconnect), Some(firmware))
            }
            None => (None, None),
        };
        let sim = Sim {
            index: i,
            profile: payload::PostureProfile::new(i, &mut rng),
            rate: rng.random_range(0.2..2.0),
            rng: StdRng::seed_from_u64(rng.random()),
            device: d,
            role,
            waves,
        };
        tasks.push(tokio::spawn(sim.run(shared.clone(), conn, stop_rx.clone())));
    }

    // Attacks from outside a device's session.
    let stuffing = Arc::new(outside::Tally::default());
    let clone_stats = Arc::new(outside::CloneStats::default());
    let from = |source: Ipv4Addr, timeout: Duration, seed: u64| outside::From {
        broker: Arc::new(Broker::new(plan.broker, vec![source], timeout)),
        session: Arc::new(Session {
            version: ProtocolVersion::V5,
            keepalive: KEEPALIVE,
            server_name: plan.tls.server_name.clone(),
        }),
        start: attack_at,
        stop: stop_rx.clone(),
        seed,
    };
    match plan.name {
        Name::CredentialStuffing => {
            let rogue = outside::rogue_identities(&plan.tls, &fleet_ids)?;
            let anonymous = plan.tls.client_config_anonymous()?;
            tasks.push(tokio::spawn(outside::credential_stuffing(
                from(plan.attacker_ip, STUFFING_CONNECT_TIMEOUT, rng.random()),
                rogue,
                anonymous,
                stuffing.clone(),
            )));
        }
        Name::ClonedCertificate => {
            let i = attacker_index.ok_or_else(|| anyhow!("no attacker"))?;
            let tls = plan
                .tls
                .client_config(&dir, &identity::read_list(&dir, i, 1)?[0])?;
            tasks.push(tokio::spawn(outside::cloned_certificate(
                from(plan.clone_ip, connect_timeout, rng.random()),
                tls,
                fleet_ids[i].clone(),
                clone_stats.clone(),
            )));
        }
        _ => {}
    }
    drop(stop_rx);

    // ---- warm-up, attack, polling ----
    let c = &shared.counters;
    let progress = |phase: &str, alerts: usize| {
        eprintln!(
            "  {:>5.0} s {phase}: telemetry {}, reports {}, attack msgs {}, refused {}, \
             connects {}, connect failures {}, server disconnects {}, alerts {alerts}",
            t0.elapsed().as_secs_f64(),
            c.telemetry.load(Ordering::Relaxed),
            c.reports.load(Ordering::Relaxed),
            c.attack_messages.load(Ordering::Relaxed) + stuffing.attempts.load(Ordering::Relaxed),
            c.refused.load(Ordering::Relaxed),
            c.connects.load(Ordering::Relaxed),
            c.connect_failures.load(Ordering::Relaxed),
            c.server_disconnects.load(Ordering::Relaxed),
        );
    };
    eprintln!(
        "scenario: warm-up for {} s{}",
        plan.warmup.as_secs(),
        match plan.name {
            Name::Benign => format!(", then a simulated day of {} s", plan.day.as_secs()),
            _ => format!(
                ", then the attack by {} for up to {} s",
                target.describe().unwrap_or_default(),
                plan.timeout.as_secs()
            ),
        }
    );
    let mut last_progress = Instant::now();
    while Instant::now() < attack_at {
        poller.poll(None).await;
        if last_progress.elapsed() >= PROGRESS_EVERY {
            progress("warm-up", poller.alerts.len());
            last_progress = Instant::now();
        }
        sleep(QUIET_POLL.min(attack_at.saturating_duration_since(Instant::now()))).await;
    }
    let attack_start = wall(attack_at);
    let attack_start_opt = (plan.name != Name::Benign).then_some(attack_start);
    let phase = match plan.name {
        Name::Benign => "day",
        _ => "attack",
    };
    eprintln!(
        "scenario: {phase} started at {}",
        attack_start
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    );
    let every = if plan.name == Name::Benign {
        QUIET_POLL
    } else {
        plan.poll
    };
    let mut outcome;
    loop {
        let tick = Instant::now();
        poller.poll(attack_start_opt).await;
        outcome = summary::evaluate(poller.alerts.values(), &target, attack_start_opt, &fleet);
        if plan.name != Name::Benign && outcome.detected() {
            if outcome.contained() {
                eprintln!("scenario: detected and contained");
                break;
            }
            let detected_at = attack_at + outcome.time_to_detect.unwrap_or_default();
            if Instant::now() >= detected_at + plan.contain_grace {
                eprintln!(
                    "scenario: detected, not contained within {} s",
                    plan.contain_grace.as_secs()
                );
                break;
            }
        }
        if Instant::now() >= end_at {
            if plan.name != Name::Benign {
                eprintln!("scenario: timeout");
            }
            break;
        }
        if last_progress.elapsed() >= PROGRESS_EVERY {
            progress(phase, poller.alerts.len());
            last_progress = Instant::now();
        }
        tokio::time::sleep_until((tick + every).min(end_at)).await;
    }
    let elapsed_attack = attack_at.elapsed();

    // ---- stop ----
    let _ = stop_tx.send(true);
    let until = Instant::now() + STOP_GRACE;
    for t in tasks {
        if tokio::time::timeout_at(until, t).await.is_err() {
            break;
        }
    }
    poller.poll(attack_start_opt).await;
    let outcome_final =
        summary::evaluate(poller.alerts.values(), &target, attack_start_opt, &fleet);
    // The verdict is the one reached during the run; the final poll adds
    // what arrived while stopping to the false positives only.
    outcome.false_positive_devices = outcome_final.false_positive_devices;
    outcome.false_positive_alerts = outcome_final.false_positive_alerts;
    outcome.false_positive_detectors = outcome_final.false_positive_detectors;
    outcome.other_alerts = outcome_final.other_alerts;
    outcome.attacker_alerts = outcome_final.attacker_alerts;
    progress("end", poller.alerts.len());

    let mut v = json!({
        "command": "scenario",
        "scenario": name,
        "devices": plan.devices,
        "connected": connected,
        "group": group,
        "seed": plan.seed,
        "attacker": target.describe(),
        "attacker_device": target.device,
        "attacker_sources": target.sources,
        "warmup_s": plan.warmup.as_secs(),
        "attack_start": attack_start.format(&time::format_description::well_known::Rfc3339).ok(),
        "attack_seconds": round(elapsed_attack.as_secs_f64(), 1),
        "detected": outcome.detected(),
        "time_to_detect_ms": ms(outcome.time_to_detect),
        "detector": outcome.detector,
        "contained": outcome.contained(),
        "time_to_contain_ms": ms(outcome.time_to_contain),
        "contained_by": outcome.contained_by,
        "alerts": poller.alerts.len(),
        "attacker_alerts": outcome.attacker_alerts,
        "false_positive_devices": outcome.false_positive_devices.len(),
        "false_positive_alerts": outcome.false_positive_alerts,
        "false_positive_detectors": outcome.false_positive_detectors,
        "other_alerts": outcome.other_alerts,
        "alerts_api": poller.api.name(),
        "alert_polls": poller.polls,
        "alert_poll_errors": poller.errors,
        "alerts_undecodable": poller.undecodable,
        "traffic": {
            "telemetry": c.telemetry.load(Ordering::Relaxed),
            "reports": c.reports.load(Ordering::Relaxed),
            "attack_messages": c.attack_messages.load(Ordering::Relaxed),
            "attack_bytes": c.attack_bytes.load(Ordering::Relaxed),
            "attack_subscribes": c.attack_subscribes.load(Ordering::Relaxed),
            "refused_by_broker": c.refused.load(Ordering::Relaxed),
            "connects": c.connects.load(Ordering::Relaxed),
            "connect_failures": c.connect_failures.load(Ordering::Relaxed),
            "server_disconnects": c.server_disconnects.load(Ordering::Relaxed),
            "planned_reconnects": c.planned_reconnects.load(Ordering::Relaxed),
        },
        "seconds": round(t_begin.elapsed().as_secs_f64(), 1),
    });
    match plan.name {
        Name::CredentialStuffing => v["credential_stuffing"] = stuffing.to_json(),
        Name::ClonedCertificate => v["cloned_certificate"] = clone_stats.to_json(),
        Name::Benign => {
            let day_start = attack_start;
            let hours =
                summary::alert_hours(poller.alerts.values(), &target, &fleet, day_start, plan.day);
            let fp_hours = summary::device_hours(&hours);
            let device_hours = plan.devices as u64 * u64::from(summary::HOURS);
            v["day_seconds"] = json!(plan.day.as_secs());
            v["device_hours"] = json!(device_hours);
            v["false_positive_device_hours"] = json!(fp_hours);
            v["false_positive_device_hours_ratio"] =
                json!(fp_hours as f64 / device_hours.max(1) as f64);
            v["detected"] = json!(false);
        }
        _ => {}
    }
    if let Ok(errors) = c.errors.lock() {
        let mut e = json!({});
        errors.put(&mut e);
        v["device_errors"] = e["errors"].clone();
        if let Some(k) = e.get("error_kinds") {
            v["device_error_kinds"] = k.clone();
        }
    }
    if let Some(e) = &poller.last_error {
        v["alert_poll_last_error"] = json!(e);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ScenarioArgs,
    }

    const API: [&str; 6] = [
        "--addr",
        "https://127.0.0.1:8443",
        "--token",
        "t",
        "--cacert",
        "/nonexistent/ca.pem",
    ];

    fn parse(args: &[&str]) -> Result<ScenarioArgs, clap::Error> {
        let mut argv = vec!["scenario"];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&API);
        Cli::try_parse_from(argv).map(|c| c.args)
    }

    /// The error `validate` gives, or "" (the CA file does not exist, so a
    /// valid command fails only there).
    fn refusal(args: &[&str]) -> String {
        match validate(&parse(args).unwrap()) {
            Ok(_) => String::new(),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn parses_every_scenario_with_defaults() {
        for name in Name::value_variants() {
            let a = parse(&[name.as_str(), "--broker", "127.0.0.1:8883"]).unwrap();
            assert_eq!(a.name, *name);
            assert_eq!((a.devices, a.warmup, a.day_seconds), (100, 75, 600));
            assert_eq!(a.attacker_ip, Ipv4Addr::new(127, 0, 0, 77));
            let run = match name {
                Name::Benign => 600,
                Name::SlowDrift => 300,
                _ => 60,
            };
            assert_eq!(a.max_seconds(), 900 + 75 + run + 60, "{name:?}");
        }
        let a = parse(&[
            "flood",
            "--devices",
            "20",
            "--warmup",
            "5",
            "--timeout",
            "10",
            "--broker",
            "127.0.0.1:1",
        ])
        .unwrap();
        assert_eq!((a.devices, a.warmup, a.timeout), (20, 5, Some(10)));
        assert!(parse(&["smurf", "--broker", "127.0.0.1:1"]).is_err());
    }

    #[test]
    fn refuses_bad_runs_before_any_io() {
        let ok = ["flood", "--broker", "127.0.0.1:8883"];
        assert!(
            refusal(&ok).contains("/nonexistent/ca.pem"),
            "{}",
            refusal(&ok)
        );
        for (args, why) in [
            (&["flood", "--broker", "10.0.0.1:8883"][..], "loopback"),
            (
                &["flood", "--broker", "127.0.0.1:1", "--devices", "1"],
                "at least 2",
            ),
            (
                &["flood", "--broker", "127.0.0.1:1", "--devices", "0"],
                "--devices",
            ),
            (
                &["benign", "--broker", "127.0.0.1:1", "--day-seconds", "10"],
                "--day-seconds",
            ),
            (
                &[
                    "flood",
                    "--broker",
                    "127.0.0.1:1",
                    "--attacker-ip",
                    "127.0.0.5",
                ],
                "stand apart",
            ),
            (
                &["flood", "--broker", "127.0.0.1:1", "--clone-ip", "10.1.1.1"],
                "127.0.0.0/8",
            ),
            (
                &[
                    "flood",
                    "--broker",
                    "127.0.0.1:1",
                    "--source-ips",
                    "10.0.0.2",
                ],
                "127.0.0.0/8",
            ),
            (
                &["flood", "--broker", "127.0.0.1:1", "--poll-ms", "0"],
                "--poll-ms",
            ),
        ] {
            let e = refusal(args);
            assert!(e.contains(why), "{args:?}: {e}");
        }
        // One device is enough when nobody attacks.
        let e = refusal(&["benign", "--broker", "127.0.0.1:1", "--devices", "1"]);
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }

    #[test]
    fn in_device_attacks_and_timeouts() {
        assert_eq!(Name::Flood.in_device(), Some(InDevice::Flood));
        assert_eq!(Name::CredentialStuffing.in_device(), None);
        assert_eq!(Name::ClonedCertificate.in_device(), None);
        assert_eq!(Name::SlowDrift.default_timeout(), 300);
        assert_eq!(Name::Downgrade.default_timeout(), 60);
        for n in Name::value_variants() {
            assert_eq!(
                n.to_possible_value().unwrap().get_name(),
                n.as_str(),
                "CLI name and result name agree"
            );
        }
    }
}
