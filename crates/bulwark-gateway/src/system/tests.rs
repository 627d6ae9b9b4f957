//! Server-originated messages through a real `Gateway` on `127.0.0.1:0`
//! (its plaintext dev listener, so no certificates are needed), with
//! clients built on the project's codec.

use std::sync::Arc;
use std::time::Duration;

use bulwark_mqtt::{QoS, TopicName};
use bulwark_policy::{default_device_policy, CompiledPolicy, Principal};
use bulwark_types::DeviceId;
use bytes::Bytes;

use super::SystemPublishError;
use crate::testing::{env, Client, Opts, Running, CLEAN};
use crate::{GatewayLimits, SystemPublish};

impl Running {
    async fn publish(&self, topic: &str, payload: &'static str) -> SystemPublish {
        self.gw
            .publish_system(
                TopicName::new(topic).unwrap(),
                Bytes::from_static(payload.as_bytes()),
                QoS::AtLeastOnce,
            )
            .await
            .unwrap()
    }
}

fn ota() -> &'static str {
    r#"{"release":"fw-2.1.0","rollout":"r-1a2b"}"#
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_receive_it_at_their_qos_with_their_ids_and_dollar_topics_are_refused() {
    let env = env();
    let gw = Running::start(&env, GatewayLimits::default(), false).await;
    let (mut d1, _) = Client::connect(gw.addr, "d1", CLEAN).await;
    d1.subscribe("devices/d1/commands/#", QoS::AtLeastOnce, Some(7))
        .await;
    let (mut q0, _) = Client::connect(gw.addr, "q0", CLEAN).await;
    q0.subscribe("devices/+/commands/ota", QoS::AtMostOnce, None)
        .await;

    let r = gw.publish("devices/d1/commands/ota", ota()).await;
    assert_eq!(
        r,
        SystemPublish {
            queued: 2,
            dropped: 0
        }
    );
    // Nothing sent by the clients: their connections were woken.
    let p = d1.recv_publish().await;
    assert_eq!(
        p.topic.as_ref().unwrap().as_str(),
        "devices/d1/commands/ota"
    );
    assert_eq!(p.payload, ota().as_bytes());
    assert_eq!((p.qos, p.retain), (QoS::AtLeastOnce, false));
    assert_eq!(p.properties.subscription_identifiers, vec![7]);
    d1.ack(&p).await;
    d1.ping_expecting_nothing_else().await;
    let s = gw.gw.sessions();
    let d1_session = s.iter().find(|s| s.client_id == "d1").unwrap();
    assert_eq!((d1_session.inflight, d1_session.queued), (0, 0));
    let p = q0.recv_publish().await;
    assert_eq!((p.qos, p.packet_id), (QoS::AtMostOnce, None));

    for topic in ["$SYS/bulwark/x", "$share/g/devices/d1/commands/ota"] {
        let e = gw
            .gw
            .publish_system(
                TopicName::new(topic).unwrap(),
                Bytes::new(),
                QoS::AtLeastOnce,
            )
            .await;
        assert!(matches!(e, Err(SystemPublishError::Topic { .. })), "{e:?}");
    }
    assert_eq!(gw.metric("bulwark_mqtt_system_publishes_total"), 1);
    assert_eq!(gw.metric("bulwark_mqtt_retained_messages"), 0);
    d1.ping_expecting_nothing_else().await;
    q0.ping_expecting_nothing_else().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_receive_policy_is_checked_when_queued_and_when_sent() {
    let env = env();
    let gw = Running::start(&env, GatewayLimits::default(), false).await;
    let (mut c, _) = Client::connect(
        gw.addr,
        "d1",
        Opts {
            receive_max: 1,
            ..CLEAN
        },
    )
    .await;
    c.subscribe("devices/+/commands/ota", QoS::AtLeastOnce, None)
        .await;
    // The session now runs under device d1's policy (as after live
    // enforcement), which keeps the subscription but lets it receive
    // only its own commands.
    let device_policy = |id: &str| {
        let p = Principal::new(DeviceId::new(id).unwrap());
        Arc::new(CompiledPolicy::compile(&[default_device_policy()], &p).unwrap())
    };
    let session = gw.gw.shared.broker.session("dev:d1").unwrap();
    session.set_policy(device_policy("d1"));

    let r = gw.publish("devices/d2/commands/ota", "not yours").await;
    assert_eq!(r.queued, 0);
    assert_eq!(gw.metric("bulwark_mqtt_receive_denied_total"), 1);
    gw.publish("devices/d1/commands/ota", "first").await;
    let first = c.recv_publish().await;
    assert_eq!(first.payload, "first".as_bytes());

    // Queued while the window is full, then no longer allowed: not sent.
    assert_eq!(
        gw.publish("devices/d1/commands/ota", "second").await.queued,
        1
    );
    session.set_policy(device_policy("d2"));
    c.ack(&first).await;
    c.ping_expecting_nothing_else().await;
    assert_eq!(gw.metric("bulwark_mqtt_receive_denied_total"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_persistent_session_gets_it_on_reconnect_and_after_a_restart() {
    let env = env();
    let persistent = |clean| Opts {
        clean,
        expiry: 3600,
        receive_max: 10,
    };
    let gw = Running::start(&env, GatewayLimits::default(), true).await;
    let (mut c, _) = Client::connect(gw.addr, "p1", persistent(true)).await;
    c.subscribe("devices/p1/commands/#", QoS::AtLeastOnce, None)
        .await;
    c.disconnect().await;
    gw.until_offline("p1").await;

    assert_eq!(gw.publish("devices/p1/commands/ota", "a").await.queued, 1);
    let (mut c, ack) = Client::connect(gw.addr, "p1", persistent(false)).await;
    assert!(ack.session_present);
    let p = c.recv_publish().await;
    assert_eq!(
        (p.payload.as_ref(), p.qos),
        ("a".as_bytes(), QoS::AtLeastOnce)
    );
    c.ack(&p).await;
    c.ping_expecting_nothing_else().await;
    c.disconnect().await;
    gw.until_offline("p1").await;

    // Returned Ok: durable. The gateway restarts from the store.
    assert_eq!(gw.publish("devices/p1/commands/ota", "b").await.queued, 1);
    gw.stop().await;
    let gw = Running::start(&env, GatewayLimits::default(), true).await;
    let (mut c, ack) = Client::connect(gw.addr, "p1", persistent(false)).await;
    assert!(ack.session_present);
    let p = c.recv_publish().await;
    assert_eq!(p.payload, "b".as_bytes(), "only the unacknowledged one");
    c.ack(&p).await;
    c.ping_expecting_nothing_else().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_drops_and_counts_instead_of_blocking() {
    let env = env();
    let limits = GatewayLimits {
        max_queued: 2,
        ..GatewayLimits::default()
    };
    let gw = Running::start(&env, limits, false).await;
    let (mut c, _) = Client::connect(
        gw.addr,
        "slow",
        Opts {
            receive_max: 1,
            ..CLEAN
        },
    )
    .await;
    c.subscribe("devices/slow/commands/#", QoS::AtLeastOnce, None)
        .await;
    let topic = "devices/slow/commands/ota";
    gw.publish(topic, "1").await;
    let one = c.recv_publish().await; // in flight, not acknowledged
    assert_eq!(gw.publish(topic, "2").await.queued, 1);
    assert_eq!(gw.publish(topic, "3").await.queued, 1);
    // A client publisher would wait for room here; the server does not.
    let r = tokio::time::timeout(Duration::from_secs(1), gw.publish(topic, "4"))
        .await
        .expect("does not block");
    assert_eq!(
        r,
        SystemPublish {
            queued: 0,
            dropped: 1
        }
    );
    assert_eq!(gw.metric("bulwark_mqtt_system_publish_dropped_total"), 1);
    // The queue kept what fit, in order.
    c.ack(&one).await;
    for want in ["2", "3"] {
        let p = c.recv_publish().await;
        assert_eq!(p.payload, want.as_bytes());
        c.ack(&p).await;
    }
    c.ping_expecting_nothing_else().await;
}
