//! Webhooks: an HTTP(S) POST of the JSON envelope, signed as described in
//! [`crate::signature`]. 2xx is delivered; network errors, 5xx and 429 are
//! retried (429/503 after their `Retry-After`, when given); any other
//! status is a refusal and is not retried. Redirects are not followed (a
//! signed alert goes only where it was configured to go).

use std::time::Duration;

use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use time::OffsetDateTime;

use super::{Failure, Payload, Retry};
use crate::config::{Secret, WebhookConfig, MIN_SECRET_LEN};
use crate::SinkError;

pub(crate) struct Webhook {
    client: reqwest::Client,
    url: Url,
    secret: Secret,
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

impl Webhook {
    pub fn build(c: &WebhookConfig, name: &str) -> Result<Webhook, SinkError> {
        let url = Url::parse(&c.url)
            .map_err(|e| SinkError::config(name, format!("url is not a valid URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" if c.insecure_plain_http => {
                tracing::warn!(sink = name, "webhook sends alerts over plain HTTP (insecure_plain_http = true)");
            }
            "http" => {
                return Err(SinkError::config(
                    name,
                    "url must be https:// (plain http:// only to a loopback address, or with insecure_plain_http = true)",
                ))
            }
            _ => return Err(SinkError::config(name, "url must be https://")),
        }
        if url.host().is_none() {
            return Err(SinkError::config(name, "url has no host"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(SinkError::config(
                name,
                "url must not carry credentials (the signature authenticates)",
            ));
        }
        if c.secret.expose().len() < MIN_SECRET_LEN {
            return Err(SinkError::config(
                name,
                format!("secret must be at least {MIN_SECRET_LEN} bytes"),
            ));
        }
        if c.timeout_secs == 0 {
            return Err(SinkError::config(name, "timeout_secs must be positive"));
        }
        let timeout = Duration::from_secs(c.timeout_secs);
        let mut builder = reqwest::Client::builder()
            .tls_backend_rustls()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("bulwark/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &c.ca_file {
            let pem = std::fs::read(path).map_err(|source| SinkError::ReadFile {
                sink: name.to_owned(),
                path: path.clone(),
                source,
            })?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                SinkError::config(name, format!("ca_file is not a PEM bundle: {e}"))
            })?;
            if roots.is_empty() {
                return Err(SinkError::config(name, "ca_file holds no certificate"));
            }
            builder = builder.tls_certs_merge(roots);
        }
        let client = builder
            .build()
            .map_err(|e| SinkError::config(name, format!("cannot build the HTTP client: {e}")))?;
        Ok(Webhook {
            client,
            url,
            secret: c.secret.clone(),
        })
    }

    pub async fn attempt(&mut self, p: &Payload) -> Result<(), Failure> {
        let now = OffsetDateTime::now_utc();
        let ts = now.unix_timestamp();
        let signature = crate::signature::sign(self.secret.expose(), ts, &p.bytes);
        let response = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("X-Bulwark-Timestamp", ts.to_string())
            .header("X-Bulwark-Signature", signature)
            .header("X-Bulwark-Delivery", p.delivery_id.as_str())
            .header("X-Bulwark-Event", p.kind)
            .body(p.bytes.clone())
            .send()
            .await
            .map_err(|e| {
                Failure::retry(SinkError::Http {
                    source: e.without_url(),
                })
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let error = SinkError::Status {
            status: status.as_u16(),
        };
        let retry = if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| crate::backoff::parse_retry_after(v, now))
                .map_or(Retry::Backoff, Retry::After)
        } else {
            Retry::Never
        };
        Err(Failure { error, retry })
    }
}
