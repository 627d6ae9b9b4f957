//! `bulwark-agent run` once the device has its identity: the MQTT link,
//! scheduled reports, update instructions, and the boot path.
//!
//! [`run`]:
//!
//! 1. starts the mTLS MQTT [`Link`] with the identity's client
//!    configuration (client id = device id) and, on every renewal published
//!    on the identity `watch`, hands the link the new configuration so the
//!    next connection presents the renewed certificate;
//! 2. runs the **boot path** ([`Platform::boot`]): directory slots play the
//!    bootloader, then [`Updater::resume`] finishes a pending update (health
//!    check, then confirm → `healthy`, or roll back → `rolled_back`);
//! 3. subscribes to `devices/{id}/commands/ota` (before the first report,
//!    so a server that sees the device report can instruct it);
//! 4. reports every update step on MQTT (`devices/{id}/ota/status`, for
//!    observers) and, when the instruction named a rollout, over HTTPS to
//!    the rollout engine ([`HttpsReporter`], queued, ordered, retried);
//! 5. publishes inventory and posture at start, every report interval and
//!    after each update;
//! 6. runs one update at a time ([`crate::ota::Ota`]); an instruction that
//!    is malformed or arrives while one runs is published on
//!    `devices/{id}/ota/rejected` and ignored;
//! 7. stops on the `shutdown` future (SIGTERM / ctrl-c in the binary):
//!    an update still running is abandoned (its persisted state is finished
//!    by the next start's boot path) and the link says DISCONNECT.
//!
//! # The reboot
//!
//! With `CommandSlots` the configured `reboot` hook reboots the device and
//! the agent's next start runs the boot path. With `DirectorySlots` there is
//! no machine to reboot: once the install reached `rebooting`, the agent
//! runs the very same boot path in-process ([`Platform::boot`]: the
//! simulated bootloader picks the trial slot, then `resume`). The link stays
//! up across it, so no report waits for a reconnection.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bulwark_mqtt::{QoS, TopicFilter};
use rustls_pki_types::ServerName;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{Config, SlotBackend};
use crate::enroll::{load_roots, Enroller};
use crate::https_report::{HttpsReporter, ReportSettings};
use crate::identity::Identity;
use crate::link::{Link, LinkConfig, LinkError, LinkHandle, Message};
use crate::ota::{Instruction, Ota, OtaSettings};
use crate::posture::{collect_posture, firmware_version, Inventory};
use crate::report::{publish_json, DeviceTopics, FanOut, InventoryReport, MqttReporter, Rejection};
use crate::slots::{CommandSlots, DirectorySlots, Slots};
use crate::update::{HealthCheck, Reporter, Step, Updater};
use crate::{report_chain, AgentError};

/// The configured slots, with what their boot means.
#[derive(Debug)]
pub enum Platform {
    /// The agent's start (or its in-process reboot) is the boot.
    Directory(Arc<DirectorySlots>),
    /// A real bootloader behind hook commands.
    Command(Arc<CommandSlots>),
}

impl Platform {
    pub fn open(backend: &SlotBackend) -> Result<Platform, AgentError> {
        Ok(match backend {
            SlotBackend::Directory { root } => {
                Platform::Directory(Arc::new(DirectorySlots::open(root)?))
            }
            SlotBackend::Command(hooks) => {
                Platform::Command(Arc::new(CommandSlots::new(hooks.clone())))
            }
        })
    }

    pub fn slots(&self) -> Arc<dyn Slots> {
        match self {
            Platform::Directory(s) => s.clone(),
            Platform::Command(s) => s.clone(),
        }
    }

    /// The start-up path: plays the bootloader (directory slots), then
    /// finishes a pending update. Returns its final step, if there was one.
    pub async fn boot(&self, updater: &Updater) -> Result<Option<Step>, AgentError> {
        if let Platform::Directory(slots) = self {
            slots.boot().await?;
        }
        updater.resume().await
    }

    /// After an install reached `rebooting` (and the slots' `reboot` ran):
    /// directory slots boot in-process; a real device is going down.
    pub async fn after_reboot_request(
        &self,
        updater: &Updater,
    ) -> Result<Option<Step>, AgentError> {
        match self {
            Platform::Directory(_) => self.boot(updater).await,
            Platform::Command(_) => {
                tracing::info!("waiting for the device to reboot into the new slot");
                Ok(None)
            }
        }
    }
}

