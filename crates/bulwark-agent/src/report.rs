//! What the agent tells the server over MQTT, and where.
//!
//! Every message is JSON, published with QoS 1 under the device's own
//! prefix (the gateway's default device policy allows `devices/{id}/#`):
//!
//! | topic | payload |
//! |---|---|
//! | `devices/{id}/inventory` | [`InventoryReport`] |
//! | `devices/{id}/posture` | [`crate::posture::Posture`] |
//! | `devices/{id}/ota/status` | [`StepReport`] (one per update step) |
//! | `devices/{id}/ota/rejected` | [`Rejection`] (an instruction not acted on) |
//!
//! and the agent subscribes to `devices/{id}/commands/ota` (see
//! [`crate::ota::Instruction`]). A publish is handed to the link, which
//! queues QoS 1 messages while disconnected (bounded) and sends them after
//! the reconnection, so reports made while the link is down are not lost.
//!
//! Update steps also go to the server's rollout engine over HTTPS
//! ([`crate::https_report`]); [`FanOut`] gives each step to both.

use async_trait::async_trait;
use bulwark_mqtt::{QoS, TopicFilter, TopicName};
use serde::Serialize;

use crate::link::{Delivery, LinkHandle, Message};
use crate::posture::Inventory;
use crate::update::{Reporter, SlotRelease, StepReport};
use crate::AgentError;

/// The device's topics.
#[derive(Debug, Clone)]
pub struct DeviceTopics {
    pub inventory: TopicName,
    pub posture: TopicName,
    pub ota_status: TopicName,
    pub ota_rejected: TopicName,
    /// Update instructions arrive here.
    pub ota_commands: TopicFilter,
}

impl DeviceTopics {
    /// The topics of `device_id` (which must be a valid topic level).
    pub fn new(device_id: &str) -> Result<DeviceTopics, AgentError> {
        if device_id.is_empty() || device_id.contains(['/', '+', '#']) {
            return Err(AgentError::Config(format!(
                "device id {device_id:?} cannot be used in a topic"
            )));
        }
        let name = |suffix: &str| {
            TopicName::new(format!("devices/{device_id}/{suffix}"))
                .map_err(|e| AgentError::Config(format!("topic for {device_id:?}: {e}")))
        };
        let commands = format!("devices/{device_id}/commands/ota");
        Ok(DeviceTopics {
            inventory: name("inventory")?,
            posture: name("posture")?,
            ota_status: name("ota/status")?,
            ota_rejected: name("ota/rejected")?,
            ota_commands: TopicFilter::new(commands)
                .map_err(|e| AgentError::Config(format!("topic for {device_id:?}: {e}")))?,
        })
    }
}

/// The inventory as published: [`Inventory`] plus the release this agent
/// installed into the running slot (`null` when it installed none there).
#[derive(Debug, Clone, Serialize)]
pub struct InventoryReport {
    #[serde(flatten)]
    pub inventory: Inventory,
    pub release: Option<SlotRelease>,
}

/// An update instruction the agent did not act on.
#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    pub device_id: String,
    /// The target the instruction named, if it could be parsed.
    pub release: Option<String>,
    pub rollout: Option<String>,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: time::OffsetDateTime,
}

/// Publishes `value` as JSON with QoS 1 (queued by the link while it is
/// disconnected). The returned delivery completes at the PUBACK.
pub async fn publish_json<T: Serialize>(
    link: &LinkHandle,
    topic: &TopicName,
    value: &T,
) -> Result<Delivery, AgentError> {
    let payload = serde_json::to_vec(value).map_err(|source| AgentError::Encode {
        topic: topic.as_str().to_owned(),
        source,
    })?;
    link.publish(Message::new(topic.clone(), payload, QoS::AtLeastOnce))
        .await
        .map_err(|source| AgentError::Link {
            what: "cannot queue a report",
            source,
        })
}

