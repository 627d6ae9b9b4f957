//! Hooks for automated response and evidence: per-device publish throttles
//! ([`Gateway::throttle`]) and the source addresses of a device's live
//! connections ([`Gateway::device_sources`]).
//!
//! A throttle is a second token bucket, checked before the connection's own
//! (`GatewayLimits::publish_rate`): the tighter of the two wins, and a
//! PUBLISH over either is refused the same way (`QuotaExceeded` in MQTT 5,
//! a closed connection in MQTT 3.1.1, `bulwark_mqtt_rate_limited_total`;
//! throttle refusals are also in `bulwark_mqtt_throttled_total`).
//!
//! The throttle map is read when a connection starts and when its session's
//! throttle epoch moves, never per message: [`Gateway::throttle`] writes
//! the map, then bumps the epoch of the device's session; the connection
//! compares that epoch (one atomic load) on each PUBLISH and rebuilds its
//! throttle bucket when it changed, so a live session is throttled from its
//! next PUBLISH on. A session attached later reads the map when it starts.
//! The map holds at most [`MAX_THROTTLES`] devices; a throttle beyond that
//! is refused rather than one in force being evicted. Throttles live in
//! memory only: whoever set them (the response playbooks) re-applies them
//! after a restart, and records them in the audit log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{PoisonError, RwLock};
use std::time::Instant;

use bulwark_types::DeviceId;

use crate::limits::TokenBucket;
use crate::session::{Owner, Session};
use crate::Gateway;

/// Most devices throttled at once.
pub const MAX_THROTTLES: usize = 100_000;

/// A device's throttle: messages per second and burst.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Throttle {
    rate: f64,
    burst: f64,
}

/// The throttled devices.
#[derive(Debug, Default)]
pub(crate) struct Throttles {
    map: RwLock<HashMap<DeviceId, Throttle>>,
}

impl Throttles {
    /// A fresh bucket for a session of `owner` if it is a throttled
    /// device (a read lock, once per connection or throttle change).
    pub(crate) fn bucket_for(&self, owner: &Owner, now: Instant) -> Option<TokenBucket> {
        let Owner::Device(d) = owner else {
            return None;
        };
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        map.get(d).map(|t| TokenBucket::new(t.rate, t.burst, now))
    }

    /// Sets `device`'s throttle; whether it changed (false when full).
    fn set(&self, device: &DeviceId, t: Throttle) -> bool {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        let full = map.len() >= MAX_THROTTLES;
        match map.get_mut(device) {
            Some(old) if *old == t => false,
            Some(old) => {
                *old = t;
                true
            }
            None if full => false,
            None => {
                map.insert(device.clone(), t);
                true
            }
        }
    }

    fn remove(&self, device: &DeviceId) -> bool {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(device)
            .is_some()
    }

    fn list(&self) -> Vec<(DeviceId, f64)> {
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<(DeviceId, f64)> = map.iter().map(|(d, t)| (d.clone(), t.rate)).collect();
        out.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        out
    }
}

impl Gateway {
    /// Limits `device`'s publishes to `rate_per_sec` messages per second
    /// with bursts of `burst` (on top of the per-connection limit, so only
    /// a tighter rate has an effect), on its live session from its next
    /// PUBLISH and on sessions it opens later, until [`Gateway::unthrottle`].
    /// Publishes over the rate are refused like the per-connection rate
    /// limit's (see the module docs). Returns whether anything changed:
    /// false when the device already had this throttle, when a value is
    /// negative, NaN or infinite, or when [`MAX_THROTTLES`] other devices
    /// are throttled already. In memory only, not audited here.
    pub fn throttle(&self, device: &DeviceId, rate_per_sec: f64, burst: f64) -> bool {
        let valid = |v: f64| v.is_finite() && v >= 0.0;
        if !valid(rate_per_sec) || !valid(burst) {
            return false;
        }
        let t = Throttle {
            rate: rate_per_sec,
            burst,
        };
        let changed = self.shared.throttles.set(device, t);
        if changed {
            tracing::info!(%device, rate_per_sec, burst, "device throttled");
            if let Some(s) = self.device_session(device) {
                s.bump_throttle_epoch();
            }
        }
        changed
    }

    /// Lifts `device`'s throttle; whether it had one.
    pub fn unthrottle(&self, device: &DeviceId) -> bool {
        let changed = self.shared.throttles.remove(device);
        if changed {
            tracing::info!(%device, "device throttle lifted");
            if let Some(s) = self.device_session(device) {
                s.bump_throttle_epoch();
            }
        }
        changed
    }

    /// The throttled devices and their rates (messages per second), by id.
    pub fn throttled(&self) -> Vec<(DeviceId, f64)> {
        self.shared.throttles.list()
    }

    /// The peer addresses of `device`'s live connections (for evidence
    /// bundles): at most one, a second connection taking the session over.
    pub fn device_sources(&self, device: &DeviceId) -> Vec<SocketAddr> {
        self.device_session(device)
            .and_then(|s| s.lock().link.as_ref().and_then(|l| l.remote.parse().ok()))
            .into_iter()
            .collect()
    }

    /// Refuses new connections from `source` for `duration` (a response
    /// action against an address, e.g. credential stuffing before any
    /// identity): they are shed at accept like the authentication
    /// back-off's. Live connections are not cut. False when the map of
    /// blocks is full. In memory only.
    pub fn block_source(&self, source: std::net::IpAddr, duration: std::time::Duration) -> bool {
        let now = std::time::Instant::now();
        let blocked = self.shared.limiter.block(source, now + duration, now);
        if blocked {
            tracing::info!(%source, secs = duration.as_secs(), "source address blocked");
        }
        blocked
    }

    /// Lifts a block of `source`; whether there was one.
    pub fn unblock_source(&self, source: std::net::IpAddr) -> bool {
        let lifted = self.shared.limiter.unblock(source);
        if lifted {
            tracing::info!(%source, "source address block lifted");
        }
        lifted
    }

    /// The session of `device` (a device's session key is its id).
    fn device_session(&self, device: &DeviceId) -> Option<std::sync::Arc<Session>> {
        self.shared
            .broker
            .session(device.as_str())
            .filter(|s| matches!(&s.owner, Owner::Device(d) if d == device))
    }
}

#[cfg(test)]
mod tests;
