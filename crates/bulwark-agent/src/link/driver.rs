//! The link task: connect, run one connection (socket ↔ session, commands,
//! timers, incoming messages), back off, repeat, until shut down.
//!
//! Commands are served in every phase (connecting, connected, backing off),
//! so the agent can publish while the link is down. While the incoming
//! channel is full the task stops reading the socket, and only that.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use bulwark_mqtt::client::{ClientOptions, ClientSession, CloseReason, Event, Message, State};
use bulwark_mqtt::{PacketId, QoS, ReasonCode, Subscription};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{sleep_until, timeout, Instant as TokioInstant};

use super::connector::{Connector, Transport};
use super::{error_chain, Backoff, Command, LinkConfig, LinkError, LinkStatus};

/// Who waits for a SUBACK or UNSUBACK.
enum Waiter {
    Subscribe(String, oneshot::Sender<Result<QoS, LinkError>>),
    Unsubscribe(oneshot::Sender<Result<(), LinkError>>),
    /// The link's own renewal of its subscriptions.
    Resubscribe(Vec<String>),
}

pub(super) struct Driver {
    config: LinkConfig,
    connector: Connector,
    session: ClientSession,
    commands: mpsc::Receiver<Command>,
    incoming: mpsc::Sender<Message>,
    /// Received, not yet taken by the application (reading pauses).
    pending_incoming: VecDeque<Message>,
    /// Filter → subscription, renewed when the session was lost.
    subscriptions: BTreeMap<String, Subscription>,
    deliveries: HashMap<PacketId, oneshot::Sender<Result<ReasonCode, LinkError>>>,
    waiters: HashMap<PacketId, Waiter>,
    status: watch::Sender<LinkStatus>,
    backoff: Backoff,
    rng: StdRng,
    connected_at: Option<TokioInstant>,
    closed: Option<CloseReason>,
    stop: bool,
}

fn now() -> Instant {
    TokioInstant::now().into_std()
}

impl Driver {
    pub(super) fn new(
        config: LinkConfig,
        connector: Connector,
        commands: mpsc::Receiver<Command>,
        incoming: mpsc::Sender<Message>,
        status: watch::Sender<LinkStatus>,
    ) -> Self {
        let mut options = ClientOptions::new(config.version, config.client_id.clone());
        options.clean_start = false;
        options.session_expiry_interval = config.session_expiry_interval;
        options.keep_alive = config.keep_alive;
        options.response_timeout = config.response_timeout;
        options.will.clone_from(&config.will);
        options.maximum_packet_size = config.max_packet_size;
        options.max_queued = config.max_queued;
        Driver {
            session: ClientSession::new(options, now()),
            backoff: Backoff::new(config.backoff),
            rng: StdRng::from_os_rng(),
            config,
            connector,
            commands,
            incoming,
            pending_incoming: VecDeque::new(),
            subscriptions: BTreeMap::new(),
            deliveries: HashMap::new(),
            waiters: HashMap::new(),
            status,
            connected_at: None,
            closed: None,
            stop: false,
        }
    }

    pub(super) async fn run(mut self) {
        let client_id = self.config.client_id.clone();
        while !self.stop {
            self.status.send_replace(LinkStatus::Connecting {
                attempt: self.backoff.attempt(),
            });
            let result = self.connection().await;
            self.session.connection_lost();
            if let Some(at) = self.connected_at.take() {
                self.backoff.connection_ended(TokioInstant::now() - at);
            }
            if self.stop {
                break;
            }
            let last_error = match &result {
                Ok(()) => String::from("disconnected"),
                Err(e) => error_chain(e),
            };
            let attempt = self.backoff.attempt();
            let delay = self.backoff.next_delay(&mut self.rng);
            tracing::warn!(%client_id, error = %last_error, ?delay, attempt, "mqtt link down");
            self.status.send_replace(LinkStatus::Waiting {
                attempt,
                delay,
                last_error,
            });
            self.idle(delay).await;
        }
        tracing::info!(%client_id, "mqtt link stopped");
        self.status.send_replace(LinkStatus::Stopped);
        // Dropping the senders tells every waiter the link stopped.
    }

    /// Serves commands until `delay` has passed or the link stops.
    async fn idle(&mut self, delay: Duration) {
        let deadline = TokioInstant::now() + delay;
        while !self.stop {
            tokio::select! {
                cmd = self.commands.recv() => self.command(cmd),
                () = sleep_until(deadline) => return,
            }
        }
    }

