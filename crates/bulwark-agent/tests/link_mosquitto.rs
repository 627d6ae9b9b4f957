//! The agent's MQTT link against Mosquitto on 127.0.0.1:1883 (plaintext,
//! through the test-only connector): publish/subscribe in both versions,
//! a slow consumer, and reconnection through a TCP proxy the test cuts —
//! back-off between attempts, the QoS 1 message published while cut
//! delivered afterwards, subscriptions renewed when the session was lost.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bulwark_agent::link::{
    BackoffConfig, Link, LinkConfig, LinkError, LinkHandle, LinkStatus, Message,
};
use bulwark_mqtt::{ProtocolVersion, QoS, ReasonCode, TopicFilter, TopicName};
use rustls_pki_types::ServerName;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

const BROKER: &str = "127.0.0.1:1883";
const WAIT: Duration = Duration::from_secs(10);

fn unique(what: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("bw-link-{what}-{}-{nanos}-{n}", std::process::id())
}

fn config(addr: &str, id: &str, version: ProtocolVersion) -> LinkConfig {
    let mut c = LinkConfig::new(addr, ServerName::try_from("localhost").unwrap(), id);
    c.version = version;
    c.session_expiry_interval = 300;
    c
}

fn topic(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}

async fn recv(inbox: &mut mpsc::Receiver<Message>) -> Message {
    timeout(WAIT, inbox.recv())
        .await
        .expect("a message in time")
        .expect("link running")
}

async fn connected(link: &LinkHandle) -> bool {
    timeout(WAIT, link.wait_connected())
        .await
        .expect("connected in time")
        .unwrap()
}

