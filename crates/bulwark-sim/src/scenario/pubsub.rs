//! The message scenarios: `fan-in` and `latency` (N publishers, one
//! wildcard subscriber) and `fan-out` (one publisher, N subscribers).
//!
//! Each run connects and subscribes everyone first (not measured), starts
//! all publishers at the same instant, publishes for `--duration`, then
//! waits (at most `--drain`) for outstanding PUBACKs and for the
//! subscribers to receive every acknowledged message. Rates count only what
//! was acknowledged or received before the deadline.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bulwark_mqtt::QoS;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use super::flow::{self, PubPlan, PubResult, Stop, SubPlan, Tracker};
use super::{connect_many, own_thread, Ctx, Opts, BUSY_READ_CHUNK};
use crate::identity::Device;
use crate::mqtt::{Conn, PublishTemplate};
use crate::stats::{latency_summary, round, CpuMeter, Errors};

/// Wildcard filter of the fan-in subscriber.
const TELEMETRY_FILTER: &str = "devices/+/telemetry";
/// Topic of fan-out.
const BROADCAST_TOPIC: &str = "bench/broadcast";
/// Time between connecting and the common start.
const START_DELAY: Duration = Duration::from_millis(200);
/// Longest wait for QoS 0 stragglers (some may have been dropped).
const QOS0_DRAIN: Duration = Duration::from_secs(2);

fn telemetry_topic(d: &Device) -> String {
    format!("devices/{}/telemetry", d.id)
}

/// `fan-in` (`latency == false`) or `latency`: devices[0] subscribes to
/// `devices/+/telemetry`, devices[1..] publish to their own telemetry topic.
pub(crate) async fn fan_in(
    o: &Opts,
    ctx: Arc<Ctx>,
    devices: Vec<Device>,
    latency: bool,
) -> Result<Value> {
    let name = o.scenario.name();
    let epoch = Instant::now();
    let (sub_dev, pub_devs) = devices.split_first().context("no devices")?;
    eprintln!(
        "{name}: connecting the subscriber ({}) and {} publishers",
        sub_dev.id,
        pub_devs.len()
    );
    let (sctx, id, tls, qos) = (ctx.clone(), sub_dev.id.clone(), sub_dev.tls.clone(), o.qos);
    let mut sub = own_thread::spawn(
        "sim-subscriber",
        move || async move {
            let s = &sctx.session;
            let mut c = Conn::open(&sctx.broker, s, tls, id.as_str(), BUSY_READ_CHUNK).await?;
            c.subscribe(TELEMETRY_FILTER, qos, sctx.broker.connect_timeout())
                .await?;
            Ok(c)
        },
        |conn, (tracker, plan, stop)| flow::subscribe(conn, tracker, plan, stop),
    )?;
    sub.ready()
        .await
        .with_context(|| format!("subscriber {} on {TELEMETRY_FILTER}", sub_dev.id))?;
    let mut connect_errors = Errors::default();
    let mut publishers = Vec::new();
    for (i, (d, c)) in pub_devs
        .iter()
        .zip(connect_many(&ctx, pub_devs, o.concurrency, true).await)
        .enumerate()
    {
        match c {
            Ok(c) => publishers.push((i as u32, telemetry_topic(d), c)),
            Err(e) => connect_errors.add(e),
        }
    }
    if publishers.is_empty() {
        bail!("no publisher could connect: {connect_errors:?}");
    }
    let n = publishers.len();
    let start = Instant::now() + START_DELAY;
    let deadline = start + o.duration;
    let gap = o.rate.map(|r| Duration::from_secs_f64(n as f64 / r));
    let expected = o
        .rate
        .map_or(0, |r| (r * o.duration.as_secs_f64() * 1.1) as usize);
    let tracker = Tracker::new(pub_devs.len(), latency.then_some(expected.min(50_000_000)));
    let (stop_tx, stop_rx) = watch::channel(Stop::Running);
    let plan = SubPlan {
        deadline,
        keepalive: Duration::from_secs(u64::from(o.keepalive)),
        epoch,
    };
    let sub_task = sub.start((tracker, plan, stop_rx));
    let mut tasks = Vec::with_capacity(n);
    let mut indexes = Vec::with_capacity(n);
    for (k, (index, topic, conn)) in publishers.into_iter().enumerate() {
        let tpl = PublishTemplate::new(o.version, &topic, o.qos, o.payload)?;
        // Rate-limited publishers are spread evenly over one gap.
        let offset = gap.map_or(Duration::ZERO, |g| g.mul_f64(k as f64 / n as f64));
        let plan = PubPlan {
            index,
            qos: o.qos,
            window: o.window,
            gap,
            start: start + offset,
            deadline,
            drain: o.drain,
            epoch,
        };
        indexes.push(index as usize);
        tasks.push(tokio::spawn(flow::publish(conn, tpl, plan)));
    }
    eprintln!("{name}: {n} publishers for {} s", o.duration.as_secs());
    let mut v = json!({ "publishers": n });
    measure_window(o, start, deadline, &mut v).await;
    let results = join_publishers(tasks).await;
    let target: u64 = results
        .iter()
        .map(|r| {
            if o.qos == QoS::AtMostOnce {
                r.sent
            } else {
                r.acked
            }
        })
        .sum();
    let t = finish_subscribers(o, &stop_tx, vec![sub_task], target)
        .await?
        .pop()
        .context("no subscriber result")?;

    let secs = o.duration.as_secs_f64();
    let mut errors = connect_errors;
    let (sent, acked, in_window, refused, out_of_order) = totals(&results, &mut errors);
    let losses: u64 = indexes
        .iter()
        .zip(&results)
        .map(|(&i, r)| t.missing(i, r.acked))
        .sum();
    put_losses(o.qos, &mut v, losses, sent, t.distinct);
    v["sent"] = json!(sent);
    v["acked"] = json!(acked);
    v["refused"] = json!(refused);
    v["acks_out_of_order"] = json!(out_of_order);
    v["sent_per_sec"] = json!(round(in_window as f64 / secs, 1));
    v["received"] = json!(t.received);
    v["duplicates"] = json!(t.duplicates);
    v["foreign"] = json!(t.foreign);
    v["received_per_sec"] = json!(round(t.in_window as f64 / secs, 1));
    if let Some(e) = &t.error {
        errors.add(format!("subscriber: {e}"));
    }
    if latency {
        v["rate_target"] = json!(o.rate);
        let mut l = t.latencies_us.unwrap_or_default();
        v["latency_samples"] = json!(l.len());
        if let (Some(obj), Some(s)) = (v.as_object_mut(), latency_summary(&mut l).as_object()) {
            obj.extend(s.clone());
        }
    }
    errors.put(&mut v);
    Ok(v)
}

