//! Crash safety and tamper evidence of the store and the audit log.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bulwark_api_types::{CreateEnrollToken, CreateGroup};
use bulwark_types::{CertSerial, GroupId};
use common::{bin, csr, leaf_pem, rt, Server};
use x509_parser::prelude::{FromDer, X509Certificate};

fn audit_verify(server: &Server) -> std::process::Output {
    Command::new(bin())
        .args(["audit", "verify", "--data-dir"])
        .arg(server.data_dir())
        .output()
        .expect("bulwark audit verify")
}

#[test]
fn sigkill_during_enrollments_loses_nothing_acknowledged() {
    const TOKENS: usize = 400;
    const KILL_AFTER: usize = 120;
    let mut server = Server::start(
        "[limits]\nper_ip_per_sec = 100000\nper_ip_burst = 100000\n\
         per_token_per_sec = 100000\nper_token_burst = 100000\n",
    );
    let rt = rt();
    let admin = server.client();
    let tokens: Vec<String> = rt.block_on(async {
        admin
            .create_group(&CreateGroup {
                name: GroupId::new("fleet").unwrap(),
                description: String::new(),
            })
            .await
            .unwrap();
        let mut t = Vec::new();
        for _ in 0..TOKENS {
            let created = admin
                .create_enroll_token(&CreateEnrollToken {
                    group: GroupId::new("fleet").unwrap(),
                    device_id: None,
                    ttl_seconds: None,
                })
                .await
                .unwrap();
            t.push(created.token);
        }
        t
    });

    // Eight concurrent enrollers; the server is SIGKILLed once KILL_AFTER
    // certificates have been received.
    let received = Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let pid = server.pid();
    let killer = {
        let count = count.clone();
        std::thread::spawn(move || {
            while count.load(Ordering::SeqCst) < KILL_AFTER {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .unwrap();
        })
    };
    let anon = server.client_with(None);
    rt.block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (anon, tokens, received, count, next) = (
                anon.clone(),
                tokens.clone(),
                received.clone(),
                count.clone(),
                next.clone(),
            );
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= tokens.len() {
                        return;
                    }
                    let (_, der) = csr("d");
                    match anon.est_simpleenroll_bearer(&tokens[i], &der).await {
                        Ok(p7) => {
                            received.lock().unwrap().push(leaf_pem(&p7).0);
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                        // The server is gone: stop this worker.
                        Err(_) => return,
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    killer.join().unwrap();
    let received = received.lock().unwrap().clone();
    assert!(received.len() >= KILL_AFTER, "received {}", received.len());
    assert!(
        received.len() < TOKENS,
        "the kill landed after every enrollment; the test proved nothing"
    );

    server.restart();
    let admin = server.client();
    let mut serials = HashSet::new();
    rt.block_on(async {
        for der in &received {
            let (_, cert) = X509Certificate::from_der(der).unwrap();
            let serial = CertSerial::from_bytes(cert.raw_serial()).unwrap();
            assert!(serials.insert(serial.clone()), "serial {serial} repeated");
            let rec = admin.get_certificate(&serial).await.unwrap_or_else(|e| {
                panic!("certificate {serial} was received but is not in the registry: {e}")
            });
            let device = bulwark_types::DeviceId::new(rec.subject.clone()).unwrap();
            let d = admin.get_device(&device).await.unwrap();
            assert_eq!(d.device.state, bulwark_types::DeviceState::Active);
            assert!(d.certificates.iter().any(|c| c.serial == serial));
        }
    });
    // No serial repeats in the store either.
    let conn = rusqlite::Connection::open(server.db_path()).unwrap();
    let (all, distinct): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), COUNT(DISTINCT serial) FROM certificates",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(all, distinct);
    drop(conn);

    let out = audit_verify(&server);
    assert!(
        out.status.success(),
        "audit verify after SIGKILL: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn audit_verify_names_an_edited_deleted_or_truncated_entry() {
    let mut server = Server::start("");
    for i in 0..20 {
        assert!(server
            .cli(&["group", "create", &format!("g{i}")])
            .status
            .success());
    }
    assert!(server.terminate().success(), "graceful shutdown");
    let ok = audit_verify(&server);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let db = server.db_path();
    let backup = server.dir.path().join("backup.db");
    // A self-contained snapshot, WAL included.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute("VACUUM INTO ?1", [backup.to_str().unwrap()])
        .unwrap();
    let tamper = |sql: &str| -> String {
        for ext in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
        }
        std::fs::copy(&backup, &db).unwrap();
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(sql).unwrap();
        drop(conn);
        let out = audit_verify(&server);
        assert_eq!(
            out.status.code(),
            Some(1),
            "tampering went unnoticed: {sql}"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };

    let edited = tamper("UPDATE audit_log SET ts = '2020-01-01T00:00:00Z' WHERE seq = 9");
    assert!(edited.contains("first bad entry: 9"), "{edited}");
    assert!(edited.contains("modified"), "{edited}");

    let deleted = tamper("DELETE FROM audit_log WHERE seq = 5");
    assert!(deleted.contains("first bad entry: 5"), "{deleted}");

    let reordered = tamper(
        "UPDATE audit_log SET seq = -1 WHERE seq = 3; UPDATE audit_log SET seq = 3 WHERE seq = 4; \
         UPDATE audit_log SET seq = 4 WHERE seq = -1;",
    );
    assert!(reordered.contains("first bad entry: 3"), "{reordered}");

    let last: i64 = {
        let conn = rusqlite::Connection::open(&backup).unwrap();
        conn.query_row("SELECT MAX(seq) FROM audit_log", [], |r| r.get(0))
            .unwrap()
    };
    let truncated = tamper(&format!("DELETE FROM audit_log WHERE seq > {}", last - 3));
    assert!(truncated.contains("truncated"), "{truncated}");

    // A pinned key: the right one passes; a replaced audit.pub is refused.
    let key = std::fs::read_to_string(server.data_dir().join("ca/audit.pub")).unwrap();
    let pinned = |key: &str| {
        Command::new(bin())
            .args(["audit", "verify", "--audit-key", key.trim(), "--data-dir"])
            .arg(server.data_dir())
            .output()
            .unwrap()
    };
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", db.display()));
    }
    std::fs::copy(&backup, &db).unwrap();
    assert!(pinned(&key).status.success());
    let other = "11".repeat(32);
    let out = pinned(&other);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not the pinned audit key"));
}
