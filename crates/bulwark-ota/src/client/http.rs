//! The HTTPS transport over a caller-configured `reqwest::Client` (which
//! carries the device's mTLS identity and the server's trust anchors).
//! It is tough's [`Transport`] for metadata and a [`RangeFetch`] for
//! artifacts (`Range: bytes=N-`). Plain HTTP is refused, except to a
//! loopback address when explicitly allowed (tests, simulator): TUF
//! verifies everything, but the mTLS channel is what keeps the
//! repository private to enrolled devices.

use std::net::IpAddr;

use async_trait::async_trait;
use futures::StreamExt;
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use tough::{Transport, TransportError, TransportErrorKind, TransportStream};
use url::Url;

use super::download::{RangeFetch, RangeResponse};
use crate::error::{BoxError, OtaError};

/// HTTPS (mTLS) transport for metadata and artifacts.
#[derive(Debug, Clone)]
pub struct HttpsTransport {
    client: reqwest::Client,
    loopback_http: bool,
}

enum Failure {
    NotFound(BoxError),
    Other(BoxError),
}

impl HttpsTransport {
    /// A transport using `client` (configure its identity, roots and
    /// timeouts before).
    pub fn new(client: reqwest::Client) -> Self {
        HttpsTransport {
            client,
            loopback_http: false,
        }
    }

    /// Also allows `http://` to loopback addresses (tests, simulator).
    #[must_use]
    pub fn allow_loopback_http(mut self) -> Self {
        self.loopback_http = true;
        self
    }

    fn check_url(&self, url: &Url) -> Result<(), Failure> {
        match url.scheme() {
            "https" => Ok(()),
            "http" if self.loopback_http && is_loopback(url) => Ok(()),
            other => Err(Failure::Other(
                format!("refusing scheme {other:?}: only https is allowed").into(),
            )),
        }
    }

    async fn get(&self, url: &Url, offset: u64) -> Result<reqwest::Response, Failure> {
        self.check_url(url)?;
        let mut request = self.client.get(url.clone());
        if offset > 0 {
            request = request.header(RANGE, format!("bytes={offset}-"));
        }
        let response = request
            .send()
            .await
            .map_err(|e| Failure::Other(Box::new(e)))?;
        // A redirect must not leave the allowed schemes either.
        self.check_url(response.url())?;
        match response.status() {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => Ok(response),
            StatusCode::NOT_FOUND | StatusCode::GONE | StatusCode::FORBIDDEN => Err(
                Failure::NotFound(format!("http status {}", response.status()).into()),
            ),
            status => Err(Failure::Other(format!("http status {status}").into())),
        }
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => {
            d == "localhost" || d.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
        }
        None => false,
    }
}

/// The first byte position of a `Content-Range: bytes A-B/N` header.
fn content_range_start(response: &reqwest::Response) -> Option<u64> {
    let value = response.headers().get(CONTENT_RANGE)?.to_str().ok()?;
    let range = value.strip_prefix("bytes ")?;
    let (start, _) = range.split_once('-')?;
    start.trim().parse().ok()
}

#[async_trait]
impl Transport for HttpsTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        let response = self.get(&url, 0).await.map_err(|f| match f {
            Failure::NotFound(e) => {
                TransportError::new_with_cause(TransportErrorKind::FileNotFound, &url, e)
            }
            Failure::Other(e) => TransportError::new_with_cause(TransportErrorKind::Other, &url, e),
        })?;
        let url_for_errors = url.clone();
        let stream = response.bytes_stream().map(move |chunk| {
            chunk.map_err(|e| {
                TransportError::new_with_cause(TransportErrorKind::Other, &url_for_errors, e)
            })
        });
        Ok(Box::pin(stream))
    }
}

#[async_trait]
impl RangeFetch for HttpsTransport {
    async fn fetch_from(&self, url: &Url, offset: u64) -> Result<RangeResponse, OtaError> {
        let response = self.get(url, offset).await.map_err(|f| match f {
            Failure::NotFound(_) => OtaError::NotFound {
                what: url.to_string(),
            },
            Failure::Other(source) => OtaError::Transport {
                url: url.to_string(),
                source,
            },
        })?;
        let start = if response.status() == StatusCode::PARTIAL_CONTENT {
            content_range_start(&response).ok_or_else(|| OtaError::Transport {
                url: url.to_string(),
                source: "206 without a valid Content-Range".into(),
            })?
        } else {
            0
        };
        let url_for_errors = url.to_string();
        let body = response.bytes_stream().map(move |chunk| {
            chunk.map_err(|e| OtaError::Transport {
                url: url_for_errors.clone(),
                source: Box::new(e),
            })
        });
        Ok(RangeResponse {
            start,
            body: Box::pin(body),
        })
    }
}
