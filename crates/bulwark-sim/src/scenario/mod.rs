//! The `load` scenarios, and what they share: the validated options, the
//! connection context, the payload header, and connecting many clients at
//! a bounded concurrency.

mod connect_rate;
mod flow;
mod idle;
mod own_thread;
mod pubsub;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Result};
use bulwark_mqtt::{ProtocolVersion, QoS};
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::identity::{self, Device, TlsSettings};
use crate::mqtt::{Conn, Failure, Session};
use crate::net::Broker;
use crate::{stats, Scenario};

/// Bytes at the start of every payload: publisher index (u32), sequence
/// number (u64) and send time (u64 ns since the run's epoch), big-endian.
pub(crate) const HEADER_LEN: usize = 20;
/// Read buffer kept free on busy connections.
const BUSY_READ_CHUNK: usize = 64 * 1024;
/// Read buffer kept free on idle connections.
const IDLE_READ_CHUNK: usize = 256;
/// Open files `load` needs besides its connections.
const SPARE_FILES: u64 = 64;

/// A validated `load` command.
pub(crate) struct Load {
    pub(crate) scenario: Scenario,
    pub(crate) broker: Broker,
    pub(crate) tls: TlsSettings,
    pub(crate) certs: PathBuf,
    pub(crate) qos: QoS,
    pub(crate) clients: usize,
    pub(crate) concurrency: usize,
    pub(crate) duration: Duration,
    pub(crate) rate: Option<f64>,
    pub(crate) payload: usize,
    pub(crate) version: ProtocolVersion,
    pub(crate) first_device: usize,
    pub(crate) window: usize,
    pub(crate) keepalive: u16,
    pub(crate) drain: Duration,
    pub(crate) max_time: Duration,
    pub(crate) broker_pid: Option<u32>,
    pub(crate) label: String,
    pub(crate) ready_file: Option<PathBuf>,
}

/// What every connection task needs.
pub(crate) struct Ctx {
    pub(crate) broker: Broker,
    pub(crate) session: Session,
    /// The devices' server certificate verifier (it counts the server
    /// handshake signatures it verified).
    pub(crate) chains: Arc<identity::RememberedChains>,
}

/// Runs the scenario and returns its result object.
pub(crate) async fn run(load: Load) -> Result<Value> {
    let devices_needed = match load.scenario {
        Scenario::ConnectRate => load.clients.max(load.concurrency),
        Scenario::FanIn | Scenario::FanOut | Scenario::Latency => load.clients + 1,
        Scenario::Idle => load.clients,
    };
    let connections = match load.scenario {
        Scenario::ConnectRate => load.concurrency,
        _ => devices_needed,
    } as u64;
    if let Some(limit) = stats::open_files_limit() {
        if connections + SPARE_FILES > limit {
            bail!(
                "{connections} connections need about {} open files but the limit is {limit}: \
                 raise `ulimit -n`, or split the clients over several processes with --first-device",
                connections + SPARE_FILES
            );
        }
    }
    let mut load = load;
    let chains = load.tls.remember_server_chains()?;
    let devices = identity::load(&load.certs, load.first_device, devices_needed, &load.tls)?;
    let mut base = json!({
        "scenario": load.scenario.name(),
        "label": load.label,
        "mqtt": match load.version { ProtocolVersion::V5 => "5", ProtocolVersion::V311 => "3.1.1" },
        "qos": load.qos as u8,
        "clients": load.clients,
        "duration_s": load.duration.as_secs(),
        "payload_bytes": load.payload,
    });
    let session = Session {
        version: load.version,
        keepalive: load.keepalive,
        server_name: load.tls.server_name.clone(),
    };
    let (load, ctx) = split(load, session, chains);
    let result = match load.scenario {
        Scenario::ConnectRate => connect_rate::run(&load, ctx, devices).await?,
        Scenario::FanIn => pubsub::fan_in(&load, ctx, devices, false).await?,
        Scenario::Latency => pubsub::fan_in(&load, ctx, devices, true).await?,
        Scenario::FanOut => pubsub::fan_out(&load, ctx, devices).await?,
        Scenario::Idle => idle::run(&load, ctx, devices).await?,
    };
    if let (Some(b), Some(r)) = (base.as_object_mut(), result.as_object()) {
        b.extend(r.clone());
    }
    Ok(base)
}

/// The options the scenarios read, without the parts moved into [`Ctx`].
pub(crate) struct Opts {
    pub(crate) scenario: Scenario,
    pub(crate) qos: QoS,
    pub(crate) concurrency: usize,
    pub(crate) duration: Duration,
    pub(crate) rate: Option<f64>,
    pub(crate) payload: usize,
    pub(crate) version: ProtocolVersion,
    pub(crate) window: usize,
    pub(crate) keepalive: u16,
    pub(crate) drain: Duration,
    pub(crate) broker_pid: Option<u32>,
    pub(crate) ready_file: Option<PathBuf>,
}

fn split(
    load: Load,
    session: Session,
    chains: Arc<identity::RememberedChains>,
) -> (Opts, Arc<Ctx>) {
    let ctx = Arc::new(Ctx {
        broker: load.broker,
        session,
        chains,
    });
    let opts = Opts {
        scenario: load.scenario,
        qos: load.qos,
        concurrency: load.concurrency,
        duration: load.duration,
        rate: load.rate,
        payload: load.payload,
        version: load.version,
        window: load.window,
        keepalive: load.keepalive,
        drain: load.drain,
        broker_pid: load.broker_pid,
        ready_file: load.ready_file,
    };
    (opts, ctx)
}

/// The payload header of one message.
pub(crate) fn header(publisher: u32, seq: u64, sent_ns: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&publisher.to_be_bytes());
    h[4..12].copy_from_slice(&seq.to_be_bytes());
    h[12..].copy_from_slice(&sent_ns.to_be_bytes());
    h
}

/// Publisher, sequence number and send time of a payload written by [`header`].
pub(crate) fn parse_header(payload: &[u8]) -> Option<(u32, u64, u64)> {
    let h: &[u8; HEADER_LEN] = payload.get(..HEADER_LEN)?.try_into().ok()?;
    let (p, rest) = h.split_at(4);
    let (s, t) = rest.split_at(8);
    Some((
        u32::from_be_bytes(p.try_into().ok()?),
        u64::from_be_bytes(s.try_into().ok()?),
        u64::from_be_bytes(t.try_into().ok()?),
    ))
}

/// Opens a connection for each device, `concurrency` handshakes at a time;
/// results in the devices' order.
pub(crate) async fn connect_many(
    ctx: &Arc<Ctx>,
    devices: &[Device],
    concurrency: usize,
    busy: bool,
) -> Vec<Result<Conn, Failure>> {
    let read_chunk = if busy {
        BUSY_READ_CHUNK
    } else {
        IDLE_READ_CHUNK
    };
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let handles: Vec<_> = devices
        .iter()
        .map(|d| {
            let (ctx, sem, tls, id) = (ctx.clone(), sem.clone(), d.tls.clone(), d.id.clone());
            tokio::spawn(async move {
                let _permit = sem.acquire_owned().await;
                Conn::open(&ctx.broker, &ctx.session, tls, id.as_str(), read_chunk).await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(
            h.await
                .unwrap_or(Err(Failure::Unexpected("panic in a connection task"))),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = header(7, u64::MAX - 1, 123_456_789);
        let mut payload = h.to_vec();
        payload.extend_from_slice(b"xxxx");
        assert_eq!(parse_header(&payload), Some((7, u64::MAX - 1, 123_456_789)));
        assert_eq!(parse_header(&payload[..19]), None);
    }
}
