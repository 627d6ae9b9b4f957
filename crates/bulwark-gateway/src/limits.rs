//! Abuse limits that live outside a single connection: connections per
//! source address, back-off after failed authentications, connect flapping;
//! and the per-connection token bucket for publish rates.
//!
//! The maps here are touched once per connection attempt, never per
//! message, and are bounded: entries disappear when they no longer limit
//! anything, and each map holds at most [`MAX_TRACKED`] keys (beyond that
//! the oldest-expiring entries are dropped first).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::config::GatewayLimits;

/// Most keys one limiter tracks.
pub const MAX_TRACKED: usize = 100_000;

/// A token bucket: `rate` tokens per second, at most `burst` stored.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes `n` tokens if there are enough.
    pub fn try_take(&mut self, n: f64, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Drops the entries of `map` that `keep` rejects, and if it is still
/// over the bound, arbitrary ones until it is within.
fn prune<K: Hash + Eq + Clone, V>(map: &mut HashMap<K, V>, keep: impl Fn(&V) -> bool) {
    if map.len() < MAX_TRACKED {
        return;
    }
    map.retain(|_, v| keep(v));
    while map.len() >= MAX_TRACKED {
        let Some(k) = map.keys().next().cloned() else {
            break;
        };
        map.remove(&k);
    }
}

/// Shared limiter state for all listeners.
#[derive(Debug)]
pub struct Limiter {
    limits: GatewayLimits,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    connects: Mutex<HashMap<String, Flaps>>,
    /// Source addresses blocked by a response action, until when.
    blocked: Mutex<HashMap<IpAddr, Instant>>,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    blocked_until: Instant,
    last: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Flaps {
    window_start: Instant,
    count: u32,
}

/// Holds one slot of a source address's connection count.
#[derive(Debug)]
pub struct IpSlot {
    limiter: Arc<Limiter>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut map = lock(&self.limiter.per_ip);
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

impl Limiter {
    pub fn new(limits: GatewayLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            per_ip: Mutex::default(),
            failures: Mutex::default(),
            connects: Mutex::default(),
            blocked: Mutex::default(),
        })
    }

    /// A connection slot for `ip`, or `None` over the per-address limit.
    pub fn acquire_ip(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut map = lock(&self.per_ip);
        let n = map.entry(ip).or_insert(0);
        if *n >= self.limits.max_connections_per_ip {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            limiter: self.clone(),
            ip,
        })
    }

    /// How long `ip` must still wait: after failed authentications, or
    /// while a response action blocks it.
    pub fn backoff(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let failed = lock(&self.failures)
            .get(&ip)
            .map(|f| f.blocked_until.saturating_duration_since(now));
        let blocked = lock(&self.blocked)
            .get(&ip)
            .map(|until| until.saturating_duration_since(now));
        failed.max(blocked).filter(|d| !d.is_zero())
    }

    /// Refuses new connections from `ip` until `until` (a response
    /// action); false when the map of blocks is full.
    pub fn block(&self, ip: IpAddr, until: Instant, now: Instant) -> bool {
        let mut map = lock(&self.blocked);
        prune(&mut map, |u| *u > now);
        if map.len() >= MAX_TRACKED && !map.contains_key(&ip) {
            return false;
        }
        map.insert(ip, until);
        true
    }

    /// Lifts a block; whether there was one.
    pub fn unblock(&self, ip: IpAddr) -> bool {
        lock(&self.blocked).remove(&ip).is_some()
    }

    /// Records a failed authentication from `ip`.
    pub fn auth_failed(&self, ip: IpAddr, now: Instant) {
        let mut map = lock(&self.failures);
        let max = self.limits.auth_backoff_max;
        prune(&mut map, |f| {
            now.saturating_duration_since(f.last) < max * 4
        });
        let f = map.entry(ip).or_insert(Failures {
            count: 0,
            blocked_until: now,
            last: now,
        });
        // Failures far apart are forgiven.
        if now.saturating_duration_since(f.last) > max * 4 {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
        let over = f
            .count
            .saturating_sub(self.limits.auth_failures_before_backoff);
        if over > 0 {
            let wait = Duration::from_secs(1)
                .saturating_mul(1u32 << (over - 1).min(16))
                .min(max);
            f.blocked_until = now + wait;
        }
    }

    /// Records a successful authentication: `ip` is forgiven.
    pub fn auth_succeeded(&self, ip: IpAddr) {
        lock(&self.failures).remove(&ip);
    }

    /// Records a CONNECT of `client_id`; false when it connects too often.
    pub fn connect_allowed(&self, client_id: &str, now: Instant) -> bool {
        let mut map = lock(&self.connects);
        let window = self.limits.flap_window;
        prune(&mut map, |f| {
            now.saturating_duration_since(f.window_start) < window
        });
        let f = map.entry(client_id.to_owned()).or_insert(Flaps {
            window_start: now,
            count: 0,
        });
        if now.saturating_duration_since(f.window_start) >= window {
            *f = Flaps {
                window_start: now,
                count: 0,
            };
        }
        f.count += 1;
        f.count <= self.limits.flap_max_connects
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refills_at_rate_up_to_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5.0, t0);
        for _ in 0..5 {
            assert!(b.try_take(1.0, t0));
        }
        assert!(!b.try_take(1.0, t0));
        assert!(b.try_take(1.0, t0 + Duration::from_millis(100)));
        assert!(!b.try_take(1.0, t0 + Duration::from_millis(100)));
        // A long pause refills only to the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert!(b.try_take(1.0, later));
        }
        assert!(!b.try_take(1.0, later));
    }

    #[test]
    fn per_ip_slots_are_released_on_drop() {
        let limiter = Limiter::new(GatewayLimits {
            max_connections_per_ip: 2,
            ..GatewayLimits::default()
        });
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let a = limiter.acquire_ip(ip).unwrap();
        let _b = limiter.acquire_ip(ip).unwrap();
        assert!(limiter.acquire_ip(ip).is_none());
        assert!(limiter.acquire_ip("127.0.0.10".parse().unwrap()).is_some());
        drop(a);
        assert!(limiter.acquire_ip(ip).is_some());
    }

    #[test]
    fn backoff_starts_after_threshold_and_doubles() {
        let limiter = Limiter::new(GatewayLimits {
            auth_failures_before_backoff: 2,
            ..GatewayLimits::default()
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Instant::now();
        limiter.auth_failed(ip, t);
        limiter.auth_failed(ip, t);
        assert_eq!(limiter.backoff(ip, t), None);
        limiter.auth_failed(ip, t);
        assert_eq!(limiter.backoff(ip, t), Some(Duration::from_secs(1)));
        limiter.auth_failed(ip, t);
        assert_eq!(limiter.backoff(ip, t), Some(Duration::from_secs(2)));
        assert_eq!(limiter.backoff(ip, t + Duration::from_secs(3)), None);
        limiter.auth_succeeded(ip);
        limiter.auth_failed(ip, t);
        assert_eq!(limiter.backoff(ip, t), None);
    }

    #[test]
    fn a_blocked_source_waits_until_the_block_ends_or_is_lifted() {
        let limiter = Limiter::new(GatewayLimits::default());
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        let t = Instant::now();
        assert!(limiter.block(ip, t + Duration::from_secs(60), t));
        assert_eq!(limiter.backoff(ip, t), Some(Duration::from_secs(60)));
        assert_eq!(limiter.backoff("10.0.0.8".parse().unwrap(), t), None);
        assert_eq!(limiter.backoff(ip, t + Duration::from_secs(61)), None);
        assert!(limiter.unblock(ip));
        assert!(!limiter.unblock(ip));
        assert_eq!(limiter.backoff(ip, t), None);
    }

    #[test]
    fn flapping_client_is_refused_within_window() {
        let limiter = Limiter::new(GatewayLimits {
            flap_max_connects: 3,
            flap_window: Duration::from_secs(10),
            ..GatewayLimits::default()
        });
        let t = Instant::now();
        for _ in 0..3 {
            assert!(limiter.connect_allowed("d1", t));
        }
        assert!(!limiter.connect_allowed("d1", t));
        assert!(limiter.connect_allowed("d2", t));
        assert!(limiter.connect_allowed("d1", t + Duration::from_secs(10)));
    }
}
