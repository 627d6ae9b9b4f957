//! Window metrics: the closed set of per-entity, per-window measurements
//! every detector reads, and the O(1) accumulator that builds them.

use serde::{Deserialize, Serialize};

/// One per-window measurement. Rules, baselines and the forest name metrics
/// by [`Metric::as_str`] (snake_case, the same names serde uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Messages the entity published.
    MsgsIn,
    /// Messages delivered to the entity.
    MsgsOut,
    /// Payload bytes the entity published.
    BytesIn,
    /// Payload bytes delivered to the entity.
    BytesOut,
    Connects,
    /// All disconnects, normal or not.
    Disconnects,
    /// Disconnects without a DISCONNECT packet (dropped, kicked, timed out).
    AbnormalDisconnects,
    AuthFailures,
    /// Publishes/subscribes refused by policy.
    Denials,
    Subscribes,
    /// Distinct topics published or subscribed (bounded estimate).
    DistinctTopics,
    /// Distinct source addresses seen (bounded estimate).
    DistinctSources,
    /// Mean published payload size (0 without messages).
    PayloadMean,
    PayloadMax,
    /// Mean gap between published messages, milliseconds (0 when unknown).
    InterarrivalMeanMs,
    /// Smallest gap between published messages, milliseconds (0 when unknown).
    InterarrivalMinMs,
    /// Posture gauge: listening sockets (last report holds).
    ListeningPorts,
    /// Posture gauge: distinct remote destinations (last report holds).
    Destinations,
    /// Posture gauge: established connections (last report holds).
    Established,
    /// Posture gauge: running processes (last report holds).
    Processes,
}

/// How a metric combines over several windows (a rule's `over_ms`) or over
/// several devices (a group's window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    /// Counters: add.
    Sum,
    /// Maxima, distinct counts and gauges: take the largest.
    Max,
    /// Means: average the windows that have a value.
    Mean,
    /// Minima: smallest non-zero value (0 means "no value").
    Min,
}

/// Number of metrics; the length of every window vector.
pub const METRIC_COUNT: usize = 20;

/// A closed window's values, indexed by [`Metric::index`].
pub(crate) type Values = [f64; METRIC_COUNT];

impl Metric {
    /// Every metric, in index order.
    pub const ALL: [Metric; METRIC_COUNT] = [
        Metric::MsgsIn,
        Metric::MsgsOut,
        Metric::BytesIn,
        Metric::BytesOut,
        Metric::Connects,
        Metric::Disconnects,
        Metric::AbnormalDisconnects,
        Metric::AuthFailures,
        Metric::Denials,
        Metric::Subscribes,
        Metric::DistinctTopics,
        Metric::DistinctSources,
        Metric::PayloadMean,
        Metric::PayloadMax,
        Metric::InterarrivalMeanMs,
        Metric::InterarrivalMinMs,
        Metric::ListeningPorts,
        Metric::Destinations,
        Metric::Established,
        Metric::Processes,
    ];

    /// Position in a window vector.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::MsgsIn => "msgs_in",
            Metric::MsgsOut => "msgs_out",
            Metric::BytesIn => "bytes_in",
            Metric::BytesOut => "bytes_out",
            Metric::Connects => "connects",
            Metric::Disconnects => "disconnects",
            Metric::AbnormalDisconnects => "abnormal_disconnects",
            Metric::AuthFailures => "auth_failures",
            Metric::Denials => "denials",
            Metric::Subscribes => "subscribes",
            Metric::DistinctTopics => "distinct_topics",
            Metric::DistinctSources => "distinct_sources",
            Metric::PayloadMean => "payload_mean",
            Metric::PayloadMax => "payload_max",
            Metric::InterarrivalMeanMs => "interarrival_mean_ms",
            Metric::InterarrivalMinMs => "interarrival_min_ms",
            Metric::ListeningPorts => "listening_ports",
            Metric::Destinations => "destinations",
            Metric::Established => "established",
            Metric::Processes => "processes",
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == s)
    }

    pub fn aggregation(self) -> Aggregation {
        match self {
            Metric::PayloadMax
            | Metric::DistinctTopics
            | Metric::DistinctSources
            | Metric::ListeningPorts
            | Metric::Destinations
            | Metric::Established
            | Metric::Processes => Aggregation::Max,
            Metric::PayloadMean | Metric::InterarrivalMeanMs => Aggregation::Mean,
            Metric::InterarrivalMinMs => Aggregation::Min,
            _ => Aggregation::Sum,
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Metric {
    type Err = String;
    fn from_str(s: &str) -> Result<Metric, String> {
        Metric::parse(s).ok_or_else(|| format!("unknown metric {s:?}"))
    }
}

/// Combines values of one metric (several windows or several devices).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Combiner {
    agg: Aggregation,
    acc: f64,
    n: u32,
}

impl Combiner {
    pub(crate) fn new(metric: Metric) -> Combiner {
        Combiner {
            agg: metric.aggregation(),
            acc: 0.0,
            n: 0,
        }
    }

    pub(crate) fn add(&mut self, v: f64) {
        match self.agg {
            Aggregation::Sum => self.acc += v,
            Aggregation::Max => self.acc = self.acc.max(v),
            Aggregation::Mean => {
                if v > 0.0 {
                    self.acc += v;
                    self.n += 1;
                }
            }
            Aggregation::Min => {
                if v > 0.0 && (self.n == 0 || v < self.acc) {
                    self.acc = v;
                    self.n = 1;
                }
            }
        }
    }

    pub(crate) fn value(&self) -> f64 {
        match self.agg {
            Aggregation::Mean if self.n > 0 => self.acc / f64::from(self.n),
            Aggregation::Mean => 0.0,
            _ => self.acc,
        }
    }
}

/// Combines whole window vectors metric by metric.
pub(crate) fn combine_into(acc: &mut [Combiner; METRIC_COUNT], v: &Values) {
    for (c, x) in acc.iter_mut().zip(v) {
        c.add(*x);
    }
}

pub(crate) fn combiners() -> [Combiner; METRIC_COUNT] {
    Metric::ALL.map(Combiner::new)
}

pub(crate) fn finish(acc: &[Combiner; METRIC_COUNT]) -> Values {
    let mut out = [0.0; METRIC_COUNT];
    for (o, c) in out.iter_mut().zip(acc) {
        *o = c.value();
    }
    out
}

/// Bounded distinct counter: 256-bit linear counting. Exact-ish (±1) for a
/// handful of values, within a few percent up to ~500, saturates at ~1,400.
/// 32 bytes, O(1) insert.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Distinct {
    bits: [u64; 4],
}

