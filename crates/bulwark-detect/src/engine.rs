//! The engine: entity table (bounded, LRU eviction), the O(1) `observe` hot
//! path, counters and summaries. Closing windows and running the detectors
//! is in `tick.rs`.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use crate::config::DetectConfig;
use crate::entity::{Baselines, Entity, Group, Key, Ring};
use crate::finding::{BaselineSummary, EngineStats, EntitySummary, NoveltySummary, WindowSummary};
use crate::forest::{Forest, Reservoir};
use crate::metric::Metric;
use crate::mix::{hash_bytes, hash_ip, Rng};
use crate::novelty::{Check, Kind, Pending};
use crate::observation::{EntityRef, ObsKind, Observation};
use crate::validate::{CompiledRule, ConfigError};

/// Share of `max_entities` evicted at once when the table is full, so the
/// O(n) selection of the least recently seen is amortised over many inserts.
const EVICT_DIVISOR: usize = 32;

/// The detection engine. Single owner; feed it with [`Engine::observe`],
/// drive it with [`Engine::tick`].
#[derive(Debug)]
pub struct Engine {
    pub(crate) cfg: DetectConfig,
    pub(crate) rules: Vec<CompiledRule>,
    pub(crate) ring_len: usize,
    pub(crate) slots: Vec<Option<Entity>>,
    free: Vec<u32>,
    devices: HashMap<Box<str>, u32>,
    services: HashMap<Box<str>, u32>,
    sources: HashMap<IpAddr, u32>,
    pub(crate) live: usize,
    /// Entities active in the open window: (slot, generation).
    pub(crate) active: Vec<(u32, u64)>,
    /// Entities with an open period (`take_summaries`): (slot, generation).
    pub(crate) periods: Vec<(u32, u64)>,
    /// Whether closed windows are folded into periods (`set_summaries`).
    pub(crate) summaries: bool,
    seq: u64,
    next_generation: u64,
    pub(crate) groups: BTreeMap<Box<str>, Group>,
    /// Tracked devices per group (the group factor's denominator).
    pub(crate) group_members: HashMap<Box<str>, u32>,
    /// The open window's index (`time / window_ms`), once time is known.
    pub(crate) open: Option<u64>,
    pub(crate) forest: Option<Forest>,
    /// The score threshold in force (see `ForestConfig::quantile`).
    pub(crate) forest_threshold: f64,
    pub(crate) reservoir: Reservoir,
    pub(crate) windows_since_fit: u64,
    pub(crate) rng: Rng,
    hash_seed: u64,
    pub(crate) stats: EngineStats,
}

impl Engine {
    /// Validates `config` and builds an empty engine.
    pub fn new(config: DetectConfig) -> Result<Engine, ConfigError> {
        let rules = config.compile()?;
        let longest = rules.iter().map(|r| r.span).max().unwrap_or(1);
        let ring_len = (u64::from(config.history_windows).max(longest)) as usize;
        let seed = config.seed;
        let forest_threshold = config.forest.threshold;
        Ok(Engine {
            cfg: config,
            rules,
            ring_len,
            slots: Vec::new(),
            free: Vec::new(),
            devices: HashMap::new(),
            services: HashMap::new(),
            sources: HashMap::new(),
            live: 0,
            active: Vec::new(),
            periods: Vec::new(),
            summaries: true,
            seq: 0,
            next_generation: 0,
            groups: BTreeMap::new(),
            group_members: HashMap::new(),
            open: None,
            forest: None,
            forest_threshold,
            reservoir: Reservoir::default(),
            windows_since_fit: 0,
            rng: Rng::new(seed ^ 0x6f72_6573_7421),
            hash_seed: crate::mix::mix64(seed),
            stats: EngineStats::default(),
        })
    }

    pub fn config(&self) -> &DetectConfig {
        &self.cfg
    }

