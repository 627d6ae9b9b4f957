//! Novelty: values a device has never shown before (topics, source
//! addresses, listening ports, remote destinations), after it has learned.
//!
//! Sets hold 64-bit hashes, sorted, capped per kind (`novelty.cap`). While a
//! device learns (its first `learning_windows` windows and the first
//! `min_observations` observations of the kind) every value is learned; a
//! set that fills up stops learning and counts what it missed, and after
//! learning reports saturation once instead of one finding per value.
//! A value fires once and is then learned (de-duplicated per value).
//!
//! Concurrent sources: a device's open sessions are tracked by source
//! (Connect adds, Disconnect removes the oldest, at most
//! [`MAX_OPEN`]); a Connect from an address other than an open session's is a
//! cloned certificate or a takeover race and fires `novelty:concurrent-source`.

use std::net::IpAddr;

/// Open sessions tracked per device.
pub(crate) const MAX_OPEN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Topic = 0,
    Source = 1,
    Port = 2,
    Destination = 3,
}

impl Kind {
    pub(crate) const ALL: [Kind; 4] = [Kind::Topic, Kind::Source, Kind::Port, Kind::Destination];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Topic => "topic",
            Kind::Source => "source",
            Kind::Port => "listening-port",
            Kind::Destination => "destination",
        }
    }
}

/// A sorted, capped set of hashes.
#[derive(Debug, Clone, Default)]
pub(crate) struct BoundedSet {
    hashes: Vec<u64>,
    pub overflow: u64,
    pub saturation_reported: bool,
    /// Observations of this kind so far.
    pub seen: u32,
}

/// What checking a value found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    Known,
    Learned,
    New,
    /// Full: neither learned nor checked.
    Overflow,
    /// Full after learning, first time: report saturation once.
    Saturated,
}

impl BoundedSet {
    pub(crate) fn len(&self) -> usize {
        self.hashes.len()
    }

    pub(crate) fn check(&mut self, hash: u64, learning: bool, cap: usize) -> Check {
        let at = match self.hashes.binary_search(&hash) {
            Ok(_) => return Check::Known,
            Err(at) => at,
        };
        if self.hashes.len() >= cap {
            self.overflow = self.overflow.saturating_add(1);
            if learning || self.saturation_reported {
                return Check::Overflow;
            }
            self.saturation_reported = true;
            return Check::Saturated;
        }
        self.hashes.insert(at, hash);
        if learning {
            Check::Learned
        } else {
            Check::New
        }
    }
}

/// A novelty event waiting for the next tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Pending {
    New { kind: Kind, value: String },
    Saturated { kind: Kind, overflow: u64 },
    Concurrent { source: IpAddr, open: IpAddr },
}

/// Novelty state of one device (boxed, created on first use).
#[derive(Debug, Clone, Default)]
pub(crate) struct Novelty {
    pub sets: [BoundedSet; 4],
    pub pending: Vec<Pending>,
    pub open: Vec<IpAddr>,
    pub concurrent_fired_at: Option<u64>,
}

impl Novelty {
    pub(crate) fn set(&mut self, kind: Kind) -> &mut BoundedSet {
        &mut self.sets[kind as usize]
    }

    /// Queues an event; false when the window's queue is full. Saturation
    /// (once per kind, so at most four) always gets through.
    pub(crate) fn push(&mut self, event: Pending, max_pending: usize) -> bool {
        let saturated = matches!(event, Pending::Saturated { .. });
        if self.pending.len() >= max_pending && !saturated {
            return false;
        }
        if !self.pending.contains(&event) {
            self.pending.push(event);
        }
        true
    }

    /// A session opened from `source`: returns an open session's other
    /// address, if any.
    pub(crate) fn connect(&mut self, source: IpAddr) -> Option<IpAddr> {
        let other = self.open.iter().copied().find(|ip| *ip != source);
        if self.open.len() >= MAX_OPEN {
            self.open.remove(0);
        }
        self.open.push(source);
        other
    }

    /// A session closed (the oldest open one: the gateway closes the older
    /// session of a takeover).
    pub(crate) fn disconnect(&mut self) {
        if !self.open.is_empty() {
            self.open.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_learns_then_detects_then_saturates_once() {
        let mut s = BoundedSet::default();
        assert_eq!(s.check(1, true, 2), Check::Learned);
        assert_eq!(s.check(1, false, 2), Check::Known);
        assert_eq!(s.check(2, false, 2), Check::New);
        assert_eq!(s.check(2, false, 2), Check::Known);
        assert_eq!(s.check(3, false, 2), Check::Saturated);
        assert_eq!(s.check(4, false, 2), Check::Overflow);
        assert_eq!(s.len(), 2);
        assert_eq!(s.overflow, 2);
    }

    #[test]
    fn open_sessions_are_bounded() {
        let mut n = Novelty::default();
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        assert_eq!(n.connect(a), None);
        assert_eq!(n.connect(a), None);
        assert_eq!(n.connect(b), Some(a));
        for _ in 0..100 {
            n.connect(a);
        }
        assert_eq!(n.open.len(), MAX_OPEN);
        for _ in 0..100 {
            n.disconnect();
        }
        assert!(n.open.is_empty());
    }
}
