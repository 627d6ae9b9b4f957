//! One connection, in its own task: CONNECT under a deadline, admission,
//! CONNACK, then a loop that reads packets, writes deliveries as the
//! session's send window allows, answers keepalives, and obeys the
//! gateway's control messages (takeover, enforcement).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulwark_audit::{Actor, AuditEvent};
use bulwark_mqtt::{
    ConnAck, Connect, DecodeError, Decoder, Disconnect, Encoder, LastWill, Packet, ProtocolVersion,
    ReasonCode,
};
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::auth::{self, Admission, Realm, Refusal};
use crate::broker::AttachRequest;
use crate::events::GatewayEvent;
use crate::metrics::Metrics;
use crate::persist::Journal;
use crate::session::Session;
use crate::Shared;

mod packets;
#[cfg(test)]
mod tests;

pub(crate) use packets::topic_problem;

/// Why a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// DISCONNECT with reason 0: the will is discarded.
    Normal,
    /// DISCONNECT with "disconnect with will message".
    NormalWithWill,
    /// Network error, EOF, keepalive, protocol error, takeover.
    Abnormal,
    /// Closed by enforcement or an operator: no will, the principal is no
    /// longer trusted.
    Kicked,
}

/// Reads until one packet is decoded; `None` at EOF.
async fn read_packet<R: AsyncRead + Unpin>(
    io: &mut R,
    decoder: &mut Decoder,
    buf: &mut BytesMut,
) -> Result<Option<Packet>, DecodeError> {
    loop {
        if let Some(p) = decoder.decode(buf)? {
            return Ok(Some(p));
        }
        buf.reserve(2048);
        match io.read_buf(buf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

fn connack(code: ReasonCode, reason: Option<String>) -> Packet {
    let mut ack = ConnAck {
        reason_code: code,
        ..ConnAck::default()
    };
    ack.properties.reason_string = reason;
    Packet::ConnAck(ack)
}

async fn send<W: AsyncWrite + Unpin>(io: &mut W, version: ProtocolVersion, packet: &Packet) {
    let mut out = BytesMut::new();
    if Encoder::new(version).encode(packet, &mut out).is_ok() {
        let _ = io.write_all(&out).await;
        let _ = io.flush().await;
    }
}

/// Serves one connection to the end.
pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    mut io: S,
    remote: SocketAddr,
    cert: Option<Vec<u8>>,
    realm: Realm,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let limits = &shared.broker.limits;
    let metrics = shared.broker.metrics.clone();
    let mut inbuf = BytesMut::with_capacity(1024);
    let mut decoder = Decoder::new(limits.max_packet_size_unauthenticated);
    let first = tokio::time::timeout(
        limits.connect_timeout,
        read_packet(&mut io, &mut decoder, &mut inbuf),
    )
    .await;
    let connect = match first {
        Err(_) => {
            Metrics::inc(&metrics.connect_timeouts_total);
            Metrics::inc(&metrics.connections_refused_total);
            tracing::debug!(%remote, "no CONNECT before the deadline");
            return;
        }
        Ok(Ok(Some(Packet::Connect(c)))) => c,
        Ok(Ok(_)) => return,
        Ok(Err(e)) => {
            Metrics::inc(&metrics.protocol_errors_total);
            Metrics::inc(&metrics.connections_refused_total);
            if matches!(e, DecodeError::PacketTooLarge { .. }) {
                Metrics::inc(&metrics.oversized_packets_total);
            }
            tracing::debug!(%remote, error = %e, "bad CONNECT");
            // A CONNACK is only meaningful once the version is known; an
            // unsupported version gets the 3.1.1 answer the spec asks for.
            let version = match e {
                DecodeError::UnsupportedProtocolVersion { .. }
                | DecodeError::InvalidProtocolName => Some(ProtocolVersion::V311),
                _ => decoder.version(),
            };
            if let Some(v) = version {
                send(&mut io, v, &connack(e.reason_code(), None)).await;
            }
            return;
        }
    };
    let version = connect.protocol_version;
    let refuse = |code: ReasonCode, reason: String| {
        // MQTT 5: the reason string unless the client asked for none.
        let wants = connect.properties.request_problem_information != Some(false);
        connack(
            code,
            (version == ProtocolVersion::V5 && wants).then_some(reason),
        )
    };

    // Flapping: one client id connecting over and over.
    if !shared
        .limiter
        .connect_allowed(&connect.client_id, Instant::now())
    {
        Metrics::inc(&metrics.flapping_refusals_total);
        Metrics::inc(&metrics.connections_refused_total);
        let p = refuse(
            ReasonCode::ConnectionRateExceeded,
            "this client id connects too often; wait before reconnecting".into(),
        );
        send(&mut io, version, &p).await;
        return;
    }

    // Transient futures (admission, refusal) are boxed: a task's memory is
    // the size of its largest state, and the state an idle connection
    // spends its life in should set it, not these.
    let admission = match Box::pin(auth::admit(
        &shared.registry,
        &shared.admitted,
        realm,
        &connect,
        cert.as_deref(),
        &remote.to_string(),
    ))
    .await
    {
        Ok(a) => {
            if a.remembered {
                Metrics::inc(&metrics.admissions_remembered_total);
            }
            a
        }
        Err(r) => {
            Box::pin(refused(&shared, &connect, &remote, &r)).await;
            send(&mut io, version, &refuse(r.code, r.reason)).await;
            return;
        }
    };
    if let Err(r) = check_will(&shared, &connect, &admission) {
        Metrics::inc(&metrics.will_denied_total);
        Box::pin(refused(&shared, &connect, &remote, &r)).await;
        send(&mut io, version, &refuse(r.code, r.reason)).await;
        return;
    }
    shared.limiter.auth_succeeded(remote.ip());
    decoder.set_max_packet_size(limits.max_packet_size);
    drop(metrics);
    run(shared, io, decoder, inbuf, remote, connect, admission, cert).await;
}

/// Records a refused CONNECT: counted, audited when an identity was
/// proven or a certificate was presented, fed to the back-off.
async fn refused(shared: &Shared, connect: &Connect, remote: &SocketAddr, r: &Refusal) {
    let metrics = &shared.broker.metrics;
    Metrics::inc(&metrics.connections_refused_total);
    if r.auth_failure {
        Metrics::inc(&metrics.auth_failures_total);
        shared.limiter.auth_failed(remote.ip(), Instant::now());
    }
    if let Some(d) = &r.device {
        Metrics::inc(&metrics.principal(d.as_str()).auth_failures);
    }
    shared.events.emit(GatewayEvent::ConnectRefused {
        source: *remote,
        client_id: connect.client_id.clone(),
        device: r.device.clone(),
        reason: r.reason.clone(),
    });
    tracing::info!(%remote, client_id = %connect.client_id, reason = %r.reason, code = ?r.code, "MQTT CONNECT refused");
    let actor = match &r.device {
        Some(d) => Actor::Device {
            device_id: d.clone(),
        },
        None => Actor::Anonymous {
            source: remote.to_string(),
        },
    };
    let event = AuditEvent::MqttConnectRefused {
        client_id: connect.client_id.chars().take(128).collect(),
        source: remote.to_string(),
        reason: r.reason.clone(),
    };
    if let Err(e) = shared.registry.store().append_audit(actor, event).await {
        tracing::error!(error = %e, "could not audit a refused MQTT CONNECT");
    }
}

/// A will must name a topic the client may publish to, checked at CONNECT
/// (and again when it is published).
fn check_will(shared: &Shared, connect: &Connect, a: &Admission) -> Result<(), Refusal> {
    let Some(will) = &connect.will else {
        return Ok(());
    };
    let topic = will.topic.as_str();
    let problem = packets::topic_problem(topic, &shared.broker.limits).or_else(|| {
        (!a.policy
            .check(bulwark_policy::Action::Publish, topic)
            .is_allowed())
        .then_some("the policy does not allow publishing the will to this topic")
    });
    match problem {
        None => Ok(()),
        Some(p) => Err(Refusal {
            code: ReasonCode::NotAuthorized,
            reason: format!("will topic {topic:?}: {p}"),
            device: match &a.owner {
                crate::session::Owner::Device(d) => Some(d.clone()),
                _ => None,
            },
            auth_failure: false,
        }),
    }
}

/// Session expiry granted: MQTT 5 asks, capped; MQTT 3.1.1 has none of its
/// own, so a persistent session gets the maximum.
fn session_expiry(connect: &Connect, max: u32) -> u32 {
    match connect.protocol_version {
        ProtocolVersion::V5 => connect
            .properties
            .session_expiry_interval
            .unwrap_or(0)
            .min(max),
        ProtocolVersion::V311 if connect.clean_start => 0,
        ProtocolVersion::V311 => max,
    }
}

#[allow(clippy::too_many_arguments)] // the connection's pieces, handed over once
async fn run<S>(
    shared: Arc<Shared>,
    io: S,
    decoder: Decoder,
    inbuf: BytesMut,
    remote: SocketAddr,
    connect: Box<Connect>,
    admission: Admission,
    cert: Option<Vec<u8>>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    // Everything up to CONNACK is in `attach`, boxed: it is done once, and
    // what the long-lived loop below holds should decide the task's size
    // (the certificate is dropped there).
    let Some((mut conn, attached, client_id)) =
        Box::pin(attach(&shared, &remote, connect, admission, cert)).await
    else {
        return;
    };
    let session = attached.session.clone();
    let metrics = &shared.broker.metrics;
    let end = conn.run(io, decoder, inbuf, attached.control).await;
    metrics
        .connections_active
        .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    let expiry = conn.expiry_secs();
    let will = conn.take_will();
    drop(conn);
    if shared.events.enabled() {
        shared.events.emit(GatewayEvent::Disconnected {
            client_id,
            principal: session.owner.counter_key(),
            device: session.owner.device(),
            source: remote,
            normal: matches!(end, End::Normal | End::NormalWithWill),
        });
    }
    let epoch = shared.broker.detach(&session, attached.generation, expiry);
    finish(&shared, &session, epoch, expiry, end, will);
}

/// What a connection keeps from its CONNECT once attached.
struct AttachedConn {
    session: Arc<Session>,
    generation: u64,
    control: tokio::sync::oneshot::Receiver<crate::session::Control>,
}

/// Attaches the session (persisted before CONNACK says it exists), records
/// a takeover, and prepares the connection with its CONNACK queued.
async fn attach(
    shared: &Arc<Shared>,
    remote: &SocketAddr,
    connect: Box<Connect>,
    admission: Admission,
    cert: Option<Vec<u8>>,
) -> Option<(packets::Conn, AttachedConn, String)> {
    let limits = &shared.broker.limits;
    let metrics = &shared.broker.metrics;
    let remote = *remote;
    let version = connect.protocol_version;
    let expiry = session_expiry(&connect, limits.max_session_expiry_secs);
    let client_max = connect.properties.maximum_packet_size.map(|m| m.get());
    let send_window = connect
        .properties
        .receive_maximum
        .map_or(limits.max_inflight, |r| r.get().min(limits.max_inflight));
    let (keep_alive, server_keep_alive) = match version {
        ProtocolVersion::V5
            if connect.keep_alive == 0 || connect.keep_alive > limits.max_keepalive_secs =>
        {
            (limits.max_keepalive_secs, Some(limits.max_keepalive_secs))
        }
        _ => (connect.keep_alive, None),
    };

    let mut journal = Journal::new();
    let attached = shared.broker.attach(
        AttachRequest {
            key: admission.key.clone(),
            owner: admission.owner.clone(),
            policy: admission.policy.clone(),
            clean_start: connect.clean_start,
            remote: remote.to_string(),
            serial: admission.serial.clone(),
            send_window,
            expiry_secs: expiry,
            protocol_level: version.level(),
        },
        &mut journal,
    );
    // The session exists durably before CONNACK says so.
    if let Err(e) = shared.broker.persist(journal).await {
        Metrics::inc(&metrics.persistence_errors_total);
        tracing::error!(error = %e, "cannot persist an MQTT session; refusing the connection");
        shared
            .broker
            .detach(&attached.session, attached.generation, 0);
        return None;
    }
    let session = attached.session.clone();
    if admission
        .generation
        .is_some_and(|g| g != shared.admitted.generation())
    {
        // The registry published a change since the admission read it, and
        // the enforcement task may have looked for this session before it
        // was attached: admit again, now that it is (a service that gave a
        // password is re-checked as enforcement does, without the password).
        Metrics::inc(&metrics.readmissions_total);
        match cert.as_deref() {
            Some(der) => {
                Box::pin(readmit(
                    shared, &remote, &connect, &admission, der, &session,
                ))
                .await;
            }
            None => Box::pin(crate::enforce::reevaluate(shared, &session)).await,
        }
    }
    drop(cert);
    Metrics::inc(&session.counters.connects);
    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let write_seen = session.counters.claim_last_seen(now_secs, 60);
    if let (crate::session::Owner::Device(id), true) = (&session.owner, write_seen) {
        // Inventory's "last seen" (to the minute); off the CONNACK path,
        // not audited.
        let (store, id) = (shared.registry.store().clone(), id.clone());
        tokio::spawn(async move {
            if let Err(e) = store
                .record_seen(&id, time::OffsetDateTime::now_utc())
                .await
            {
                tracing::warn!(error = %e, device = %id, "could not record last seen");
            }
        });
    }
    if let Some(previous) = &attached.took_over {
        tracing::warn!(client_id = %admission.client_id, %previous, %remote, "MQTT session taken over");
        shared.events.emit(GatewayEvent::SessionTakenOver {
            client_id: admission.client_id.clone(),
            previous: previous.clone(),
            source: remote,
        });
        let r = shared
            .registry
            .store()
            .append_audit(
                actor_of(&session),
                AuditEvent::MqttSessionTakenOver {
                    client_id: admission.client_id.clone(),
                    previous_source: previous.clone(),
                    source: remote.to_string(),
                },
            )
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "could not audit a session takeover");
        }
    }

    let mut ack = ConnAck {
        session_present: attached.session_present,
        ..ConnAck::default()
    };
    if version == ProtocolVersion::V5 {
        let p = &mut ack.properties;
        p.receive_maximum = std::num::NonZeroU16::new(limits.receive_maximum);
        p.maximum_packet_size = std::num::NonZeroU32::new(limits.max_packet_size);
        p.topic_alias_maximum = Some(limits.topic_alias_maximum);
        p.server_keep_alive = server_keep_alive;
        if admission.assigned {
            p.assigned_client_identifier = Some(admission.client_id.clone());
        }
        if connect
            .properties
            .session_expiry_interval
            .is_some_and(|e| e != expiry)
        {
            p.session_expiry_interval = Some(expiry);
        }
    }
    let mut encoder = Encoder::new(version);
    if let Some(m) = client_max {
        encoder.set_max_packet_size(m);
    }
    if shared.events.enabled() {
        shared.events.emit(GatewayEvent::Connected {
            client_id: admission.client_id.clone(),
            principal: session.owner.counter_key(),
            device: session.owner.device(),
            source: remote,
        });
    }
    tracing::debug!(client_id = %admission.client_id, %remote, %version, present = attached.session_present, "MQTT session attached");
    Metrics::inc(&metrics.connections_active);

    let mut conn = packets::Conn::new(
        shared.clone(),
        session.clone(),
        encoder,
        keep_alive,
        connect.will,
        expiry,
    );
    conn.start(&Packet::ConnAck(ack));
    Some((
        conn,
        AttachedConn {
            session,
            generation: attached.generation,
            control: attached.control,
        },
        admission.client_id,
    ))
}

