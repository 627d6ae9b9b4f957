//! The two loops every message scenario is made of: a publisher that sends
//! as fast as its window of unacknowledged QoS 1 messages (or a rate)
//! allows, and a subscriber that counts, de-duplicates and times what it
//! receives.
//!
//! A publisher keeps at most `window` PUBLISH packets without PUBACK; as
//! PUBACKs arrive in order (MQTT 4.6), the acknowledged messages are always
//! sequence numbers `0..acked`, which is what the loss count relies on.

use std::time::Duration;

use bulwark_mqtt::{Packet, PubResponse, QoS};
use tokio::sync::watch;
use tokio::time::{sleep_until, Instant};

use super::{header, parse_header};
use crate::mqtt::{Conn, Failure, PublishTemplate};
use crate::stats::micros;

/// QoS 0 messages written per flush.
const QOS0_BATCH: usize = 16;
/// Largest sequence number a subscriber tracks (a guard against garbage).
const MAX_TRACKED_SEQ: u64 = 1 << 32;

/// How one publisher runs.
pub(crate) struct PubPlan {
    pub(crate) index: u32,
    pub(crate) qos: QoS,
    pub(crate) window: usize,
    /// Time between two messages of this publisher, when rate-limited.
    pub(crate) gap: Option<Duration>,
    pub(crate) start: Instant,
    pub(crate) deadline: Instant,
    pub(crate) drain: Duration,
    /// Zero of the send times written into payloads.
    pub(crate) epoch: Instant,
}

/// What one publisher did.
#[derive(Debug, Default)]
pub(crate) struct PubResult {
    /// Messages written.
    pub(crate) sent: u64,
    /// QoS 1: messages acknowledged with success (sequence numbers `0..acked`
    /// when `refused` is 0).
    pub(crate) acked: u64,
    /// Acknowledged (QoS 1) or written (QoS 0) before the deadline.
    pub(crate) in_window: u64,
    /// QoS 1: PUBACKs with an error reason code.
    pub(crate) refused: u64,
    /// PUBACKs whose packet identifier was not the next expected one.
    pub(crate) out_of_order: u64,
    pub(crate) error: Option<Failure>,
}

/// Publishes from `plan.start` until `plan.deadline`, then waits (bounded)
/// for the outstanding PUBACKs, then disconnects.
pub(crate) async fn publish(mut conn: Conn, tpl: PublishTemplate, plan: PubPlan) -> PubResult {
    let mut r = PubResult::default();
    if let Err(e) = publish_loop(&mut conn, &tpl, &plan, &mut r).await {
        r.error = Some(e);
    }
    conn.close().await;
    r
}