    /// One connection, from TCP connect to its end.
    async fn connection(&mut self) -> Result<(), LinkError> {
        let connector = self.connector.clone();
        let addr = self.config.server_addr.clone();
        let limit = self.config.connect_timeout;
        let connect = timeout(limit, async move { connector.connect(&addr).await });
        tokio::pin!(connect);
        let mut stream = loop {
            tokio::select! {
                r = &mut connect => match r {
                    Ok(Ok(stream)) => break stream,
                    Ok(Err(e)) => return Err(LinkError::Io(e)),
                    Err(_) => return Err(LinkError::ConnectTimeout(limit)),
                },
                cmd = self.commands.recv() => self.command(cmd),
            }
            if self.stop {
                return Ok(());
            }
        };
        self.closed = None;
        self.session.connect(now()).map_err(LinkError::Rejected)?;
        let result = self.run_connection(&mut stream).await;
        let _ = stream.shutdown().await;
        result
    }

    async fn run_connection(&mut self, stream: &mut Box<dyn Transport>) -> Result<(), LinkError> {
        let mut buf = vec![0u8; 8 * 1024];
        loop {
            self.process_events();
            if self.stop && self.session.state() == State::Connected {
                let _ = self.session.disconnect(ReasonCode::NORMAL_DISCONNECTION);
            }
            self.flush(stream).await?;
            if self.stop {
                return Ok(());
            }
            if self.session.state() == State::Closed {
                return Err(match self.closed.take() {
                    Some(reason) => LinkError::Closed(reason),
                    None => LinkError::ConnectionClosed,
                });
            }
            let deadline = self.session.poll_timeout().map_or_else(
                || TokioInstant::now() + Duration::from_secs(3600),
                TokioInstant::from_std,
            );
            let paused = !self.pending_incoming.is_empty();
            // A clone, so that the permit does not borrow `self`.
            let incoming = self.incoming.clone();
            tokio::select! {
                cmd = self.commands.recv() => self.command(cmd),
                permit = incoming.reserve(), if paused => match permit {
                    Ok(permit) => {
                        if let Some(m) = self.pending_incoming.pop_front() {
                            permit.send(m);
                        }
                    }
                    // Nobody listens: messages are dropped from now on.
                    Err(_) => self.pending_incoming.clear(),
                },
                r = stream.read(&mut buf), if !paused => match r {
                    Ok(0) => return Err(LinkError::ConnectionClosed),
                    Ok(n) => {
                        // A closing error is also an event (handled above).
                        let _ = self.session.handle_input(buf.get(..n).unwrap_or_default(), now());
                    }
                    Err(e) => return Err(LinkError::Io(e)),
                },
                () = sleep_until(deadline) => {
                    let _ = self.session.handle_timeout(now());
                }
            }
        }
    }

    async fn flush(&mut self, stream: &mut Box<dyn Transport>) -> Result<(), LinkError> {
        while let Some(bytes) = self.session.poll_transmit(now()) {
            let limit = self.config.response_timeout;
            match timeout(limit, stream.write_all(&bytes)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(LinkError::Io(e)),
                Err(_) => return Err(LinkError::WriteTimeout(limit)),
            }
        }
        stream.flush().await.map_err(LinkError::Io)
    }

    fn command(&mut self, cmd: Option<Command>) {
        let Some(cmd) = cmd else {
            // Every handle is gone.
            self.stop = true;
            return;
        };
        match cmd {
            Command::Publish {
                message,
                accepted,
                done,
            } => {
                let result = match self.session.publish(*message) {
                    Ok(Some(id)) => {
                        self.deliveries.insert(id, done);
                        Ok(())
                    }
                    Ok(None) => {
                        let _ = done.send(Ok(ReasonCode::Success));
                        Ok(())
                    }
                    Err(e) => Err(LinkError::Rejected(e)),
                };
                let _ = accepted.send(result);
            }
            Command::Subscribe {
                subscription,
                reply,
            } => {
                let filter = subscription.filter.as_str().to_owned();
                match self.session.subscribe(vec![subscription.clone()]) {
                    Ok(id) => {
                        self.subscriptions.insert(filter.clone(), subscription);
                        self.waiters.insert(id, Waiter::Subscribe(filter, reply));
                    }
                    Err(e) => drop(reply.send(Err(LinkError::Rejected(e)))),
                }
            }
            Command::Unsubscribe { filter, reply } => {
                self.subscriptions.remove(filter.as_str());
                match self.session.unsubscribe(vec![filter]) {
                    Ok(id) => drop(self.waiters.insert(id, Waiter::Unsubscribe(reply))),
                    Err(e) => drop(reply.send(Err(LinkError::Rejected(e)))),
                }
            }
            Command::Shutdown => self.stop = true,
        }
    }