/// Admits a just-attached session's CONNECT again: a refusal disconnects
/// it (after its CONNACK), a different policy replaces the one it got.
async fn readmit(
    shared: &Arc<Shared>,
    remote: &SocketAddr,
    connect: &Connect,
    admission: &Admission,
    cert: &[u8],
    session: &Arc<Session>,
) {
    let again = auth::admit(
        &shared.registry,
        &shared.admitted,
        Realm::Tls,
        connect,
        Some(cert),
        &remote.to_string(),
    )
    .await;
    match again {
        Ok(a) if a.key == admission.key => {
            if !Arc::ptr_eq(&a.policy, &admission.policy) {
                shared.broker.rescope(session, a.policy);
            }
        }
        Ok(_) | Err(_) => {
            crate::enforce::kick(
                session,
                ReasonCode::NotAuthorized,
                "the registry changed while this connection was admitted; it may no longer connect",
            );
        }
    }
}

fn actor_of(session: &Session) -> Actor {
    match &session.owner {
        crate::session::Owner::Device(d) => Actor::Device {
            device_id: d.clone(),
        },
        other => Actor::Anonymous {
            source: other.counter_key(),
        },
    }
}

/// After the connection: the will (now or after its delay) and the
/// session's expiry timer.
fn finish(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    epoch: Option<u64>,
    expiry: u32,
    end: End,
    will: Option<LastWill>,
) {
    let publish_will = matches!(end, End::Abnormal | End::NormalWithWill);
    if let (Some(will), true) = (will, publish_will) {
        let delay = will.properties.will_delay_interval.unwrap_or(0).min(expiry);
        if delay == 0 || epoch.is_none() {
            packets::publish_will(shared, session, will);
        } else if let Some(epoch) = epoch {
            schedule_will(
                shared,
                session,
                will,
                epoch,
                Duration::from_secs(u64::from(delay)),
                true,
            );
        }
    }
    if let (Some(epoch), true) = (epoch, expiry > 0 && expiry != u32::MAX) {
        let shared = shared.clone();
        let key = session.key.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(u64::from(expiry))).await;
            shared.broker.expire(&key, epoch);
        });
    }
}

