//! `ota`: N enrolled devices wait on their MQTT command topic for an update
//! instruction from a rollout, then each runs the device side of an update
//! ([`update`]) and reports its steps over HTTPS.
//!
//! Each device has one mTLS MQTT connection (subscribed to
//! `devices/<id>/commands/ota`, QoS 1) and one `reqwest::Client` with its
//! certificate (TUF metadata, the artifact, the step reports), both from
//! the `--source-ips` addresses in turn. At most `--concurrency` updates
//! run at once; the others wait for a slot (their update time counts the
//! wait). The run ends when every connected device finished (healthy or
//! failed) or at `--max-seconds`, and prints one JSON summary line.

mod update;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bulwark_mqtt::{Packet, ProtocolVersion, PubResponse, QoS};
use bulwark_ota::url::Url;
use bulwark_ota::HardwareModel;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::{sleep_until, Instant};

use crate::identity::{self, TlsSettings};
use crate::mqtt::{Conn, Failure, Session};
use crate::net::{self, Broker};
use crate::stats::{micros, percentile_ms, round, rss_kib, Errors};
use crate::Kx;

use update::{Instruction, Shared, Timing};

/// Read buffer kept free on each (mostly idle) connection.
const READ_CHUNK: usize = 1024;
/// How often progress goes to stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Seconds allowed for one whole HTTPS request (an artifact included).
const HTTP_TIMEOUT: Duration = Duration::from_secs(300);