async fn publish_loop(
    conn: &mut Conn,
    tpl: &PublishTemplate,
    plan: &PubPlan,
    r: &mut PubResult,
) -> Result<(), Failure> {
    let qos1 = plan.qos != QoS::AtMostOnce;
    let window = if qos1 {
        plan.window.min(usize::from(conn.receive_maximum)).max(1)
    } else {
        QOS0_BATCH
    };
    let mut inflight = 0usize;
    let mut next_id: u16 = 1;
    sleep_until(plan.start).await;
    loop {
        let now = Instant::now();
        if now >= plan.deadline {
            break;
        }
        let mut room = window - inflight;
        let mut next_due = plan.deadline;
        if let Some(gap) = plan.gap {
            let gap_ns = gap.as_nanos().max(1);
            let allowed = (now.duration_since(plan.start).as_nanos() / gap_ns) as u64 + 1;
            room = room.min(allowed.saturating_sub(r.sent) as usize);
            let due_ns = u64::try_from(gap_ns * u128::from(r.sent)).unwrap_or(u64::MAX);
            next_due = next_due.min(plan.start + Duration::from_nanos(due_ns));
        }
        if room > 0 {
            let sent_ns = u64::try_from(plan.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
            for _ in 0..room {
                let h = header(plan.index, r.sent, sent_ns);
                tpl.push(conn.wbuf(), next_id, &h);
                r.sent += 1;
                if qos1 {
                    inflight += 1;
                    next_id = next_id.checked_add(1).unwrap_or(1);
                }
            }
            conn.flush().await?;
            if !qos1 {
                r.in_window = r.sent;
            }
            if !qos1 || inflight < window {
                continue;
            }
        }
        if qos1 && inflight > 0 {
            tokio::select! {
                res = conn.read_more() => {
                    res?;
                    take_acks(conn, r, &mut inflight)?;
                    r.in_window = r.acked;
                }
                _ = sleep_until(next_due) => {}
            }
        } else {
            sleep_until(next_due).await;
        }
    }
    if qos1 {
        let until = Instant::now() + plan.drain;
        while inflight > 0 {
            tokio::time::timeout_at(until, conn.read_more())
                .await
                .map_err(|_| Failure::Timeout("waiting for the last PUBACKs"))??;
            take_acks(conn, r, &mut inflight)?;
        }
    }
    Ok(())
}

/// Counts the PUBACKs already read.
fn take_acks(conn: &mut Conn, r: &mut PubResult, inflight: &mut usize) -> Result<(), Failure> {
    while let Some(p) = conn.next_packet()? {
        match p {
            Packet::PubAck(ack) => {
                let expected = ((r.acked + r.refused) % 65_535) as u16 + 1;
                if ack.packet_id.get() != expected {
                    r.out_of_order += 1;
                }
                if ack.reason_code.is_error() {
                    r.refused += 1;
                } else {
                    r.acked += 1;
                }
                *inflight = inflight.saturating_sub(1);
            }
            Packet::PingResp => {}
            Packet::Disconnect(d) => return Err(Failure::Disconnected(d.reason_code)),
            other => return Err(Failure::Unexpected(other.packet_type().name())),
        }
    }
    Ok(())
}

/// When a subscriber stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stop {
    /// Keep receiving.
    Running,
    /// Stop once this many distinct messages have arrived.
    AtDistinct(u64),
    /// Stop now.
    Now,
}

/// What a subscriber received.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    /// One bit per sequence number, per publisher.
    seen: Vec<Vec<u64>>,
    pub(crate) received: u64,
    pub(crate) distinct: u64,
    pub(crate) duplicates: u64,
    /// Received before the deadline.
    pub(crate) in_window: u64,
    /// Payloads without a valid header or from an unknown publisher.
    pub(crate) foreign: u64,
    /// End-to-end latencies, µs, when asked for.
    pub(crate) latencies_us: Option<Vec<u32>>,
    pub(crate) error: Option<Failure>,
}

impl Tracker {
    pub(crate) fn new(publishers: usize, latencies: Option<usize>) -> Self {
        Tracker {
            seen: vec![Vec::new(); publishers],
            latencies_us: latencies.map(Vec::with_capacity),
            ..Tracker::default()
        }
    }

    fn record(&mut self, payload: &[u8], now_ns: u64, in_window: bool) {
        self.received += 1;
        let Some((publisher, seq, sent_ns)) = parse_header(payload) else {
            self.foreign += 1;
            return;
        };
        let Some(bits) = self.seen.get_mut(publisher as usize) else {
            self.foreign += 1;
            return;
        };
        if seq >= MAX_TRACKED_SEQ {
            self.foreign += 1;
            return;
        }
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= bits.len() {
            bits.resize((word + 1).next_power_of_two(), 0);
        }
        if bits[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return;
        }
        bits[word] |= 1 << bit;
        self.distinct += 1;
        if in_window {
            self.in_window += 1;
        }
        if let Some(l) = &mut self.latencies_us {
            l.push(micros(Duration::from_nanos(now_ns.saturating_sub(sent_ns))));
        }
    }