/// Everything the running agent shares between its tasks.
struct Agent {
    config: Config,
    device_id: String,
    topics: DeviceTopics,
    link: LinkHandle,
    platform: Platform,
    updater: Arc<Updater>,
    ota: Ota,
}

/// Runs the agent with the identity on `identity` until `shutdown`
/// completes.
pub async fn run(
    config: &Config,
    enroller: &Enroller,
    identity: watch::Receiver<Arc<Identity>>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), AgentError> {
    let device_id = identity.borrow().device_id().to_owned();
    let topics = DeviceTopics::new(&device_id)?;
    let roots = Arc::new(load_roots(&enroller.ca_pem()?)?);
    let server_name = ServerName::try_from(config.server.mqtt_server_name.clone())
        .map_err(|e| AgentError::Config(format!("server.mqtt_server_name: {e}")))?;
    let tls = Arc::new(identity.borrow().client_config(roots.clone())?);
    let link_config = LinkConfig::new(&config.server.mqtt_addr, server_name, &device_id);
    let (link, mut incoming) = Link::spawn(link_config, tls);
    let renewals = tokio::spawn(follow_renewals(
        identity.clone(),
        roots.clone(),
        link.clone(),
    ));

    let platform = Platform::open(&config.slots)?;
    let https = HttpsReporter::spawn(
        ReportSettings::new(&config.state_dir, &config.server.api_url)?,
        identity.clone(),
        roots.clone(),
    )?;
    let reporter: Arc<dyn Reporter> = Arc::new(FanOut::new(vec![
        Arc::new(MqttReporter::new(link.clone(), topics.ota_status.clone())),
        Arc::new(https.clone()),
    ]));
    let health = HealthCheck {
        command: config.health_check.command.clone(),
        timeout: config.health_timeout(),
    };
    let updater = Arc::new(Updater::open(
        &config.state_dir,
        &device_id,
        platform.slots(),
        reporter.clone(),
        health,
    )?);
    log_boot(platform.boot(&updater).await);
    let settings = OtaSettings::new(
        &config.state_dir,
        &config.server.api_url,
        &config.hardware_model,
        roots,
    )?;
    let ota = Ota::new(settings, &device_id, identity, updater.clone(), reporter);
    let agent = Arc::new(Agent {
        config: config.clone(),
        device_id,
        topics,
        link: link.clone(),
        platform,
        updater,
        ota,
    });

    tokio::pin!(shutdown);
    tokio::select! {
        () = subscribe(&link, &agent.topics.ota_commands) => {}
        () = &mut shutdown => {
            stop(&link, &https, renewals, None).await;
            return Ok(());
        }
    }

    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let mut running: Option<JoinHandle<()>> = None;
    let mut ticker = tokio::time::interval(config.report_interval());
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => agent.publish_reports().await,
            message = incoming.recv() => match message {
                Some(m) => agent.on_message(m, &mut running, &done_tx).await,
                None => {
                    tracing::error!("the mqtt link stopped");
                    break;
                }
            },
            Some(()) = done_rx.recv() => agent.publish_inventory().await,
            () = &mut shutdown => break,
        }
    }
    stop(&link, &https, renewals, running).await;
    Ok(())
}

fn log_boot(result: Result<Option<Step>, AgentError>) {
    match result {
        Ok(Some(step)) => tracing::info!(?step, "finished the pending update"),
        Ok(None) => {}
        Err(e) => {
            tracing::error!(error = %report_chain(&e), "cannot finish the pending update; staying on the running slot")
        }
    }
}

async fn stop(
    link: &LinkHandle,
    https: &HttpsReporter,
    renewals: JoinHandle<()>,
    running: Option<JoinHandle<()>>,
) {
    if let Some(task) = running.filter(|t| !t.is_finished()) {
        tracing::warn!("abandoning the running update; the next start finishes it");
        task.abort();
    }
    renewals.abort();
    // Undelivered rollout reports stay in the state directory's queue file.
    https.stop();
    if tokio::time::timeout(Duration::from_secs(5), link.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("the mqtt link did not stop within 5 s");
    }
    tracing::info!("stopped");
}