/// A [`Reporter`] publishing every update step to `devices/{id}/ota/status`.
#[derive(Debug, Clone)]
pub struct MqttReporter {
    link: LinkHandle,
    topic: TopicName,
}

impl MqttReporter {
    pub fn new(link: LinkHandle, topic: TopicName) -> MqttReporter {
        MqttReporter { link, topic }
    }
}

#[async_trait]
impl Reporter for MqttReporter {
    async fn report(&self, report: &StepReport) -> Result<(), AgentError> {
        publish_json(&self.link, &self.topic, report)
            .await
            .map(drop)
    }
}

/// A [`Reporter`] handing every step to each of its reporters in turn
/// (the agent: MQTT for observers, HTTPS for the rollout engine). All are
/// called even if one fails; the first error is returned.
pub struct FanOut(Vec<std::sync::Arc<dyn Reporter>>);

impl std::fmt::Debug for FanOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("FanOut").field(&self.0.len()).finish()
    }
}

impl FanOut {
    pub fn new(reporters: Vec<std::sync::Arc<dyn Reporter>>) -> FanOut {
        FanOut(reporters)
    }
}

#[async_trait]
impl Reporter for FanOut {
    async fn report(&self, report: &StepReport) -> Result<(), AgentError> {
        let mut first = Ok(());
        for reporter in &self.0 {
            if let Err(e) = reporter.report(report).await {
                if first.is_ok() {
                    first = Err(e);
                } else {
                    tracing::warn!(error = %crate::report_chain(&e), "cannot report an update step");
                }
            }
        }
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Recorder(std::sync::Mutex<Vec<crate::update::Step>>, bool);

    #[async_trait]
    impl Reporter for Recorder {
        async fn report(&self, report: &StepReport) -> Result<(), AgentError> {
            self.0.lock().unwrap().push(report.state);
            if self.1 {
                return Err(AgentError::Update("recorder down".into()));
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn fan_out_reaches_every_reporter_even_after_a_failure() {
        use crate::update::Step;
        use std::sync::Arc;
        let failing = Arc::new(Recorder(Default::default(), true));
        let working = Arc::new(Recorder(Default::default(), false));
        let fan = FanOut::new(vec![failing.clone(), working.clone()]);
        let report = StepReport {
            device_id: "d1".into(),
            target: "fw".into(),
            version: "2.0.0".into(),
            state: Step::Healthy,
            reason: None,
            rollout: Some("r-1".into()),
            at: time::OffsetDateTime::UNIX_EPOCH,
        };
        let err = fan.report(&report).await.unwrap_err();
        assert!(err.to_string().contains("recorder down"), "{err}");
        assert_eq!(*failing.0.lock().unwrap(), [Step::Healthy]);
        assert_eq!(*working.0.lock().unwrap(), [Step::Healthy]);
    }

    #[test]
    fn topics_are_under_the_device_prefix() {
        let t = DeviceTopics::new("door-17").unwrap();
        assert_eq!(t.inventory.as_str(), "devices/door-17/inventory");
        assert_eq!(t.posture.as_str(), "devices/door-17/posture");
        assert_eq!(t.ota_status.as_str(), "devices/door-17/ota/status");
        assert_eq!(t.ota_rejected.as_str(), "devices/door-17/ota/rejected");
        assert_eq!(t.ota_commands.as_str(), "devices/door-17/commands/ota");
        for bad in ["", "a/b", "a+", "#"] {
            assert!(DeviceTopics::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn inventory_report_flattens_the_inventory_and_names_the_release() {
        let report = InventoryReport {
            inventory: Inventory::new("d1", "1.0.0", "rig", "b"),
            release: Some(SlotRelease {
                target: "fw".into(),
                version: "2.0.0".into(),
            }),
        };
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["active_slot"], "b");
        assert_eq!(v["device_id"], "d1");
        assert_eq!(v["release"]["version"], "2.0.0");
        assert_eq!(v["release"]["target"], "fw");
    }
}