    /// How many of `publisher`'s sequence numbers `0..acked` never arrived.
    pub(crate) fn missing(&self, publisher: usize, acked: u64) -> u64 {
        let bits = self.seen.get(publisher).map_or(&[][..], Vec::as_slice);
        let full = (acked / 64) as usize;
        let mut have: u64 = bits
            .iter()
            .take(full)
            .map(|w| u64::from(w.count_ones()))
            .sum();
        let rest = acked % 64;
        if rest > 0 {
            let w = bits.get(full).copied().unwrap_or(0);
            have += u64::from((w & ((1u64 << rest) - 1)).count_ones());
        }
        acked - have
    }
}

/// How one subscriber runs.
pub(crate) struct SubPlan {
    /// Messages after this instant are not counted in `in_window`.
    pub(crate) deadline: Instant,
    pub(crate) keepalive: Duration,
    pub(crate) epoch: Instant,
}

/// Receives until `stop` says so (the connection must already be
/// subscribed), acknowledging QoS 1 messages; then disconnects.
pub(crate) async fn subscribe(
    mut conn: Conn,
    mut tracker: Tracker,
    plan: SubPlan,
    mut stop: watch::Receiver<Stop>,
) -> Tracker {
    if let Err(e) = subscribe_loop(&mut conn, &mut tracker, &plan, &mut stop).await {
        tracker.error = Some(e);
    }
    conn.close().await;
    tracker
}

async fn subscribe_loop(
    conn: &mut Conn,
    t: &mut Tracker,
    plan: &SubPlan,
    stop: &mut watch::Receiver<Stop>,
) -> Result<(), Failure> {
    let ping_every = plan.keepalive / 2;
    let mut last_write = Instant::now();
    loop {
        let done = match *stop.borrow_and_update() {
            Stop::Running => false,
            Stop::AtDistinct(n) => t.distinct >= n,
            Stop::Now => true,
        };
        if done {
            return Ok(());
        }
        tokio::select! {
            res = conn.read_more() => {
                res?;
                let now = Instant::now();
                let now_ns = u64::try_from(now.duration_since(plan.epoch).as_nanos()).unwrap_or(u64::MAX);
                let in_window = now < plan.deadline;
                while let Some(p) = conn.next_packet()? {
                    match p {
                        Packet::Publish(msg) => {
                            t.record(&msg.payload, now_ns, in_window);
                            if let (QoS::AtLeastOnce, Some(id)) = (msg.qos, msg.packet_id) {
                                conn.queue(&Packet::PubAck(PubResponse::new(id)))?;
                            } else if msg.qos == QoS::ExactlyOnce {
                                return Err(Failure::Unexpected("QoS 2 PUBLISH"));
                            }
                        }
                        Packet::PingResp => {}
                        Packet::Disconnect(d) => return Err(Failure::Disconnected(d.reason_code)),
                        other => return Err(Failure::Unexpected(other.packet_type().name())),
                    }
                }
                if conn.has_queued() {
                    conn.flush().await?;
                    last_write = now;
                }
            }
            changed = stop.changed() => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracker_counts_losses_and_duplicates() {
        let mut t = Tracker::new(2, Some(8));
        let msg = |p, s| header(p, s, 0).to_vec();
        for s in [0, 1, 2, 4, 70] {
            t.record(&msg(0, s), 1_000, true);
        }
        t.record(&msg(0, 2), 1_000, false);
        t.record(&msg(5, 0), 1_000, true);
        t.record(b"short", 1_000, true);
        assert_eq!(
            (t.received, t.distinct, t.duplicates, t.foreign),
            (8, 5, 1, 2)
        );
        assert_eq!(t.missing(0, 5), 1); // 3 is missing
        assert_eq!(t.missing(0, 71), 71 - 5);
        assert_eq!(t.missing(0, 0), 0);
        assert_eq!(t.missing(1, 3), 3);
        assert_eq!(t.latencies_us.as_ref().unwrap().len(), 5);
    }
}
