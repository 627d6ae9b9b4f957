//! Unit tests, one module per detector, on a small simulated fleet.

mod baseline;
mod bounds;
mod config;
mod forest;
mod novelty;
mod rules;

use std::net::IpAddr;

use crate::mix::Rng;
use crate::{DetectConfig, Engine, EntityRef, Finding, ObsKind, Observation, Proto};

pub(crate) const W: u64 = 1000;

/// Poisson sample (Knuth for small means, rounded normal above 30).
pub(crate) fn poisson(rng: &mut Rng, mean: f64) -> u64 {
    if mean <= 0.0 {
        return 0;
    }
    if mean > 30.0 {
        let u1 = rng.next_f64().max(1e-12);
        let u2 = rng.next_f64();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        return (mean + z * mean.sqrt()).round().max(0.0) as u64;
    }
    let l = (-mean).exp();
    let mut k = 0;
    let mut p = 1.0;
    loop {
        p *= rng.next_f64();
        if p <= l {
            return k;
        }
        k += 1;
    }
}

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

/// A finding with the (0-based) window that produced it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub window: u64,
    pub finding: Finding,
}

/// The engine plus a simulated clock that moves one window per `step`.
pub(crate) struct Sim {
    pub engine: Engine,
    pub window: u64,
    pub seen: Vec<Seen>,
    pub rng: Rng,
}

/// One simulated device with a stationary, noisy workload.
#[derive(Debug, Clone)]
pub(crate) struct Device {
    pub id: String,
    pub group: Option<String>,
    pub rate: f64,
    pub topics: Vec<String>,
    pub ports: Vec<(Proto, u16)>,
    pub destinations: Vec<IpAddr>,
    pub source: IpAddr,
}

impl Device {
    pub(crate) fn new(i: usize, group: Option<&str>, rate: f64) -> Device {
        Device {
            id: format!("d{i}"),
            group: group.map(str::to_owned),
            rate,
            topics: (0..3).map(|t| format!("devices/d{i}/t{t}")).collect(),
            ports: vec![(Proto::Tcp, 22), (Proto::Udp, 5353)],
            destinations: vec![ip("10.0.0.1"), ip("10.0.0.2")],
            source: ip(&format!("192.168.1.{}", i % 250 + 1)),
        }
    }

    pub(crate) fn entity(&self) -> EntityRef<'_> {
        EntityRef::Device {
            id: &self.id,
            group: self.group.as_deref(),
        }
    }

    pub(crate) fn key(&self) -> String {
        format!("device:{}", self.id)
    }
}

impl Sim {
    pub(crate) fn new(cfg: DetectConfig) -> Sim {
        let engine = match Engine::new(cfg) {
            Ok(e) => e,
            Err(e) => panic!("config: {e}"),
        };
        Sim {
            engine,
            window: 0,
            seen: Vec::new(),
            rng: Rng::new(42),
        }
    }

    pub(crate) fn start(&self) -> u64 {
        self.window * W
    }

    pub(crate) fn at(&self, i: u64, n: u64) -> u64 {
        self.start() + (i * W) / n.max(1)
    }

    pub(crate) fn obs(&mut self, entity: EntityRef<'_>, at_ms: u64, kind: ObsKind<'_>) {
        self.engine.observe(&Observation {
            entity,
            at_ms,
            kind,
        });
    }

    /// Ends the current window; returns its findings.
    pub(crate) fn tick(&mut self) -> Vec<Finding> {
        self.window += 1;
        let found = self.engine.tick(self.window * W);
        for f in &found {
            self.seen.push(Seen {
                window: self.window - 1,
                finding: f.clone(),
            });
        }
        found
    }

    /// `n` messages of about `bytes` from `d` spread over the window.
    pub(crate) fn messages(&mut self, d: &Device, n: u64, bytes: u32) {
        for i in 0..n {
            let t = self.rng.below(d.topics.len());
            let jitter = self.rng.below(64) as u32;
            let at = self.at(i, n);
            let topic = d.topics[t].clone();
            self.obs(
                d.entity(),
                at,
                ObsKind::MessageIn {
                    topic: &topic,
                    bytes: bytes.saturating_add(jitter),
                },
            );
        }
    }

    pub(crate) fn posture(&mut self, d: &Device) {
        let at = self.start();
        self.obs(
            d.entity(),
            at,
            ObsKind::Posture {
                listening_ports: &d.ports,
                destinations: &d.destinations,
                established: 2,
                processes: 40,
            },
        );
    }

    /// One benign window of `d`: Poisson messages, some deliveries, a
    /// posture report every 10 windows, a connect at window 0.
    pub(crate) fn benign(&mut self, d: &Device) {
        if self.window == 0 {
            let at = self.start();
            self.obs(d.entity(), at, ObsKind::Connect { source: d.source });
            for t in d.topics.clone() {
                self.obs(
                    d.entity(),
                    at,
                    ObsKind::MessageIn {
                        topic: &t,
                        bytes: 100,
                    },
                );
            }
        }
        if self.window.checked_rem(10) == Some(0) {
            self.posture(d);
        }
        let n = poisson(&mut self.rng, d.rate);
        let bytes = 100 + self.rng.below(300) as u32;
        self.messages(d, n, bytes);
        let out = poisson(&mut self.rng, 0.5);
        for i in 0..out {
            let at = self.at(i, out);
            self.obs(
                d.entity(),
                at,
                ObsKind::MessageOut {
                    messages: 1,
                    bytes: 200,
                },
            );
        }
    }

    /// Runs `windows` benign windows of the whole fleet.
    pub(crate) fn run_benign(&mut self, fleet: &[Device], windows: u64) {
        for _ in 0..windows {
            for d in fleet {
                self.benign(d);
            }
            self.tick();
        }
    }

    pub(crate) fn by(&self, detector: &str) -> Vec<&Seen> {
        self.seen
            .iter()
            .filter(|s| s.finding.detector == detector)
            .collect()
    }
}

/// A fleet of `n` devices in one group with rates between 1 and 10 msg/s.
pub(crate) fn fleet(n: usize, group: &str) -> Vec<Device> {
    (0..n)
        .map(|i| {
            Device::new(
                i,
                Some(group),
                1.0 + 9.0 * (i as f64) / (n.max(2) - 1) as f64,
            )
        })
        .collect()
}

fn num(v: &serde_json::Value, key: &str) -> f64 {
    v.get(key)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(f64::NAN)
}

/// Ten simulated minutes of a noisy but stationary fleet raise nothing,
/// from any detector, for several seeds and fleet sizes.
#[test]
fn benign_fleet_raises_nothing() {
    for seed in 1..4u64 {
        let mut sim = Sim::new(DetectConfig {
            seed,
            ..DetectConfig::default()
        });
        sim.rng = Rng::new(seed * 77);
        let devices = fleet(18 + seed as usize, "meters");
        sim.run_benign(&devices, 600);
        let detectors: Vec<_> = sim
            .seen
            .iter()
            .map(|s| {
                (
                    s.window,
                    s.finding.detector.clone(),
                    s.finding.entity.clone(),
                )
            })
            .collect();
        assert!(
            detectors.is_empty(),
            "seed {seed}: benign fleet raised {detectors:?}"
        );
        let stats = sim.engine.stats();
        assert_eq!(stats.windows_closed, 600);
        assert!(stats.forest_fits >= 2, "{stats:?}");
        assert_eq!(stats.entities, devices.len() as u64);
        assert_eq!(stats.findings, 0);
    }
}
