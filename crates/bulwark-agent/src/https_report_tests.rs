//! Tests of the rollout reports: the wire body, the answer classification,
//! the bounded queue, and delivery against a local HTTP/1.1 listener
//! (plain HTTP through a test-only client; production is HTTPS only).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::*;
use crate::report_queue::{Queued, MAX_REASON_BYTES};
use crate::update::Step;

fn step(rollout: Option<&str>, state: Step, reason: Option<&str>) -> StepReport {
    StepReport {
        device_id: "d1".into(),
        target: "rig-fw-2.0.0".into(),
        version: "2.0.0".into(),
        state,
        reason: reason.map(str::to_owned),
        rollout: rollout.map(str::to_owned),
        at: time::OffsetDateTime::UNIX_EPOCH,
    }
}

fn wire(rollout: &str, state: Step) -> RolloutReport {
    RolloutReport {
        rollout: rollout.into(),
        release: "fw".into(),
        step: state,
        reason: None,
    }
}

#[test]
fn answers_are_classified_per_status() {
    let retry = |after: Option<u64>| Disposition::Retry {
        after: after.map(Duration::from_secs),
    };
    let cases = [
        (204, None, Disposition::Recorded),
        (200, None, Disposition::Recorded),
        (409, None, Disposition::Drop(DropReason::NotAdvancing)),
        (404, None, Disposition::Drop(DropReason::UnknownRollout)),
        (401, None, Disposition::Drop(DropReason::Refused(401))),
        (403, None, Disposition::Drop(DropReason::Refused(403))),
        (400, None, Disposition::Drop(DropReason::Rejected(400))),
        (422, None, Disposition::Drop(DropReason::Rejected(422))),
        (302, None, Disposition::Drop(DropReason::Rejected(302))),
        (429, Some("7"), retry(Some(7))),
        (503, Some(" 2 "), retry(Some(2))),
        (503, Some("Wed, 21 Oct 2015 07:28:00 GMT"), retry(None)),
        (503, None, retry(None)),
        (500, None, retry(None)),
        (502, None, retry(None)),
        (408, None, retry(None)),
    ];
    for (status, retry_after, expect) in cases {
        assert_eq!(
            classify(status, retry_after),
            expect,
            "{status} {retry_after:?}"
        );
    }
}

#[test]
fn the_wire_body_has_every_field_and_only_rollout_steps_are_sent() {
    let body = RolloutReport::from_step(&step(Some("r-1"), Step::Downloading, None)).unwrap();
    assert_eq!(
        serde_json::to_value(&body).unwrap(),
        serde_json::json!({"rollout": "r-1", "release": "rig-fw-2.0.0", "step": "downloading", "reason": null})
    );
    let failed =
        RolloutReport::from_step(&step(Some("r-1"), Step::RolledBack, Some("bad"))).unwrap();
    assert_eq!(
        serde_json::to_value(&failed).unwrap()["step"],
        "rolled_back"
    );
    assert_eq!(failed.reason.as_deref(), Some("bad"));
    assert_eq!(
        RolloutReport::from_step(&step(None, Step::Healthy, None)),
        None
    );
    assert_eq!(
        RolloutReport::from_step(&step(Some("r-1"), Step::Queued, None)),
        None
    );
    let long = "é".repeat(MAX_REASON_BYTES);
    let cut = RolloutReport::from_step(&step(Some("r"), Step::Failed, Some(&long))).unwrap();
    assert_eq!(cut.reason.unwrap().len(), MAX_REASON_BYTES);
}

