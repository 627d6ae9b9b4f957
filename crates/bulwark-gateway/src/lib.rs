//! Bulwark's MQTT gateway: an MQTT 3.1.1 and 5.0 broker that admits only
//! clients Bulwark can identify, binds each session to that identity, and
//! checks the identity's compiled policy on every path a message takes.
//!
//! - [`Gateway::serve_tls`]: the mTLS listener. The TLS handshake runs in
//!   the connection's own task under a deadline, never in the accept loop;
//!   the TLS configuration can be replaced at run time
//!   ([`Gateway::reload_tls`]) without touching open connections.
//! - [`Gateway::serve_dev_plain`]: the plaintext loopback listener of dev
//!   mode (anonymous clients, permissive dev policy, own namespace).
//! - Live enforcement: registry events (revocation, lifecycle, policy and
//!   group changes) reach connected sessions (see `enforce`).
//! - Detection hooks: [`Gateway::subscribe_events`] streams
//!   [`GatewayEvent`]s (connections, handshake failures and shed bursts,
//!   refusals, denials, subscriptions, publishes, aggregated deliveries,
//!   the agent's inventory and posture reports); they cost nothing until
//!   someone subscribes.
//! - Response hooks: [`Gateway::throttle`] / [`Gateway::unthrottle`] (a
//!   tighter publish rate for a device's live and future sessions),
//!   [`Gateway::device_sources`] (evidence), [`Gateway::disconnect_device`].
//!
//! Protocol encoding and decoding is `bulwark_mqtt` (sans-I/O); this crate
//! owns sockets, sessions and routing.

mod admitted;
mod auth;
mod broker;
mod config;
mod conn;
mod enforce;
mod events;
mod limits;
mod message;
mod metrics;
mod persist;
mod response;
mod session;
mod system;
#[cfg(test)]
mod testing;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use bulwark_audit::{Actor, AuditEvent};
use bulwark_mqtt::ReasonCode;
use bulwark_registry::Registry;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use auth::Realm;
pub use config::GatewayLimits;
pub use events::{GatewayEvent, ReportKind, MAX_DEVICE_REPORT};
pub use metrics::{Metrics, PrincipalSnapshot};
pub use persist::RestoreReport;
pub use response::MAX_THROTTLES;
pub use system::{SystemPublish, SystemPublishError, SYSTEM_ORIGIN};

use crate::broker::Broker;
use crate::events::EventSink;
use crate::limits::Limiter;
use crate::session::Owner;

/// State shared by every connection task.
pub(crate) struct Shared {
    pub broker: Broker,
    pub registry: Arc<Registry>,
    /// Admissions remembered for reconnecting devices.
    pub admitted: admitted::Admitted,
    pub limiter: Arc<Limiter>,
    pub events: EventSink,
    pub throttles: response::Throttles,
    tls: RwLock<Arc<ServerConfig>>,
    slots: Arc<Semaphore>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("broker", &self.broker)
            .field("limiter", &self.limiter)
            .finish_non_exhaustive()
    }
}

/// A live session, for operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    pub client_id: String,
    /// `device`, `service` or `dev`.
    pub kind: &'static str,
    pub principal: String,
    pub connected: bool,
    pub remote: Option<String>,
    pub subscriptions: Vec<String>,
    pub queued: usize,
    pub inflight: usize,
}

/// The gateway. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
}

impl Gateway {
    /// A gateway over `registry`. `tls` must request (not require) client
    /// certificates chaining to Bulwark's CA or a registered manufacturer CA
    /// (`bulwark_api::mqtt_tls_config`), so that a missing or expired
    /// certificate gets a CONNACK with a reason rather than a bare alert.
    /// `store` keeps persistent sessions and retained messages across
    /// restarts; without it they live in memory only.
    pub fn new(
        registry: Arc<Registry>,
        limits: GatewayLimits,
        tls: Arc<ServerConfig>,
        store: Option<bulwark_store::MqttStore>,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let shared = Arc::new(Shared {
            limiter: Limiter::new(limits.clone()),
            broker: Broker::new(limits, metrics.clone(), store),
            admitted: admitted::Admitted::new(registry.bus().subscribe()),
            registry,
            events: EventSink::new(metrics),
            throttles: response::Throttles::default(),
            tls: RwLock::new(tls),
            slots,
        });
        Self { shared }
    }

