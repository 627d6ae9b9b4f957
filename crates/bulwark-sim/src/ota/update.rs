//! One simulated device's update: what the real agent does up to the
//! install, timed. Metadata (tough load + check), the artifact download
//! (resumed after a refusal for load), its verification (length, SHA-256),
//! then the step reports over HTTPS with the device's certificate. The
//! install itself is skipped: the verified file is deleted and
//! `installing`, `rebooting`, `healthy` are reported straight away.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use async_trait::async_trait;
use bulwark_ota::client::{RangeFetch, RangeResponse};
use bulwark_ota::url::Url;
use bulwark_ota::{Device, HardwareModel, HttpsTransport, OtaError, TargetName, UpdateClient};
use futures::StreamExt as _;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;

/// Attempts of one request refused for load (429, 503).
const MAX_ATTEMPTS: u32 = 60;
/// Pause before retrying when the server gave no Retry-After.
const DEFAULT_RETRY: Duration = Duration::from_secs(1);
/// Longest pause honoured from a Retry-After.
const MAX_RETRY: Duration = Duration::from_secs(10);

/// An update instruction from `devices/<id>/commands/ota`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Instruction {
    pub(crate) release: String,
    #[serde(default)]
    pub(crate) rollout: Option<String>,
}

impl Instruction {
    pub(crate) fn parse(payload: &[u8]) -> Result<Instruction> {
        let i: Instruction =
            serde_json::from_slice(payload).context("update instruction is not valid JSON")?;
        TargetName::new(&i.release)
            .map_err(|e| anyhow!("update instruction names an invalid target: {e}"))?;
        Ok(i)
    }
}

/// What every device's update shares.
pub(crate) struct Shared {
    /// `<server>/v1/ota/tuf/`.
    pub(crate) tuf: Url,
    /// `<server>/v1/ota/reports`.
    pub(crate) reports: Url,
    /// The first root, fetched once.
    pub(crate) root: Vec<u8>,
    pub(crate) model: HardwareModel,
    /// Datastores and downloads live under here.
    pub(crate) work: PathBuf,
}

/// What one completed update measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// tough's repository load (root → timestamp → snapshot → targets) and the target check.
    pub(crate) metadata: Duration,
    /// First request to the last byte of the body.
    pub(crate) download: Duration,
    /// Last byte to the verified artifact: flush and fsync of the partial
    /// file, a read of it with SHA-256 (and SHA-512 if listed), the rename.
    pub(crate) verify: Duration,
    pub(crate) bytes: u64,
    /// Requests and downloads retried after 429/503.
    pub(crate) retries: u32,
}

/// Runs one update and reports every step; `Err` once `failed` was
/// reported (if it could be).
pub(crate) async fn run(
    shared: &Shared,
    http: &reqwest::Client,
    device: &str,
    ins: &Instruction,
) -> Result<Timing> {
    let mut retries = 0;
    match update(shared, http, device, ins, &mut retries).await {
        Ok(t) => Ok(Timing { retries, ..t }),
        Err(e) => {
            let reason = format!("{e:#}");
            let _ = report(shared, http, ins, "failed", Some(&reason), &mut retries).await;
            Err(e)
        }
    }
}

async fn update(
    shared: &Shared,
    http: &reqwest::Client,
    device: &str,
    ins: &Instruction,
    retries: &mut u32,
) -> Result<Timing> {
    let name = TargetName::new(&ins.release).map_err(|e| anyhow!("{e}"))?;
    let transport = HttpsTransport::new(http.clone());
    let datastore = shared.work.join("tuf").join(device);
    let t0 = Instant::now();
    let client = with_retries(retries, || {
        UpdateClient::load(
            &shared.root,
            &datastore,
            shared.tuf.clone(),
            shared.tuf.join("targets/").expect("relative URL"),
            transport.clone(),
        )
    })
    .await
    .context("loading the repository")?;
    let candidate = client
        .check(
            &name,
            &Device {
                model: shared.model.clone(),
                floor: None,
            },
        )
        .context("checking the target")?;
    let metadata = t0.elapsed();

    report(shared, http, ins, "downloading", None, retries).await?;
    let fetch = TimedFetch {
        inner: transport,
        body_end: Arc::new(Mutex::new(None)),
    };
    let dir = shared.work.join("downloads").join(device);
    let t1 = Instant::now();
    let artifact = with_retries(retries, || client.download(&candidate, &fetch, &dir))
        .await
        .context("downloading the artifact")?;
    let t2 = Instant::now();
    let body_end = fetch
        .body_end
        .lock()
        .expect("not poisoned")
        .unwrap_or(t2)
        .clamp(t1, t2);
    let bytes = artifact.length();
    // The sim installs nothing: bound the disk it uses.
    remove_dir(&dir).await;

    for step in ["verifying", "installing", "rebooting", "healthy"] {
        report(shared, http, ins, step, None, retries).await?;
    }
    Ok(Timing {
        metadata,
        download: body_end - t1,
        verify: t2 - body_end,
        bytes,
        retries: 0,
    })
}

