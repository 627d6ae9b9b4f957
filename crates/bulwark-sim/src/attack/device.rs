//! One simulated device on its own mTLS MQTT connection: the benign
//! background every device runs, and the attacks a compromised device runs
//! on that same connection (a device cannot hold two sessions).
//!
//! Benign: telemetry (QoS 0) at the device's own rate (0.2–2 msg/s, each
//! gap drawn from 0.5–1.5× the mean; in `benign`, times the daily cycle),
//! the inventory report (QoS 1) after every connect, the posture report
//! (QoS 1) after every connect and every 8–12 s, a reconnect now and then
//! (exponential, mean 10 min), PINGREQ when idle; after a failure or a
//! server disconnect it reconnects with jittered back-off (1 s doubling to
//! 30 s), as the agent does. In `benign`, the reconnect wave and the
//! firmware wave each make it reconnect once (the firmware wave after a
//! 3–10 s "reboot", reporting the newer version).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulwark_mqtt::{
    Packet, PacketId, Properties, PubResponse, Publish, QoS, Subscribe, Subscription,
    SubscriptionOptions, TopicFilter, TopicName,
};
use rand::rngs::StdRng;
use rand::Rng;
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep, sleep_until, Instant};

use super::payload::{self, PostureProfile};
use crate::identity::Device;
use crate::mqtt::{Conn, Failure, PublishTemplate, Session};
use crate::net::Broker;
use crate::stats::Errors;

/// Read buffer kept free on a device connection.
const READ_CHUNK: usize = 4096;
/// Mean time between a device's spontaneous reconnects.
const RECONNECT_MEAN: Duration = Duration::from_secs(600);
/// Mean time between posture reports (each drawn from 0.8–1.2× of it).
const POSTURE_EVERY: Duration = Duration::from_secs(10);
/// Longest back-off between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// QoS 0 messages the flood writes per round.
const FLOOD_QOS0_BATCH: usize = 32;
/// Payload of one flood message.
const FLOOD_PAYLOAD: usize = 64;
/// Payload of one exfiltration message.
pub(crate) const EXFIL_PAYLOAD: usize = 64 * 1024;
/// Exfiltration messages per second (768 KiB/s, under the gateway's
/// default 1 MiB/s per-device volume limit, so they mostly get through).
pub(crate) const EXFIL_PER_SEC: u32 = 12;
/// Topic-scan operations (one SUBSCRIBE or PUBLISH) per second.
pub(crate) const SCAN_OPS_PER_SEC: u32 = 10;
/// Slow drift: the telemetry rate grows by this fraction of the benign
/// rate every second (linearly: 2.2× after a minute, 7× after 5 minutes).
pub(crate) const DRIFT_PER_SEC: f64 = 0.02;

/// An attack a device runs on its own connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InDevice {
    TopicScan,
    Flood,
    Exfiltration,
    PortScan,
    Downgrade,
    SlowDrift,
}

/// What one device does besides the benign background.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Role {
    Benign,
    Attacker { attack: InDevice, start: Instant },
}

/// The benign day (`benign` scenario only).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Day {
    pub(crate) start: Instant,
    pub(crate) period: Duration,
}

/// Counters all device tasks add to (read for progress and the summary).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) telemetry: AtomicU64,
    pub(crate) reports: AtomicU64,
    pub(crate) attack_messages: AtomicU64,
    pub(crate) attack_bytes: AtomicU64,
    pub(crate) attack_subscribes: AtomicU64,
    /// PUBACK/SUBACK with an error reason code (for any message).
    pub(crate) refused: AtomicU64,
    pub(crate) connects: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    /// Sessions ended by the server (DISCONNECT or close).
    pub(crate) server_disconnects: AtomicU64,
    pub(crate) planned_reconnects: AtomicU64,
    pub(crate) errors: Mutex<Errors>,
}

impl Counters {
    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    fn error(&self, e: &Failure) {
        if let Ok(mut errors) = self.errors.lock() {
            errors.add(e);
        }
    }
}

/// What every device task shares.
pub(crate) struct Shared {
    pub(crate) broker: Broker,
    pub(crate) session: Session,
    /// Handshakes in flight, at most.
    pub(crate) connecting: Semaphore,
    pub(crate) counters: Counters,
    /// The benign day, set once the fleet is connected.
    pub(crate) day: std::sync::OnceLock<Day>,
    /// Every simulated device's id (the topic scan names the others).
    pub(crate) fleet: Vec<String>,
}