    /// Rebuilds sessions, retained messages and pending wills from the
    /// store (call once, before serving).
    pub async fn restore(&self) -> Result<RestoreReport, bulwark_store::StoreError> {
        persist::restore(&self.shared).await
    }

    /// Waits until every session-store write so far is committed (for
    /// shutdown).
    pub async fn flush(&self) {
        if let Some(s) = &self.shared.broker.store {
            if let Err(e) = s.flush().await {
                tracing::error!(error = %e, "session store flush failed");
            }
        }
    }

    /// Starts live enforcement (call once, inside a runtime).
    pub fn spawn_enforcement(&self) {
        tokio::spawn(enforce::run(self.shared.clone()));
    }

    /// Replaces the TLS configuration for new connections; open ones keep
    /// theirs.
    pub fn reload_tls(&self, tls: Arc<ServerConfig>) {
        *self
            .shared
            .tls
            .write()
            .unwrap_or_else(PoisonError::into_inner) = tls;
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.broker.metrics
    }

    /// The receiver of gateway events (once): a bounded channel of
    /// `capacity`; events that find it full are dropped and counted. Until
    /// this is called no event is built.
    pub fn subscribe_events(
        &self,
        capacity: usize,
    ) -> Option<tokio::sync::mpsc::Receiver<GatewayEvent>> {
        self.shared.events.subscribe(capacity)
    }

    /// The mTLS listener, until `shutdown` resolves.
    pub async fn serve_tls(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        self.accept_loop(listener, Realm::Tls, shutdown).await;
    }