#[test]
fn a_full_queue_drops_the_oldest_non_terminal_report_never_a_terminal_one() {
    let mut q = ReportQueue::new(3);
    assert_eq!(q.push(wire("a", Step::Failed)), None);
    assert_eq!(q.push(wire("b", Step::Downloading)), None);
    assert_eq!(q.push(wire("b", Step::Verifying)), None);
    assert_eq!(
        q.push(wire("b", Step::Installing)),
        Some(wire("b", Step::Downloading))
    );
    assert_eq!(
        q.push(wire("b", Step::Healthy)),
        Some(wire("b", Step::Verifying))
    );
    assert_eq!(
        q.push(wire("c", Step::Downloading)),
        Some(wire("b", Step::Installing))
    );
    assert_eq!(
        q.push(wire("c", Step::RolledBack)),
        Some(wire("c", Step::Downloading))
    );
    // All terminal: a terminal report still enters, a non-terminal one does not.
    assert_eq!(q.push(wire("d", Step::Failed)), None);
    assert_eq!(
        q.push(wire("e", Step::Downloading)),
        Some(wire("e", Step::Downloading))
    );
    assert_eq!(q.dropped(), 5);
    let left: Vec<_> = q.reports().map(|r| (r.rollout.as_str(), r.step)).collect();
    assert_eq!(
        left,
        [
            ("a", Step::Failed),
            ("b", Step::Healthy),
            ("c", Step::RolledBack),
            ("d", Step::Failed)
        ]
    );
}

#[test]
fn many_reports_through_a_small_queue_keep_every_terminal_one_in_order() {
    let steps = [
        Step::Downloading,
        Step::Verifying,
        Step::Installing,
        Step::Rebooting,
    ];
    let mut q = ReportQueue::new(4);
    let mut terminal = Vec::new();
    for i in 0..50 {
        let rollout = format!("r-{i}");
        for s in steps {
            q.push(wire(&rollout, s));
            assert!(q.len() <= 4 || q.reports().all(|r| r.step.is_terminal()));
        }
        let end = [Step::Healthy, Step::Failed, Step::RolledBack][i % 3];
        q.push(wire(&rollout, end));
        terminal.push((rollout, end));
    }
    let kept: Vec<_> = q.reports().map(|r| (r.rollout.clone(), r.step)).collect();
    assert_eq!(kept, terminal);
}

#[test]
fn the_queue_round_trips_as_json_lines_and_skips_garbage() {
    let mut q = ReportQueue::new(8);
    q.push(wire("r-1", Step::Installing));
    q.push(RolloutReport {
        reason: Some("line\nbreak".into()),
        ..wire("r-1", Step::Failed)
    });
    let mut text = q.to_json_lines();
    text.extend_from_slice(b"not json\n\n{\"rollout\":\"r\"}\n");
    let mut back = ReportQueue::new(8);
    assert_eq!(back.extend_from_json_lines(&text), 2);
    assert!(back.reports().eq(q.reports()));
    assert!(back.remove(back.front().map(|f: &Queued| f.seq).unwrap()));
    assert_eq!(back.len(), 1);
}

/// One scripted answer of the test server.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Status(u16, Option<u64>),
    HangUp,
}

/// A minimal HTTP/1.1 server: answers with `script` in order (204 once it
/// is exhausted) and records every body it received.
async fn server(script: Vec<Answer>) -> (Url, Arc<Mutex<Vec<serde_json::Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = Url::parse(&format!(
        "http://{}/v1/ota/reports",
        listener.local_addr().unwrap()
    ))
    .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        let mut script = script.into_iter();
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let Some(body) = read_request(&mut sock).await else {
                continue;
            };
            record
                .lock()
                .unwrap()
                .push(serde_json::from_slice(&body).unwrap());
            let head = match script.next().unwrap_or(Answer::Status(204, None)) {
                Answer::HangUp => continue,
                Answer::Status(code, retry) => {
                    let retry = retry
                        .map(|s| format!("retry-after: {s}\r\n"))
                        .unwrap_or_default();
                    format!("HTTP/1.1 {code} X\r\n{retry}content-type: application/problem+json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}")
                }
            };
            let _ = sock.write_all(head.as_bytes()).await;
        }
    });
    (url, seen)
}

/// The body of a `POST /v1/ota/reports`.
async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("post /v1/ota/reports http/1.1"), "{head}");
    assert!(head.contains("content-type: application/json"), "{head}");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())?;
    while buf.len() < head_end + length {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf[head_end..head_end + length].to_vec())
}

