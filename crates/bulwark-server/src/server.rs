//! Wiring: data directory, CA, store, registry, API listener, signals.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use aws_lc_rs::signature::Ed25519KeyPair;
use bulwark_api::{ApiMetrics, AppState, Limits, ServeConfig};
use bulwark_audit::{Actor, AuditEvent};
use bulwark_ca::{Ca, CaOptions, KdfParams, Passphrase};
use bulwark_registry::{EventBus, Registry, RegistryConfig};
use bulwark_store::{CheckpointPolicy, CheckpointSigner, NewCert, SqliteStore, Store};
use bulwark_types::{CertKind, CertSerial};

use crate::config::Config;
use crate::offline::db_path;

pub fn init_tracing(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if cfg.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

struct AuditSigner(Ed25519KeyPair);

impl CheckpointSigner for AuditSigner {
    fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.0.sign(message).as_ref().to_vec()
    }
}

/// Writes `contents` to `path` with mode 0600.
fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// The passphrase: BULWARK_PASSPHRASE, a passphrase file, or (dev mode
/// only) one generated and kept in the data directory.
fn passphrase(cfg: &Config, data_dir: &Path) -> Result<Passphrase> {
    if let Ok(p) = std::env::var("BULWARK_PASSPHRASE") {
        return Passphrase::new(p).context("BULWARK_PASSPHRASE");
    }
    if let Some(f) = &cfg.passphrase_file {
        return Passphrase::read_file(f)
            .with_context(|| format!("passphrase file {}", f.display()));
    }
    if cfg.dev {
        let path = data_dir.join("dev-passphrase");
        if path.exists() {
            return Passphrase::read_file(&path).context("dev passphrase");
        }
        let (secret, _) = bulwark_registry::new_secret(bulwark_registry::SecretKind::Operator);
        write_private(&path, &secret)?;
        return Passphrase::new(secret).context("dev passphrase");
    }
    bail!(
        "no passphrase for the CA keys: set BULWARK_PASSPHRASE or pass --passphrase-file \
         (or use --dev for a throw-away instance)"
    )
}

