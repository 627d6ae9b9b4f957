//! Update steps for the server's rollout engine, over HTTPS with the
//! device's client certificate: `POST {api_url}/v1/ota/reports` with a
//! [`RolloutReport`]; a report counts as delivered only once the server
//! answered that it recorded it.
//!
//! [`HttpsReporter::report`] only queues (a [`ReportQueue`], bounded,
//! ordered; reports without a rollout and `queued` are not sent) and
//! persists the queue to `<state_dir>/ota-reports.jsonl` (atomically)
//! before it returns, so a report made just before a reboot or a restart
//! is sent by the next start. One task drains the queue, oldest first, so
//! the reports of a rollout arrive in order:
//!
//! - `2xx`: recorded, next;
//! - `409` (does not advance the device), `404` (no such rollout, or the
//!   device is not in it), `401`/`403` (logged as errors) and any other
//!   `4xx`: dropped, never retried;
//! - `408`, `429`, `5xx` and transport errors: the same report again after
//!   `Retry-After` (delay-seconds, capped by the back-off cap) or a
//!   jittered exponential back-off ([`crate::link::backoff`]); the
//!   back-off resets at every answer that is not a retry.
//!
//! The HTTPS client is the OTA path's ([`crate::ota::mtls_client`]): the
//! identity's rustls configuration (a file or PKCS#11 key), `https_only`.
//! It is rebuilt when the identity `watch` changed, so the first request
//! after a renewal presents the new certificate.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;
use tokio::sync::{watch, Notify};

use crate::identity::Identity;
use crate::link::{Backoff, BackoffConfig};
use crate::report_queue::{classify, Disposition, DropReason, ReportQueue, RolloutReport};
use crate::update::{Reporter, StepReport};
use crate::{fsutil, report_chain, AgentError};

/// File name of the persisted queue in the state directory.
pub const QUEUE_FILE: &str = "ota-reports.jsonl";
/// Reports the queue holds before it drops non-terminal ones.
pub const DEFAULT_CAPACITY: usize = 256;
/// One request, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How much of an error answer's body is logged.
const MAX_LOGGED_BODY: usize = 512;

/// Where and how reports are delivered.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    /// `{api_url}/v1/ota/reports`.
    pub url: Url,
    pub capacity: usize,
    pub backoff: BackoffConfig,
    /// The persisted queue; `None` keeps it in memory only.
    pub queue_file: Option<PathBuf>,
}

impl ReportSettings {
    /// Settings for the server at `api_url`, the queue persisted in
    /// `state_dir`, 256 reports, the link's default back-off.
    pub fn new(state_dir: &Path, api_url: &str) -> Result<ReportSettings, AgentError> {
        let url = format!("{}/v1/ota/reports", api_url.trim_end_matches('/'));
        let url =
            Url::parse(&url).map_err(|e| AgentError::Config(format!("server.api_url: {e}")))?;
        Ok(ReportSettings {
            url,
            capacity: DEFAULT_CAPACITY,
            backoff: BackoffConfig::default(),
            queue_file: Some(state_dir.join(QUEUE_FILE)),
        })
    }
}

/// Where the delivery task gets its HTTP client.
pub(crate) enum ClientSource {
    /// mTLS with the current identity, rebuilt after a renewal.
    Identity {
        identity: watch::Receiver<Arc<Identity>>,
        roots: Arc<rustls::RootCertStore>,
    },
    /// A fixed client (tests: plain HTTP to a local listener).
    #[cfg(test)]
    Fixed(reqwest::Client),
}

impl ClientSource {
    /// The client for the next request: `current` unless the identity
    /// changed since it was built.
    fn client(
        &mut self,
        current: &mut Option<reqwest::Client>,
    ) -> Result<reqwest::Client, AgentError> {
        match self {
            ClientSource::Identity { identity, roots } => {
                if let (Some(client), Ok(false)) = (current.as_ref(), identity.has_changed()) {
                    return Ok(client.clone());
                }
                let id = identity.borrow_and_update().clone();
                let client = crate::ota::mtls_client(&id, roots.clone())?;
                *current = Some(client.clone());
                Ok(client)
            }
            #[cfg(test)]
            ClientSource::Fixed(client) => Ok(client.clone()),
        }
    }
}

/// State shared by the reporter handles and the delivery task.
struct Shared {
    queue: Mutex<ReportQueue>,
    queue_file: Option<PathBuf>,
    wake: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ReportQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the queue (held locked by the caller, so writes keep their
    /// order) to its file.
    fn persist(&self, queue: &ReportQueue) -> Result<(), AgentError> {
        match &self.queue_file {
            Some(path) => fsutil::write_atomic(path, &queue.to_json_lines(), 0o600),
            None => Ok(()),
        }
    }
}

/// A [`Reporter`] delivering rollout reports over HTTPS (cheap to clone;
/// every clone feeds the same queue and task).
#[derive(Clone)]
pub struct HttpsReporter {
    shared: Arc<Shared>,
    task: Arc<tokio::task::AbortHandle>,
}

impl std::fmt::Debug for HttpsReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsReporter")
            .field("queue_file", &self.shared.queue_file)
            .field("queued", &self.queued())
            .finish()
    }
}

impl HttpsReporter {
    /// Loads the persisted queue and starts the delivery task with the
    /// identity's mTLS client.
    pub fn spawn(
        settings: ReportSettings,
        identity: watch::Receiver<Arc<Identity>>,
        roots: Arc<rustls::RootCertStore>,
    ) -> Result<HttpsReporter, AgentError> {
        HttpsReporter::spawn_with(settings, ClientSource::Identity { identity, roots })
    }