fn settings(url: Url, queue_file: Option<PathBuf>) -> ReportSettings {
    ReportSettings {
        url,
        capacity: DEFAULT_CAPACITY,
        backoff: BackoffConfig {
            base: Duration::from_millis(2),
            cap: Duration::from_millis(20),
            stable_after: Duration::from_secs(1),
        },
        queue_file,
    }
}

fn spawn(settings: ReportSettings) -> HttpsReporter {
    let client = reqwest::Client::builder().build().unwrap();
    HttpsReporter::spawn_with(settings, ClientSource::Fixed(client)).unwrap()
}

async fn drained(reporter: &HttpsReporter) {
    for _ in 0..500 {
        if reporter.queued() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} reports still queued", reporter.queued());
}

fn steps(seen: &Mutex<Vec<serde_json::Value>>) -> Vec<(String, String)> {
    let seen = seen.lock().unwrap();
    seen.iter()
        .map(|v| {
            (
                v["rollout"].as_str().unwrap().to_owned(),
                v["step"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn reports_arrive_in_order_retried_until_recorded_and_refusals_are_dropped() {
    let script = vec![
        Answer::Status(503, Some(3600)), // downloading: retry (capped delay)
        Answer::HangUp,                  // downloading: transport error, retry
        Answer::Status(429, Some(0)),    // downloading: retry
        Answer::Status(204, None),       // downloading: recorded
        Answer::Status(500, None),       // verifying: retry
        Answer::Status(204, None),       // verifying
        Answer::Status(409, None),       // installing: stale, dropped
        Answer::Status(404, None),       // r-2 failed: unknown rollout, dropped
        Answer::Status(403, None),       // r-3 healthy: refused, dropped
    ];
    let (url, seen) = server(script).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(QUEUE_FILE);
    let reporter = spawn(settings(url, Some(file.clone())));
    for (rollout, state) in [
        (Some("r-1"), Step::Queued),
        (Some("r-1"), Step::Downloading),
        (None, Step::Downloading),
        (Some("r-1"), Step::Verifying),
        (Some("r-1"), Step::Installing),
        (Some("r-2"), Step::Failed),
        (Some("r-3"), Step::Healthy),
        (Some("r-4"), Step::Healthy),
    ] {
        reporter.report(&step(rollout, state, None)).await.unwrap();
    }
    drained(&reporter).await;
    let expect = [
        ("r-1", "downloading"),
        ("r-1", "downloading"),
        ("r-1", "downloading"),
        ("r-1", "downloading"),
        ("r-1", "verifying"),
        ("r-1", "verifying"),
        ("r-1", "installing"),
        ("r-2", "failed"),
        ("r-3", "healthy"),
        ("r-4", "healthy"),
    ]
    .map(|(r, s)| (r.to_owned(), s.to_owned()));
    assert_eq!(steps(&seen), expect);
    assert_eq!(seen.lock().unwrap()[0]["reason"], serde_json::Value::Null);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"",
        "the persisted queue is empty"
    );
    assert_eq!(reporter.dropped_total(), 0);
    reporter.stop();
}

#[tokio::test]
async fn queued_reports_survive_a_restart_and_are_sent_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("state").join(QUEUE_FILE);
    // The server is down: every attempt fails.
    let (down, _) = server(vec![Answer::Status(503, None); 10_000]).await;
    let before = spawn(settings(down, Some(file.clone())));
    for state in [Step::Installing, Step::Rebooting] {
        before
            .report(&step(Some("r-9"), state, None))
            .await
            .unwrap();
    }
    before.stop();
    assert_eq!(before.queued(), 2);

    let (up, seen) = server(Vec::new()).await;
    let after = spawn(settings(up, Some(file.clone())));
    after
        .report(&step(Some("r-9"), Step::Healthy, None))
        .await
        .unwrap();
    drained(&after).await;
    let expect = ["installing", "rebooting", "healthy"].map(|s| ("r-9".to_owned(), s.to_owned()));
    assert_eq!(steps(&seen), expect);
    after.stop();
}