/// `fan-out`: devices[0] publishes to `bench/broadcast`, devices[1..] subscribe to it.
pub(crate) async fn fan_out(o: &Opts, ctx: Arc<Ctx>, devices: Vec<Device>) -> Result<Value> {
    let epoch = Instant::now();
    let (pub_dev, sub_devs) = devices.split_first().context("no devices")?;
    eprintln!(
        "fan-out: connecting {} subscribers and the publisher ({})",
        sub_devs.len(),
        pub_dev.id
    );
    let mut errors = Errors::default();
    let mut subs = Vec::new();
    for c in connect_many(&ctx, sub_devs, o.concurrency, true).await {
        match c {
            Ok(mut c) => match c
                .subscribe(BROADCAST_TOPIC, o.qos, ctx.broker.connect_timeout())
                .await
            {
                Ok(()) => subs.push(c),
                Err(e) => errors.add(e),
            },
            Err(e) => errors.add(e),
        }
    }
    if subs.is_empty() {
        bail!("no subscriber could connect and subscribe: {errors:?}");
    }
    let (pctx, id, tls) = (ctx.clone(), pub_dev.id.clone(), pub_dev.tls.clone());
    let mut publisher = own_thread::spawn(
        "sim-publisher",
        move || async move {
            let s = &pctx.session;
            Conn::open(&pctx.broker, s, tls, id.as_str(), BUSY_READ_CHUNK).await
        },
        |conn, (tpl, plan)| flow::publish(conn, tpl, plan),
    )?;
    publisher
        .ready()
        .await
        .with_context(|| format!("publisher {} cannot connect", pub_dev.id))?;
    let n = subs.len();
    let start = Instant::now() + START_DELAY;
    let deadline = start + o.duration;
    let (stop_tx, stop_rx) = watch::channel(Stop::Running);
    let sub_tasks: Vec<_> = subs
        .into_iter()
        .map(|c| {
            let plan = SubPlan {
                deadline,
                keepalive: Duration::from_secs(u64::from(o.keepalive)),
                epoch,
            };
            tokio::spawn(flow::subscribe(
                c,
                Tracker::new(1, None),
                plan,
                stop_rx.clone(),
            ))
        })
        .collect();
    let plan = PubPlan {
        index: 0,
        qos: o.qos,
        window: o.window,
        gap: o.rate.map(|r| Duration::from_secs_f64(1.0 / r)),
        start,
        deadline,
        drain: o.drain,
        epoch,
    };
    let tpl = PublishTemplate::new(o.version, BROADCAST_TOPIC, o.qos, o.payload)?;
    let task = publisher.start((tpl, plan));
    eprintln!(
        "fan-out: 1 publisher, {n} subscribers for {} s",
        o.duration.as_secs()
    );
    let mut v = json!({ "subscribers": n });
    measure_window(o, start, deadline, &mut v).await;
    let results = join_publishers(vec![task]).await;
    let target = if o.qos == QoS::AtMostOnce {
        results[0].sent
    } else {
        results[0].acked
    };
    let trackers = finish_subscribers(o, &stop_tx, sub_tasks, target).await?;

    let secs = o.duration.as_secs_f64();
    let (sent, acked, in_window, refused, _) = totals(&results, &mut errors);
    let mut received = 0;
    let mut distinct = 0;
    let mut delivered_in_window = 0;
    let mut losses = 0;
    for t in &trackers {
        received += t.received;
        distinct += t.distinct;
        delivered_in_window += t.in_window;
        losses += t.missing(0, acked);
        if let Some(e) = &t.error {
            errors.add(format!("subscriber: {e}"));
        }
    }
    put_losses(o.qos, &mut v, losses, sent * n as u64, distinct);
    v["sent"] = json!(sent);
    v["acked"] = json!(acked);
    v["refused"] = json!(refused);
    v["sent_per_sec"] = json!(round(in_window as f64 / secs, 1));
    v["expected_deliveries"] = json!(
        if o.qos == QoS::AtMostOnce {
            sent
        } else {
            acked
        } * n as u64
    );
    v["delivered"] = json!(received);
    v["deliveries_per_sec"] = json!(round(delivered_in_window as f64 / secs, 1));
    errors.put(&mut v);
    Ok(v)
}

