//! Webhooks against a real axum receiver that verifies the signature the
//! way the documentation tells receivers to.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::hmac;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bulwark_sinks::{Dispatcher, Notice};
use bulwark_types::{Alert, Severity};
use bytes::Bytes;

use crate::common::{eventually, notice, sinks, FAST_RETRY};

const SECRET: &str = "s3cret-s3cret-s3cret";

#[derive(Debug, Clone)]
struct Seen {
    verified: bool,
    delivery: String,
    event: String,
    body: Bytes,
}

/// Statuses to answer in turn (with a `Retry-After`), then 200.
type Script = VecDeque<(u16, Option<&'static str>)>;

#[derive(Clone)]
struct Receiver {
    secret: Vec<u8>,
    script: Arc<Mutex<Script>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> Response {
    // Recompute HMAC-SHA256(secret, timestamp "." body) over the raw body.
    let ts = header(&headers, "x-bulwark-timestamp");
    let sig = header(&headers, "x-bulwark-signature");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let fresh = ts.parse::<i64>().is_ok_and(|t| (now - t).abs() <= 300);
    let mut signed = ts.as_bytes().to_vec();
    signed.push(b'.');
    signed.extend_from_slice(&body);
    let key = hmac::Key::new(hmac::HMAC_SHA256, &r.secret);
    let verified = fresh
        && sig
            .strip_prefix("sha256=")
            .and_then(|h| hex::decode(h).ok())
            .is_some_and(|tag| hmac::verify(&key, &signed, &tag).is_ok());
    r.seen.lock().unwrap().push(Seen {
        verified,
        delivery: header(&headers, "x-bulwark-delivery").to_owned(),
        event: header(&headers, "x-bulwark-event").to_owned(),
        body: body.clone(),
    });
    if !verified {
        return (StatusCode::UNAUTHORIZED, "bad signature").into_response();
    }
    match r.script.lock().unwrap().pop_front() {
        None => StatusCode::OK.into_response(),
        Some((status, retry_after)) => {
            let mut resp = StatusCode::from_u16(status).unwrap().into_response();
            if let Some(v) = retry_after {
                resp.headers_mut().insert("retry-after", v.parse().unwrap());
            }
            resp
        }
    }
}

fn receiver_state(secret: &str, script: &[(u16, Option<&'static str>)]) -> (Router, Receiver) {
    let r = Receiver {
        secret: secret.as_bytes().to_vec(),
        script: Arc::new(Mutex::new(script.iter().copied().collect())),
        seen: Arc::default(),
    };
    let app = Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(r.clone());
    (app, r)
}

async fn receiver(secret: &str, script: &[(u16, Option<&'static str>)]) -> (String, Receiver) {
    let (app, r) = receiver_state(secret, script);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), r)
}

/// An HTTPS receiver (the handshake in the accept loop is fine for a test).
struct TlsListener {
    tcp: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, addr)) = self.tcp.accept().await else {
                continue;
            };
            if let Ok(tls) = self.acceptor.accept(tcp).await {
                return (tls, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

async fn https_receiver(server_ca: &crate::tls::Ca) -> (String, Receiver) {
    let (app, r) = receiver_state(SECRET, &[]);
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = tcp.local_addr().unwrap();
    let acceptor =
        tokio_rustls::TlsAcceptor::from(crate::tls::server_config(server_ca, "127.0.0.1"));
    tokio::spawn(async move { axum::serve(TlsListener { tcp, acceptor }, app).await });
    (format!("https://{addr}/hook"), r)
}

fn https_dispatcher(url: &str, ca_file: &std::path::Path) -> Dispatcher {
    Dispatcher::start(sinks(&format!(
        "[[sinks]]\ntype = \"webhook\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\nca_file = \"{}\"\n\
         [sinks.retry]\nmax_attempts = 2\ninitial_backoff_ms = 10\nmax_backoff_ms = 20\n",
        ca_file.display()
    )))
    .unwrap()
}

#[tokio::test]
async fn delivers_over_https_trusting_the_extra_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = crate::tls::ca("Receiver CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca.pem).unwrap();
    let (url, r) = https_receiver(&ca).await;
    let d = https_dispatcher(&url, &ca_file);
    d.dispatch(notice(Severity::High));
    let s = eventually(&d, "delivery", |s| s.delivered == 1).await;
    assert_eq!(s.failed_attempts, 0);
    assert!(r.seen.lock().unwrap()[0].verified);
}

#[tokio::test]
async fn refuses_an_https_receiver_from_an_unknown_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ours = crate::tls::ca("Receiver CA");
    let theirs = crate::tls::ca("Other CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ours.pem).unwrap();
    let (url, r) = https_receiver(&theirs).await;
    let d = https_dispatcher(&url, &ca_file);
    d.dispatch(notice(Severity::High));
    let s = eventually(&d, "giving up", |s| s.gave_up == 1).await;
    assert_eq!((s.delivered, s.failed_attempts), (0, 2));
    assert!(r.seen.lock().unwrap().is_empty());
}

fn dispatcher(url: &str) -> Dispatcher {
    Dispatcher::start(sinks(&format!(
        "[[sinks]]\ntype = \"webhook\"\nurl = \"{url}\"\nsecret = \"{SECRET}\"\ntimeout_secs = 5\n[sinks.retry]\n{FAST_RETRY}"
    )))
    .unwrap()
}

#[tokio::test]
async fn delivers_signed_json() {
    let (url, r) = receiver(SECRET, &[]).await;
    let d = dispatcher(&url);
    d.dispatch(notice(Severity::High));
    let s = eventually(&d, "delivery", |s| s.delivered == 1).await;
    assert_eq!((s.failed_attempts, s.gave_up, s.dropped), (0, 0, 0));
    let seen = r.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].verified);
    assert_eq!(seen[0].event, "alert.opened");
    assert_eq!(seen[0].delivery.len(), 36);
    let v: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(v["kind"], "alert.opened");
    let back: Alert = serde_json::from_value(v["alert"].clone()).unwrap();
    assert_eq!(Notice::Alert(back), notice(Severity::High));
}

#[tokio::test]
async fn retries_503_then_delivers() {
    let (url, r) = receiver(SECRET, &[(503, Some("0")), (503, None)]).await;
    let d = dispatcher(&url);
    d.dispatch(notice(Severity::Medium));
    let s = eventually(&d, "delivery after retries", |s| s.delivered == 1).await;
    assert_eq!((s.failed_attempts, s.gave_up), (2, 0));
    assert!(s.last_error.unwrap().contains("503"));
    let seen = r.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3);
    assert!(seen.iter().all(|s| s.verified));
    // One delivery id for every attempt, so the receiver can de-duplicate.
    assert!(seen.iter().all(|s| s.delivery == seen[0].delivery));
}

#[tokio::test]
async fn status_400_is_not_retried() {
    let (url, r) = receiver(SECRET, &[(400, None)]).await;
    let d = dispatcher(&url);
    d.dispatch(notice(Severity::Medium));
    let s = eventually(&d, "giving up", |s| s.gave_up == 1).await;
    assert_eq!((s.delivered, s.failed_attempts), (0, 1));
    assert!(s.last_error.unwrap().contains("400"));
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(r.seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn receiver_with_another_secret_sees_a_mismatch() {
    let (url, r) = receiver("another-secret-entirely", &[]).await;
    let d = dispatcher(&url);
    d.dispatch(notice(Severity::Critical));
    // The receiver refuses it (401), which is not retried.
    let s = eventually(&d, "refusal", |s| s.gave_up == 1).await;
    assert_eq!((s.delivered, s.failed_attempts), (0, 1));
    let seen = r.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    assert!(!seen[0].verified);
}

#[tokio::test]
async fn unreachable_receiver_is_retried_then_given_up() {
    // A port that was just free: connection refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let d = dispatcher(&format!("http://127.0.0.1:{port}/hook"));
    d.dispatch(notice(Severity::Critical));
    let s = eventually(&d, "giving up", |s| s.gave_up == 1).await;
    assert_eq!((s.delivered, s.failed_attempts), (0, 4));
    assert!(s.last_error.unwrap().contains("http request failed"));
}
