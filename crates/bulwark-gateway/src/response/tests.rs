//! Device throttles and session sources through a real `Gateway` on its
//! mTLS listener, with enrolled devices publishing at QoS 1.

use std::time::{Duration, Instant};

use bulwark_mqtt::ReasonCode;
use bulwark_types::DeviceId;
use bytes::Bytes;

use crate::testing::{env, Client, Running, CLEAN};
use crate::GatewayLimits;

/// Room for 200 msg/s without a throttle.
fn limits() -> GatewayLimits {
    GatewayLimits {
        publish_rate: 1_000.0,
        publish_burst: 1_000.0,
        ..GatewayLimits::default()
    }
}

/// Publishes at about 200 msg/s for `secs` (packet ids from `*id`);
/// the reason code of each PUBACK, and when it came.
async fn publish_for(c: &mut Client, secs: f64, id: &mut u16) -> Vec<(Instant, ReasonCode)> {
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let mut out = Vec::new();
    while Instant::now() < end {
        tick.tick().await;
        *id = id.wrapping_add(1).max(1);
        let code = c
            .publish_qos1("devices/d1/telemetry", Bytes::from_static(b"{}"), *id)
            .await;
        out.push((Instant::now(), code));
    }
    out
}

fn ok(codes: &[(Instant, ReasonCode)]) -> usize {
    codes
        .iter()
        .filter(|(_, c)| *c == ReasonCode::Success)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_reaches_a_live_session_within_a_second_and_lifts() {
    let env = env();
    let d1 = env.enroll("d1").await;
    let gw = Running::start_tls(&env, limits()).await;
    let mut c = Client::connect_tls(&env, gw.addr, &d1, CLEAN).await;
    let mut id = 0;

    let before = publish_for(&mut c, 0.3, &mut id).await;
    assert_eq!(ok(&before), before.len());

    let at = Instant::now();
    assert!(gw.gw.throttle(&d1.id, 5.0, 5.0));
    assert!(!gw.gw.throttle(&d1.id, 5.0, 5.0), "nothing changed");
    assert_eq!(gw.gw.throttled(), vec![(d1.id.clone(), 5.0)]);
    let during = publish_for(&mut c, 1.5, &mut id).await;
    let first_refusal = during
        .iter()
        .find(|(_, c)| *c == ReasonCode::QuotaExceeded)
        .expect("refused once throttled")
        .0;
    assert!(first_refusal - at < Duration::from_secs(1));
    // Burst 5 plus 5/s over 1.5 s, with slack for timing.
    assert!(ok(&during) <= 5 + 8 + 2, "{} accepted", ok(&during));
    let refused = (during.len() - ok(&during)) as u64;
    assert_eq!(gw.metric("bulwark_mqtt_throttled_total"), refused);
    assert_eq!(gw.metric("bulwark_mqtt_rate_limited_total"), refused);
    assert!(gw.gw.principal_counters("d1").unwrap().denials >= refused);

    assert!(gw.gw.unthrottle(&d1.id));
    assert!(!gw.gw.unthrottle(&d1.id));
    assert!(gw.gw.throttled().is_empty());
    let after = publish_for(&mut c, 0.3, &mut id).await;
    assert_eq!(ok(&after), after.len());
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_opened_after_the_throttle_is_throttled() {
    let env = env();
    let d1 = env.enroll("d1").await;
    let gw = Running::start_tls(&env, limits()).await;
    assert!(gw.gw.throttle(&d1.id, 5.0, 5.0));
    let mut c = Client::connect_tls(&env, gw.addr, &d1, CLEAN).await;
    let mut codes = Vec::new();
    for id in 1..=20 {
        codes.push(
            c.publish_qos1("devices/d1/telemetry", Bytes::from_static(b"{}"), id)
                .await,
        );
    }
    let accepted = codes.iter().filter(|c| **c == ReasonCode::Success).count();
    assert!((5..=7).contains(&accepted), "{codes:?}");
    assert_eq!(codes[19], ReasonCode::QuotaExceeded);
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttles_refuse_bad_values_and_sources_are_the_live_peers() {
    let env = env();
    let d1 = env.enroll("d1").await;
    let gw = Running::start_tls(&env, limits()).await;
    let g = &gw.gw;
    for (rate, burst) in [(f64::NAN, 1.0), (-1.0, 1.0), (1.0, f64::INFINITY)] {
        assert!(!g.throttle(&d1.id, rate, burst), "{rate} {burst}");
    }
    assert!(g.throttled().is_empty());
    // A device that is not connected can be throttled (for later).
    let d9 = DeviceId::new("d9").unwrap();
    assert!(g.throttle(&d9, 1.0, 1.0));
    assert!(g.throttle(&d9, 2.0, 1.0), "a new rate is a change");
    assert_eq!(g.throttled(), vec![(d9.clone(), 2.0)]);

    assert!(g.device_sources(&d1.id).is_empty());
    let c = Client::connect_tls(&env, gw.addr, &d1, CLEAN).await;
    assert_eq!(g.device_sources(&d1.id), vec![c.local]);
    assert!(g.device_sources(&d9).is_empty());
    c.disconnect().await;
    gw.until_offline("d1").await;
    assert!(g.device_sources(&d1.id).is_empty());
}