/// Publishes `will` after `delay` unless the session was resumed since
/// `epoch`; a persistent session's pending will is stored so a restart
/// does not lose it.
pub(crate) fn schedule_will(
    shared: &Arc<Shared>,
    session: &Arc<Session>,
    will: LastWill,
    epoch: u64,
    delay: Duration,
    store: bool,
) {
    let key = session.key.to_string();
    if store && session.lock().persistent {
        let mut p = bulwark_mqtt::Publish::new(will.topic.clone(), will.payload.clone());
        p.qos = will.qos;
        p.retain = will.retain;
        p.properties = will.properties.clone();
        let at = crate::persist::instant_to_ms(
            std::time::Instant::now() + delay,
            std::time::Instant::now(),
        );
        shared
            .broker
            .persist_nowait(vec![bulwark_store::MqttOp::PutWill {
                client_id: key.clone(),
                packet: crate::persist::encode(p),
                publish_at_ms: at,
            }]);
    }
    let shared = shared.clone();
    let session = session.clone();
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if shared.broker.still_detached(&session.key, epoch) {
            packets::publish_will(&shared, &session, will);
        }
        shared
            .broker
            .persist_nowait(vec![bulwark_store::MqttOp::DeleteWill { client_id: key }]);
    });
}

/// Sends DISCONNECT (MQTT 5 only; 3.1.1 has no server DISCONNECT).
pub(crate) fn disconnect_packet(
    version: ProtocolVersion,
    reason: ReasonCode,
    message: &str,
) -> Option<Packet> {
    (version == ProtocolVersion::V5).then(|| {
        let mut d = Disconnect {
            reason_code: reason,
            ..Disconnect::default()
        };
        d.properties.reason_string = Some(message.to_owned());
        Packet::Disconnect(d)
    })
}
