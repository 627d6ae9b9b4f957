//! Acknowledged MQTT store writes survive `kill -9`.
//!
//! The test runs its own binary again as a child (chosen by an environment
//! variable). The child applies batches from several tasks and prints each
//! one once `apply` has returned; the parent SIGKILLs it mid-stream, reopens
//! the file and must find every batch the child printed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use bulwark_store::{MqttOp, MqttSnapshot, MqttStore};

/// Set in the child to the database path.
const CHILD: &str = "BULWARK_MQTT_CRASH_CHILD";
const TEST: &str = "acknowledged_batches_survive_sigkill";
const TASKS: u64 = 8;
/// Acknowledgements the parent waits for before killing the child.
const KILL_AFTER: usize = 1500;

fn client(task: u64) -> String {
    format!("client-{task}")
}

/// A recognisable payload, big enough to span WAL pages.
fn packet(task: u64, seq: u64) -> Vec<u8> {
    let mut p = format!("{task}:{seq}:").into_bytes();
    p.resize(2048 + (seq as usize % 512), (seq % 251) as u8);
    p
}

/// Whether `task` deletes each message in the next step.
fn deletes(task: u64) -> bool {
    task < TASKS / 2
}

/// Each task owns a session and, step after step, stores message `step`
/// and sets its retained topic to `step`; half the tasks also delete
/// message `step - 1`. Each batch is acknowledged on stdout after `apply`.
fn child(path: &Path) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = MqttStore::open(path).unwrap();
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    for step in 0..1_000_000u64 {
                        let mut ops = vec![
                            MqttOp::PutMessage {
                                client_id: client(task),
                                seq: step,
                                packet: packet(task, step),
                                packet_id: Some((step % 65535 + 1) as u16),
                                state: 1,
                                expires_at_ms: None,
                            },
                            MqttOp::SetRetained {
                                topic: format!("t/{task}"),
                                packet: step.to_be_bytes().to_vec(),
                                expires_at_ms: None,
                            },
                        ];
                        if step == 0 {
                            ops.insert(
                                0,
                                MqttOp::PutSession {
                                    client_id: client(task),
                                    principal: format!("device:{task}"),
                                    protocol_level: 5,
                                    expiry_secs: 3600,
                                    disconnected_at_ms: None,
                                },
                            );
                        } else if deletes(task) {
                            ops.push(MqttOp::DeleteMessage {
                                client_id: client(task),
                                seq: step - 1,
                            });
                        }
                        store.apply(ops).await.unwrap();
                        println!("acked {task} {step}");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn acknowledged_batches_survive_sigkill() {
    if let Some(path) = std::env::var_os(CHILD) {
        return child(Path::new(&path));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mqtt.db");
    let mut proc = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD, &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(proc.stdout.take().unwrap()).lines();
    let mut acked: HashMap<u64, u64> = HashMap::new();
    let mut record = |line: &str| {
        let mut words = line.split(' ');
        if words.next() != Some("acked") {
            return false;
        }
        let mut num = || words.next().unwrap().parse::<u64>().unwrap();
        let (task, step) = (num(), num());
        let last = acked.entry(task).or_insert(step);
        assert!(step >= *last, "a task acknowledges in order");
        *last = step;
        true
    };
    let mut before_kill = 0;
    for line in lines.by_ref() {
        before_kill += record(&line.unwrap()) as usize;
        if before_kill == KILL_AFTER {
            proc.kill().unwrap(); // SIGKILL
            break;
        }
    }
    assert_eq!(before_kill, KILL_AFTER, "the child stopped early");
    // Whatever the child printed before it died was acknowledged too.
    for line in lines {
        record(&line.unwrap());
    }
    proc.wait().unwrap();
    assert_eq!(acked.len() as u64, TASKS, "{acked:?}");

    let rt = tokio::runtime::Runtime::new().unwrap();
    let snapshot = rt.block_on(async { MqttStore::open(&path).unwrap().load().await.unwrap() });
    for (&task, &last) in &acked {
        check_task(&snapshot, task, last);
    }
    eprintln!(
        "acknowledged {} batches before SIGKILL, {} in all; every one was found",
        KILL_AFTER,
        acked.values().map(|l| l + 1).sum::<u64>()
    );
}

/// Every acknowledged step of `task` is there; at most one more (in flight
/// when the child died, committed but not acknowledged) may be too.
fn check_task(snapshot: &MqttSnapshot, task: u64, last: u64) {
    let session = snapshot
        .sessions
        .iter()
        .find(|s| s.client_id == client(task))
        .unwrap_or_else(|| panic!("session of task {task} lost"));
    let seqs: Vec<u64> = session.messages.iter().map(|m| m.seq).collect();
    let committed = *seqs.last().unwrap();
    assert!(
        committed == last || committed == last + 1,
        "task {task}: acknowledged {last}, found {committed}"
    );
    let expected: Vec<u64> = if deletes(task) {
        vec![committed]
    } else {
        (0..=committed).collect()
    };
    assert_eq!(seqs, expected, "task {task}");
    for m in &session.messages {
        assert_eq!(m.packet, packet(task, m.seq), "task {task} seq {}", m.seq);
    }
    let retained = snapshot
        .retained
        .iter()
        .find(|r| r.topic == format!("t/{task}"))
        .unwrap();
    assert_eq!(retained.packet, committed.to_be_bytes(), "task {task}");
}
