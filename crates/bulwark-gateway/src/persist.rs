//! Durable sessions: what the gateway writes to the MQTT session store
//! (`bulwark_store::MqttStore`, its own SQLite file), and how it rebuilds
//! sessions and retained messages from it at start.
//!
//! - Writes that acknowledge something to a client are awaited before the
//!   acknowledgement leaves: a QoS 1/2 message queued for a persistent
//!   session (before the publisher's PUBACK/PUBREC), a subscription of a
//!   persistent session (before its SUBACK), a retained message.
//! - Writes whose loss only causes a redelivery (an acknowledgement from the
//!   subscriber, a message handed to the wire) are not awaited.
//!
//! Messages are stored as encoded MQTT 5 PUBLISH packets, so everything a
//! message carries (properties, QoS, retain, subscription identifiers)
//! round-trips through the codec that is already fuzzed.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bulwark_mqtt::{
    Decoder, Packet, PacketId, ProtocolVersion, Publish, QoS, RetainHandling, SubscriptionOptions,
};
use bytes::BytesMut;

/// Message states in the store.
pub const QUEUED: u8 = 0;
pub const SENT: u8 = 1;
pub const RELEASED: u8 = 2;

/// Operations collected while handling packets, written before the
/// acknowledgements that depend on them.
pub type Journal = Vec<bulwark_store::MqttOp>;

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An `Instant` as wall-clock milliseconds (for expiry deadlines).
pub fn instant_to_ms(at: Instant, now: Instant) -> i64 {
    let delta = at.saturating_duration_since(now);
    now_ms().saturating_add(i64::try_from(delta.as_millis()).unwrap_or(i64::MAX))
}

/// Wall-clock milliseconds as an `Instant` (past deadlines become `now`).
pub fn ms_to_instant(ms: i64, now: Instant) -> Instant {
    let left = ms.saturating_sub(now_ms()).max(0);
    now + Duration::from_millis(u64::try_from(left).unwrap_or(0))
}

/// The MQTT 5 subscription options byte.
pub fn options_byte(o: &SubscriptionOptions) -> u8 {
    (o.qos as u8)
        | u8::from(o.no_local) << 2
        | u8::from(o.retain_as_published) << 3
        | (o.retain_handling as u8) << 4
}

pub fn options_from_byte(b: u8) -> Option<SubscriptionOptions> {
    let mut o = SubscriptionOptions::new(QoS::from_u8(b & 0b11)?);
    o.no_local = b & 0b100 != 0;
    o.retain_as_published = b & 0b1000 != 0;
    o.retain_handling = match (b >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendAtSubscribeIfNew,
        2 => RetainHandling::DoNotSend,
        _ => return None,
    };
    Some(o)
}

/// Encodes a PUBLISH for storage (a placeholder packet id for QoS > 0:
/// the real one is stored beside it).
pub fn encode(mut p: Publish) -> Vec<u8> {
    if p.qos != QoS::AtMostOnce && p.packet_id.is_none() {
        p.packet_id = PacketId::new(1);
    }
    let mut out = BytesMut::new();
    match Packet::Publish(p).encode(ProtocolVersion::V5, &mut out) {
        Ok(()) => out.to_vec(),
        Err(e) => {
            tracing::error!(error = %e, "a message could not be encoded for the session store");
            Vec::new()
        }
    }
}

