//! The server's alerts, polled over the API: `GET /v1/alerts?after=<id>&limit=<n>`
//! with the operator token, `{"alerts": [...]}` ascending by id.
//!
//! Every poll re-reads all alerts created since the run began (their
//! actions and `last_seen` change after they open), page by page. A 404
//! means the server has no alerts API: the run goes on and reports no
//! detection. Other failures (429, connection errors) are counted and the
//! next poll tries again.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use reqwest::StatusCode;
use serde::Deserialize;
use time::OffsetDateTime;

use super::summary::{Alert, Seen};

/// Alerts asked for per request.
const PAGE: usize = 500;
/// Pages read per poll, at most (a guard against an endless listing).
const MAX_PAGES: usize = 200;

#[derive(Deserialize)]
struct Page {
    alerts: Vec<serde_json::Value>,
}

/// Whether the server has the alerts API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Unknown,
    Present,
    Missing,
}

impl Api {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Api::Unknown => "unreachable",
            Api::Present => "ok",
            Api::Missing => "missing",
        }
    }
}

/// The alerts of one run, as last read.
pub(crate) struct Poller {
    http: reqwest::Client,
    url: reqwest::Url,
    token: String,
    /// Alerts with ids above this are the run's.
    after: i64,
    pub(crate) api: Api,
    pub(crate) alerts: BTreeMap<i64, Seen>,
    pub(crate) polls: u64,
    pub(crate) errors: u64,
    pub(crate) undecodable: u64,
    pub(crate) last_error: Option<String>,
}

impl Poller {
    pub(crate) fn new(base: &str, token: &str, ca_pem: &[u8]) -> Result<Poller> {
        let ca = reqwest::Certificate::from_pem(ca_pem).context("BULWARK_CACERT")?;
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .context("HTTPS client")?;
        let url = reqwest::Url::parse(base)
            .and_then(|b| b.join("v1/alerts"))
            .with_context(|| format!("BULWARK_ADDR {base:?}"))?;
        Ok(Poller {
            http,
            url,
            token: token.to_owned(),
            after: 0,
            api: Api::Unknown,
            alerts: BTreeMap::new(),
            polls: 0,
            errors: 0,
            undecodable: 0,
            last_error: None,
        })
    }

    /// Reads every alert that exists now and remembers the highest id:
    /// only later ones belong to this run.
    pub(crate) async fn baseline(&mut self) {
        let mut after = 0;
        for _ in 0..MAX_PAGES * 10 {
            match self.page(after).await {
                Ok(Some(page)) if !page.is_empty() => {
                    after = page
                        .iter()
                        .filter_map(|a| a["id"].as_i64())
                        .max()
                        .unwrap_or(after)
                        .max(after);
                    if page.len() < PAGE {
                        break;
                    }
                }
                _ => break,
            }
        }
        self.after = after;
    }

    pub(crate) fn baseline_id(&self) -> i64 {
        self.after
    }

    /// One page after `after`: `None` when the API is missing or failed.
    async fn page(&mut self, after: i64) -> Result<Option<Vec<serde_json::Value>>, ()> {
        if self.api == Api::Missing {
            return Ok(None);
        }
        let mut url = self.url.clone();
        url.set_query(Some(&format!("after={after}&limit={PAGE}")));
        let r = self.http.get(url).bearer_auth(&self.token).send().await;
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                self.fail(format!("{e}"));
                return Err(());
            }
        };
        match r.status() {
            StatusCode::NOT_FOUND => {
                if self.api != Api::Missing {
                    eprintln!(
                        "scenario: GET /v1/alerts answered 404: no alerts API; nothing can be detected"
                    );
                }
                self.api = Api::Missing;
                return Ok(None);
            }
            s if !s.is_success() => {
                self.fail(format!("HTTP {s}"));
                return Err(());
            }
            _ => {}
        }
        match r.json::<Page>().await {
            Ok(p) => {
                self.api = Api::Present;
                Ok(Some(p.alerts))
            }
            Err(e) => {
                self.fail(format!("alerts JSON: {e}"));
                Err(())
            }
        }
    }

    fn fail(&mut self, e: String) {
        self.errors += 1;
        if self.last_error.as_ref() != Some(&e) {
            eprintln!("scenario: polling alerts: {e}");
        }
        self.last_error = Some(e);
    }

    /// Re-reads the run's alerts. `attack_start` is when the attack
    /// began (to note when an older alert's `last_seen` passed it).
    pub(crate) async fn poll(&mut self, attack_start: Option<OffsetDateTime>) {
        self.polls += 1;
        let mut after = self.after;
        for _ in 0..MAX_PAGES {
            let page = match self.page(after).await {
                Ok(Some(p)) => p,
                _ => return,
            };
            let n = page.len();
            for v in page {
                let Ok(a) = serde_json::from_value::<Alert>(v) else {
                    self.undecodable += 1;
                    continue;
                };
                after = after.max(a.id);
                match self.alerts.get_mut(&a.id) {
                    Some(seen) => seen.update(a, attack_start),
                    None => {
                        let id = a.id;
                        let mut seen = Seen::new(a.clone());
                        seen.update(a, attack_start);
                        self.alerts.insert(id, seen);
                    }
                }
            }
            if n < PAGE {
                return;
            }
        }
    }
}
