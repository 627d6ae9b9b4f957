//! Server-originated messages (e.g. OTA notifications to
//! `devices/<id>/commands/ota`): published by Bulwark itself, not by a
//! client, and routed exactly like a client's PUBLISH (`Broker::route`):
//! each subscriber's `receive` policy is checked when the message is
//! queued and again when it is sent, the QoS is lowered to the
//! subscription's, subscription identifiers are attached, and persistent
//! sessions keep it until they reconnect.
//!
//! - The origin is [`SYSTEM_ORIGIN`], a session key no client can hold
//!   (admission only makes device ids, which have no `:`, `service:…` and
//!   `dev:…`), so No Local never hides the message from anyone.
//! - Never retained; topics starting with `$` are refused.
//! - The writes to the session store are awaited: `Ok` means the message is
//!   durable for every persistent session it was queued for.
//! - A connected subscriber whose queue is full does not hold the caller
//!   back (a client publisher would wait for room): the delivery is dropped
//!   and counted (`bulwark_mqtt_system_publish_dropped_total`, also in
//!   `bulwark_mqtt_queue_dropped_total`) and reported in [`SystemPublish`].

use std::sync::Arc;
use std::time::Instant;

use bulwark_mqtt::{Publish, QoS, TopicName};
use bytes::Bytes;

use crate::broker::Broker;
use crate::message::Message;
use crate::metrics::Metrics;
use crate::persist::Journal;

/// The session key of messages the server publishes itself.
pub const SYSTEM_ORIGIN: &str = "system:bulwark";

/// What became of a server-originated message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemPublish {
    /// Sessions it was queued for (connected or persistent), after their
    /// receive policy.
    pub queued: usize,
    /// Connected sessions whose queue was full: not delivered to them.
    /// (An offline session whose queue is full drops it as for any
    /// publisher, counted in `bulwark_mqtt_queue_dropped_total`.)
    pub dropped: usize,
}

/// Why a server-originated message was refused.
#[derive(Debug, thiserror::Error)]
pub enum SystemPublishError {
    #[error("topic {topic:?} refused: {problem}")]
    Topic {
        topic: String,
        problem: &'static str,
    },
    #[error("payload of {size} bytes is larger than the maximum packet size {max}")]
    TooLarge { size: usize, max: u32 },
    /// Queued in memory (connected sessions may receive it) but not
    /// durable: persistent sessions may lose it on a restart.
    #[error("the session store could not keep the message")]
    Store(#[source] bulwark_store::StoreError),
}

/// Routes one message from [`SYSTEM_ORIGIN`] and waits until the writes it
/// caused are committed.
pub(crate) async fn publish(
    broker: &Broker,
    topic: TopicName,
    payload: Bytes,
    qos: QoS,
) -> Result<SystemPublish, SystemPublishError> {
    let refused = |problem| SystemPublishError::Topic {
        topic: topic.as_str().to_owned(),
        problem,
    };
    if topic.as_str().starts_with('$') {
        return Err(refused("topics starting with '$' are reserved"));
    }
    if let Some(problem) = crate::conn::topic_problem(topic.as_str(), &broker.limits) {
        return Err(refused(problem));
    }
    let mut p = Publish::new(topic.clone(), payload);
    p.qos = qos;
    let max = broker.limits.max_packet_size;
    if crate::persist::encode(p.clone()).len() > max as usize {
        return Err(SystemPublishError::TooLarge {
            size: p.payload.len(),
            max,
        });
    }
    let msg = Arc::new(Message::from_publish(
        p,
        topic,
        SYSTEM_ORIGIN.into(),
        Instant::now(),
    ));
    let metrics = &broker.metrics;
    Metrics::inc(&metrics.system_publishes_total);
    let mut journal = Journal::new();
    let mut blocked = Vec::new();
    let queued = broker.route(&msg, &mut journal, &mut blocked);
    let dropped = blocked.len();
    for (session, _) in blocked {
        Metrics::inc(&metrics.system_publish_dropped_total);
        Metrics::inc(&metrics.queue_dropped_total);
        tracing::warn!(key = %session.key, topic = %msg.topic.as_str(), "system message dropped: the subscriber's queue is full");
    }
    if let Err(e) = broker.persist(journal).await {
        Metrics::inc(&metrics.persistence_errors_total);
        tracing::error!(error = %e, topic = %msg.topic.as_str(), "could not persist a system message");
        return Err(SystemPublishError::Store(e));
    }
    Ok(SystemPublish { queued, dropped })
}

#[cfg(test)]
mod tests;