pub async fn run(cfg: Config) -> Result<()> {
    // A dev instance without --data-dir lives in a temporary directory that
    // is removed when the server stops.
    let (data_dir, _temp) = match &cfg.data_dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("bulwark-dev-")
                .tempdir()
                .context("cannot create a temporary data directory")?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    // Outside dev mode the passphrase must be at hand before anything is
    // written, so a refused start leaves no half-made data directory.
    if !cfg.dev {
        passphrase(&cfg, &data_dir)?;
    }
    create_private_dir(&data_dir)?;
    let pass = passphrase(&cfg, &data_dir)?;
    let opts = CaOptions {
        organization: cfg.organization.clone(),
        device_lifetime: time::Duration::seconds(cfg.device_cert_secs),
    };
    let first_start = !Ca::is_initialized(&data_dir);
    let ca = if first_start {
        tracing::info!(data_dir = %data_dir.display(), "initializing a new data directory");
        Ca::init(&data_dir, &pass, KdfParams::default(), opts)
            .context("cannot initialize the certificate authority")?
    } else {
        Ca::open(&data_dir, &pass, opts).context("cannot open the certificate authority")?
    };
    drop(pass);
    let ca = Arc::new(ca);

    let key = Ed25519KeyPair::from_pkcs8(ca.audit_key_pkcs8())
        .map_err(|_| anyhow::anyhow!("the audit key is not a valid Ed25519 key"))?;
    let policy = CheckpointPolicy {
        every_entries: cfg.checkpoint_every_entries,
        every: Duration::from_secs(cfg.checkpoint_interval_secs),
    };
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&db_path(&data_dir), Box::new(AuditSigner(key)), policy)
            .context("cannot open the store")?,
    );
    // The update repository: online snapshot/timestamp keys sealed in the
    // CA's key store; root and targets keys offline (dev mode: online).
    let (ota, ota_created) =
        bulwark_registry::Ota::open_or_create(&data_dir, ca.keystore(), cfg.dev, cfg.ota)
            .context("cannot open the OTA repository")?;
    if let Some(created) = &ota_created {
        match &created.offline_keys {
            Some(dir) => tracing::warn!(
                dir = %dir.display(),
                "OTA repository created; its root and targets signing keys were written to this \
                 directory (mode 0600): move them off this machine, then sign releases with \
                 bulwark ota release create --targets-key FILE"
            ),
            None => tracing::info!("OTA repository created (dev mode: the server signs releases)"),
        }
    }
    let registry = Arc::new(
        Registry::new(
            store.clone(),
            ca.clone(),
            EventBus::new(4096),
            RegistryConfig {
                device_cert_lifetime: time::Duration::seconds(cfg.device_cert_secs),
                enroll_token_ttl: time::Duration::seconds(cfg.token_ttl_secs),
                ..RegistryConfig::default()
            },
        )
        .with_ota(ota),
    );
    if ota_created.is_some() {
        store.ota_root_published(1, Actor::System).await?;
    }
    let recovered = registry
        .ota_reconcile()
        .await
        .context("cannot reconcile the OTA repository with the store")?;
    if recovered > 0 {
        tracing::warn!(
            recovered,
            "recorded OTA releases whose publication a crash interrupted"
        );
    }
    {
        // Snapshot and timestamp are re-signed before they expire (when
        // half their lifetime is gone): look at least four times per
        // timestamp lifetime, at most hourly.
        let registry = registry.clone();
        let period = (cfg.ota.expiries.timestamp / 4)
            .clamp(Duration::from_secs(1), Duration::from_secs(3600));
        tokio::spawn(async move {
            let mut every = tokio::time::interval(period);
            loop {
                every.tick().await;
                if let Err(e) = registry.ota_refresh().await {
                    tracing::error!(error = %e, "could not re-sign the OTA timestamp/snapshot");
                }
            }
        });
    }

    if first_start {
        let root_fp = sha256_hex(ca.root_der());
        store
            .append_audit(
                Actor::System,
                AuditEvent::ServerInitialized {
                    root_fingerprint: root_fp.clone(),
                },
            )
            .await?;
        tracing::info!(
            root_sha256 = %root_fp,
            audit_key = %hex::encode(ca.audit_public_key()),
            "certificate authority created; keep the audit key to verify the log offline \
             (bulwark audit verify --data-dir DIR --audit-key KEY)"
        );
        if !cfg.dev {
            let token = registry.bootstrap_admin_token("initial-admin").await?;
            let path = data_dir.join("initial-admin-token");
            write_private(&path, &format!("{token}\n"))?;
            tracing::info!(path = %path.display(), "first admin token written (mode 0600); revoke it once you have created your own");
        }
    }

    // The API's own certificate, issued by our CA for this run; its key
    // lives only in memory.
    let (cert_der, key_der) = ca
        .issue_server(&cfg.tls_names)
        .context("cannot issue the API server certificate")?;
    store
        .record_server_certificate(server_cert_record(&cert_der, &cfg.tls_names)?)
        .await?;
    let tls = bulwark_api::server_tls_config(
        vec![cert_der.clone(), ca.issuing_der().to_vec()],
        key_der.to_vec(),
        &[ca.root_der(), ca.issuing_der()],
    )
    .context("cannot build the TLS configuration")?;

    // The gateway: the same certificate; client certificates chaining to
    // Bulwark's CA or to a registered manufacturer CA (followed live).
    let manufacturer_trust = registry
        .manufacturer_trust()
        .await
        .context("cannot load the registered manufacturer CAs")?;
    let mqtt_verifier = bulwark_api::LiveClientVerifier::new(
        &[ca.root_der(), ca.issuing_der()],
        manufacturer_trust,
    )
    .context("cannot build the MQTT client-certificate verifier")?;
    let mqtt_tls = bulwark_api::mqtt_tls_config(
        vec![cert_der, ca.issuing_der().to_vec()],
        key_der.to_vec(),
        mqtt_verifier.clone(),
    )
    .context("cannot build the MQTT TLS configuration")?;
    let mqtt_store = bulwark_store::MqttStore::open(&data_dir.join("mqtt.db"))
        .context("cannot open the MQTT session store")?;
    let gateway = bulwark_gateway::Gateway::new(
        registry.clone(),
        cfg.mqtt_limits.clone(),
        mqtt_tls,
        Some(mqtt_store),
    );
    let restored = gateway
        .restore()
        .await
        .context("cannot restore MQTT sessions")?;
    tracing::info!(
        sessions = restored.sessions,
        dropped = restored.dropped_sessions,
        messages = restored.messages,
        retained = restored.retained,
        wills = restored.wills,
        "MQTT state restored"
    );
    gateway.spawn_enforcement();
    spawn_tls_rotation(
        ca.clone(),
        store.clone(),
        cfg.tls_names.clone(),
        gateway.clone(),
        mqtt_verifier,
    );

    let listener = tokio::net::TcpListener::bind(cfg.api_addr)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.api_addr))?;
    let api_addr = listener.local_addr()?;
    let mqtt_listener = tokio::net::TcpListener::bind(cfg.mqtt_addr)
        .await
        .with_context(|| format!("cannot listen on {} for MQTT", cfg.mqtt_addr))?;
    let mqtt_addr = mqtt_listener.local_addr()?;
    let plain_listener = match cfg.dev_mqtt_plain_addr {
        Some(a) => Some(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a} for plaintext dev MQTT"))?,
        ),
        None => None,
    };
    let plain_addr = plain_listener
        .as_ref()
        .map(tokio::net::TcpListener::local_addr)
        .transpose()?;
    {
        // The rollout engine: every second, each running rollout moves on
        // (time-outs, retries, soak, phases, completion, abort); devices
        // are told over MQTT.
        let registry = registry.clone();
        let fleet = GatewayFleet(gateway.clone());
        tokio::spawn(async move {
            let mut memory = bulwark_registry::EngineMemory::default();
            let mut every = tokio::time::interval(Duration::from_secs(1));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(e) = registry
                    .ota_rollout_tick(&fleet, &mut memory, time::OffsetDateTime::now_utc())
                    .await
                {
                    tracing::error!(error = %e, "rollout engine pass failed");
                }
            }
        });
    }
    // Detection and response: gateway events in, alerts and actions out.
    let detect_stats =
        crate::detect::spawn(cfg.detect.clone(), registry.clone(), gateway.clone()).await?;
    let limits = Limits::new(cfg.limits);
    limits.spawn_pruner();
    let app = bulwark_api::router(Arc::new(AppState {
        registry: registry.clone(),
        limits,
        gateway: Some(gateway.clone()),
        metrics: ApiMetrics::default(),
        extra_metrics: detect_stats
            .into_iter()
            .map(|s| s as Arc<dyn bulwark_api::RenderMetrics>)
            .collect(),
    }));
    let url = format!("https://{}", host_port(api_addr));
    tracing::info!(%url, %mqtt_addr, "API and MQTT gateway (mTLS) listening");
    if let Some(a) = plain_addr {
        tracing::warn!(addr = %a, "dev mode: plaintext MQTT listener for anonymous clients under a permissive policy");
    }

    if cfg.dev {
        let token = registry.bootstrap_admin_token("dev-admin").await?;
        write_dev_env(&data_dir, &url, &token, mqtt_addr, plain_addr)?;
    }

    // One shutdown signal for every listener.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mqtt_task = {
        let gateway = gateway.clone();
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move { gateway.serve_tls(mqtt_listener, stop).await })
    };
    if let Some(l) = plain_listener {
        let gateway = gateway.clone();
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move {
            if let Err(e) = gateway.serve_dev_plain(l, stop).await {
                tracing::error!(error = %e, "plaintext dev MQTT listener stopped");
            }
        });
    }

    let serve = ServeConfig {
        max_connections: cfg.max_connections,
        handshake_timeout: Duration::from_secs(cfg.handshake_timeout_secs),
        drain_timeout: Duration::from_secs(10),
    };
    bulwark_api::serve(listener, tls, app, serve, stopped(stop_rx)).await;
    let _ = mqtt_task.await;
    gateway.flush().await;
    tracing::info!("shutting down");
    if let Err(e) = store.checkpoint_now().await {
        tracing::error!(error = %e, "final audit checkpoint failed");
    }
    Ok(())
}

