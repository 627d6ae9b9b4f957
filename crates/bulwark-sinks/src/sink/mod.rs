//! The transports: each turns a notice into its payload once
//! ([`Transport::prepare`]) and then tries to deliver it
//! ([`Transport::attempt`]), saying whether a failure is worth retrying.
//! The retry loop, counters and queue live in [`crate::dispatch`].

use std::time::Duration;

use bytes::Bytes;

use crate::config::SinkConfig;
use crate::{Notice, SinkError};

pub(crate) mod jsonl;
pub(crate) mod nats;
pub(crate) mod syslog;
pub(crate) mod tls;
pub(crate) mod webhook;

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Give up on this notice (the receiver refused it).
    Never,
    /// Wait the back-off and try again.
    Backoff,
    /// Wait what the receiver asked (`Retry-After`) and try again.
    After(Duration),
}

#[derive(Debug)]
pub(crate) struct Failure {
    pub error: SinkError,
    pub retry: Retry,
}

impl Failure {
    pub fn retry(error: SinkError) -> Failure {
        Failure {
            error,
            retry: Retry::Backoff,
        }
    }
}

/// A notice encoded for one transport.
#[derive(Debug, Clone)]
pub(crate) struct Payload {
    pub bytes: Bytes,
    /// Stable across the attempts at one notice (webhook and NATS
    /// de-duplication ids).
    pub delivery_id: String,
    pub kind: &'static str,
}

pub(crate) enum Transport {
    Webhook(webhook::Webhook),
    Syslog(syslog::Syslog),
    Jsonl(jsonl::Jsonl),
    Nats(nats::Nats),
}

impl Transport {
    /// Checks `config` and builds the transport; no connection is made.
    pub fn build(config: &SinkConfig, name: &str) -> Result<Transport, SinkError> {
        Ok(match config {
            SinkConfig::Webhook(c) => Transport::Webhook(webhook::Webhook::build(c, name)?),
            SinkConfig::Syslog(c) => Transport::Syslog(syslog::Syslog::build(c, name)?),
            SinkConfig::Jsonl(c) => Transport::Jsonl(jsonl::Jsonl::build(c, name)?),
            SinkConfig::Nats(c) => Transport::Nats(nats::Nats::build(c, name)?),
        })
    }

    pub fn prepare(&self, notice: &Notice) -> Result<Payload, SinkError> {
        let bytes = match self {
            Transport::Syslog(s) => s.encode(notice),
            Transport::Webhook(_) | Transport::Nats(_) => {
                crate::format::json::json(notice).map_err(|source| SinkError::Encode { source })?
            }
            Transport::Jsonl(_) => crate::format::json::json_line(notice)
                .map_err(|source| SinkError::Encode { source })?,
        };
        Ok(Payload {
            bytes: Bytes::from(bytes),
            delivery_id: delivery_id(),
            kind: notice.kind(),
        })
    }

    pub async fn attempt(&mut self, payload: &Payload) -> Result<(), Failure> {
        match self {
            Transport::Webhook(t) => t.attempt(payload).await,
            Transport::Syslog(t) => t.attempt(payload).await,
            Transport::Jsonl(t) => t.attempt(payload).await,
            Transport::Nats(t) => t.attempt(payload).await,
        }
    }

    /// Ends the transport cleanly after the queue is drained.
    pub async fn close(&mut self) {
        match self {
            Transport::Syslog(t) => t.close().await,
            Transport::Nats(t) => t.close().await,
            Transport::Webhook(_) | Transport::Jsonl(_) => {}
        }
    }
}

/// A random (version 4) UUID.
fn delivery_id() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A timeout around `fut`, as a retryable failure.
pub(crate) async fn within<T>(
    d: Duration,
    what: &'static str,
    fut: impl std::future::Future<Output = Result<T, SinkError>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(d, fut).await {
        Ok(r) => r.map_err(Failure::retry),
        Err(_) => Err(Failure::retry(SinkError::Timeout(what))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn delivery_ids_look_like_uuids() {
        let a = super::delivery_id();
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(a, super::delivery_id());
    }
}
