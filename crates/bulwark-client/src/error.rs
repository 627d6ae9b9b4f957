//! The client's one error type.
//!
//! An answer from the server that is not a success becomes
//! [`ClientError::Api`] with the RFC 9457 problem it carried (or one made up
//! from the status line and body when it carried none), so callers can match
//! on `status` and show `title`/`detail` without parsing text.

use std::path::PathBuf;

use bulwark_api_types::Problem;

/// Boxed source error for the few failures that have several possible causes.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong talking to a Bulwark server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with a non-success status.
    #[error("{}", api_message(*.status, .problem))]
    Api { status: u16, problem: Problem },
    /// The request never got an answer: DNS, TCP, TLS, timeouts, a cut body.
    #[error("request to the server failed")]
    Transport(#[source] reqwest::Error),
    /// The client was set up wrongly (missing variable, bad URL, no identity).
    #[error("{0}")]
    Config(String),
    /// A file the client was pointed at could not be read.
    #[error("cannot read {}", .path.display())]
    ReadFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Certificates or keys handed to the client were refused by the TLS stack.
    #[error("invalid TLS material: {what}")]
    Tls {
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with success but the body is not what the API promises.
    #[error("invalid response from the server: {what}")]
    InvalidResponse {
        what: String,
        #[source]
        source: Option<BoxError>,
    },
    /// Writing a streamed response (the audit export) to its destination failed.
    #[error("cannot write the response")]
    Output(#[source] std::io::Error),
}

impl ClientError {
    /// The HTTP status when the server refused the request.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    pub(crate) fn invalid(what: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::InvalidResponse {
            what: what.into(),
            source: Some(source.into()),
        }
    }
}

fn api_message(status: u16, problem: &Problem) -> String {
    match problem.detail.as_deref() {
        Some(detail) if !detail.is_empty() => {
            format!("{}: {} (HTTP {status})", problem.title, detail)
        }
        _ => format!("{} (HTTP {status})", problem.title),
    }
}

/// Longest error body kept as a problem's `detail` when it was not problem JSON.
const MAX_DETAIL: usize = 512;

/// Builds the error for a non-success answer from its status, content type and body.
///
/// A body that parses as problem JSON is used as is (with the HTTP status,
/// which is authoritative); anything else becomes `about:blank` with the
/// status's reason phrase as title and the body text, trimmed and
/// shortened, as detail.
pub(crate) fn problem_from_response(status: u16, content_type: &str, body: &[u8]) -> ClientError {
    let json_like = content_type.contains("json");
    if json_like {
        if let Ok(mut problem) = serde_json::from_slice::<Problem>(body) {
            problem.status = status;
            return ClientError::Api { status, problem };
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let detail = if text.is_empty() {
        None
    } else if text.len() > MAX_DETAIL {
        let mut end = MAX_DETAIL;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        Some(format!("{}…", &text[..end]))
    } else {
        Some(text.to_owned())
    };
    let title = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("HTTP error")
        .to_owned();
    ClientError::Api {
        status,
        problem: Problem {
            type_: "about:blank".to_owned(),
            title,
            status,
            detail,
            instance: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: u16, content_type: &str, body: &str, expect: &str) {
        let err = problem_from_response(status, content_type, body.as_bytes());
        assert_eq!(err.to_string(), expect);
        assert_eq!(err.status(), Some(status));
    }

    #[test]
    fn problem_json_is_parsed() {
        check(
            409,
            "application/problem+json",
            r#"{"type":"about:blank","title":"Conflict","status":409,"detail":"device sensor-1 already exists"}"#,
            "Conflict: device sensor-1 already exists (HTTP 409)",
        );
        check(
            404,
            "application/problem+json",
            r#"{"type":"about:blank","title":"Not Found","status":404}"#,
            "Not Found (HTTP 404)",
        );
    }

    #[test]
    fn http_status_wins_over_body_status() {
        let err = problem_from_response(
            403,
            "application/problem+json",
            br#"{"type":"about:blank","title":"Forbidden","status":200}"#,
        );
        match err {
            ClientError::Api { status, problem } => {
                assert_eq!(status, 403);
                assert_eq!(problem.status, 403);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn falls_back_to_status_and_text() {
        check(
            502,
            "text/plain",
            "  upstream down \n",
            "Bad Gateway: upstream down (HTTP 502)",
        );
        check(500, "", "", "Internal Server Error (HTTP 500)");
        check(
            400,
            "application/problem+json",
            "not json",
            "Bad Request: not json (HTTP 400)",
        );
        check(599, "text/plain", "x", "HTTP error: x (HTTP 599)");
    }

    #[test]
    fn long_bodies_are_shortened() {
        let body = "é".repeat(MAX_DETAIL);
        let err = problem_from_response(500, "text/html", body.as_bytes());
        let ClientError::Api { problem, .. } = err else {
            panic!("not an api error");
        };
        let detail = problem.detail.unwrap_or_default();
        assert!(detail.len() <= MAX_DETAIL + '…'.len_utf8());
        assert!(detail.ends_with('…'));
    }
}
