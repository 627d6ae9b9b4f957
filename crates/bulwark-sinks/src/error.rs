//! The crate's one error type: configuration refused at start, and the
//! reasons a delivery attempt failed (kept as `last_error` in the stats).

use std::path::PathBuf;

/// Why a sink could not be configured or a delivery attempt failed.
///
/// Messages are lower-case and never contain a secret (webhook secrets are
/// never formatted; URLs are shown without their user info or query).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The configuration was refused before any task was started.
    #[error("sink {sink}: {reason}")]
    Config { sink: String, reason: String },
    /// A file named by the configuration could not be read or opened.
    #[error("sink {sink}: cannot read {}", path.display())]
    ReadFile {
        sink: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A socket, file or stream operation failed.
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The TLS client could not be built (bad CA file contents, no usable root).
    #[error("tls: {what}")]
    Tls {
        what: String,
        #[source]
        source: Option<rustls::Error>,
    },
    /// The HTTP request failed before a response arrived.
    #[error("http request failed")]
    Http {
        #[source]
        source: reqwest::Error,
    },
    /// The receiver answered with a status that is not a success.
    #[error("receiver answered {status}")]
    Status { status: u16 },
    /// A deadline passed (connect, write, request).
    #[error("{0} timed out")]
    Timeout(&'static str),
    /// The NATS client failed.
    #[error("nats: {what}")]
    Nats {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The notice could not be encoded.
    #[error("cannot encode the notice")]
    Encode {
        #[source]
        source: serde_json::Error,
    },
}

impl SinkError {
    pub(crate) fn config(sink: &str, reason: impl Into<String>) -> SinkError {
        SinkError::Config {
            sink: sink.to_owned(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> SinkError {
        SinkError::Io {
            what: what.into(),
            source,
        }
    }

    /// The error with its whole `source()` chain on one line, as kept in
    /// [`SinkStats::last_error`](crate::SinkStats::last_error).
    pub fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(self);
        while let Some(e) = cur {
            out.push_str(": ");
            out.push_str(&e.to_string());
            cur = e.source();
        }
        out
    }
}
