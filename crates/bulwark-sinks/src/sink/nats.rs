//! NATS: the JSON envelope published to one subject, with the delivery id
//! in the `Nats-Msg-Id` header (JetStream streams on the subject then
//! discard a retried duplicate) and the kind in `Bulwark-Event`. The
//! notice counts as delivered after a flush (the server received it).
//! The client is made at the first notice and reconnects by itself; if
//! the first connection fails, the next attempt tries again.

use std::path::PathBuf;
use std::time::Duration;

use async_nats::{ConnectOptions, HeaderMap, ServerAddr};

use super::{within, Failure, Payload};
use crate::config::NatsConfig;
use crate::SinkError;

pub(crate) struct Nats {
    url: String,
    subject: async_nats::Subject,
    ca_file: Option<PathBuf>,
    timeout: Duration,
    client: Option<async_nats::Client>,
}

/// A subject we may publish to: dot-separated non-empty tokens of
/// printable ASCII, no wildcards (`*`, `>`).
fn check_subject(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 255 {
        return Err("subject must be 1 to 255 characters".to_owned());
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("subject may contain only printable ASCII without spaces".to_owned());
    }
    for token in s.split('.') {
        if token.is_empty() {
            return Err("subject has an empty token".to_owned());
        }
        if token == "*" || token == ">" {
            return Err("subject must not contain wildcards".to_owned());
        }
    }
    Ok(())
}

fn nats_err(what: &'static str, e: impl std::error::Error + Send + Sync + 'static) -> SinkError {
    SinkError::Nats {
        what,
        source: Box::new(e),
    }
}

impl Nats {
    pub fn build(c: &NatsConfig, name: &str) -> Result<Nats, SinkError> {
        c.url.parse::<ServerAddr>().map_err(|e| {
            SinkError::config(name, format!("url is not a NATS server address: {e}"))
        })?;
        check_subject(&c.subject).map_err(|e| SinkError::config(name, e))?;
        if let Some(ca) = &c.ca_file {
            std::fs::metadata(ca).map_err(|source| SinkError::ReadFile {
                sink: name.to_owned(),
                path: ca.clone(),
                source,
            })?;
        }
        if c.timeout_secs == 0 {
            return Err(SinkError::config(name, "timeout_secs must be positive"));
        }
        Ok(Nats {
            url: c.url.clone(),
            subject: async_nats::Subject::from(c.subject.as_str()),
            ca_file: c.ca_file.clone(),
            timeout: Duration::from_secs(c.timeout_secs),
            client: None,
        })
    }

    async fn connect(&self) -> Result<async_nats::Client, SinkError> {
        let mut options = ConnectOptions::new()
            .name(concat!("bulwark-sinks/", env!("CARGO_PKG_VERSION")))
            .connection_timeout(self.timeout);
        if let Some(ca) = &self.ca_file {
            options = options.require_tls(true).add_root_certificates(ca.clone());
        }
        options
            .connect(self.url.as_str())
            .await
            .map_err(|e| nats_err("cannot connect", e))
    }

    pub async fn attempt(&mut self, p: &Payload) -> Result<(), Failure> {
        let client = match &self.client {
            Some(c) => c.clone(),
            None => {
                let c = within(self.timeout, "nats connect", self.connect()).await?;
                self.client = Some(c.clone());
                c
            }
        };
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, p.delivery_id.as_str());
        headers.insert("Bulwark-Event", p.kind);
        let publish = async {
            client
                .publish_with_headers(self.subject.clone(), headers, p.bytes.clone())
                .await
                .map_err(|e| nats_err("publish", e))?;
            client.flush().await.map_err(|e| nats_err("flush", e))
        };
        within(self.timeout, "nats publish", publish).await
    }

    pub async fn close(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = tokio::time::timeout(self.timeout, client.flush()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::check_subject;

    #[test]
    fn subjects() {
        assert!(check_subject("bulwark.alerts").is_ok());
        assert!(check_subject("a").is_ok());
        for bad in ["", "a..b", ".a", "a.", "a.*", "a.>", "a b", "a\u{e9}"] {
            assert!(check_subject(bad).is_err(), "{bad:?}");
        }
    }
}