fn host_port(a: std::net::SocketAddr) -> String {
    match a {
        std::net::SocketAddr::V4(v) => v.to_string(),
        std::net::SocketAddr::V6(v) => format!("[{}]:{}", v.ip(), v.port()),
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    }
    Ok(())
}

/// Prints and writes `dev.env`: shell-sourceable connection settings.
fn write_dev_env(
    data_dir: &Path,
    url: &str,
    token: &str,
    mqtt: std::net::SocketAddr,
    plain: Option<std::net::SocketAddr>,
) -> Result<()> {
    let cacert: PathBuf = Ca::bundle_path(data_dir);
    let cacert = std::fs::canonicalize(&cacert).unwrap_or(cacert);
    let mut text = format!(
        "export BULWARK_ADDR={}\nexport BULWARK_TOKEN={}\nexport BULWARK_MQTT_ADDR={}\n",
        shell_quote(url),
        shell_quote(token),
        shell_quote(&host_port(mqtt)),
    );
    if let Some(p) = plain {
        text.push_str(&format!(
            "export BULWARK_MQTT_DEV_ADDR={}\n",
            shell_quote(&host_port(p))
        ));
    }
    // Last: the test harness waits for this line.
    text.push_str(&format!(
        "export BULWARK_CACERT={}\n",
        shell_quote(&cacert.display().to_string())
    ));
    let path = data_dir.join("dev.env");
    write_private(&path, &text)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "# Bulwark dev instance. To use it from another shell:")?;
    writeln!(out, "#   source {}", path.display())?;
    write!(out, "{text}")?;
    out.flush()?;
    Ok(())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// SIGHUP rotates the MQTT gateway's server certificate: a new one is
