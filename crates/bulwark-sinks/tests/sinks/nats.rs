//! NATS against a real nats-server on 127.0.0.1:4222, which these tests
//! need running (Debian's `nats-server`: `nats-server -a 127.0.0.1 -p 4222`).

use std::time::Duration;

use bulwark_sinks::Dispatcher;
use bulwark_types::Severity;
use futures::StreamExt;

use crate::common::{eventually, notice, sinks};

#[tokio::test]
async fn publishes_the_json_envelope() {
    let subject = format!("bulwark.test.{}", hex::encode(rand::random::<[u8; 8]>()));
    let client = async_nats::connect("nats://127.0.0.1:4222")
        .await
        .expect("the NATS tests need nats-server on 127.0.0.1:4222");
    let mut sub = client.subscribe(subject.clone()).await.unwrap();
    client.flush().await.unwrap();

    let d = Dispatcher::start(sinks(&format!(
        "[[sinks]]\ntype = \"nats\"\nsubject = \"{subject}\"\n"
    )))
    .unwrap();
    d.dispatch(notice(Severity::High));
    let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
        .await
        .unwrap()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
    assert_eq!(v["kind"], "alert.opened");
    let back: bulwark_types::Alert = serde_json::from_value(v["alert"].clone()).unwrap();
    assert_eq!(bulwark_sinks::Notice::Alert(back), notice(Severity::High));
    let headers = msg.headers.unwrap();
    assert_eq!(
        headers.get("Bulwark-Event").unwrap().as_str(),
        "alert.opened"
    );
    assert_eq!(
        headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .unwrap()
            .as_str()
            .len(),
        36
    );
    eventually(&d, "delivery", |s| s.delivered == 1).await;
}

#[tokio::test]
async fn unreachable_server_counts_failures() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let d = Dispatcher::start(sinks(&format!(
        "[[sinks]]\ntype = \"nats\"\nurl = \"nats://127.0.0.1:{port}\"\ntimeout_secs = 2\n\
         [sinks.retry]\nmax_attempts = 2\ninitial_backoff_ms = 10\nmax_backoff_ms = 20\n"
    )))
    .unwrap();
    d.dispatch(notice(Severity::High));
    let s = eventually(&d, "giving up", |s| s.gave_up == 1).await;
    assert_eq!((s.delivered, s.failed_attempts), (0, 2));
    assert!(s.last_error.unwrap().contains("nats"));
}
