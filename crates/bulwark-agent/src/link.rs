//! The agent's MQTT link to the gateway: one tokio task that drives the
//! sans-I/O [`ClientSession`](bulwark_mqtt::client::ClientSession) over
//! TCP + TLS with the device's client certificate (mTLS).
//!
//! - The MQTT client identifier is the device id, and the session is kept
//!   across connections (MQTT 5 session expiry, or clean session off in
//!   3.1.1): QoS 1/2 messages published while disconnected wait in the
//!   session's bounded queue, those in flight are resent after a
//!   reconnection, and those the server lost with its session are
//!   published again.
//! - The rest of the agent talks to the task through a cloneable
//!   [`LinkHandle`] (a bounded command channel) and receives messages on a
//!   bounded receiver; while that receiver is full the link stops reading
//!   from the socket (the broker queues) but keeps its timers and commands
//!   running.
//! - Subscriptions are remembered and sent again after a reconnection that
//!   did not find the session.
//! - Reconnection waits with jittered exponential back-off ([`backoff`]).
//! - [`LinkHandle::set_tls_config`] replaces the TLS configuration (after a
//!   certificate renewal): the next connection uses it, the current one is
//!   not dropped.
//!
//! There is no plaintext option in the agent's configuration: the only way
//! to a plaintext link is [`Link::spawn_plaintext_for_tests`], which the
//! agent never calls.

pub mod backoff;
mod connector;
mod driver;

use std::sync::Arc;
use std::time::Duration;

pub use bulwark_mqtt::client::Message;
use bulwark_mqtt::client::{ClientError, CloseReason};
use bulwark_mqtt::{LastWill, ProtocolVersion, QoS, ReasonCode, Subscription, TopicFilter};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::sync::{mpsc, oneshot, watch};

pub use backoff::{Backoff, BackoffConfig};
use connector::{Connector, TlsSlot};

/// Where and how the link connects.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// `host:port` of the gateway's MQTT listener.
    pub server_addr: String,
    /// The name the gateway's certificate must be valid for.
    pub server_name: ServerName<'static>,
    /// The device id, sent as the MQTT client identifier.
    pub client_id: String,
    pub version: ProtocolVersion,
    /// Seconds.
    pub keep_alive: u16,
    /// MQTT 5: how long the gateway keeps the session while the device is
    /// away, in seconds.
    pub session_expiry_interval: u32,
    pub will: Option<LastWill>,
    /// TCP connect and TLS handshake.
    pub connect_timeout: Duration,
    /// CONNACK after CONNECT, any packet after PINGREQ, and each write.
    pub response_timeout: Duration,
    pub backoff: BackoffConfig,
    /// Largest packet accepted from the gateway.
    pub max_packet_size: u32,
    /// QoS 1/2 messages waiting for the connection or for the gateway's
    /// receive maximum; one more is refused.
    pub max_queued: usize,
    pub command_capacity: usize,
    pub incoming_capacity: usize,
}

impl LinkConfig {
    /// MQTT 5, 60 s keep-alive, a one-day session, 10 s timeouts, the
    /// default back-off, 256 KiB packets, 1,000 queued messages.
    pub fn new(
        server_addr: impl Into<String>,
        server_name: ServerName<'static>,
        client_id: impl Into<String>,
    ) -> Self {
        LinkConfig {
            server_addr: server_addr.into(),
            server_name,
            client_id: client_id.into(),
            version: ProtocolVersion::V5,
            keep_alive: 60,
            session_expiry_interval: 24 * 3600,
            will: None,
            connect_timeout: Duration::from_secs(10),
            response_timeout: Duration::from_secs(10),
            backoff: BackoffConfig::default(),
            max_packet_size: 256 * 1024,
            max_queued: 1000,
            command_capacity: 64,
            incoming_capacity: 64,
        }
    }
}

/// What the link is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkStatus {
    /// Opening a connection (`attempt` retries since the last stable one).
    Connecting {
        attempt: u32,
    },
    Connected {
        session_present: bool,
    },
    /// Waiting `delay` before the next attempt, after `last_error`.
    Waiting {
        attempt: u32,
        delay: Duration,
        last_error: String,
    },
    /// The task has ended (shutdown, or every handle dropped).
    Stopped,
}