async fn remove_dir(dir: &Path) {
    let _ = tokio::fs::remove_dir_all(dir).await;
}

/// Whether an error from the OTA client is a refusal for load.
fn is_load_refusal(e: &OtaError) -> bool {
    let text = format!("{e}: {:?}", e);
    text.contains("503") || text.contains("429")
}

/// Retries `op` while the server refuses for load. `HttpsTransport` does
/// not expose the Retry-After of such a refusal, so the pause is fixed;
/// a download resumes from its partial file.
async fn with_retries<T, F, Fut>(retries: &mut u32, mut op: F) -> Result<T, OtaError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, OtaError>>,
{
    let mut attempt = 1;
    loop {
        match op().await {
            Err(e) if attempt < MAX_ATTEMPTS && is_load_refusal(&e) => {
                attempt += 1;
                *retries += 1;
                tokio::time::sleep(DEFAULT_RETRY).await;
            }
            other => return other,
        }
    }
}

/// POSTs one step report; 204 recorded, 409 (not advancing) tolerated,
/// 429/503 retried after their Retry-After.
async fn report(
    shared: &Shared,
    http: &reqwest::Client,
    ins: &Instruction,
    step: &str,
    reason: Option<&str>,
    retries: &mut u32,
) -> Result<()> {
    let Some(rollout) = &ins.rollout else {
        return Ok(());
    };
    let body =
        json!({ "rollout": rollout, "release": ins.release, "step": step, "reason": reason });
    for attempt in 1..=MAX_ATTEMPTS {
        let resp = http
            .post(shared.reports.clone())
            .json(&body)
            .send()
            .await
            .with_context(|| format!("reporting {step}"))?;
        match resp.status() {
            StatusCode::NO_CONTENT | StatusCode::OK | StatusCode::CONFLICT => return Ok(()),
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                if attempt < MAX_ATTEMPTS =>
            {
                *retries += 1;
                tokio::time::sleep(retry_after(&resp)).await;
            }
            status => {
                let text = resp.text().await.unwrap_or_default();
                bail!("reporting {step}: HTTP {status}: {}", text.trim());
            }
        }
    }
    bail!("reporting {step}: refused for load {MAX_ATTEMPTS} times")
}

fn retry_after(resp: &reqwest::Response) -> Duration {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(DEFAULT_RETRY, |s| Duration::from_secs(s).min(MAX_RETRY))
}

/// The device's transport, noting when the artifact's body ended (so the
/// verification that follows can be timed apart from the transfer).
struct TimedFetch {
    inner: HttpsTransport,
    body_end: Arc<Mutex<Option<Instant>>>,
}

#[async_trait]
impl RangeFetch for TimedFetch {
    async fn fetch_from(&self, url: &Url, offset: u64) -> Result<RangeResponse, OtaError> {
        let resp = self.inner.fetch_from(url, offset).await?;
        let end = self.body_end.clone();
        let marker = futures::stream::poll_fn(move |_| {
            *end.lock().expect("not poisoned") = Some(Instant::now());
            Poll::Ready(None)
        });
        Ok(RangeResponse {
            start: resp.start,
            body: Box::pin(resp.body.chain(marker)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instructions() {
        let i = Instruction::parse(br#"{"release":"fw-1","rollout":"r-1"}"#).unwrap();
        assert_eq!(i.release, "fw-1");
        assert_eq!(i.rollout.as_deref(), Some("r-1"));
        assert!(Instruction::parse(br#"{"release":"fw-1"}"#).is_ok());
        assert!(Instruction::parse(br#"{"release":"../x"}"#).is_err());
        assert!(Instruction::parse(b"[]").is_err());
    }
}