/// Gives the link each renewed identity's TLS configuration.
async fn follow_renewals(
    mut identity: watch::Receiver<Arc<Identity>>,
    roots: Arc<rustls::RootCertStore>,
    link: LinkHandle,
) {
    while identity.changed().await.is_ok() {
        let current = identity.borrow_and_update().clone();
        match current.client_config(roots.clone()) {
            Ok(tls) => {
                link.set_tls_config(Arc::new(tls));
                tracing::info!("the next mqtt connection presents the renewed certificate");
            }
            Err(e) => {
                tracing::error!(error = %report_chain(&e), "cannot use the renewed certificate")
            }
        }
    }
}

/// Subscribes to update instructions; retries until the gateway answers.
async fn subscribe(link: &LinkHandle, filter: &TopicFilter) {
    loop {
        match link.subscribe(filter.clone(), QoS::AtLeastOnce).await {
            Ok(qos) => {
                tracing::info!(%filter, ?qos, "listening for update instructions");
                return;
            }
            Err(LinkError::Refused(code)) => {
                tracing::error!(%filter, %code, "the gateway refused the update subscription");
                return;
            }
            Err(LinkError::Stopped) => return,
            Err(e) => {
                let error = crate::report_chain(&e);
                tracing::warn!(%filter, %error, "subscription failed; retrying");
                let _ = link.wait_connected().await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

impl Agent {
    async fn on_message(
        self: &Arc<Self>,
        message: Message,
        running: &mut Option<JoinHandle<()>>,
        done: &mpsc::Sender<()>,
    ) {
        if message.topic.as_str() != self.topics.ota_commands.as_str() {
            tracing::debug!(topic = %message.topic.as_str(), "ignoring a message");
            return;
        }
        let instruction = match Instruction::parse(&message.payload) {
            Ok(i) => i,
            Err(e) => return self.reject(None, report_chain(&e)).await,
        };
        if running.as_ref().is_some_and(|t| !t.is_finished()) {
            let reason = "an update is already running".to_owned();
            return self.reject(Some(&instruction), reason).await;
        }
        tracing::info!(release = %instruction.release, rollout = ?instruction.rollout, "update instruction");
        let agent = self.clone();
        let done = done.clone();
        *running = Some(tokio::spawn(async move {
            match agent.ota.run(&instruction).await {
                Ok(Step::Rebooting) => {
                    log_boot(agent.platform.after_reboot_request(&agent.updater).await)
                }
                Ok(step) => tracing::info!(?step, "update ended"),
                Err(e) => agent.reject(Some(&instruction), report_chain(&e)).await,
            }
            let _ = done.send(()).await;
        }));
    }

    async fn reject(&self, instruction: Option<&Instruction>, reason: String) {
        tracing::warn!(%reason, "update instruction rejected");
        let rejection = Rejection {
            device_id: self.device_id.clone(),
            release: instruction.map(|i| i.release.to_string()),
            rollout: instruction.and_then(|i| i.rollout.clone()),
            reason,
            at: time::OffsetDateTime::now_utc(),
        };
        self.publish(&self.topics.ota_rejected, &rejection).await;
    }

    async fn publish<T: serde::Serialize>(&self, topic: &bulwark_mqtt::TopicName, value: &T) {
        if let Err(e) = publish_json(&self.link, topic, value).await {
            tracing::warn!(topic = %topic.as_str(), error = %report_chain(&e), "report not sent");
        }
    }

    async fn publish_reports(&self) {
        self.publish_inventory().await;
        match tokio::task::spawn_blocking(|| collect_posture(std::path::Path::new("/proc"))).await {
            Ok(Ok(posture)) => self.publish(&self.topics.posture, &posture).await,
            Ok(Err(e)) => tracing::warn!(error = %report_chain(&e), "posture unavailable"),
            Err(e) => tracing::warn!(error = %e, "posture task failed"),
        }
    }

    async fn publish_inventory(&self) {
        let firmware = firmware_version(&self.config.firmware).unwrap_or_else(|e| {
            tracing::warn!(error = %report_chain(&e), "firmware version unknown");
            "unknown".to_owned()
        });
        let slots = self.platform.slots();
        let (slot, release) = match slots.active().await {
            Ok(slot) => {
                let release = self.updater.release_in(&slot).await;
                (slot, release)
            }
            Err(e) => {
                tracing::warn!(error = %report_chain(&e), "active slot unknown");
                ("unknown".to_owned(), None)
            }
        };
        let inventory = Inventory::new(
            &self.device_id,
            &firmware,
            &self.config.hardware_model,
            &slot,
        );
        let report = InventoryReport { inventory, release };
        self.publish(&self.topics.inventory, &report).await;
    }
}