    /// The plaintext listener for dev mode. Refuses to run on anything but
    /// a loopback address.
    pub async fn serve_dev_plain(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("the plaintext dev listener may only bind a loopback address, not {addr}"),
            ));
        }
        self.accept_loop(listener, Realm::DevPlain, shutdown).await;
        Ok(())
    }

    async fn accept_loop(
        &self,
        listener: TcpListener,
        realm: Realm,
        shutdown: impl Future<Output = ()>,
    ) {
        tokio::pin!(shutdown);
        loop {
            let (tcp, remote) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of descriptors and the like: back off briefly.
                        tracing::warn!(error = %e, "MQTT accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let m = &self.shared.broker.metrics;
            Metrics::inc(&m.connections_accepted_total);
            if let Some(refusal) = self.admit_socket(remote.ip()) {
                Metrics::inc(refusal);
                Metrics::inc(&m.connections_refused_total);
                drop(tcp);
                self.shed(remote, "backoff");
                continue;
            }
            let Ok(permit) = self.shared.slots.clone().try_acquire_owned() else {
                Metrics::inc(&m.connection_limit_refusals_total);
                Metrics::inc(&m.connections_refused_total);
                self.shed(remote, "connection_limit");
                continue;
            };
            let Some(ip_slot) = self.shared.limiter.acquire_ip(remote.ip()) else {
                Metrics::inc(&m.per_ip_limit_refusals_total);
                Metrics::inc(&m.connections_refused_total);
                self.shed(remote, "per_ip_limit");
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let shared = self.shared.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let _ip_slot = ip_slot;
                match realm {
                    Realm::DevPlain => conn::serve(shared, tcp, remote, None, realm).await,
                    Realm::Tls => serve_tls_conn(shared, tcp, remote).await,
                }
            });
        }
        self.shutdown_sessions();
    }

    /// A connection refused at accept, for the detection pipeline.
    fn shed(&self, source: SocketAddr, reason: &str) {
        if self.shared.events.enabled() {
            self.shared.events.emit(GatewayEvent::HandshakeFailed {
                source,
                reason: reason.to_owned(),
            });
        }
    }

    /// A source address still backing off after failed authentications.
    fn admit_socket(&self, ip: IpAddr) -> Option<&std::sync::atomic::AtomicU64> {
        self.shared
            .limiter
            .backoff(ip, Instant::now())
            .map(|_| &self.shared.broker.metrics.auth_backoff_refusals_total)
    }

    /// Tells every connection the server is going away.
    fn shutdown_sessions(&self) {
        for s in self.shared.broker.sessions() {
            enforce::kick(
                &s,
                ReasonCode::ServerShuttingDown,
                "the server is shutting down",
            );
        }
    }

    /// Publishes `payload` to `topic` as the server itself (e.g. an OTA
    /// notification to `devices/<id>/commands/ota`), routed like a
    /// client's PUBLISH but never retained; `$` topics are refused. Returns
    /// once the message is durable for the persistent sessions it was
    /// queued for; deliveries to full queues are dropped, not waited for
    /// (see [`SystemPublish`]).
    pub async fn publish_system(
        &self,
        topic: bulwark_mqtt::TopicName,
        payload: bytes::Bytes,
        qos: bulwark_mqtt::QoS,
    ) -> Result<SystemPublish, SystemPublishError> {
        system::publish(&self.shared.broker, topic, payload, qos).await
    }

    /// Live and persistent sessions.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let mut out: Vec<SessionInfo> = self
            .shared
            .broker
            .sessions()
            .iter()
            .map(|s| {
                let st = s.lock();
                let (kind, principal) = match &s.owner {
                    Owner::Device(d) => ("device", d.to_string()),
                    Owner::Service(n) => ("service", n.clone()),
                    Owner::Dev => ("dev", "dev".to_owned()),
                };
                let mut subscriptions: Vec<String> = st.subscriptions.keys().cloned().collect();
                subscriptions.sort();
                SessionInfo {
                    client_id: client_id_of(&s.key).to_owned(),
                    kind,
                    principal,
                    connected: st.link.is_some(),
                    remote: st.link.as_ref().map(|l| l.remote.clone()),
                    subscriptions,
                    queued: st.queue.len(),
                    inflight: st.inflight.len(),
                }
            })
            .collect();
        out.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        out
    }

    /// Disconnects a device's live session (operator action, audited).
    /// Returns false if it had no live connection.
    pub async fn disconnect_device(&self, device: &bulwark_types::DeviceId, actor: Actor) -> bool {
        self.disconnect("device", device.as_str(), actor).await
    }

    /// Disconnects the live session of `kind` (`device`, `service` or
    /// `dev`, as in [`SessionInfo::kind`]) with MQTT client identifier
    /// `client_id`: an MQTT 5 client is told "administrative action". An
    /// operator action, audited as `MqttSessionDisconnected`. Returns false
    /// if there was no such live connection.
    pub async fn disconnect(&self, kind: &str, client_id: &str, actor: Actor) -> bool {
        let key = match kind {
            "device" => client_id.to_owned(),
            "service" | "dev" => format!("{kind}:{client_id}"),
            _ => return false,
        };
        let Some(s) = self.shared.broker.session(&key) else {
            return false;
        };
        // A device id has no `:`, but a client id handed in here might.
        let same_kind = matches!(
            (kind, &s.owner),
            ("device", Owner::Device(_)) | ("service", Owner::Service(_)) | ("dev", Owner::Dev)
        );
        if !same_kind {
            return false;
        }
        let kicked = enforce::kick(
            &s,
            ReasonCode::AdministrativeAction,
            "disconnected by an operator",
        );
        if kicked {
            let r = self
                .shared
                .registry
                .store()
                .append_audit(
                    actor,
                    AuditEvent::MqttSessionDisconnected {
                        client_id: client_id.chars().take(128).collect(),
                    },
                )
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "could not audit a session disconnect");
            }
        }
        kicked
    }

    /// Prometheus text for the gateway: every counter, plus gauges of
    /// sessions, subscriptions and retained messages.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write as _;
        let b = &self.shared.broker;
        b.metrics.render_prometheus(out);
        for (name, help, v) in [
            (
                "bulwark_mqtt_sessions",
                "Sessions held (connected or persistent).",
                b.session_count(),
            ),
            (
                "bulwark_mqtt_subscriptions",
                "Subscriptions indexed.",
                b.subscription_count(),
            ),
            (
                "bulwark_mqtt_retained_messages",
                "Retained messages stored.",
                b.retained_count(),
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
    }

    /// Whether the device holds a connected session now.
    pub fn is_connected(&self, device: &bulwark_types::DeviceId) -> bool {
        self.shared
            .broker
            .session(device.as_str())
            .is_some_and(|s| s.lock().link.is_some())
    }

    /// Per-principal counters (device id, or `service:NAME`).
    pub fn principal_counters(&self, key: &str) -> Option<PrincipalSnapshot> {
        self.shared.broker.metrics.principal_snapshot(key)
    }
}

