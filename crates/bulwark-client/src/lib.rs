//! A typed async HTTPS client for Bulwark's operator API (`/v1`) and its EST
//! endpoints (`/.well-known/est`).
//!
//! Used by the `bulwark` CLI, the integration tests and the benchmarks. The
//! request and response bodies are the types of `bulwark-api-types`, so the
//! client and the server cannot drift apart.
//!
//! The client trusts only the CA bundle it is given (never the system
//! roots), speaks only HTTPS, and sends `Authorization: Bearer <token>` when
//! an operator token is set. A device identity (certificate + key) can be
//! attached with [`Client::with_identity`] for mutual-TLS calls such as EST
//! re-enrollment.
//!
//! ```no_run
//! # async fn demo() -> Result<(), bulwark_client::ClientError> {
//! let client = bulwark_client::Client::from_env()?;
//! for device in client.list_devices(None, None).await? {
//!     println!("{} {}", device.id, device.state);
//! }
//! # Ok(())
//! # }
//! ```

mod alerts;
mod api;
mod error;
mod est;
mod manufacturer;
mod metrics;
mod mqtt;
mod ota;
mod policy;

use std::path::PathBuf;
use std::time::Duration;

use reqwest::{Method, RequestBuilder, Response, Url};
use serde::de::DeserializeOwned;

pub use api::LifecycleVerb;
pub use bulwark_api_types as types;
pub use error::{BoxError, ClientError};
pub use est::{pkcs7_certs, PKCS10};

/// Environment variable holding the server's base URL (`https://host:8443`).
pub const ENV_ADDR: &str = "BULWARK_ADDR";
/// Environment variable holding the operator token.
pub const ENV_TOKEN: &str = "BULWARK_TOKEN";
/// Environment variable holding the path of the PEM CA bundle to trust.
pub const ENV_CACERT: &str = "BULWARK_CACERT";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A connection to one Bulwark server. Cheap to clone (the pool is shared).
#[derive(Clone)]
pub struct Client {
    base: Url,
    token: Option<String>,
    roots: Vec<reqwest::Certificate>,
    has_identity: bool,
    http: reqwest::Client,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("roots", &self.roots.len())
            .field("has_identity", &self.has_identity)
            .finish()
    }
}

impl Client {
    /// A client for the server at `base_url` (`https://127.0.0.1:8443`),
    /// trusting only the certificates in `ca_bundle_pem`.
    pub fn new(
        base_url: &str,
        token: Option<String>,
        ca_bundle_pem: &[u8],
    ) -> Result<Client, ClientError> {
        let base = parse_base_url(base_url)?;
        let roots = reqwest::Certificate::from_pem_bundle(ca_bundle_pem).map_err(|source| {
            ClientError::Tls {
                what: "CA bundle is not valid PEM",
                source,
            }
        })?;
        if roots.is_empty() {
            return Err(ClientError::Config(
                "the CA bundle contains no PEM certificate".to_owned(),
            ));
        }
        let token = token.filter(|t| !t.is_empty());
        let http = build_http(&roots, None)?;
        Ok(Client {
            base,
            token,
            roots,
            has_identity: false,
            http,
        })
    }

    /// A client configured from `BULWARK_ADDR`, `BULWARK_TOKEN` (optional)
    /// and `BULWARK_CACERT` (path of a PEM bundle).
    pub fn from_env() -> Result<Client, ClientError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Client, ClientError> {
        let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let addr = non_empty(ENV_ADDR).ok_or_else(|| {
            ClientError::Config(format!(
                "{ENV_ADDR} is not set (the server's API address, e.g. https://127.0.0.1:8443)"
            ))
        })?;
        let cacert = non_empty(ENV_CACERT).ok_or_else(|| {
            ClientError::Config(format!(
                "{ENV_CACERT} is not set (the path of the PEM CA bundle that signed the server's certificate)"
            ))
        })?;
        let token = non_empty(ENV_TOKEN);
        let path = PathBuf::from(cacert);
        let pem = std::fs::read(&path).map_err(|source| ClientError::ReadFile { path, source })?;
        Self::new(&addr, token, &pem)
    }