/// One simulated device.
pub(crate) struct Sim {
    pub(crate) index: usize,
    pub(crate) device: Device,
    pub(crate) role: Role,
    /// Mean telemetry messages/s before the daily cycle.
    pub(crate) rate: f64,
    pub(crate) profile: PostureProfile,
    pub(crate) rng: StdRng,
    /// `benign`: when this device joins the reconnect wave and the firmware wave.
    pub(crate) waves: (Option<Instant>, Option<Instant>),
}

/// What a device remembers across its sessions.
struct State {
    firmware: String,
    next_reconnect: Instant,
    attack_began: bool,
    /// Attack messages or operations sent so far (paced attacks).
    attack_sent: u64,
}

/// Why a session ended.
enum End {
    Stop,
    /// Planned: reconnect after this pause.
    Reconnect(Duration),
}

/// Per-connection state.
struct Link {
    conn: Conn,
    next_id: u16,
    inflight: usize,
    window: usize,
    last_write: Instant,
}

impl Link {
    fn new(conn: Conn) -> Link {
        let window = usize::from(conn.receive_maximum).clamp(1, 64);
        Link {
            conn,
            next_id: 1,
            inflight: 0,
            window,
            last_write: Instant::now(),
        }
    }

    fn packet_id(&mut self) -> PacketId {
        let id = PacketId::new(self.next_id).unwrap_or(PacketId::from(std::num::NonZeroU16::MIN));
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        id
    }

    fn publish(&mut self, topic: &TopicName, payload: Vec<u8>, qos: QoS) -> Result<(), Failure> {
        let mut p = Publish::new(topic.clone(), payload);
        if qos != QoS::AtMostOnce {
            p.qos = qos;
            p.packet_id = Some(self.packet_id());
            self.inflight += 1;
        }
        self.conn.queue(&Packet::Publish(p))
    }

    fn subscribe(&mut self, filter: TopicFilter) -> Result<(), Failure> {
        let s = Subscribe {
            packet_id: self.packet_id(),
            properties: Properties::default(),
            subscriptions: vec![Subscription {
                filter,
                options: SubscriptionOptions::new(QoS::AtLeastOnce),
            }],
        };
        self.conn.queue(&Packet::Subscribe(s))
    }

    async fn flush(&mut self) -> Result<(), Failure> {
        if self.conn.has_queued() {
            self.conn.flush().await?;
            self.last_write = Instant::now();
        }
        Ok(())
    }

    /// Handles the packets already read.
    fn take(&mut self, counters: &Counters) -> Result<(), Failure> {
        while let Some(p) = self.conn.next_packet()? {
            match p {
                Packet::PubAck(ack) => {
                    self.inflight = self.inflight.saturating_sub(1);
                    if ack.reason_code.is_error() {
                        Counters::add(&counters.refused, 1);
                    }
                }
                Packet::SubAck(ack) => {
                    let refused = ack.reason_codes.iter().filter(|c| c.is_error()).count();
                    Counters::add(&counters.refused, refused as u64);
                }
                Packet::Publish(msg) => {
                    if let (QoS::AtLeastOnce, Some(id)) = (msg.qos, msg.packet_id) {
                        self.conn.queue(&Packet::PubAck(PubResponse::new(id)))?;
                    }
                }
                Packet::PingResp | Packet::UnsubAck(_) => {}
                Packet::Disconnect(d) => return Err(Failure::Disconnected(d.reason_code)),
                other => return Err(Failure::Unexpected(other.packet_type().name())),
            }
        }
        Ok(())
    }
}

/// Exponential draw with mean `mean`.
fn exponential(rng: &mut StdRng, mean: Duration) -> Duration {
    let u: f64 = rng.random_range(1e-6..1.0);
    Duration::from_secs_f64((-u.ln() * mean.as_secs_f64()).min(mean.as_secs_f64() * 10.0))
}

fn jitter(rng: &mut StdRng, d: Duration, lo: f64, hi: f64) -> Duration {
    d.mul_f64(rng.random_range(lo..hi))
}

impl Sim {
    fn attack(&self, now: Instant) -> Option<(InDevice, Duration)> {
        match self.role {
            Role::Attacker { attack, start } if now >= start => Some((attack, now - start)),
            _ => None,
        }
    }

    /// Mean telemetry rate now.
    fn telemetry_rate(&self, now: Instant, shared: &Shared) -> f64 {
        let mut rate = self.rate;
        if let Some(day) = shared.day.get() {
            let into = now.saturating_duration_since(day.start).as_secs_f64();
            rate *= payload::diurnal_factor(into, day.period.as_secs_f64());
        }
        if let Some((InDevice::SlowDrift, since)) = self.attack(now) {
            rate *= 1.0 + DRIFT_PER_SEC * since.as_secs_f64();
        }
        rate.max(0.01)
    }

