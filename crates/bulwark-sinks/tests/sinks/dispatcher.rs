//! The dispatcher: a full queue drops and counts without waiting, the
//! severity filter, independent sinks, shutdown with a deadline.

use std::time::{Duration, Instant};

use axum::Router;
use bulwark_sinks::Dispatcher;
use bulwark_types::Severity;

use crate::common::{notice, sinks};

/// A webhook receiver that never answers.
async fn stuck_receiver() -> String {
    let app = Router::new().route(
        "/hook",
        axum::routing::post(|| async {
            std::future::pending::<()>().await;
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/hook")
}

#[tokio::test]
async fn full_queue_drops_and_counts_without_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let url = stuck_receiver().await;
    let d = Dispatcher::start(sinks(&format!(
        "[[sinks]]\nname = \"stuck\"\ntype = \"webhook\"\nurl = \"{url}\"\n\
         secret = \"0123456789abcdef\"\nqueue_capacity = 2\ntimeout_secs = 30\n\
         [[sinks]]\nname = \"file\"\ntype = \"jsonl\"\npath = \"{}\"\n",
        path.display()
    )))
    .unwrap();
    let started = Instant::now();
    for _ in 0..100 {
        d.dispatch(notice(Severity::High));
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "dispatch waited"
    );

    let stuck = &d.stats()[0];
    assert_eq!(stuck.name, "stuck");
    // Two fit in the queue, perhaps a third was already taken by the task.
    assert!((2..=3).contains(&stuck.queued), "{stuck:?}");
    assert_eq!(stuck.dropped + stuck.queued, 100, "{stuck:?}");
    assert_eq!(stuck.delivered, 0);

    // The other sink is not held up by the stuck one.
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.stats()[1].delivered < 100 {
        assert!(Instant::now() < deadline, "{:?}", d.stats()[1]);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(d.stats()[1].dropped, 0);

    // Shutdown gives up on the stuck sink at the deadline; what it still
    // held counts as dropped.
    let started = Instant::now();
    let stats = d.shutdown(Duration::from_millis(300)).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(stats[0].dropped, 100);
    assert_eq!(stats[0].queued, 0);
    assert_eq!(stats[1].delivered, 100);
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 100);
}

#[tokio::test]
async fn min_severity_filters() {
    let dir = tempfile::tempdir().unwrap();
    let high = dir.path().join("high.jsonl");
    let default = dir.path().join("default.jsonl");
    let d = Dispatcher::start(sinks(&format!(
        "[[sinks]]\ntype = \"jsonl\"\npath = \"{}\"\nmin_severity = \"high\"\n\
         [[sinks]]\ntype = \"jsonl\"\npath = \"{}\"\n",
        high.display(),
        default.display()
    )))
    .unwrap();
    for s in [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ] {
        d.dispatch(notice(s));
    }
    let stats = d.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats[0].name, "jsonl-0");
    assert_eq!((stats[0].delivered, stats[0].filtered), (2, 3));
    // The default minimum is `low`: only `info` is filtered.
    assert_eq!((stats[1].delivered, stats[1].filtered), (4, 1));
    let severities: Vec<String> = std::fs::read_to_string(&high)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["alert"]["severity"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(severities, ["high", "critical"]);
}

#[tokio::test]
async fn shutdown_drains_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.jsonl");
    let d = Dispatcher::start(sinks(&format!(
        "[[sinks]]\ntype = \"jsonl\"\npath = \"{}\"\nqueue_capacity = 1000\n",
        path.display()
    )))
    .unwrap();
    for _ in 0..500 {
        d.dispatch(notice(Severity::Low));
    }
    let stats = d.shutdown(Duration::from_secs(30)).await;
    assert_eq!((stats[0].delivered, stats[0].dropped), (500, 0));
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 500);
}
