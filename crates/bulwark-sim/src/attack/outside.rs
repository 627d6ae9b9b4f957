//! Attacks that come from outside a device's own connection: credential
//! stuffing from one source address, and a cloned certificate used from a
//! second source address.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use bulwark_mqtt::{Packet, Publish, TopicName};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep, sleep_until, Instant};

use super::payload;
use crate::identity::TlsSettings;
use crate::mqtt::{Conn, Failure, Session};
use crate::net::Broker;

/// Credential-stuffing attempts per second.
pub(crate) const STUFFING_PER_SEC: u32 = 50;
/// Attempts in flight at most (the server may make a failing source wait).
const STUFFING_IN_FLIGHT: usize = 256;
/// Distinct forged identities (certificates from the rogue CA).
const ROGUE_IDENTITIES: usize = 16;
/// Pause of the clone between two takeovers (drawn from 1–2×).
const CLONE_PAUSE: Duration = Duration::from_secs(1);
/// The clone's telemetry interval while it holds the session.
const CLONE_TELEMETRY: Duration = Duration::from_millis(500);

/// Outcomes, by kind, of the attacker's connection attempts.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub(crate) attempts: AtomicU64,
    /// Attempts not started because too many were still in flight.
    pub(crate) skipped: AtomicU64,
    outcomes: Mutex<BTreeMap<String, u64>>,
}

impl Tally {
    fn outcome(&self, what: &str) {
        if let Ok(mut m) = self.outcomes.lock() {
            *m.entry(what.to_owned()).or_default() += 1;
        }
    }

    pub(crate) fn to_json(&self) -> Value {
        let outcomes = self.outcomes.lock().map(|m| m.clone()).unwrap_or_default();
        json!({
            "attempts": self.attempts.load(Ordering::Relaxed),
            "skipped": self.skipped.load(Ordering::Relaxed),
            "outcomes": outcomes,
        })
    }
}

/// A short name for how an attempt ended.
fn classify(r: &Result<Conn, Failure>) -> String {
    match r {
        Ok(_) => "accepted".into(),
        Err(Failure::Tls(e)) => format!("tls: {}", short(&e.to_string())),
        Err(Failure::Refused(code)) => format!("connack: {code:?}"),
        Err(Failure::Timeout(what)) => format!("timeout: {what}"),
        Err(Failure::Tcp(e)) => format!("tcp: {:?}", e.kind()),
        Err(e) => short(&e.to_string()),
    }
}

/// At most 60 characters of an error message (the tally keys stay few).
fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

/// Certificates for some of the fleet's device ids, signed by a CA made
/// here (one the server never saw), with client configurations presenting
/// them.
pub(crate) fn rogue_identities(
    tls: &TlsSettings,
    ids: &[String],
) -> Result<Vec<(String, Arc<ClientConfig>)>> {
    let ca_key =
        rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("rogue CA key")?;
    let mut ca_params = rcgen::CertificateParams::new(vec![]).context("rogue CA")?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Bulwark Device CA");
    let ca_cert = ca_params.self_signed(&ca_key).context("rogue CA")?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let mut out = Vec::new();
    for id in ids.iter().take(ROGUE_IDENTITIES) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("key")?;
        let mut params = rcgen::CertificateParams::new(vec![]).context("leaf")?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, id.as_str());
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let leaf = params.signed_by(&key, &issuer).context("rogue leaf")?;
        let chain = vec![
            CertificateDer::from(leaf.der().to_vec()),
            CertificateDer::from(ca_cert.der().to_vec()),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        out.push((id.clone(), tls.client_config_with(chain, key)?));
    }
    Ok(out)
}

/// Where and when an outside attacker acts.
pub(crate) struct From {
    /// Dials from the attacker's own source address.
    pub(crate) broker: Arc<Broker>,
    pub(crate) session: Arc<Session>,
    pub(crate) start: Instant,
    pub(crate) stop: watch::Receiver<bool>,
    pub(crate) seed: u64,
}