impl Distinct {
    pub(crate) fn insert(&mut self, hash: u64) {
        let i = (hash >> 56) as usize;
        self.bits[i >> 6] |= 1 << (i & 63);
    }

    pub(crate) fn estimate(&self) -> f64 {
        const M: f64 = 256.0;
        let set: u32 = self.bits.iter().map(|b| b.count_ones()).sum();
        let zero = M - f64::from(set);
        if zero <= 0.0 {
            M * M.ln()
        } else {
            (-M * (zero / M).ln()).round()
        }
    }
}

/// Device posture gauges; the last report holds until the next one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Posture {
    pub listening_ports: u32,
    pub destinations: u32,
    pub established: u32,
    pub processes: u32,
}

/// One entity's open window: plain counters, O(1) per observation.
#[derive(Debug, Clone, Default)]
pub(crate) struct WindowAcc {
    pub msgs_in: u64,
    pub msgs_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connects: u64,
    pub disconnects: u64,
    pub abnormal_disconnects: u64,
    pub auth_failures: u64,
    pub denials: u64,
    pub subscribes: u64,
    pub topics: Distinct,
    pub sources: Distinct,
    pub payload_max: u64,
    pub gap_sum: u64,
    pub gaps: u64,
    pub gap_min: u64,
}

impl WindowAcc {
    pub(crate) fn add_gap(&mut self, gap: u64) {
        self.gap_sum = self.gap_sum.saturating_add(gap);
        self.gap_min = if self.gaps == 0 {
            gap
        } else {
            self.gap_min.min(gap)
        };
        self.gaps += 1;
    }

    /// The window's values; `posture` supplies the gauges.
    pub(crate) fn values(&self, posture: &Posture) -> Values {
        let mut v = [0.0; METRIC_COUNT];
        let mut set = |m: Metric, x: f64| v[m.index()] = x;
        set(Metric::MsgsIn, self.msgs_in as f64);
        set(Metric::MsgsOut, self.msgs_out as f64);
        set(Metric::BytesIn, self.bytes_in as f64);
        set(Metric::BytesOut, self.bytes_out as f64);
        set(Metric::Connects, self.connects as f64);
        set(Metric::Disconnects, self.disconnects as f64);
        set(
            Metric::AbnormalDisconnects,
            self.abnormal_disconnects as f64,
        );
        set(Metric::AuthFailures, self.auth_failures as f64);
        set(Metric::Denials, self.denials as f64);
        set(Metric::Subscribes, self.subscribes as f64);
        set(Metric::DistinctTopics, self.topics.estimate());
        set(Metric::DistinctSources, self.sources.estimate());
        if self.msgs_in > 0 {
            set(
                Metric::PayloadMean,
                self.bytes_in as f64 / self.msgs_in as f64,
            );
        }
        set(Metric::PayloadMax, self.payload_max as f64);
        if self.gaps > 0 {
            set(
                Metric::InterarrivalMeanMs,
                self.gap_sum as f64 / self.gaps as f64,
            );
            set(Metric::InterarrivalMinMs, self.gap_min as f64);
        }
        set(Metric::ListeningPorts, f64::from(posture.listening_ports));
        set(Metric::Destinations, f64::from(posture.destinations));
        set(Metric::Established, f64::from(posture.established));
        set(Metric::Processes, f64::from(posture.processes));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for (i, m) in Metric::ALL.into_iter().enumerate() {
            assert_eq!(m.index(), i);
            assert_eq!(Metric::parse(m.as_str()), Some(m));
            let json = serde_json::to_string(&m).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", m.as_str()));
        }
        assert_eq!(Metric::parse("nope"), None);
    }

    #[test]
    fn distinct_is_close_and_bounded() {
        let mut d = Distinct::default();
        assert_eq!(d.estimate(), 0.0);
        for i in 0..5u64 {
            d.insert(crate::mix::mix64(i));
        }
        assert!((d.estimate() - 5.0).abs() <= 1.0);
        for i in 0..100_000u64 {
            d.insert(crate::mix::mix64(i));
        }
        assert!(d.estimate() > 1000.0 && d.estimate() < 1500.0);
    }

    #[test]
    fn combiner_kinds() {
        let mut s = Combiner::new(Metric::MsgsIn);
        let mut x = Combiner::new(Metric::PayloadMax);
        let mut m = Combiner::new(Metric::PayloadMean);
        let mut n = Combiner::new(Metric::InterarrivalMinMs);
        for v in [3.0, 0.0, 5.0] {
            s.add(v);
            x.add(v);
            m.add(v);
            n.add(v);
        }
        assert_eq!(s.value(), 8.0);
        assert_eq!(x.value(), 5.0);
        assert_eq!(m.value(), 4.0);
        assert_eq!(n.value(), 3.0);
    }
}