/// Why a request through the link failed, or why a connection ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("the link has stopped")]
    Stopped,
    #[error("the MQTT session refused the request")]
    Rejected(#[source] ClientError),
    #[error("the gateway refused: {0}")]
    Refused(ReasonCode),
    #[error("the message was dropped before it could be sent")]
    Dropped(#[source] ClientError),
    #[error("cannot reach the gateway")]
    Io(#[source] std::io::Error),
    #[error("the gateway closed the connection")]
    ConnectionClosed,
    #[error("no connection within {0:?}")]
    ConnectTimeout(Duration),
    #[error("writing to the gateway took longer than {0:?}")]
    WriteTimeout(Duration),
    #[error("the MQTT connection ended")]
    Closed(#[source] CloseReason),
}

pub(crate) enum Command {
    Publish {
        /// Boxed: a message is much larger than the other commands.
        message: Box<Message>,
        accepted: oneshot::Sender<Result<(), LinkError>>,
        done: oneshot::Sender<Result<ReasonCode, LinkError>>,
    },
    Subscribe {
        subscription: Subscription,
        reply: oneshot::Sender<Result<QoS, LinkError>>,
    },
    Unsubscribe {
        filter: TopicFilter,
        reply: oneshot::Sender<Result<(), LinkError>>,
    },
    Shutdown,
}

/// The outcome of one published message.
#[derive(Debug)]
pub struct Delivery(oneshot::Receiver<Result<ReasonCode, LinkError>>);

impl Delivery {
    /// Waits until the gateway acknowledged the message (QoS 1: PUBACK,
    /// QoS 2: PUBCOMP; QoS 0: once written to the session). `Ok` carries
    /// Success or No Matching Subscribers; a refusal is
    /// [`LinkError::Refused`].
    pub async fn wait(self) -> Result<ReasonCode, LinkError> {
        self.0.await.unwrap_or(Err(LinkError::Stopped))
    }
}

/// The rest of the agent's side of the link; cheap to clone.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    commands: mpsc::Sender<Command>,
    tls: Option<TlsSlot>,
    status: watch::Receiver<LinkStatus>,
}

impl LinkHandle {
    async fn request<T>(
        &self,
        build: impl FnOnce(oneshot::Sender<Result<T, LinkError>>) -> Command,
    ) -> Result<T, LinkError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(build(tx))
            .await
            .map_err(|_| LinkError::Stopped)?;
        rx.await.unwrap_or(Err(LinkError::Stopped))
    }

    /// Hands `message` to the session (waiting for room in the command
    /// channel). QoS 1/2 messages are accepted while disconnected, up to
    /// [`LinkConfig::max_queued`]; QoS 0 needs a connection.
    pub async fn publish(&self, message: Message) -> Result<Delivery, LinkError> {
        let (done, delivery) = oneshot::channel();
        self.request(|accepted| Command::Publish {
            message: Box::new(message),
            accepted,
            done,
        })
        .await?;
        Ok(Delivery(delivery))
    }

    /// Subscribes and waits for the gateway's answer: the granted QoS, or
    /// [`LinkError::Refused`]. The subscription is renewed after every
    /// reconnection that did not find the session.
    pub async fn subscribe(&self, filter: TopicFilter, qos: QoS) -> Result<QoS, LinkError> {
        let subscription = Subscription {
            filter,
            options: bulwark_mqtt::SubscriptionOptions::new(qos),
        };
        self.subscribe_with(subscription).await
    }

    /// [`LinkHandle::subscribe`] with MQTT 5 subscription options.
    pub async fn subscribe_with(&self, subscription: Subscription) -> Result<QoS, LinkError> {
        self.request(|reply| Command::Subscribe {
            subscription,
            reply,
        })
        .await
    }

    pub async fn unsubscribe(&self, filter: TopicFilter) -> Result<(), LinkError> {
        self.request(|reply| Command::Unsubscribe { filter, reply })
            .await
    }

    /// Uses `config` (a renewed client certificate) from the next
    /// connection on; the current connection stays up.
    pub fn set_tls_config(&self, config: Arc<ClientConfig>) {
        if let Some(slot) = &self.tls {
            slot.set(config);
        }
    }

    pub fn status(&self) -> LinkStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch_status(&self) -> watch::Receiver<LinkStatus> {
        self.status.clone()
    }

    /// Waits until the link is connected; returns whether the gateway had
    /// kept the session.
    pub async fn wait_connected(&self) -> Result<bool, LinkError> {
        let mut status = self.status.clone();
        let seen = status
            .wait_for(|s| matches!(s, LinkStatus::Connected { .. } | LinkStatus::Stopped))
            .await
            .map_err(|_| LinkError::Stopped)?;
        match *seen {
            LinkStatus::Connected { session_present } => Ok(session_present),
            _ => Err(LinkError::Stopped),
        }
    }

    /// Sends DISCONNECT (if connected) and waits for the task to end.
    /// Messages still queued are dropped with it.
    pub async fn shutdown(&self) {
        let _ = self.commands.send(Command::Shutdown).await;
        let mut status = self.status.clone();
        let _ = status.wait_for(|s| *s == LinkStatus::Stopped).await;
    }
}

/// Starts links.
#[derive(Debug)]
pub struct Link;

impl Link {
    /// Starts the link task over mTLS with `tls` (which carries the
    /// device's client certificate and the trusted gateway roots). Returns
    /// the handle and the receiver of incoming messages. Must be called
    /// within a tokio runtime.
    pub fn spawn(
        config: LinkConfig,
        tls: Arc<ClientConfig>,
    ) -> (LinkHandle, mpsc::Receiver<Message>) {
        let slot = TlsSlot::new(tls);
        let connector = Connector::Tls {
            config: slot.clone(),
            server_name: config.server_name.clone(),
        };
        Self::start(config, connector, Some(slot))
    }

    /// FOR TESTS ONLY: the same link over plaintext TCP, for the link's
    /// tests against a local broker. The agent never calls this, and its
    /// configuration cannot select it; `config.server_name` is ignored.
    #[doc(hidden)]
    pub fn spawn_plaintext_for_tests(config: LinkConfig) -> (LinkHandle, mpsc::Receiver<Message>) {
        Self::start(config, Connector::PlaintextForTests, None)
    }

    fn start(
        config: LinkConfig,
        connector: Connector,
        tls: Option<TlsSlot>,
    ) -> (LinkHandle, mpsc::Receiver<Message>) {
        let (commands_tx, commands) = mpsc::channel(config.command_capacity.max(1));
        let (incoming_tx, incoming) = mpsc::channel(config.incoming_capacity.max(1));
        let (status_tx, status) = watch::channel(LinkStatus::Connecting { attempt: 0 });
        let driver = driver::Driver::new(config, connector, commands, incoming_tx, status_tx);
        tokio::spawn(driver.run());
        let handle = LinkHandle {
            commands: commands_tx,
            tls,
            status,
        };
        (handle, incoming)
    }
}

/// `err` and its sources, joined with ": ".
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