/// Decodes a stored PUBLISH; `None` for anything else (a corrupt row is
/// skipped, and logged, rather than stopping the server).
pub fn decode(bytes: &[u8]) -> Option<Publish> {
    let mut buf = BytesMut::from(bytes);
    match Decoder::with_version(ProtocolVersion::V5, bulwark_mqtt::MAX_PACKET_SIZE).decode(&mut buf)
    {
        Ok(Some(Packet::Publish(p))) => Some(p),
        other => {
            tracing::error!(?other, "a stored message is not a PUBLISH packet; skipped");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_mqtt::TopicName;

    #[test]
    fn options_round_trip() {
        for b in 0..=0b10_1110u8 {
            if b & 0b11 == 3 || (b >> 4) & 0b11 == 3 {
                assert!(options_from_byte(b).is_none() || b & 0b11 != 3);
                continue;
            }
            let o = options_from_byte(b).unwrap();
            assert_eq!(options_byte(&o), b);
        }
    }

    #[test]
    fn publish_round_trips_through_storage() {
        let mut p = Publish::new(TopicName::new("a/b").unwrap(), "payload");
        p.qos = QoS::ExactlyOnce;
        p.retain = true;
        p.properties.subscription_identifiers = vec![4];
        p.properties.content_type = Some("text/plain".into());
        let back = decode(&encode(p.clone())).unwrap();
        assert_eq!(back.topic, p.topic);
        assert_eq!(back.payload, p.payload);
        assert_eq!(back.properties, p.properties);
        assert!(back.retain);
        assert!(decode(b"\x20\x02\x00\x00").is_none());
    }
}

/// What a start-up restore found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreReport {
    pub sessions: usize,
    pub dropped_sessions: usize,
    pub messages: usize,
    pub retained: usize,
    pub wills: usize,
}

/// Rebuilds persistent sessions, retained messages and pending wills from
/// the store. A session whose principal no longer exists or may no longer
/// connect is deleted; one whose expiry passed while the server was down
/// is deleted; the others expire on their remaining time.
pub(crate) async fn restore(
    shared: &std::sync::Arc<crate::Shared>,
) -> Result<RestoreReport, bulwark_store::StoreError> {
    use std::sync::Arc;

    use bulwark_store::MqttOp;

    use crate::message::{Delivery, Message};
    use crate::session::{Outgoing, Owner, Session, SubRecord};

    let Some(store) = shared.broker.store.clone() else {
        return Ok(RestoreReport::default());
    };
    let snapshot = store.load().await?;
    let mut report = RestoreReport::default();
    let now = Instant::now();
    let now_wall = now_ms();
    let mut cleanup = Journal::new();
    for stored in snapshot.sessions {
        let key: crate::message::SessionKey = stored.client_id.as_str().into();
        let drop_it = |cleanup: &mut Journal, report: &mut RestoreReport| {
            cleanup.push(MqttOp::DeleteSession {
                client_id: stored.client_id.clone(),
            });
            report.dropped_sessions += 1;
        };
        let disconnected_ms = stored.disconnected_at_ms.unwrap_or(now_wall);
        let age_secs = u64::try_from(now_wall.saturating_sub(disconnected_ms) / 1000).unwrap_or(0);
        let expiry = u64::from(stored.expiry_secs);
        if stored.expiry_secs != u32::MAX && age_secs >= expiry {
            drop_it(&mut cleanup, &mut report);
            continue;
        }
        let Some(owner) = Owner::from_principal_string(&stored.principal) else {
            drop_it(&mut cleanup, &mut report);
            continue;
        };
        let Some(policy) = crate::enforce::policy_for(shared, &owner, &key).await else {
            drop_it(&mut cleanup, &mut report);
            continue;
        };
        let counters = shared.broker.metrics.principal(&owner.counter_key());
        let session = Session::new(key.clone(), owner, counters, policy);
        {
            let mut st = session.lock();
            st.persistent = true;
            st.protocol_level = stored.protocol_level;
            st.expiry_secs = stored.expiry_secs;
            st.disconnected_at = Some(now);
            for sub in &stored.subscriptions {
                if let Some(options) = options_from_byte(sub.options) {
                    st.subscriptions.insert(
                        sub.filter.clone(),
                        SubRecord {
                            options,
                            id: sub.subscription_id,
                        },
                    );
                }
            }
            for m in &stored.messages {
                st.next_seq = st.next_seq.max(m.seq + 1);
                let Some(p) = decode(&m.packet) else {
                    cleanup.push(MqttOp::DeleteMessage {
                        client_id: stored.client_id.clone(),
                        seq: m.seq,
                    });
                    continue;
                };
                let Some(topic) = p.topic.clone() else {
                    continue;
                };
                let (qos, retain, ids) = (
                    p.qos,
                    p.retain,
                    p.properties.subscription_identifiers.clone(),
                );
                let mut message = Message::from_publish(p, topic, "".into(), now);
                message.expires_at = m.expires_at_ms.map(|ms| ms_to_instant(ms, now));
                let d = Delivery {
                    message: Arc::new(message),
                    qos,
                    retain,
                    subscription_ids: ids,
                    seq: Some(m.seq),
                };
                match (m.state, m.packet_id) {
                    (SENT | RELEASED, Some(id)) => {
                        st.inflight.insert(
                            id,
                            Outgoing {
                                delivery: d,
                                released: m.state == RELEASED,
                            },
                        );
                    }
                    _ => st.queue.push_back(d),
                }
                report.messages += 1;
            }
        }
        let epoch = session.lock().epoch;
        shared.broker.restore_session(session);
        report.sessions += 1;
        if stored.expiry_secs != u32::MAX {
            let left = Duration::from_secs(expiry - age_secs);
            let shared = shared.clone();
            tokio::spawn(async move {
                tokio::time::sleep(left).await;
                shared.broker.expire(&key, epoch);
            });
        }
    }
    for r in snapshot.retained {
        let Some(p) = decode(&r.packet) else { continue };
        let Some(topic) = p.topic.clone() else {
            continue;
        };
        let mut message = Message::from_publish(p, topic, "".into(), now);
        message.retain = true;
        message.expires_at = r.expires_at_ms.map(|ms| ms_to_instant(ms, now));
        if message.is_expired(now) {
            cleanup.push(MqttOp::ClearRetained { topic: r.topic });
            continue;
        }
        shared.broker.restore_retained(Arc::new(message));
        report.retained += 1;
    }
    for w in snapshot.wills {
        let session = shared.broker.session(&w.client_id);
        let (Some(session), Some(p)) = (session, decode(&w.packet)) else {
            cleanup.push(MqttOp::DeleteWill {
                client_id: w.client_id,
            });
            continue;
        };
        let Some(topic) = p.topic.clone() else {
            continue;
        };
        let will = bulwark_mqtt::LastWill {
            topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties: p.properties,
        };
        let delay = Duration::from_millis(
            u64::try_from(w.publish_at_ms.saturating_sub(now_wall)).unwrap_or(0),
        );
        let epoch = session.lock().epoch;
        crate::conn::schedule_will(shared, &session, will, epoch, delay, false);
        report.wills += 1;
    }
    shared.broker.persist(cleanup).await?;
    Ok(report)
}