/// Credential stuffing: from `start` until `stop`, [`STUFFING_PER_SEC`]
/// connection attempts a second, alternating a certificate from the rogue
/// CA (client id = the device id it names) and no certificate at all (a
/// guessed username and password in CONNECT).
pub(crate) async fn credential_stuffing(
    from: From,
    rogue: Vec<(String, Arc<ClientConfig>)>,
    anonymous: Arc<ClientConfig>,
    tally: Arc<Tally>,
) {
    let From {
        broker,
        session,
        start,
        mut stop,
        seed,
    } = from;
    const USERS: [&str; 6] = ["admin", "root", "mqtt", "device", "svc-telemetry", "ingest"];
    const PASSWORDS: [&str; 6] = ["admin", "123456", "password", "changeme", "mqtt", "bulwark"];
    let mut rng = StdRng::seed_from_u64(seed);
    let in_flight = Arc::new(Semaphore::new(STUFFING_IN_FLIGHT));
    let gap = Duration::from_secs(1) / STUFFING_PER_SEC;
    tokio::select! {
        _ = sleep_until(start) => {}
        _ = stop.changed() => return,
    }
    let mut n = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        if *stop.borrow() {
            break;
        }
        let due = start + gap * u32::try_from(n).unwrap_or(u32::MAX);
        tokio::select! {
            _ = sleep_until(due) => {}
            _ = stop.changed() => break,
        }
        n += 1;
        tally.attempts.fetch_add(1, Ordering::Relaxed);
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            tally.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let (tls, client_id, credentials) = if n % 2 == 0 && !rogue.is_empty() {
            let (id, tls) = &rogue[(n / 2) as usize % rogue.len()];
            (tls.clone(), id.clone(), None)
        } else {
            let user = USERS[rng.random_range(0..USERS.len())];
            let pass = PASSWORDS[rng.random_range(0..PASSWORDS.len())];
            let client_id = format!("{user}-{}", rng.random_range(0..1000));
            (
                anonymous.clone(),
                client_id,
                Some((user.to_owned(), pass.as_bytes().to_vec())),
            )
        };
        let (broker, session, tally) = (broker.clone(), session.clone(), tally.clone());
        tasks.spawn(async move {
            let r = Conn::open_with(&broker, &session, tls, &client_id, credentials, 1024).await;
            tally.outcome(&classify(&r));
            if let Ok(c) = r {
                c.close().await;
            }
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    tasks.abort_all();
}

/// Outcomes of the cloned certificate's connections.
#[derive(Debug, Default)]
pub(crate) struct CloneStats {
    pub(crate) connects: AtomicU64,
    pub(crate) refused: AtomicU64,
    /// Sessions of the clone ended by the server (taken over by the real
    /// device, or cut).
    pub(crate) lost: AtomicU64,
    pub(crate) messages: AtomicU64,
}

impl CloneStats {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "clone_connects": self.connects.load(Ordering::Relaxed),
            "clone_refused": self.refused.load(Ordering::Relaxed),
            "clone_sessions_lost": self.lost.load(Ordering::Relaxed),
            "clone_messages": self.messages.load(Ordering::Relaxed),
        })
    }
}

/// The clone: from `start`, connects with the attacker's own certificate
/// and client id (from the clone's source address), taking the session
/// over; publishes telemetry as the device while it holds it; when the real
/// device takes it back, waits 1–2 s and takes it again, until `stop`.
pub(crate) async fn cloned_certificate(
    from: From,
    tls: Arc<ClientConfig>,
    id: String,
    stats: Arc<CloneStats>,
) {
    let From {
        broker,
        session,
        start,
        mut stop,
        seed,
    } = from;
    let mut rng = StdRng::seed_from_u64(seed);
    let Ok(topic) = TopicName::new(payload::topic(&id, "telemetry")) else {
        return;
    };
    tokio::select! {
        _ = sleep_until(start) => {}
        _ = stop.changed() => return,
    }
    let mut seq = 0u64;
    while !*stop.borrow() {
        match Conn::open(&broker, &session, tls.clone(), &id, 4096).await {
            Ok(mut c) => {
                stats.connects.fetch_add(1, Ordering::Relaxed);
                let stopped = tokio::select! {
                    _ = hold(&mut c, &topic, &mut seq, &mut rng, &stats) => {
                        stats.lost.fetch_add(1, Ordering::Relaxed);
                        false
                    }
                    _ = stop.changed() => true,
                };
                if stopped {
                    c.close().await;
                    break;
                }
            }
            Err(_) => {
                stats.refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        let pause = CLONE_PAUSE.mul_f64(rng.random_range(1.0..2.0));
        tokio::select! {
            _ = sleep(pause) => {}
            _ = stop.changed() => break,
        }
    }
}

/// Publishes telemetry as the device until the server ends the session.
async fn hold(
    c: &mut Conn,
    topic: &TopicName,
    seq: &mut u64,
    rng: &mut StdRng,
    stats: &CloneStats,
) -> Failure {
    let run = async {
        loop {
            *seq += 1;
            let body = payload::telemetry(*seq, payload::unix_ms(), rng);
            c.queue(&Packet::Publish(Publish::new(topic.clone(), body)))?;
            c.flush().await?;
            stats.messages.fetch_add(1, Ordering::Relaxed);
            let until = Instant::now() + CLONE_TELEMETRY;
            while let Ok(r) = tokio::time::timeout_at(until, c.read_more()).await {
                r?;
                while let Some(p) = c.next_packet()? {
                    if let Packet::Disconnect(d) = p {
                        return Err::<(), _>(Failure::Disconnected(d.reason_code));
                    }
                }
            }
        }
    };
    match run.await {
        Err(e) => e,
        Ok(()) => Failure::Closed,
    }
}