/// A TCP proxy to the broker that the test can cut: `cut` closes every
/// proxied connection and refuses (accepts and closes) new ones, recording
/// when each was attempted, until `restore`.
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    refused: Arc<Mutex<Vec<Instant>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let (c, k, r) = (cut.clone(), conns.clone(), refused.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if c.load(Ordering::SeqCst) {
                    r.lock().unwrap().push(Instant::now());
                    drop(client);
                    continue;
                }
                k.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut upstream) = TcpStream::connect(BROKER).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                }));
            }
        });
        Proxy {
            addr,
            cut,
            conns,
            refused,
            accept,
        }
    }

    fn addr(&self) -> String {
        self.addr.to_string()
    }

    fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for conn in self.conns.lock().unwrap().drain(..) {
            conn.abort();
        }
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    fn refused(&self) -> Vec<Instant> {
        self.refused.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn pubsub(version: ProtocolVersion) {
    let base = unique("pubsub");
    let (sub, mut inbox) =
        Link::spawn_plaintext_for_tests(config(BROKER, &format!("{base}-s"), version));
    let (publisher, _) =
        Link::spawn_plaintext_for_tests(config(BROKER, &format!("{base}-p"), version));
    assert!(!connected(&sub).await, "a new session");
    let filter = TopicFilter::new(format!("{base}/#")).unwrap();
    assert_eq!(
        sub.subscribe(filter.clone(), QoS::ExactlyOnce)
            .await
            .unwrap(),
        QoS::ExactlyOnce
    );
    connected(&publisher).await;

    for (n, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let m = Message::new(topic(&format!("{base}/{n}")), format!("m{n}"), qos);
        let delivery = publisher.publish(m).await.unwrap();
        let code = timeout(WAIT, delivery.wait()).await.unwrap().unwrap();
        assert!(
            matches!(
                code,
                ReasonCode::Success | ReasonCode::NoMatchingSubscribers
            ),
            "{code}"
        );
        let got = recv(&mut inbox).await;
        assert_eq!(got.topic.as_str(), format!("{base}/{n}"));
        assert_eq!(&got.payload[..], format!("m{n}").as_bytes());
        assert_eq!(got.qos, qos);
    }

    sub.unsubscribe(filter).await.unwrap();
    let m = Message::new(topic(&format!("{base}/after")), "x", QoS::AtLeastOnce);
    publisher.publish(m).await.unwrap().wait().await.unwrap();
    assert!(
        timeout(Duration::from_millis(300), inbox.recv())
            .await
            .is_err(),
        "unsubscribed"
    );

    publisher.shutdown().await;
    assert_eq!(publisher.status(), LinkStatus::Stopped);
    let m = Message::new(topic(&format!("{base}/x")), "x", QoS::AtLeastOnce);
    assert!(matches!(
        publisher.publish(m).await,
        Err(LinkError::Stopped)
    ));
    sub.shutdown().await;
}

#[tokio::test]
async fn publish_and_subscribe_v5() {
    pubsub(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn publish_and_subscribe_v311() {
    pubsub(ProtocolVersion::V311).await;
}

#[tokio::test]
async fn a_slow_consumer_loses_nothing() {
    let base = unique("slow");
    let mut c = config(BROKER, &format!("{base}-s"), ProtocolVersion::V5);
    c.incoming_capacity = 1;
    let (sub, mut inbox) = Link::spawn_plaintext_for_tests(c);
    sub.subscribe(
        TopicFilter::new(format!("{base}/t")).unwrap(),
        QoS::AtLeastOnce,
    )
    .await
    .unwrap();
    let (publisher, _) =
        Link::spawn_plaintext_for_tests(config(BROKER, &format!("{base}-p"), ProtocolVersion::V5));
    let mut deliveries = Vec::new();
    for n in 0..30 {
        let m = Message::new(topic(&format!("{base}/t")), n.to_string(), QoS::AtLeastOnce);
        deliveries.push(publisher.publish(m).await.unwrap());
    }
    for d in deliveries {
        timeout(WAIT, d.wait()).await.unwrap().unwrap();
    }
    // Nothing was read yet; the link paused reading, and still answers.
    assert!(matches!(sub.status(), LinkStatus::Connected { .. }));
    for n in 0..30 {
        assert_eq!(
            &recv(&mut inbox).await.payload[..],
            n.to_string().as_bytes()
        );
    }
    publisher.shutdown().await;
    sub.shutdown().await;
}

#[tokio::test]
async fn reconnects_with_backoff_and_delivers_what_was_published_while_cut() {
    let base = unique("cut");
    let proxy = Proxy::start().await;
    let (sub, mut inbox) =
        Link::spawn_plaintext_for_tests(config(BROKER, &format!("{base}-s"), ProtocolVersion::V5));
    sub.subscribe(
        TopicFilter::new(format!("{base}/t")).unwrap(),
        QoS::AtLeastOnce,
    )
    .await
    .unwrap();

    let backoff = BackoffConfig {
        base: Duration::from_millis(100),
        cap: Duration::from_millis(400),
        stable_after: Duration::from_secs(60),
    };
    let mut c = config(&proxy.addr(), &format!("{base}-p"), ProtocolVersion::V5);
    c.backoff = backoff;
    let (publisher, _) = Link::spawn_plaintext_for_tests(c);
    assert!(!connected(&publisher).await);
    let m = Message::new(topic(&format!("{base}/t")), "before", QoS::AtLeastOnce);
    publisher.publish(m).await.unwrap().wait().await.unwrap();
    assert_eq!(&recv(&mut inbox).await.payload[..], b"before");

    proxy.cut();
    let mut status = publisher.watch_status();
    timeout(
        WAIT,
        status.wait_for(|s| matches!(s, LinkStatus::Waiting { .. })),
    )
    .await
    .unwrap()
    .unwrap();
    let m = Message::new(topic(&format!("{base}/t")), "during", QoS::AtLeastOnce);
    let delivery = publisher
        .publish(m)
        .await
        .expect("accepted while disconnected");
    sleep(Duration::from_millis(1600)).await;

    // Attempts while cut: the first after 50–100 ms, then each gap within
    // [c/2, c] (plus scheduling slack), c doubling from 200 ms to the cap.
    let refused = proxy.refused();
    assert!(refused.len() >= 4, "{} attempts in 1.6 s", refused.len());
    for (k, pair) in refused.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let ceiling = backoff
            .base
            .saturating_mul(2u32.pow(k as u32 + 1))
            .min(backoff.cap);
        assert!(
            gap >= ceiling / 2 - Duration::from_millis(5),
            "gap {k}: {gap:?} < {:?}",
            ceiling / 2
        );
        assert!(
            gap <= ceiling + Duration::from_millis(250),
            "gap {k}: {gap:?} > {ceiling:?}"
        );
    }
    let LinkStatus::Waiting { last_error, .. } = publisher.status() else {
        panic!("still down: {:?}", publisher.status())
    };
    assert!(last_error.contains("closed"), "{last_error}");

    proxy.restore();
    assert!(connected(&publisher).await, "the broker kept the session");
    assert_eq!(
        timeout(WAIT, delivery.wait()).await.unwrap().unwrap(),
        ReasonCode::Success
    );
    assert_eq!(&recv(&mut inbox).await.payload[..], b"during");
    publisher.shutdown().await;
    sub.shutdown().await;
}

#[tokio::test]
async fn resubscribes_when_the_session_was_not_kept() {
    let base = unique("resub");
    let proxy = Proxy::start().await;
    let mut c = config(&proxy.addr(), &format!("{base}-s"), ProtocolVersion::V5);
    c.session_expiry_interval = 0;
    c.backoff.base = Duration::from_millis(50);
    let (sub, mut inbox) = Link::spawn_plaintext_for_tests(c);
    let filter = TopicFilter::new(format!("{base}/t")).unwrap();
    assert_eq!(
        sub.subscribe(filter, QoS::AtLeastOnce).await.unwrap(),
        QoS::AtLeastOnce
    );
    let (publisher, _) =
        Link::spawn_plaintext_for_tests(config(BROKER, &format!("{base}-p"), ProtocolVersion::V5));
    connected(&publisher).await;

    proxy.cut();
    let mut status = sub.watch_status();
    timeout(
        WAIT,
        status.wait_for(|s| !matches!(s, LinkStatus::Connected { .. })),
    )
    .await
    .unwrap()
    .unwrap();
    proxy.restore();
    assert!(!connected(&sub).await, "no session was kept");

    // The renewed SUBSCRIBE may still be on its way: publish until one
    // message arrives.
    let deadline = Instant::now() + WAIT;
    let got = loop {
        assert!(Instant::now() < deadline, "never resubscribed");
        let m = Message::new(topic(&format!("{base}/t")), "again", QoS::AtLeastOnce);
        publisher.publish(m).await.unwrap().wait().await.unwrap();
        if let Ok(Some(m)) = timeout(Duration::from_millis(200), inbox.recv()).await {
            break m;
        }
    };
    assert_eq!(&got.payload[..], b"again");
    publisher.shutdown().await;
    sub.shutdown().await;
}