    pub(crate) fn spawn_with(
        settings: ReportSettings,
        client: ClientSource,
    ) -> Result<HttpsReporter, AgentError> {
        let mut queue = ReportQueue::new(settings.capacity);
        if let Some(path) = &settings.queue_file {
            if let Some(dir) = path.parent() {
                fsutil::ensure_private_dir(dir)?;
            }
            load(&mut queue, path);
        }
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue),
            queue_file: settings.queue_file.clone(),
            wake: Notify::new(),
        });
        let task = tokio::spawn(deliver(shared.clone(), settings, client));
        Ok(HttpsReporter {
            shared,
            task: Arc::new(task.abort_handle()),
        })
    }

    /// Reports waiting for the server.
    pub fn queued(&self) -> usize {
        self.shared.lock().len()
    }

    /// Reports dropped because the queue was full.
    pub fn dropped_total(&self) -> u64 {
        self.shared.lock().dropped()
    }

    /// Stops the delivery task (what is still queued stays in the file).
    pub fn stop(&self) {
        self.task.abort();
    }
}

#[async_trait]
impl Reporter for HttpsReporter {
    async fn report(&self, report: &StepReport) -> Result<(), AgentError> {
        let Some(wire) = RolloutReport::from_step(report) else {
            return Ok(());
        };
        {
            let mut queue = self.shared.lock();
            if let Some(lost) = queue.push(wire) {
                tracing::warn!(
                    rollout = %lost.rollout, step = ?lost.step, dropped_total = queue.dropped(),
                    "the rollout report queue is full; dropped the oldest non-terminal report"
                );
            }
            self.shared.persist(&queue)?;
        }
        self.shared.wake.notify_one();
        Ok(())
    }
}

/// Reads the persisted queue (a missing file is an empty queue; a file
/// that cannot be read is logged and ignored).
fn load(queue: &mut ReportQueue, path: &Path) {
    match std::fs::read(path) {
        Ok(data) => {
            let skipped = queue.extend_from_json_lines(&data);
            if skipped > 0 {
                tracing::warn!(path = %path.display(), skipped, "skipped invalid lines of the rollout report queue");
            }
            if !queue.is_empty() {
                tracing::info!(
                    queued = queue.len(),
                    "resuming the delivery of rollout reports"
                );
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the rollout report queue; starting empty")
        }
    }
}

/// The delivery task: sends the oldest report until it is recorded or
/// dropped, then the next.
async fn deliver(shared: Arc<Shared>, settings: ReportSettings, mut source: ClientSource) {
    let mut backoff = Backoff::new(settings.backoff);
    let mut client = None;
    loop {
        let next = shared.lock().front().cloned();
        let Some(next) = next else {
            shared.wake.notified().await;
            continue;
        };
        let disposition = match source.client(&mut client) {
            Ok(http) => send(&http, &settings.url, &next.report).await,
            Err(e) => {
                tracing::warn!(error = %report_chain(&e), "cannot build the https client for rollout reports");
                Disposition::Retry { after: None }
            }
        };
        match disposition {
            Disposition::Retry { after } => {
                let drawn = backoff.next_delay(&mut rand::rng());
                let delay = after.map_or(drawn, |a| a.min(settings.backoff.cap));
                tracing::debug!(
                    ?delay,
                    attempt = backoff.attempt(),
                    "retrying a rollout report"
                );
                tokio::time::sleep(delay).await;
                continue;
            }
            Disposition::Recorded => {
                tracing::debug!(rollout = %next.report.rollout, step = ?next.report.step, "rollout report recorded");
            }
            Disposition::Drop(reason) => log_drop(&next.report, reason),
        }
        backoff.reset();
        let mut queue = shared.lock();
        queue.remove(next.seq);
        if let Err(e) = shared.persist(&queue) {
            tracing::warn!(error = %report_chain(&e), "cannot persist the rollout report queue");
        }
    }
}

/// One POST, classified; a transport error is a retry.
async fn send(client: &reqwest::Client, url: &Url, report: &RolloutReport) -> Disposition {
    let response = client
        .post(url.clone())
        .json(report)
        .timeout(REQUEST_TIMEOUT)
        .send()
        .await;
    let mut response = match response {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %report_chain(&e), rollout = %report.rollout, "cannot send a rollout report; retrying");
            return Disposition::Retry { after: None };
        }
    };
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let status = response.status().as_u16();
    let disposition = classify(status, retry_after.as_deref());
    if disposition != Disposition::Recorded {
        let body = body_excerpt(&mut response).await;
        tracing::debug!(status, %body, "rollout report answer");
        if let Disposition::Retry { .. } = disposition {
            tracing::warn!(status, %body, rollout = %report.rollout, "the server cannot take a rollout report now; retrying");
        }
    }
    disposition
}

/// The start of an answer's body, for the logs.
async fn body_excerpt(response: &mut reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_LOGGED_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_LOGGED_BODY);
    String::from_utf8_lossy(&body).into_owned()
}

fn log_drop(report: &RolloutReport, reason: DropReason) {
    let (rollout, step) = (&report.rollout, report.step);
    match reason {
        DropReason::NotAdvancing => {
            tracing::info!(%rollout, ?step, "the server did not take a stale or out-of-order rollout report; dropped")
        }
        DropReason::UnknownRollout => {
            tracing::warn!(%rollout, ?step, "the server knows no such rollout for this device; report dropped")
        }
        DropReason::Refused(status) => {
            tracing::error!(%rollout, ?step, status, "the server refused this device's rollout report (authentication or authorization); report dropped")
        }
        DropReason::Rejected(status) => {
            tracing::error!(%rollout, ?step, status, "the server rejected a rollout report; dropped")
        }
    }
}

#[cfg(test)]
#[path = "https_report_tests.rs"]
mod tests;
