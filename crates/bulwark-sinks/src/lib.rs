//! Where Bulwark's alerts and response actions go outside Bulwark.
//!
//! A [`Notice`] (an alert opened or changed, or a response action that
//! changed state) is handed to the [`Dispatcher`], which offers it without
//! waiting to every configured sink: each sink has its own bounded queue
//! and task, retries with back-off, and counters ([`SinkStats`]).
//!
//! | sink (`type`) | transport | payload |
//! |---|---|---|
//! | `webhook` | HTTPS POST (`reqwest`, rustls) | JSON envelope, HMAC-SHA256 signed ([`signature`]) |
//! | `syslog` | TCP or TLS (tokio-rustls), octet-counted | RFC 5424 with structured data, or CEF |
//! | `jsonl` | a file (append, fsync) or standard output | one JSON envelope per line |
//! | `nats` | `async-nats` publish | JSON envelope |
//!
//! The formatters ([`mod@format`]) are pure functions, tested against their
//! specifications. They are written here rather than taken from a crate:
//! the `syslog` crate writes RFC 3164/5424 but has no TLS transport, no
//! octet-counting framing and no control over structured data, and no
//! maintained crate writes CEF. Each format is a few dozen lines, and
//! owning them keeps the escaping rules (the part that matters for
//! hostile device-supplied values) in one reviewed, tested place.
//!
//! Invariants:
//! - `dispatch` never waits and never fails; a full queue is a counted
//!   drop, never unbounded memory.
//! - Every configuration is checked, and every CA file read, before any
//!   task starts ([`SinkConfig::check`], [`Dispatcher::start`]).
//! - Secrets never appear in `Debug` output, logs or errors.
//! - TLS to a syslog collector trusts only the configured CA file.

mod backoff;
mod config;
mod dispatch;
mod error;
pub mod format;
mod notice;
pub mod signature;
mod sink;
#[cfg(test)]
mod testutil;

pub use backoff::MAX_RETRY_AFTER;
pub use config::{
    FsyncPolicy, JsonlConfig, NatsConfig, RetryConfig, Secret, SinkConfig, SyslogConfig,
    SyslogFormat, SyslogTransport, WebhookConfig, DEFAULT_NATS_SUBJECT, DEFAULT_NATS_URL,
    DEFAULT_QUEUE_CAPACITY, MIN_SECRET_LEN,
};
pub use dispatch::{Dispatcher, SinkStats};
pub use error::SinkError;
pub use format::syslog::Facility;
pub use notice::{Envelope, Notice};