    /// Counts an observation into its entity's open window. O(1) amortised,
    /// allocates only for a new entity or a novel value; never produces
    /// findings (they come out of [`Engine::tick`]).
    pub fn observe(&mut self, obs: &Observation<'_>) {
        self.stats.observations += 1;
        let w = self.cfg.window_ms;
        let open = *self.open.get_or_insert(obs.at_ms / w);
        // Time is clamped into [open window start, open window end + one
        // window]: late events count in the open window, wild future ones
        // cannot poison the entity's clock.
        let start = open.saturating_mul(w);
        let at = obs
            .at_ms
            .clamp(start, start.saturating_add(w.saturating_mul(2)));
        let slot = self.slot_for(&obs.entity, open);
        self.seq += 1;
        let seq = self.seq;
        let Some(e) = self.slots.get_mut(slot as usize).and_then(Option::as_mut) else {
            return;
        };
        e.touched = seq;
        if !e.active {
            e.active = true;
            self.active.push((slot, e.generation));
        }
        if at < e.last_at {
            self.stats.clamped_times += 1;
        }
        let at = at.max(e.last_at);
        e.last_at = at;
        if let EntityRef::Device { group, .. } = obs.entity {
            match (group, &e.group) {
                (Some(g), Some(old)) if **old == *g => {}
                (g, _) => {
                    leave(&mut self.group_members, e.group.as_deref());
                    e.group = g.map(Into::into);
                    if let Some(g) = g {
                        *self.group_members.entry(g.into()).or_default() += 1;
                    }
                }
            }
        }

        let is_device = matches!(e.key, Key::Device(_));
        let learning = open.saturating_sub(e.first_window) < u64::from(self.cfg.learning_windows);
        let ncfg = &self.cfg.novelty;
        let seed = self.hash_seed;
        // (learned-set overflow, pending-queue drops) per novel value.
        let novel =
            |e: &mut Entity, kind: Kind, hash: u64, value: &dyn Fn() -> String| -> (u64, u64) {
                if !is_device || !ncfg.enabled {
                    return (0, 0);
                }
                let n = e.novelty.get_or_insert_with(Box::default);
                let set = n.set(kind);
                set.seen = set.seen.saturating_add(1);
                let learning = learning || set.seen <= ncfg.min_observations;
                let (event, overflow) = match set.check(hash, learning, ncfg.cap) {
                    Check::Known | Check::Learned => return (0, 0),
                    Check::Overflow => return (1, 0),
                    Check::New => (
                        Pending::New {
                            kind,
                            value: value(),
                        },
                        0,
                    ),
                    Check::Saturated => (
                        Pending::Saturated {
                            kind,
                            overflow: set.overflow,
                        },
                        1,
                    ),
                };
                (overflow, u64::from(!n.push(event, ncfg.max_pending)))
            };
        let mut missed = (0u64, 0u64);
        let mut tally = |m: (u64, u64)| {
            missed.0 += m.0;
            missed.1 += m.1;
        };
        let a = &mut e.acc;
        match obs.kind {
            ObsKind::MessageIn { topic, bytes } => {
                a.msgs_in = a.msgs_in.saturating_add(1);
                a.bytes_in = a.bytes_in.saturating_add(u64::from(bytes));
                a.payload_max = a.payload_max.max(u64::from(bytes));
                if let Some(prev) = e.last_msg_at {
                    a.add_gap(at.saturating_sub(prev));
                }
                e.last_msg_at = Some(at);
                let h = hash_bytes(seed, 1, topic.as_bytes());
                a.topics.insert(h);
                tally(novel(e, Kind::Topic, h, &|| topic.to_owned()));
            }
            ObsKind::MessageOut { messages, bytes } => {
                a.msgs_out = a.msgs_out.saturating_add(messages.into());
                a.bytes_out = a.bytes_out.saturating_add(bytes);
            }
            ObsKind::Connect { source } => {
                a.connects = a.connects.saturating_add(1);
                let h = hash_ip(seed, &source);
                a.sources.insert(h);
                tally(novel(e, Kind::Source, h, &|| source.to_string()));
                if is_device && ncfg.enabled {
                    let n = e.novelty.get_or_insert_with(Box::default);
                    if let Some(open) = n.connect(source) {
                        if !n.push(Pending::Concurrent { source, open }, ncfg.max_pending) {
                            tally((0, 1));
                        }
                    }
                }
            }
            ObsKind::Disconnect { normal } => {
                a.disconnects = a.disconnects.saturating_add(1);
                if !normal {
                    a.abnormal_disconnects = a.abnormal_disconnects.saturating_add(1);
                }
                if let Some(n) = e.novelty.as_mut() {
                    n.disconnect();
                }
            }
            ObsKind::AuthFailure { source } => {
                a.auth_failures = a.auth_failures.saturating_add(1);
                a.sources.insert(hash_ip(seed, &source));
            }
            ObsKind::Denied { .. } => a.denials = a.denials.saturating_add(1),
            ObsKind::Subscribe { filter } => {
                a.subscribes = a.subscribes.saturating_add(1);
                let h = hash_bytes(seed, 1, filter.as_bytes());
                a.topics.insert(h);
                tally(novel(e, Kind::Topic, h, &|| filter.to_owned()));
            }
            ObsKind::Posture {
                listening_ports,
                destinations,
                established,
                processes,
            } => {
                e.posture.listening_ports =
                    u32::try_from(listening_ports.len()).unwrap_or(u32::MAX);
                e.posture.destinations = u32::try_from(destinations.len()).unwrap_or(u32::MAX);
                e.posture.established = established;
                e.posture.processes = processes;
                for (proto, port) in listening_ports {
                    let tag = match proto {
                        crate::observation::Proto::Tcp => 2,
                        crate::observation::Proto::Udp => 3,
                    };
                    let h = hash_bytes(seed, tag, &port.to_be_bytes());
                    tally(novel(e, Kind::Port, h, &|| {
                        format!("{}/{port}", if tag == 2 { "tcp" } else { "udp" })
                    }));
                }
                for ip in destinations {
                    tally(novel(e, Kind::Destination, hash_ip(seed, ip), &|| {
                        ip.to_string()
                    }));
                }
            }
        }
        self.stats.novelty_overflow += missed.0;
        self.stats.novelty_dropped += missed.1;
    }