/// issued and recorded, and new connections get it while open sessions
/// keep theirs (the API keeps its certificate until restart). The new
/// configuration keeps the live client-certificate verifier, so registered
/// manufacturer CAs stay trusted.
fn spawn_tls_rotation(
    ca: Arc<Ca>,
    store: Arc<dyn Store>,
    names: Vec<String>,
    gateway: bulwark_gateway::Gateway,
    verifier: Arc<bulwark_api::LiveClientVerifier>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; certificate rotation disabled");
            return;
        }
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let rotated = async {
                let (cert, key) = ca.issue_server(&names)?;
                store
                    .record_server_certificate(server_cert_record(&cert, &names)?)
                    .await?;
                let config = bulwark_api::mqtt_tls_config(
                    vec![cert.clone(), ca.issuing_der().to_vec()],
                    key.to_vec(),
                    verifier.clone(),
                )?;
                gateway.reload_tls(config);
                anyhow::Ok(sha256_hex(&cert))
            }
            .await;
            match rotated {
                Ok(fp) => tracing::info!(sha256 = %fp, "MQTT server certificate rotated"),
                Err(e) => {
                    tracing::error!(error = %e, "MQTT server certificate rotation failed; keeping the old one")
                }
            }
        }
    });
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        _ = term.recv() => tracing::info!("SIGTERM received"),
    }
}

/// The store record of the API's own certificate.
fn server_cert_record(der: &[u8], names: &[String]) -> Result<NewCert> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).context("cannot read the server certificate")?;
    let time = |t: x509_parser::time::ASN1Time| {
        time::OffsetDateTime::from_unix_timestamp(t.timestamp())
            .map_err(|e| anyhow::anyhow!("server certificate validity: {e}"))
    };
    Ok(NewCert {
        serial: CertSerial::from_bytes(cert.raw_serial())
            .map_err(|e| anyhow::anyhow!("server certificate serial: {e}"))?,
        kind: CertKind::Server,
        subject: names.first().cloned().unwrap_or_default(),
        der: der.to_vec(),
        fingerprint_sha256: sha256_hex(der),
        not_before: time(cert.validity().not_before)?,
        not_after: time(cert.validity().not_after)?,
    })
}

fn sha256_hex(der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref())
}

/// The fleet through the gateway: devices of a rollout are told over MQTT
/// (`devices/<id>/commands/ota`, QoS 1, `{"release": ..., "rollout": ...}`),
/// and watched (session, failed authentications).
struct GatewayFleet(bulwark_gateway::Gateway);

#[async_trait::async_trait]
impl bulwark_registry::Fleet for GatewayFleet {
    fn connected(&self, device: &bulwark_types::DeviceId) -> bool {
        self.0.is_connected(device)
    }

    fn auth_failures(&self, device: &bulwark_types::DeviceId) -> u64 {
        self.0
            .principal_counters(device.as_str())
            .map_or(0, |c| c.auth_failures)
    }

    async fn notify(&self, device: &bulwark_types::DeviceId, rollout: &str, release: &str) {
        let topic = format!("devices/{device}/commands/ota");
        let Ok(topic) = bulwark_mqtt::TopicName::new(topic) else {
            tracing::error!(%device, "no command topic for this device id");
            return;
        };
        let payload = serde_json::json!({ "release": release, "rollout": rollout }).to_string();
        match self
            .0
            .publish_system(topic, payload.into(), bulwark_mqtt::QoS::AtLeastOnce)
            .await
        {
            Ok(p) if p.queued == 0 => {
                tracing::warn!(%device, rollout, "update notification reached no session: the device is not subscribed")
            }
            Ok(_) => {}
            Err(e) => tracing::error!(%device, rollout, error = %e, "update notification failed"),
        }
    }
}
