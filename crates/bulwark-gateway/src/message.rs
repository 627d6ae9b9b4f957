//! A message as the router holds it: published once, shared by every
//! delivery (`Arc`), turned back into a PUBLISH per subscriber with that
//! subscriber's QoS, packet id, retain flag and subscription identifiers.

use std::sync::Arc;
use std::time::Instant;

use bulwark_mqtt::{PacketId, Properties, Publish, QoS, TopicName};
use bytes::Bytes;

/// A session's key in the gateway: a device id, `service:{client id}` or
/// `dev:{client id}`. Namespaced so that no listener or principal kind can
/// reach another's sessions.
pub type SessionKey = Arc<str>;

/// An accepted message.
#[derive(Debug)]
pub struct Message {
    pub topic: TopicName,
    pub payload: Bytes,
    /// The QoS it was published with.
    pub qos: QoS,
    pub retain: bool,
    /// Properties forwarded to subscribers: payload format, content type,
    /// response topic, correlation data, user properties. Message expiry is
    /// kept as `expires_at`; topic alias and subscription ids are per hop.
    pub properties: Properties,
    pub expires_at: Option<Instant>,
    /// The publishing session (for No Local).
    pub origin: SessionKey,
}

impl Message {
    /// The message of a received PUBLISH whose topic alias is resolved.
    pub fn from_publish(p: Publish, topic: TopicName, origin: SessionKey, now: Instant) -> Self {
        let Publish {
            qos,
            retain,
            properties: mut props,
            payload,
            ..
        } = p;
        let expires_at = props
            .message_expiry_interval
            .take()
            .map(|s| now + std::time::Duration::from_secs(u64::from(s)));
        props.topic_alias = None;
        props.subscription_identifiers.clear();
        Self {
            topic,
            payload,
            qos,
            retain,
            properties: props,
            expires_at,
            origin,
        }
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// The PUBLISH for one delivery, with the remaining expiry interval;
    /// `None` when the message has expired.
    pub fn to_publish(
        &self,
        d: &Delivery,
        packet_id: Option<PacketId>,
        dup: bool,
        now: Instant,
    ) -> Option<Publish> {
        let mut properties = self.properties.clone();
        if let Some(at) = self.expires_at {
            let left = at.checked_duration_since(now).filter(|l| !l.is_zero())?;
            // Round up so a message with time left never says 0.
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            properties.message_expiry_interval = Some(u32::try_from(secs).unwrap_or(u32::MAX));
        }
        properties.subscription_identifiers = d.subscription_ids.clone();
        Some(Publish {
            dup,
            qos: d.qos,
            retain: d.retain,
            topic: Some(self.topic.clone()),
            packet_id,
            properties,
            payload: self.payload.clone(),
        })
    }
}

/// One message on its way to one session.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Arc<Message>,
    /// min(published QoS, granted QoS).
    pub qos: QoS,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    /// Its row in the session store, for persistent sessions' QoS 1/2.
    pub seq: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn expiry_is_forwarded_as_time_left_and_expired_messages_are_not() {
        let t0 = Instant::now();
        let mut p = Publish::new(TopicName::new("a/b").unwrap(), "x");
        p.properties.message_expiry_interval = Some(10);
        p.properties.topic_alias = std::num::NonZeroU16::new(3);
        let m = Arc::new(Message::from_publish(
            p,
            TopicName::new("a/b").unwrap(),
            "d1".into(),
            t0,
        ));
        let d = Delivery {
            message: m.clone(),
            qos: QoS::AtMostOnce,
            retain: false,
            subscription_ids: vec![7],
            seq: None,
        };
        let out = m
            .to_publish(&d, None, false, t0 + Duration::from_millis(3500))
            .unwrap();
        assert_eq!(out.properties.message_expiry_interval, Some(7));
        assert_eq!(out.properties.topic_alias, None);
        assert_eq!(out.properties.subscription_identifiers, vec![7]);
        assert!(m
            .to_publish(&d, None, false, t0 + Duration::from_secs(10))
            .is_none());
        assert!(m.is_expired(t0 + Duration::from_secs(11)));
    }
}