    /// The slot of `entity`, creating it (and evicting if full) when new.
    fn slot_for(&mut self, entity: &EntityRef<'_>, open: u64) -> u32 {
        let found = match entity {
            EntityRef::Device { id, .. } => self.devices.get(*id),
            EntityRef::Service(name) => self.services.get(*name),
            EntityRef::Source(ip) => self.sources.get(ip),
        };
        if let Some(&slot) = found {
            return slot;
        }
        if self.live >= self.cfg.max_entities {
            self.evict();
        }
        let key = match entity {
            EntityRef::Device { id, .. } => Key::Device((*id).into()),
            EntityRef::Service(name) => Key::Service((*name).into()),
            EntityRef::Source(ip) => Key::Source(*ip),
        };
        self.next_generation += 1;
        let e = Entity::new(
            key.clone(),
            self.next_generation,
            open,
            self.ring_len,
            self.rules.len(),
        );
        let slot = match self.free.pop() {
            Some(slot) => {
                if let Some(s) = self.slots.get_mut(slot as usize) {
                    *s = Some(e);
                }
                slot
            }
            None => {
                self.slots.push(Some(e));
                (self.slots.len() - 1) as u32
            }
        };
        match key {
            Key::Device(id) => self.devices.insert(id, slot),
            Key::Service(name) => self.services.insert(name, slot),
            Key::Source(ip) => self.sources.insert(ip, slot),
        };
        self.live += 1;
        slot
    }