    fn next_gap(&mut self, now: Instant, shared: &Shared) -> Duration {
        let mean = 1.0 / self.telemetry_rate(now, shared);
        Duration::from_secs_f64(mean * self.rng.random_range(0.5..1.5))
    }

    /// Runs the device until `stop`, starting on `conn` (when the initial
    /// connect succeeded).
    pub(crate) async fn run(
        mut self,
        shared: Arc<Shared>,
        mut conn: Option<Conn>,
        mut stop: watch::Receiver<bool>,
    ) {
        let id = self.device.id.to_string();
        let mut backoff = Duration::from_secs(1);
        let mut state = State {
            firmware: payload::FIRMWARE.to_owned(),
            next_reconnect: Instant::now() + exponential(&mut self.rng, RECONNECT_MEAN),
            attack_began: false,
            attack_sent: 0,
        };
        loop {
            if *stop.borrow() {
                return;
            }
            let c = match conn.take() {
                Some(c) => c,
                None => {
                    let opened = {
                        let _permit = shared.connecting.acquire().await;
                        Conn::open(
                            &shared.broker,
                            &shared.session,
                            self.device.tls.clone(),
                            &id,
                            READ_CHUNK,
                        )
                        .await
                    };
                    match opened {
                        Ok(c) => {
                            Counters::add(&shared.counters.connects, 1);
                            c
                        }
                        Err(e) => {
                            Counters::add(&shared.counters.connect_failures, 1);
                            shared.counters.error(&e);
                            let pause = jitter(&mut self.rng, backoff, 0.5, 1.5);
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                            tokio::select! {
                                _ = sleep(pause) => continue,
                                _ = stop.changed() => return,
                            }
                        }
                    }
                }
            };
            backoff = Duration::from_secs(1);
            let mut link = Link::new(c);
            let end = self
                .session(&shared, &mut link, &id, &mut state, &mut stop)
                .await;
            match end {
                Ok(End::Stop) => {
                    link.conn.close().await;
                    return;
                }
                Ok(End::Reconnect(pause)) => {
                    Counters::add(&shared.counters.planned_reconnects, 1);
                    link.conn.close().await;
                    tokio::select! {
                        _ = sleep(pause) => {}
                        _ = stop.changed() => return,
                    }
                }
                Err(e) => {
                    Counters::add(&shared.counters.server_disconnects, 1);
                    shared.counters.error(&e);
                    drop(link);
                    let pause = jitter(&mut self.rng, backoff, 0.5, 1.5);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    tokio::select! {
                        _ = sleep(pause) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }

    /// One connected session: reports first, then the schedule.
    async fn session(
        &mut self,
        shared: &Shared,
        link: &mut Link,
        id: &str,
        st: &mut State,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<End, Failure> {
        let name = |suffix: &str| {
            TopicName::new(payload::topic(id, suffix)).map_err(|_| Failure::Unexpected("topic"))
        };
        let (t_telemetry, t_inventory, t_posture) =
            (name("telemetry")?, name("inventory")?, name("posture")?);
        let counters = &shared.counters;
        let scanning = |s: &Sim, now| matches!(s.attack(now), Some((InDevice::PortScan, _)));

        let now = Instant::now();
        link.publish(
            &t_inventory,
            payload::inventory(id, &st.firmware),
            QoS::AtLeastOnce,
        )?;
        let scan = scanning(self, now);
        let posture = self.profile.report(scan, &mut self.rng);
        link.publish(&t_posture, posture, QoS::AtLeastOnce)?;
        Counters::add(&counters.reports, 2);
        // The attack's reports: a downgraded inventory, a scanning posture.
        let forged = u64::from(st.firmware == payload::FIRMWARE_DOWNGRADED) + u64::from(scan);
        Counters::add(&counters.attack_messages, forged);
        link.flush().await?;

        let keepalive = Duration::from_secs(u64::from(shared.session.keepalive));
        let mut seq = 0u64;
        let mut next_telemetry = now + self.next_gap(now, shared);
        let mut next_posture = now + jitter(&mut self.rng, POSTURE_EVERY, 0.8, 1.2);
        let flood = (
            PublishTemplate::new(
                shared.session.version,
                t_telemetry.as_str(),
                QoS::AtMostOnce,
                FLOOD_PAYLOAD,
            )?,
            PublishTemplate::new(
                shared.session.version,
                t_telemetry.as_str(),
                QoS::AtLeastOnce,
                FLOOD_PAYLOAD,
            )?,
        );
        let mut exfil: Option<bytes::Bytes> = None;
        let t_exfil = name("logs/upload")?;
        loop {
            if *stop.borrow() {
                return Ok(End::Stop);
            }
            let now = Instant::now();
            let mut wake = next_telemetry.min(next_posture).min(st.next_reconnect);

            // Benign waves (`benign` only).
            if self.waves.0.is_some_and(|at| now >= at) {
                self.waves.0 = None;
                return Ok(End::Reconnect(jitter(
                    &mut self.rng,
                    Duration::from_secs(2),
                    0.25,
                    1.5,
                )));
            }
            if self.waves.1.is_some_and(|at| now >= at) {
                self.waves.1 = None;
                st.firmware = payload::FIRMWARE_UPDATED.to_owned();
                let reboot = Duration::from_secs_f64(self.rng.random_range(3.0..10.0));
                return Ok(End::Reconnect(reboot));
            }
            for at in [self.waves.0, self.waves.1].into_iter().flatten() {
                wake = wake.min(at);
            }
            if now >= st.next_reconnect {
                st.next_reconnect = now + exponential(&mut self.rng, RECONNECT_MEAN);
                return Ok(End::Reconnect(jitter(
                    &mut self.rng,
                    Duration::from_secs(2),
                    0.25,
                    1.5,
                )));
            }

            // The attack's first moment.
            let attack = self.attack(now);
            if let (Some((kind, _)), false) = (attack, st.attack_began) {
                st.attack_began = true;
                match kind {
                    InDevice::Downgrade => {
                        // Flashed with old firmware: it reboots and reports it.
                        st.firmware = payload::FIRMWARE_DOWNGRADED.to_owned();
                        return Ok(End::Reconnect(Duration::from_secs(2)));
                    }
                    InDevice::PortScan => next_posture = now,
                    _ => {}
                }
            }

            if now >= next_telemetry {
                seq += 1;
                let body = payload::telemetry(seq, payload::unix_ms(), &mut self.rng);
                link.publish(&t_telemetry, body, QoS::AtMostOnce)?;
                Counters::add(&counters.telemetry, 1);
                if matches!(self.attack(now), Some((InDevice::SlowDrift, _))) {
                    Counters::add(&counters.attack_messages, 1);
                }
                next_telemetry = now + self.next_gap(now, shared);
                wake = wake.min(next_telemetry);
            }
            if now >= next_posture {
                let scan = scanning(self, now);
                let body = self.profile.report(scan, &mut self.rng);
                link.publish(&t_posture, body, QoS::AtLeastOnce)?;
                Counters::add(&counters.reports, 1);
                Counters::add(&counters.attack_messages, u64::from(scan));
                next_posture = now + jitter(&mut self.rng, POSTURE_EVERY, 0.8, 1.2);
                wake = wake.min(next_posture);
            }

            match attack {
                Some((InDevice::Flood, _)) => {
                    let mut n = 0u64;
                    for _ in 0..FLOOD_QOS0_BATCH {
                        flood.0.push(link.conn.wbuf(), 0, b"");
                        n += 1;
                    }
                    while link.inflight < link.window {
                        let pid = link.packet_id().get();
                        flood.1.push(link.conn.wbuf(), pid, b"");
                        link.inflight += 1;
                        n += 1;
                    }
                    Counters::add(&counters.attack_messages, n);
                    Counters::add(&counters.attack_bytes, n * FLOOD_PAYLOAD as u64);
                    wake = now;
                }
                Some((InDevice::Exfiltration, since)) => {
                    let due = paced(&mut st.attack_sent, since, EXFIL_PER_SEC);
                    let body = exfil.get_or_insert_with(|| {
                        let mut b = vec![0u8; EXFIL_PAYLOAD];
                        self.rng.fill(&mut b[..]);
                        b.into()
                    });
                    while st.attack_sent < due && link.inflight < link.window {
                        let mut p = Publish::new(t_exfil.clone(), body.clone());
                        p.qos = QoS::AtLeastOnce;
                        p.packet_id = Some(link.packet_id());
                        link.inflight += 1;
                        link.conn.queue(&Packet::Publish(p))?;
                        st.attack_sent += 1;
                        Counters::add(&counters.attack_messages, 1);
                        Counters::add(&counters.attack_bytes, EXFIL_PAYLOAD as u64);
                    }
                    let next =
                        Duration::from_secs_f64((st.attack_sent as f64) / f64::from(EXFIL_PER_SEC));
                    if let Role::Attacker { start, .. } = self.role {
                        wake = wake.min(start + next);
                    }
                }
                Some((InDevice::TopicScan, since)) => {
                    let due = paced(&mut st.attack_sent, since, SCAN_OPS_PER_SEC);
                    while st.attack_sent < due {
                        let step = scan_step(st.attack_sent, self.index, &shared.fleet);
                        st.attack_sent += 1;
                        match step {
                            ScanStep::Subscribe(f) => match TopicFilter::new(f) {
                                Ok(f) => {
                                    link.subscribe(f)?;
                                    Counters::add(&counters.attack_subscribes, 1);
                                }
                                Err(_) => continue,
                            },
                            ScanStep::Publish(t) => match TopicName::new(t) {
                                Ok(t) => {
                                    let body = br#"{"release":"implant-0.0.1"}"#.to_vec();
                                    link.publish(&t, body, QoS::AtLeastOnce)?;
                                    Counters::add(&counters.attack_messages, 1);
                                }
                                Err(_) => continue,
                            },
                        }
                    }
                    let next = Duration::from_secs_f64(
                        (st.attack_sent as f64) / f64::from(SCAN_OPS_PER_SEC),
                    );
                    if let Role::Attacker { start, .. } = self.role {
                        wake = wake.min(start + next);
                    }
                }
                _ => {}
            }
            if !link.conn.has_queued() && now >= link.last_write + keepalive / 2 {
                link.conn.queue(&Packet::PingReq)?;
            }
            link.flush().await?;
            wake = wake.min(link.last_write + keepalive / 2);

            tokio::select! {
                biased;
                r = link.conn.read_more() => {
                    r?;
                    link.take(counters)?;
                }
                _ = stop.changed() => {}
                _ = sleep_until(wake) => {}
            }
        }
    }
}

/// How many messages of a paced attack are due `since` its start at
/// `per_sec`; a backlog of more than a second (after a reconnect) is
/// skipped rather than sent in a burst.
fn paced(sent: &mut u64, since: Duration, per_sec: u32) -> u64 {
    let due = (since.as_secs_f64() * f64::from(per_sec)) as u64 + 1;
    if due > *sent + u64::from(per_sec) {
        *sent = due - 1;
    }
    due
}

/// One step of the topic scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScanStep {
    Subscribe(String),
    Publish(String),
}

/// Step `n` of the topic scan of device `me`: wildcards, `$SYS`, other
/// devices' topics (a different device each round), topics outside
/// `devices/`.
pub(crate) fn scan_step(n: u64, me: usize, fleet: &[String]) -> ScanStep {
    const STEPS: u64 = 12;
    let other = if fleet.len() > 1 {
        let k = (n / STEPS) as usize % (fleet.len() - 1);
        fleet[(me + 1 + k) % fleet.len()].as_str()
    } else {
        "dev-0000"
    };
    use ScanStep::{Publish as P, Subscribe as S};
    match n % STEPS {
        0 => S("#".into()),
        1 => S("$SYS/#".into()),
        2 => S("+/+/#".into()),
        3 => S(format!("devices/{other}/commands/#")),
        4 => P(format!("devices/{other}/commands/ota")),
        5 => S(format!("devices/{other}/telemetry")),
        6 => P(format!("devices/{other}/telemetry")),
        7 => S("devices/+/inventory".into()),
        8 => P("fleet/broadcast".into()),
        9 => S("$share/scan/devices/#".into()),
        10 => S(format!("devices/{other}/#")),
        _ => P(format!("devices/{other}/posture")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_scan_leaves_the_policy() {
        let fleet: Vec<String> = (0..5).map(|i| format!("dev-{i}")).collect();
        let steps: Vec<ScanStep> = (0..48).map(|n| scan_step(n, 2, &fleet)).collect();
        // Never its own topics, and every other device is named.
        for s in &steps {
            let (ScanStep::Subscribe(t) | ScanStep::Publish(t)) = s;
            assert!(!t.starts_with("devices/dev-2/"), "{t}");
            assert!(TopicFilter::new(t.as_str()).is_ok(), "{t}");
        }
        for other in ["dev-0", "dev-1", "dev-3", "dev-4"] {
            assert!(steps.contains(&ScanStep::Subscribe(format!("devices/{other}/#"))));
        }
        assert!(steps.contains(&ScanStep::Subscribe("$SYS/#".into())));
        assert_eq!(
            scan_step(0, 0, &fleet[..1]),
            ScanStep::Subscribe("#".into())
        );
    }
}
