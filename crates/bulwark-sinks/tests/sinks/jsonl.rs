//! JSON lines files: contents parse back to the notices; rotation.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use bulwark_sinks::{Dispatcher, Notice};
use bulwark_types::{Alert, AlertAction, Severity};

use crate::common::{action_notice, eventually, notice, sinks};

fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test]
async fn lines_parse_back_to_the_notices() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let d = Dispatcher::start(sinks(&format!(
        "[[sinks]]\ntype = \"jsonl\"\npath = \"{}\"\n",
        path.display()
    )))
    .unwrap();
    let a = alert_with_newlines();
    d.dispatch(Notice::Alert(a.clone()));
    d.dispatch(action_notice());
    let stats = d.shutdown(Duration::from_secs(5)).await;
    assert_eq!(stats[0].delivered, 2);

    let got = lines(&path);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["kind"], "alert.opened");
    let back: Alert = serde_json::from_value(got[0]["alert"].clone()).unwrap();
    assert_eq!(back, a);
    assert_eq!(got[1]["kind"], "action.applied");
    let Notice::Action { alert, action } = action_notice() else {
        unreachable!()
    };
    let back: AlertAction = serde_json::from_value(got[1]["action"].clone()).unwrap();
    assert_eq!(back, action);
    let back: Alert = serde_json::from_value(got[1]["alert"].clone()).unwrap();
    assert_eq!(back, alert);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o640);
}

fn alert_with_newlines() -> Alert {
    let mut a = crate::common::alert(Severity::High);
    a.title = "line one\nline two\r\n".to_owned();
    a
}

#[tokio::test]
async fn follows_a_rotated_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let rotated = dir.path().join("alerts.jsonl.1");
    let d = Dispatcher::start(sinks(&format!(
        "[[sinks]]\ntype = \"jsonl\"\npath = \"{}\"\nfsync = \"never\"\n",
        path.display()
    )))
    .unwrap();
    d.dispatch(notice(Severity::High));
    eventually(&d, "first line", |s| s.delivered == 1).await;
    std::fs::rename(&path, &rotated).unwrap();
    d.dispatch(notice(Severity::Critical));
    eventually(&d, "second line", |s| s.delivered == 2).await;
    assert_eq!(lines(&rotated)[0]["alert"]["severity"], "high");
    assert_eq!(lines(&path).len(), 1);
    assert_eq!(lines(&path)[0]["alert"]["severity"], "critical");
}
