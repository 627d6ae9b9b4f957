//! `idle`: N connections opened C at a time, held open with keep-alive for
//! `--duration` once all are up, then closed.
//!
//! When every connection is up (or has failed) the run says so on stderr
//! and writes `--ready-file` ("<up> <failed> <seconds to connect>"), so a
//! script can measure the broker's memory while they are held. With
//! `--broker-pid` the run also reports the broker's RSS before connecting
//! and once all are up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bulwark_mqtt::Packet;
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep_until, Instant};

use super::{Ctx, Opts, IDLE_READ_CHUNK};
use crate::identity::Device;
use crate::mqtt::{Conn, Failure};
use crate::stats::{round, rss_kib, Errors};

/// How often the connect phase reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// Time allowed to close every connection at the end.
const CLOSE_ALL: Duration = Duration::from_secs(30);
/// Time the broker gets to settle before its memory is read.
const SETTLE: Duration = Duration::from_secs(1);

enum Outcome {
    /// Held until released.
    Held,
    /// Never came up.
    Failed(Failure),
    /// Came up, then was lost during the hold.
    Dropped(Failure),
}

pub(crate) async fn run(o: &Opts, ctx: Arc<Ctx>, devices: Vec<Device>) -> Result<Value> {
    let n = devices.len() as u64;
    let rss_before = o.broker_pid.and_then(rss_kib);
    let (release_tx, release_rx) = watch::channel(false);
    let up = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let sem = Arc::new(Semaphore::new(o.concurrency));
    let keepalive = Duration::from_secs(u64::from(o.keepalive));
    eprintln!("idle: opening {n} connections, {} at a time", o.concurrency);
    let t0 = Instant::now();
    let tasks: Vec<_> = devices
        .into_iter()
        .map(|d| {
            let (ctx, sem, up, failed) = (ctx.clone(), sem.clone(), up.clone(), failed.clone());
            let release = release_rx.clone();
            tokio::spawn(async move {
                let permit = sem.acquire_owned().await;
                let conn = Conn::open(
                    &ctx.broker,
                    &ctx.session,
                    d.tls,
                    d.id.as_str(),
                    IDLE_READ_CHUNK,
                )
                .await;
                drop(permit);
                match conn {
                    Ok(c) => {
                        up.fetch_add(1, Ordering::Relaxed);
                        hold(c, keepalive, release).await
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        Outcome::Failed(e)
                    }
                }
            })
        })
        .collect();

    let mut last_report = Instant::now();
    loop {
        let (u, f) = (up.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
        if u + f >= n {
            break;
        }
        if last_report.elapsed() >= PROGRESS_EVERY {
            eprintln!(
                "  idle: {u}/{n} up, {f} failed, {:.1} s",
                t0.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_secs = t0.elapsed().as_secs_f64();
    let (u, f) = (up.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!(
        "idle: all {u} connections up ({f} failed) after {connect_secs:.1} s; holding them for {} s",
        o.duration.as_secs()
    );
    if let Some(path) = &o.ready_file {
        std::fs::write(path, format!("{u} {f} {connect_secs:.3}\n"))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let hold_start = Instant::now();
    let rss_up = match o.broker_pid {
        Some(pid) => {
            tokio::time::sleep(SETTLE).await;
            rss_kib(pid)
        }
        None => None,
    };
    let own_rss = rss_kib(std::process::id());
    sleep_until(hold_start + o.duration).await;
    let _ = release_tx.send(true);

    let mut failures = Errors::default();
    let mut dropped = Errors::default();
    let until = Instant::now() + CLOSE_ALL;
    for t in tasks {
        match tokio::time::timeout_at(until, t).await {
            Ok(Ok(Outcome::Held)) => {}
            Ok(Ok(Outcome::Failed(e))) => failures.add(e),
            Ok(Ok(Outcome::Dropped(e))) => dropped.add(e),
            Ok(Err(_)) => failures.add("panic in a connection task"),
            Err(_) => {
                failures.add("connection did not close in time");
                break;
            }
        }
    }
    let per_conn = rss_before
        .zip(rss_up)
        .filter(|_| u > 0)
        .map(|(a, b)| round((b as f64 - a as f64) / u as f64, 2));
    let mut v = json!({
        "connections": n,
        "up": u,
        "failed": f,
        "dropped": dropped.total,
        "connect_seconds": round(connect_secs, 3),
        "connects_per_sec": round(u as f64 / connect_secs.max(1e-9), 1),
        "hold_seconds": o.duration.as_secs(),
        "broker_rss_before_kib": rss_before,
        "broker_rss_up_kib": rss_up,
        "broker_kib_per_connection": per_conn,
        "client_rss_kib": own_rss,
    });
    failures.merge(dropped);
    failures.put(&mut v);
    Ok(v)
}

/// Keeps one connection alive until `release` turns true.
async fn hold(mut conn: Conn, keepalive: Duration, mut release: watch::Receiver<bool>) -> Outcome {
    let ping_every = keepalive / 2;
    let mut last_write = Instant::now();
    let res: Result<(), Failure> = async {
        loop {
            if *release.borrow_and_update() {
                return Ok(());
            }
            tokio::select! {
                r = conn.read_more() => {
                    r?;
                    while let Some(p) = conn.next_packet()? {
                        match p {
                            Packet::PingResp => {}
                            Packet::Disconnect(d) => return Err(Failure::Disconnected(d.reason_code)),
                            other => return Err(Failure::Unexpected(other.packet_type().name())),
                        }
                    }
                }
                changed = release.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
                _ = sleep_until(last_write + ping_every) => {
                    conn.queue(&Packet::PingReq)?;
                    conn.flush().await?;
                    last_write = Instant::now();
                }
            }
        }
    }
    .await;
    match res {
        Ok(()) => {
            conn.close().await;
            Outcome::Held
        }
        Err(e) => Outcome::Dropped(e),
    }
}