/// Waits for the deadline, recording the CPU use of the load window.
async fn measure_window(o: &Opts, start: Instant, deadline: Instant, v: &mut Value) {
    sleep_until(start).await;
    let cpu = CpuMeter::start(o.broker_pid);
    sleep_until(deadline).await;
    cpu.put(v, o.duration.as_secs_f64());
}

/// The publishers' results: tasks of the shared runtime, or the receiver
/// of one on its own thread.
async fn join_publishers<F, E>(tasks: Vec<F>) -> Vec<PubResult>
where
    F: Future<Output = Result<PubResult, E>>,
{
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap_or_else(|_| PubResult {
            error: Some(crate::mqtt::Failure::Unexpected(
                "a publisher ended without a result",
            )),
            ..PubResult::default()
        }));
    }
    out
}

/// Tells the subscribers how many distinct messages to wait for, waits at
/// most the drain time, then stops them.
async fn finish_subscribers<F, E>(
    o: &Opts,
    stop: &watch::Sender<Stop>,
    tasks: Vec<F>,
    target: u64,
) -> Result<Vec<Tracker>>
where
    F: Future<Output = Result<Tracker, E>> + Unpin,
{
    let _ = stop.send(Stop::AtDistinct(target));
    let drain = if o.qos == QoS::AtMostOnce {
        o.drain.min(QOS0_DRAIN)
    } else {
        o.drain
    };
    let until = Instant::now() + drain;
    let mut out = Vec::with_capacity(tasks.len());
    for mut t in tasks {
        let tracker = match tokio::time::timeout_at(until, &mut t).await {
            Ok(r) => r,
            Err(_) => {
                let _ = stop.send(Stop::Now);
                tokio::time::timeout(Duration::from_secs(5), t)
                    .await
                    .map_err(|_| anyhow!("a subscriber did not stop"))?
            }
        };
        out.push(tracker.map_err(|_| anyhow!("a subscriber ended without a result"))?);
    }
    Ok(out)
}

/// Sum of the publishers' counts; their errors go to `errors`.
fn totals(results: &[PubResult], errors: &mut Errors) -> (u64, u64, u64, u64, u64) {
    let mut t = (0, 0, 0, 0, 0);
    for r in results {
        t.0 += r.sent;
        t.1 += r.acked;
        t.2 += r.in_window;
        t.3 += r.refused;
        t.4 += r.out_of_order;
        if let Some(e) = &r.error {
            errors.add(format!("publisher: {e}"));
        }
    }
    t
}

/// QoS 1: `losses` (acknowledged, never delivered). QoS 0: `dropped`
/// (sent, never delivered), which a broker may do.
fn put_losses(qos: QoS, v: &mut Value, losses: u64, sent: u64, distinct: u64) {
    if qos == QoS::AtMostOnce {
        v["losses"] = Value::Null;
        v["dropped"] = json!(sent.saturating_sub(distinct));
    } else {
        v["losses"] = json!(losses);
    }
}