    /// The same client presenting `cert_pem` (leaf first, chain may follow)
    /// and `key_pem` (PKCS#8, SEC1 or PKCS#1) as its TLS client identity.
    pub fn with_identity(self, cert_pem: &[u8], key_pem: &[u8]) -> Result<Client, ClientError> {
        let mut pem = Vec::with_capacity(cert_pem.len() + key_pem.len() + 1);
        pem.extend_from_slice(cert_pem);
        pem.push(b'\n');
        pem.extend_from_slice(key_pem);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|source| ClientError::Tls {
            what: "client certificate or key is not usable",
            source,
        })?;
        let http = build_http(&self.roots, Some(identity))?;
        Ok(Client {
            http,
            has_identity: true,
            ..self
        })
    }

    /// The same client over a TLS configuration made elsewhere: for a
    /// client identity whose key never leaves a token (PKCS#11), where
    /// rustls signs through a custom `SigningKey`. The configuration
    /// decides which servers are trusted; the client's own CA bundle is
    /// not used.
    pub fn with_tls_config(self, tls: rustls::ClientConfig) -> Result<Client, ClientError> {
        let http = http_builder()
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|source| ClientError::Tls {
                what: "cannot build the HTTPS client",
                source,
            })?;
        Ok(Client {
            http,
            has_identity: true,
            ..self
        })
    }

    /// The base URL requests are made against.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    /// Whether a TLS client identity is attached.
    pub fn has_identity(&self) -> bool {
        self.has_identity
    }

    /// `base` + `segments`, each segment percent-encoded, + `query` pairs
    /// (pairs whose value is `None` are left out).
    pub(crate) fn url(&self, segments: &[&str], query: &[(&str, Option<String>)]) -> Url {
        let mut url = self.base.clone();
        // An https URL always has a path that can be extended; the base was
        // checked in `parse_base_url`.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        let present: Vec<(&str, &String)> = query
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v)))
            .collect();
        if !present.is_empty() {
            url.query_pairs_mut().extend_pairs(present);
        }
        url
    }

    /// A request with the operator token, if any.
    pub(crate) fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let req = self.http.request(method, url);
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// A request without any `Authorization` header (EST with its own credentials, mTLS).
    pub(crate) fn anonymous(&self, method: Method, url: Url) -> RequestBuilder {
        self.http.request(method, url)
    }

    pub(crate) fn require_identity(&self, call: &str) -> Result<(), ClientError> {
        if self.has_identity {
            Ok(())
        } else {
            Err(ClientError::Config(format!(
                "{call} needs a client certificate: build the client with with_identity()"
            )))
        }
    }

    pub(crate) async fn send_json<T: DeserializeOwned>(
        &self,
        req: RequestBuilder,
    ) -> Result<T, ClientError> {
        let body = self.send_bytes(req).await?;
        serde_json::from_slice(&body).map_err(|e| {
            ClientError::invalid(format!("JSON body is not a {}", short_type_name::<T>()), e)
        })
    }

    pub(crate) async fn send_text(&self, req: RequestBuilder) -> Result<String, ClientError> {
        let body = self.send_bytes(req).await?;
        String::from_utf8(body).map_err(|e| ClientError::invalid("body is not UTF-8", e))
    }

    pub(crate) async fn send_bytes(&self, req: RequestBuilder) -> Result<Vec<u8>, ClientError> {
        let resp = self.send(req).await?;
        let body = resp.bytes().await.map_err(ClientError::Transport)?;
        Ok(body.to_vec())
    }

    /// Sends `req`; a non-success answer becomes [`ClientError::Api`].
    pub(crate) async fn send(&self, req: RequestBuilder) -> Result<Response, ClientError> {
        let resp = req.send().await.map_err(ClientError::Transport)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        // The body of an error is best effort: a cut body still yields the status.
        let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
        Err(error::problem_from_response(
            status.as_u16(),
            &content_type,
            &body,
        ))
    }
}

fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    // `alloc::vec::Vec<bulwark_types::records::Device>` -> `Vec<Device>` is
    // more than we need; the last path segment is enough for a message.
    full.rsplit("::").next().unwrap_or(full)
}

fn parse_base_url(base_url: &str) -> Result<Url, ClientError> {
    let url = Url::parse(base_url.trim()).map_err(|e| {
        ClientError::Config(format!(
            "server address {base_url:?} is not a URL ({e}); expected e.g. https://127.0.0.1:8443"
        ))
    })?;
    if url.scheme() != "https" {
        return Err(ClientError::Config(format!(
            "server address {base_url:?} must use https://"
        )));
    }
    if url.host_str().is_none() || url.cannot_be_a_base() {
        return Err(ClientError::Config(format!(
            "server address {base_url:?} has no host"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ClientError::Config(format!(
            "server address {base_url:?} must not have a query or fragment"
        )));
    }
    Ok(url)
}

fn http_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .https_only(true)
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .user_agent(concat!("bulwark-client/", env!("CARGO_PKG_VERSION")))
}

fn build_http(
    roots: &[reqwest::Certificate],
    identity: Option<reqwest::Identity>,
) -> Result<reqwest::Client, ClientError> {
    let mut builder = http_builder()
        .tls_backend_rustls()
        .tls_certs_only(roots.iter().cloned());
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    builder.build().map_err(|source| ClientError::Tls {
        what: "cannot build the HTTPS client",
        source,
    })
}

#[cfg(test)]
mod tests;