/// The MQTT client identifier of a session key: a device's key is its id
/// (which has no `:`); the others are `service:ID` and `dev:ID`.
fn client_id_of(key: &str) -> &str {
    key.split_once(':').map_or(key, |(_, c)| c)
}

async fn serve_tls_conn(shared: Arc<Shared>, tcp: tokio::net::TcpStream, remote: SocketAddr) {
    // A task's memory is the size of its largest state: the handshake runs
    // in its own boxed future (freed once done), and the TLS stream is
    // boxed so the nested futures that pass it along hold a pointer, not
    // copies of it.
    let Some(stream) = Box::pin(tls_handshake(&shared, tcp, remote)).await else {
        return;
    };
    let cert = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec());
    conn::serve(shared, stream, remote, cert, Realm::Tls).await;
}

/// The TLS handshake under its deadline; failures are counted.
async fn tls_handshake(
    shared: &Shared,
    tcp: tokio::net::TcpStream,
    remote: SocketAddr,
) -> Option<Box<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>> {
    let config = shared
        .tls
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let handshake =
        tokio::time::timeout(shared.broker.limits.handshake_timeout, acceptor.accept(tcp)).await;
    match handshake {
        Ok(Ok(s)) => Some(Box::new(s)),
        Ok(Err(e)) => {
            Metrics::inc(&shared.broker.metrics.tls_handshake_failures_total);
            Metrics::inc(&shared.broker.metrics.connections_refused_total);
            tracing::debug!(%remote, error = %e, "MQTT TLS handshake failed");
            if shared.events.enabled() {
                shared.events.emit(GatewayEvent::HandshakeFailed {
                    source: remote,
                    reason: e.to_string(),
                });
            }
            None
        }
        Err(_) => {
            Metrics::inc(&shared.broker.metrics.tls_handshake_failures_total);
            Metrics::inc(&shared.broker.metrics.connections_refused_total);
            tracing::debug!(%remote, "MQTT TLS handshake timed out");
            if shared.events.enabled() {
                shared.events.emit(GatewayEvent::HandshakeFailed {
                    source: remote,
                    reason: "timeout".to_owned(),
                });
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of the future an async fn of three arguments returns,
    /// without calling it.
    fn future_size<A, B, C, F: Future>(_: impl Fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Each connection's task is allocated once, at the size of its
    /// largest state; an idle connection should not pay for the handshake
    /// or admission (boxed) or for copies of the TLS stream (boxed once).
    /// 15 KiB before that was done; Mosquitto spends about 20 KiB per idle
    /// TLS connection in all.
    #[test]
    fn a_connection_task_stays_small() {
        let tls = future_size(serve_tls_conn);
        let plain = future_size(|s: Arc<Shared>, io: tokio::net::TcpStream, r: SocketAddr| {
            conn::serve(s, io, r, None, Realm::DevPlain)
        });
        eprintln!("connection future: TLS {tls} bytes, plaintext {plain} bytes");
        assert!(tls <= 3 * 1024, "TLS connection future is {tls} bytes");
        assert!(
            plain <= 3 * 1024,
            "plaintext connection future is {plain} bytes"
        );
    }
}