pub(crate) const OTA_HELP: &str = "\
Each device connects over mTLS MQTT, subscribes to devices/<id>/commands/ota
and waits. On an instruction ({\"release\": ..., \"rollout\": ...}) it does what
the agent does up to the install: loads the TUF repository with tough (its own
datastore; the first root fetched once and shared), checks the target against
--model, downloads the artifact with resume and verifies length and SHA-256,
then reports downloading, verifying, installing, rebooting, healthy to
/v1/ota/reports with its certificate. A simulated device installs nothing: the
verified file is deleted and the last steps are reported at once (the sim is a
load generator). Requests refused for load (429, 503) are retried.

Once every device is connected and subscribed the run says so on stderr and
writes --ready-file (\"<up> <failed>\"); start the rollout after that. The
server and every source address must be loopback addresses.";

#[derive(clap::Args, Debug)]
pub(crate) struct OtaArgs {
    /// Directory written by `bulwark-sim enroll`.
    #[arg(long)]
    dir: PathBuf,
    /// Devices to simulate (the first N of DIR/devices.txt from --first-device).
    #[arg(long)]
    devices: usize,
    #[arg(long, default_value_t = 0)]
    first_device: usize,
    /// The devices' hardware model (the one the release was published for).
    #[arg(long)]
    model: String,
    /// MQTT broker, HOST:PORT on loopback.
    #[arg(long)]
    broker: String,
    /// Server base URL (loopback) for the repository and the reports.
    #[arg(long, env = "BULWARK_ADDR")]
    addr: String,
    /// PEM CA bundle that signed the server's (API and MQTT) certificates.
    #[arg(long, env = "BULWARK_CACERT")]
    cacert: PathBuf,
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// Updates in flight at once (the server serves 64 downloads at a time).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// MQTT handshakes in flight while connecting.
    #[arg(long, default_value_t = 32)]
    connect_concurrency: usize,
    /// Local addresses to connect from, round-robin (as for `load`).
    #[arg(long)]
    source_ips: Option<String>,
    /// Datastores and downloads go here (default: a temporary directory);
    /// a tmpfs keeps the disk out of the measurement.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Written with "<up> <failed>" once every device is subscribed.
    #[arg(long)]
    ready_file: Option<PathBuf>,
    #[arg(long, default_value_t = 120)]
    keepalive: u16,
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
    /// Hard cap on the whole run, seconds.
    #[arg(long, default_value_t = 900)]
    max_seconds: u64,
}

impl OtaArgs {
    pub(crate) fn max_seconds(&self) -> u64 {
        self.max_seconds
    }
}

/// One device's outcome.
enum Outcome {
    Healthy {
        notified: Instant,
        started: Instant,
        done: Instant,
        t: Timing,
    },
    Failed(String),
}

pub(crate) async fn run(a: OtaArgs) -> Result<Value> {
    crate::check_range("--devices", a.devices as u64, 1, crate::MAX_CLIENTS as u64)?;
    crate::check_range("--concurrency", a.concurrency as u64, 1, 4096)?;
    crate::check_range(
        "--connect-concurrency",
        a.connect_concurrency as u64,
        1,
        4096,
    )?;
    crate::check_range("--max-seconds", a.max_seconds, 1, crate::MAX_SECONDS)?;
    let broker = net::loopback_socket_addr(&a.broker)?;
    let sources = match &a.source_ips {
        Some(s) => net::parse_sources(s)?,
        None => Vec::new(),
    };
    let base = Url::parse(&a.addr).with_context(|| format!("--addr {:?}", a.addr))?;
    let loopback = match base.host() {
        Some(bulwark_ota::url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(bulwark_ota::url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(bulwark_ota::url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if !loopback || base.scheme() != "https" {
        bail!(
            "{}: bulwark-sim only talks to https servers on loopback addresses",
            a.addr
        );
    }
    let model = HardwareModel::new(&a.model).with_context(|| format!("--model {:?}", a.model))?;
    let tls = TlsSettings::new(&a.cacert, &a.server_name, Kx::X25519)?;
    let devices = identity::load(&a.dir, a.first_device, a.devices, &tls)?;
    let ca =
        std::fs::read(&a.cacert).with_context(|| format!("cannot read {}", a.cacert.display()))?;
    let ca = reqwest::Certificate::from_pem(&ca).context("--cacert")?;
    let https: Vec<reqwest::Client> = devices
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let mut pem = std::fs::read(identity::cert_path(&a.dir, &d.id))?;
            pem.extend(std::fs::read(identity::key_path(&a.dir, &d.id))?);
            let source = (!sources.is_empty()).then(|| IpAddr::V4(sources[i % sources.len()]));
            reqwest::Client::builder()
                .tls_certs_only([ca.clone()])
                .identity(reqwest::Identity::from_pem(&pem).context("device identity")?)
                .local_address(source)
                .connect_timeout(Duration::from_secs(a.connect_timeout))
                .timeout(HTTP_TIMEOUT)
                .pool_idle_timeout(Duration::from_secs(15))
                .build()
                .context("HTTPS client")
        })
        .collect::<Result<_>>()?;

    let tmp;
    let work = match &a.work_dir {
        Some(w) => w.join(format!("bulwark-sim-ota-{}", std::process::id())),
        None => {
            tmp = tempfile::tempdir().context("temporary directory")?;
            tmp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let tuf = base.join("v1/ota/tuf/")?;
    let root = https[0]
        .get(tuf.join("1.root.json")?)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .context("fetching 1.root.json")?
        .bytes()
        .await?
        .to_vec();
    let shared = Arc::new(Shared {
        reports: base.join("v1/ota/reports")?,
        tuf,
        root,
        model,
        work: work.clone(),
    });
    let result = drive(
        &a,
        shared,
        devices,
        https,
        Broker::new(broker, sources, Duration::from_secs(a.connect_timeout)),
        tls,
    )
    .await;
    if a.work_dir.is_some() {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

async fn drive(
    a: &OtaArgs,
    shared: Arc<Shared>,
    devices: Vec<identity::Device>,
    https: Vec<reqwest::Client>,
    broker: Broker,
    tls: TlsSettings,
) -> Result<Value> {
    let n = devices.len() as u64;
    let session = Arc::new(Session {
        version: ProtocolVersion::V5,
        keepalive: a.keepalive,
        server_name: tls.server_name.clone(),
    });
    let broker = Arc::new(broker);
    let connecting = Arc::new(Semaphore::new(a.connect_concurrency));
    let updating = Arc::new(Semaphore::new(a.concurrency));
    let (up, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (done_tx, mut done_rx) = mpsc::channel::<Outcome>(devices.len());
    let (stop_tx, stop_rx) = watch::channel(false);
    let keepalive = Duration::from_secs(u64::from(a.keepalive));
    let t0 = Instant::now();
    eprintln!(
        "ota: connecting {n} devices, {} at a time",
        a.connect_concurrency
    );
    let mut tasks = Vec::with_capacity(devices.len());
    for (d, http) in devices.into_iter().zip(https) {
        let (broker, session, connecting, updating) = (
            broker.clone(),
            session.clone(),
            connecting.clone(),
            updating.clone(),
        );
        let (up, failed, shared, done, stop) = (
            up.clone(),
            failed.clone(),
            shared.clone(),
            done_tx.clone(),
            stop_rx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let permit = connecting.acquire_owned().await;
            let id = d.id.to_string();
            let conn = async {
                let mut c = Conn::open(&broker, &session, d.tls, &id, READ_CHUNK).await?;
                let topic = format!("devices/{id}/commands/ota");
                c.subscribe(&topic, QoS::AtLeastOnce, broker.connect_timeout())
                    .await?;
                Ok::<_, Failure>(c)
            }
            .await;
            drop(permit);
            match conn {
                Ok(c) => {
                    up.fetch_add(1, Ordering::Relaxed);
                    let dev = DeviceTask {
                        id,
                        http,
                        shared,
                        updating,
                        done,
                    };
                    dev.serve(c, keepalive, stop).await
                }
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    Err(e)
                }
            }
        }));
    }
    drop(done_tx);
    while up.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < n {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (u, f) = (up.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "ota: {u} devices subscribed ({f} failed) after {:.1} s; waiting for instructions",
        t0.elapsed().as_secs_f64()
    );
    if let Some(path) = &a.ready_file {
        std::fs::write(path, format!("{u} {f}\n"))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }

    // Leave time for the summary before the hard --max-seconds cap.
    let give_up = t0 + Duration::from_secs(a.max_seconds.saturating_sub(20).max(1));
    let mut outcomes = Vec::with_capacity(u as usize);
    let mut last = Instant::now();
    let mut timed_out = false;
    while (outcomes.len() as u64) < u {
        if Instant::now() >= give_up {
            eprintln!(
                "ota: giving up waiting for {} devices",
                u - outcomes.len() as u64
            );
            timed_out = true;
            break;
        }
        let wait = tokio::time::timeout(PROGRESS_EVERY, done_rx.recv()).await;
        match wait {
            Ok(Some(o)) => outcomes.push(o),
            Ok(None) => break,
            Err(_) => {}
        }
        if last.elapsed() >= PROGRESS_EVERY {
            let ok = outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::Healthy { .. }))
                .count();
            eprintln!(
                "  ota: {ok} healthy, {} failed of {u}, {:.0} s",
                outcomes.len() - ok,
                t0.elapsed().as_secs_f64()
            );
            last = Instant::now();
        }
    }
    let _ = stop_tx.send(true);
    let mut lost = Errors::default();
    let until = Instant::now() + Duration::from_secs(10);
    for t in tasks {
        match tokio::time::timeout_at(until, t).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => lost.add(e),
            Ok(Err(_)) => lost.add("panic in a device task"),
            Err(_) => break,
        }
    }
    let mut v = summary(n, u, &outcomes);
    v["client_rss_kib"] = json!(rss_kib(std::process::id()));
    v["concurrency"] = json!(a.concurrency);
    v["timed_out"] = json!(timed_out);
    lost.put(&mut v);
    Ok(v)
}

/// The JSON summary of a run.
fn summary(devices: u64, up: u64, outcomes: &[Outcome]) -> Value {
    let mut errors = Errors::default();
    let mut update_us = Vec::new();
    let mut active_us = Vec::new();
    let (mut meta, mut dl, mut ver, mut mbps) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut first, mut last): (Option<Instant>, Option<Instant>) = (None, None);
    let (mut bytes, mut retries) = (0u64, 0u64);
    for o in outcomes {
        match o {
            Outcome::Healthy {
                notified,
                started,
                done,
                t,
            } => {
                first = Some(first.map_or(*notified, |f| f.min(*notified)));
                last = Some(last.map_or(*done, |l| l.max(*done)));
                update_us.push(micros(*done - *notified));
                active_us.push(micros(*done - *started));
                meta.push(micros(t.metadata));
                dl.push(micros(t.download));
                ver.push(micros(t.verify));
                mbps.push(t.bytes as f64 / 1e6 / t.verify.as_secs_f64().max(1e-9));
                bytes = t.bytes;
                retries += u64::from(t.retries);
            }
            Outcome::Failed(e) => errors.add(e),
        }
    }
    for s in [&mut update_us, &mut active_us, &mut meta, &mut dl, &mut ver] {
        s.sort_unstable();
    }
    mbps.sort_by(f64::total_cmp);
    let ms = |s: &[u32], p| round(percentile_ms(s, p), 1);
    let completed = update_us.len();
    let total = first
        .zip(last)
        .map(|(f, l)| round((l - f).as_secs_f64(), 2));
    let mut v = json!({
        "command": "ota",
        "devices": devices,
        "connected": up,
        "completed": completed,
        "failed": errors.total,
        "artifact_bytes": bytes,
        "total_seconds": total,
        "update_ms": { "p50": ms(&update_us, 50.0), "p99": ms(&update_us, 99.0), "max": ms(&update_us, 100.0) },
        "active_update_ms": { "p50": ms(&active_us, 50.0), "p99": ms(&active_us, 99.0) },
        "metadata_verify_ms_median": round(percentile_ms(&meta, 50.0), 2),
        "download_ms_median": ms(&dl, 50.0),
        "artifact_verify_ms_median": round(percentile_ms(&ver, 50.0), 2),
        "artifact_verify_mb_per_s_median": mbps.get(mbps.len().saturating_sub(1) / 2).map(|x| round(*x, 0)),
        "retries": retries,
    });
    let mut e = json!({});
    errors.put(&mut e);
    if let Some(kinds) = e.get("error_kinds") {
        v["failure_kinds"] = kinds.clone();
    }
    v
}

/// One subscribed device.
struct DeviceTask {
    id: String,
    http: reqwest::Client,
    shared: Arc<Shared>,
    updating: Arc<Semaphore>,
    done: mpsc::Sender<Outcome>,
}

impl DeviceTask {
    /// Keeps the connection alive, acknowledges instructions and starts
    /// the update on the first one, until `stop`.
    async fn serve(
        self,
        mut conn: Conn,
        keepalive: Duration,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), Failure> {
        let mut dev = Some(self);
        let mut last_write = Instant::now();
        loop {
            if *stop.borrow_and_update() {
                conn.close().await;
                return Ok(());
            }
            tokio::select! {
                r = conn.read_more() => {
                    r?;
                    while let Some(p) = conn.next_packet()? {
                        match p {
                            Packet::Publish(msg) => {
                                if let (QoS::AtLeastOnce, Some(id)) = (msg.qos, msg.packet_id) {
                                    conn.queue(&Packet::PubAck(PubResponse::new(id)))?;
                                }
                                if let Some(d) = dev.take() {
                                    d.start(&msg.payload);
                                }
                            }
                            Packet::PingResp => {}
                            Packet::Disconnect(d) => return Err(Failure::Disconnected(d.reason_code)),
                            other => return Err(Failure::Unexpected(other.packet_type().name())),
                        }
                    }
                    if conn.has_queued() {
                        conn.flush().await?;
                        last_write = Instant::now();
                    }
                }
                _ = stop.changed() => {}
                _ = sleep_until(last_write + keepalive / 2) => {
                    conn.queue(&Packet::PingReq)?;
                    conn.flush().await?;
                    last_write = Instant::now();
                }
            }
        }
    }

    /// Runs the update in its own task (the connection keeps being served).
    fn start(self, payload: &[u8]) {
        let notified = Instant::now();
        let ins = Instruction::parse(payload);
        tokio::spawn(async move {
            let outcome = match ins {
                Err(e) => Outcome::Failed(format!("{e:#}")),
                Ok(ins) => {
                    let _permit = self.updating.acquire().await;
                    let started = Instant::now();
                    match update::run(&self.shared, &self.http, &self.id, &ins).await {
                        Ok(t) => Outcome::Healthy {
                            notified,
                            started,
                            done: Instant::now(),
                            t,
                        },
                        Err(e) => Outcome::Failed(format!("{e:#}")),
                    }
                }
            };
            let _ = self.done.send(outcome).await;
        });
    }
}