    /// Evicts the least recently seen `max_entities / 32` (at least one).
    fn evict(&mut self) {
        let want = (self.cfg.max_entities / EVICT_DIVISOR).max(1);
        let mut ages: Vec<(u64, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|e| (e.touched, i as u32)))
            .collect();
        if ages.is_empty() {
            return;
        }
        let want = want.min(ages.len());
        if want < ages.len() {
            ages.select_nth_unstable(want - 1);
        }
        for &(_, slot) in &ages[..want] {
            let Some(e) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
                continue;
            };
            match &e.key {
                Key::Device(id) => self.devices.remove(id),
                Key::Service(name) => self.services.remove(name),
                Key::Source(ip) => self.sources.remove(ip),
            };
            leave(&mut self.group_members, e.group.as_deref());
            self.free.push(slot);
            self.live -= 1;
            self.stats.evicted += 1;
        }
    }

    /// Forgets an entity (e.g. after an operator accepted a legitimate
    /// change, so it re-learns). Returns whether it was tracked.
    pub fn forget(&mut self, entity_key: &str) -> bool {
        let Some(slot) = self.lookup(entity_key) else {
            return false;
        };
        let Some(e) = self.slots.get_mut(slot as usize).and_then(Option::take) else {
            return false;
        };
        match &e.key {
            Key::Device(id) => self.devices.remove(id),
            Key::Service(name) => self.services.remove(name),
            Key::Source(ip) => self.sources.remove(ip),
        };
        leave(&mut self.group_members, e.group.as_deref());
        self.free.push(slot);
        self.live -= 1;
        true
    }

    fn lookup(&self, entity_key: &str) -> Option<u32> {
        let (kind, name) = entity_key.split_once(':')?;
        match kind {
            "device" => self.devices.get(name).copied(),
            "service" => self.services.get(name).copied(),
            "source" => self.sources.get(&name.parse::<IpAddr>().ok()?).copied(),
            _ => None,
        }
    }

    pub fn stats(&self) -> EngineStats {
        EngineStats {
            entities: self.live as u64,
            groups: self.groups.len() as u64,
            ..self.stats
        }
    }

    /// Recent windows, baselines and novelty of `device:<id>`,
    /// `source:<ip>` or `service:<name>`.
    pub fn summary(&self, entity_key: &str) -> Option<EntitySummary> {
        if let Some(name) = entity_key.strip_prefix("group:") {
            return self.group_summary(name);
        }
        let slot = self.lookup(entity_key)?;
        let e = self.slots.get(slot as usize)?.as_ref()?;
        let w = self.cfg.window_ms;
        let recent = self.recent(&e.ring);
        let lw = self.cfg.learning_windows;
        let baselines = e
            .baselines
            .as_ref()
            .map_or_else(Vec::new, |b| self.baseline_summaries(b));
        let open = self.open.unwrap_or(e.first_window);
        let learning = open.saturating_sub(e.first_window) < u64::from(lw);
        let novelty = e.novelty.as_ref().map_or_else(Vec::new, |n| {
            Kind::ALL
                .into_iter()
                .map(|k| {
                    let s = &n.sets[k as usize];
                    NoveltySummary {
                        kind: k.as_str(),
                        known: s.len(),
                        cap: self.cfg.novelty.cap,
                        learning: learning || s.seen <= self.cfg.novelty.min_observations,
                        overflow: s.overflow,
                    }
                })
                .collect()
        });
        Some(EntitySummary {
            entity: e.key.render(),
            group: e.group.as_deref().map(str::to_owned),
            first_window_ms: e.first_window.saturating_mul(w),
            active_windows: e.active_windows,
            recent,
            baselines,
            novelty,
            open_sources: e
                .novelty
                .as_ref()
                .map_or_else(Vec::new, |n| n.open.iter().map(IpAddr::to_string).collect()),
            last_model_score: e.last_score.map(f64::from),
        })
    }

    fn group_summary(&self, name: &str) -> Option<EntitySummary> {
        let g = self.groups.get(name)?;
        Some(EntitySummary {
            entity: format!("group:{name}"),
            group: Some(name.to_owned()),
            first_window_ms: g.first_window.saturating_mul(self.cfg.window_ms),
            active_windows: g.active_windows,
            recent: self.recent(&g.ring),
            baselines: self.baseline_summaries(&g.baselines),
            novelty: Vec::new(),
            open_sources: Vec::new(),
            last_model_score: None,
        })
    }

    fn recent(&self, ring: &Ring) -> Vec<WindowSummary> {
        let w = self.cfg.window_ms;
        ring.iter()
            .map(|(idx, v)| WindowSummary {
                start_ms: idx.saturating_mul(w),
                end_ms: idx.saturating_add(1).saturating_mul(w),
                values: Metric::ALL
                    .into_iter()
                    .filter(|m| v[m.index()] != 0.0)
                    .map(|m| (m.as_str(), f64::from(v[m.index()])))
                    .collect(),
            })
            .collect()
    }

    fn baseline_summaries(&self, b: &Baselines) -> Vec<BaselineSummary> {
        let lw = self.cfg.learning_windows;
        self.cfg
            .baseline
            .metrics
            .iter()
            .zip(&b.metrics)
            .map(|(m, r)| BaselineSummary {
                metric: m.as_str(),
                samples: r.n,
                learning: r.learning(lw),
                center: r.center,
                mad: r.mad,
                slow: r.slow,
                learned_level: r.learned.map(|l| l.0),
            })
            .collect()
    }
}

/// A device left `group` (evicted, forgotten, or moved to another group).
fn leave(members: &mut HashMap<Box<str>, u32>, group: Option<&str>) {
    let Some(g) = group else { return };
    if let Some(n) = members.get_mut(g) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            members.remove(g);
        }
    }
}