    fn complete(&mut self, id: PacketId, result: Result<ReasonCode, LinkError>) {
        if let Some(done) = self.deliveries.remove(&id) {
            let _ = done.send(result);
        }
    }

    fn process_events(&mut self) {
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::Connected(c) => {
                    tracing::info!(
                        client_id = %self.config.client_id,
                        session_present = c.session_present,
                        "mqtt link up"
                    );
                    self.connected_at = Some(TokioInstant::now());
                    if !c.session_present {
                        self.resubscribe();
                    }
                    self.status.send_replace(LinkStatus::Connected {
                        session_present: c.session_present,
                    });
                }
                Event::PublishLost { packet_id, message } => self.republish(packet_id, message),
                Event::PublishDropped { packet_id, error } => {
                    self.complete(packet_id, Err(LinkError::Dropped(error)));
                }
                Event::Message(m) => {
                    if !self.incoming.is_closed() {
                        self.pending_incoming.push_back(m);
                    }
                }
                Event::PubAck(a) | Event::PubComp(a) => {
                    self.complete(a.packet_id, outcome(a.reason_code));
                }
                Event::PubRec(a) if a.reason_code.is_error() => {
                    self.complete(a.packet_id, outcome(a.reason_code));
                }
                Event::PubRec(_) => {}
                Event::SubAck { packet_id, results } => self.suback(packet_id, &results),
                Event::UnsubAck { packet_id, .. } => {
                    if let Some(Waiter::Unsubscribe(reply)) = self.waiters.remove(&packet_id) {
                        let _ = reply.send(Ok(()));
                    }
                }
                Event::Closed(reason) => self.closed = Some(reason),
            }
        }
    }

    /// The gateway lost the session with this message in flight: publish
    /// it again (at least once), or call it delivered when only its QoS 2
    /// release was lost.
    fn republish(&mut self, packet_id: PacketId, message: Option<Message>) {
        let done = self.deliveries.remove(&packet_id);
        let Some(message) = message else {
            if let Some(done) = done {
                let _ = done.send(Ok(ReasonCode::Success));
            }
            return;
        };
        match (self.session.publish(message), done) {
            (Ok(Some(id)), Some(done)) => drop(self.deliveries.insert(id, done)),
            (Err(e), Some(done)) => drop(done.send(Err(LinkError::Dropped(e)))),
            (result, _) => {
                if let Err(e) = result {
                    tracing::warn!(error = %error_chain(&e), "lost message not republished");
                }
            }
        }
    }

    fn resubscribe(&mut self) {
        if self.subscriptions.is_empty() {
            return;
        }
        let filters: Vec<String> = self.subscriptions.keys().cloned().collect();
        let subs: Vec<Subscription> = self.subscriptions.values().cloned().collect();
        match self.session.subscribe(subs) {
            Ok(id) => drop(self.waiters.insert(id, Waiter::Resubscribe(filters))),
            Err(e) => tracing::warn!(error = %error_chain(&e), "cannot renew subscriptions"),
        }
    }

    fn suback(&mut self, packet_id: PacketId, results: &[Result<QoS, ReasonCode>]) {
        match self.waiters.remove(&packet_id) {
            Some(Waiter::Subscribe(filter, reply)) => {
                let result = match results.first() {
                    Some(Ok(qos)) => Ok(*qos),
                    Some(Err(code)) => Err(*code),
                    None => Err(ReasonCode::UnspecifiedError),
                };
                if result.is_err() {
                    self.subscriptions.remove(&filter);
                }
                let _ = reply.send(result.map_err(LinkError::Refused));
            }
            Some(Waiter::Resubscribe(filters)) => {
                for (filter, result) in filters.iter().zip(results) {
                    if let Err(code) = result {
                        tracing::warn!(%filter, %code, "subscription not renewed");
                        self.subscriptions.remove(filter);
                    }
                }
            }
            Some(Waiter::Unsubscribe(reply)) => {
                let _ = reply.send(Err(LinkError::Refused(ReasonCode::ProtocolError)));
            }
            None => {}
        }
    }
}

fn outcome(code: ReasonCode) -> Result<ReasonCode, LinkError> {
    if code.is_error() {
        Err(LinkError::Refused(code))
    } else {
        Ok(code)
    }
}
