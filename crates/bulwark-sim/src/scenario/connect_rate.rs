//! `connect-rate`: C workers open full mTLS MQTT sessions back to back.
//!
//! One setup is TCP connect + TLS handshake (no resumption) + CONNECT and
//! CONNACK; its latency is measured from before the TCP connect to the
//! CONNACK. Then the worker sends DISCONNECT, closes TLS and TCP (not
//! timed), and starts the next one. Worker `w` uses devices `w`, `w + C`,
//! `w + 2C`, ... so one client id is never connected twice at once.
//!
//! Every setup is a full handshake: resumption is off in the devices'
//! configurations, and the run fails unless the server's CertificateVerify
//! signature (absent from a resumed handshake) was verified at least once
//! per setup counted.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{Ctx, Opts, IDLE_READ_CHUNK};
use crate::identity::Device;
use crate::mqtt::Conn;
use crate::stats::{latency_summary, micros, round, CpuMeter, Errors};

/// Pause after a failed setup, so a refusing broker is not spun against.
const ERROR_PAUSE: Duration = Duration::from_millis(50);

pub(crate) async fn run(o: &Opts, ctx: Arc<Ctx>, devices: Vec<Device>) -> Result<Value> {
    let workers = o.concurrency;
    if devices.len() < workers {
        bail!("connect-rate needs at least --concurrency ({workers}) devices");
    }
    let devices = Arc::new(devices);
    eprintln!(
        "connect-rate: {workers} workers over {} devices for {} s",
        devices.len(),
        o.duration.as_secs()
    );
    let signatures_before = ctx.chains.signatures_verified();
    let start = Instant::now();
    let deadline = start + o.duration;
    let cpu = CpuMeter::start(o.broker_pid);
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (ctx, devices) = (ctx.clone(), devices.clone());
            tokio::spawn(async move {
                let mine: Vec<usize> = (w..devices.len()).step_by(workers).collect();
                let mut lat = Vec::new();
                let mut errors = Errors::default();
                let mut k = 0;
                while Instant::now() < deadline {
                    let d = &devices[mine[k % mine.len()]];
                    k += 1;
                    let t0 = Instant::now();
                    match Conn::open(
                        &ctx.broker,
                        &ctx.session,
                        d.tls.clone(),
                        d.id.as_str(),
                        IDLE_READ_CHUNK,
                    )
                    .await
                    {
                        Ok(conn) => {
                            lat.push(micros(t0.elapsed()));
                            conn.close().await;
                        }
                        Err(e) => {
                            errors.add(e);
                            tokio::time::sleep(ERROR_PAUSE).await;
                        }
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut lat = Vec::new();
    let mut errors = Errors::default();
    for t in tasks {
        match t.await {
            Ok((l, e)) => {
                lat.extend(l);
                errors.merge(e);
            }
            Err(_) => errors.add("panic in a worker"),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    // Every setup counted was a full handshake: each verified the server's
    // CertificateVerify signature, which a resumed handshake does not send.
    let signatures = ctx.chains.signatures_verified() - signatures_before;
    if signatures < lat.len() as u64 {
        bail!(
            "{} setups but only {signatures} server handshake signatures verified: \
             some handshakes were not full ones",
            lat.len()
        );
    }
    let mut v = json!({
        "concurrency": workers,
        "setups": lat.len(),
        "seconds": round(secs, 3),
        "setups_per_sec": round(lat.len() as f64 / secs, 1),
    });
    cpu.put(&mut v, secs);
    if let (Some(obj), Some(s)) = (v.as_object_mut(), latency_summary(&mut lat).as_object()) {
        obj.extend(s.clone());
    }
    errors.put(&mut v);
    Ok(v)
}
