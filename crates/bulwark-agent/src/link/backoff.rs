//! Reconnection back-off: exponential from a base to a cap, with "equal
//! jitter" so that a fleet cut off at the same moment does not come back in
//! lockstep, reset once a connection has proven stable.
//!
//! The delay before retry `n` (counting from 0) is drawn uniformly from
//! `[c/2, c]` where `c = min(cap, base · 2ⁿ)`: never less than half the
//! ceiling (no hammering), spread over the other half (no lockstep).
//! [`backoff_delay`] is the pure formula; [`Backoff`] keeps the count and
//! draws the randomness from a caller-provided RNG (seeded in tests).

use std::time::Duration;

use rand::Rng;

/// How the link waits between connection attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Ceiling of the first delay.
    pub base: Duration,
    /// Largest ceiling.
    pub cap: Duration,
    /// A connection that lasted this long resets the back-off.
    pub stable_after: Duration,
}

impl Default for BackoffConfig {
    /// 1 s base, 5 min cap, reset after a minute connected.
    fn default() -> Self {
        BackoffConfig {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
            stable_after: Duration::from_secs(60),
        }
    }
}

/// The delay before retry `attempt` for a uniform sample `unit` in `[0, 1]`.
pub fn backoff_delay(config: &BackoffConfig, attempt: u32, unit: f64) -> Duration {
    let factor = 2u32.saturating_pow(attempt.min(31));
    let ceiling = config.base.saturating_mul(factor).min(config.cap);
    let half = ceiling / 2;
    half + half.mul_f64(unit.clamp(0.0, 1.0))
}

/// The back-off state of one link.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    pub fn new(config: BackoffConfig) -> Self {
        Backoff { config, attempt: 0 }
    }

    /// Retries since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next attempt; each call raises the ceiling.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let delay = backoff_delay(&self.config, self.attempt, rng.random::<f64>());
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Back to the base (after a stable connection).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Resets if a connection that lasted `connected_for` was stable.
    pub fn connection_ended(&mut self, connected_for: Duration) {
        if connected_for >= self.config.stable_after {
            self.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::rngs::StdRng;
    use rand::SeedableRng;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn config() -> BackoffConfig {
        BackoffConfig {
            base: 100 * MS,
            cap: 10_000 * MS,
            stable_after: 30_000 * MS,
        }
    }

    #[test]
    fn bounds_double_up_to_the_cap() {
        // (attempt, ceiling in ms)
        let cases = [
            (0, 100),
            (1, 200),
            (2, 400),
            (6, 6400),
            (7, 10_000),
            (31, 10_000),
            (u32::MAX, 10_000),
        ];
        for (attempt, ceiling) in cases {
            let c = ceiling * MS;
            assert_eq!(backoff_delay(&config(), attempt, 0.0), c / 2, "{attempt}");
            assert_eq!(backoff_delay(&config(), attempt, 1.0), c, "{attempt}");
            assert_eq!(
                backoff_delay(&config(), attempt, 0.5),
                c * 3 / 4,
                "{attempt}"
            );
        }
        // Out-of-range samples stay in bounds.
        assert_eq!(backoff_delay(&config(), 0, -1.0), 50 * MS);
        assert_eq!(backoff_delay(&config(), 0, 7.0), 100 * MS);
    }

    #[test]
    fn every_drawn_delay_is_within_its_bounds() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut b = Backoff::new(config());
        for attempt in 0..40u32 {
            let c = backoff_delay(&config(), attempt, 1.0);
            let d = b.next_delay(&mut rng);
            assert!(
                d >= c / 2 && d <= c,
                "attempt {attempt}: {d:?} outside [{:?}, {c:?}]",
                c / 2
            );
        }
        assert_eq!(b.attempt(), 40);
    }

    #[test]
    fn jitter_spreads_a_fleet() {
        // 1,000 devices cut at the same moment, each with its own RNG: their
        // fourth retry (ceiling 800 ms) spreads over [400, 800] ms.
        let delays: Vec<Duration> = (0..1000u64)
            .map(|device| {
                let mut rng = StdRng::seed_from_u64(device);
                let mut b = Backoff::new(config());
                for _ in 0..3 {
                    b.next_delay(&mut rng);
                }
                b.next_delay(&mut rng)
            })
            .collect();
        let min = delays.iter().min().copied().unwrap_or_default();
        let max = delays.iter().max().copied().unwrap_or_default();
        assert!(min >= 400 * MS && max <= 800 * MS);
        assert!(min < 420 * MS && max > 780 * MS, "spread {min:?}..{max:?}");
        // No lockstep: per 10 ms bucket, at most a few percent of the fleet.
        let mut buckets = [0u32; 41];
        for d in &delays {
            let i = usize::try_from((d.as_millis() - 400) / 10).unwrap_or(40);
            buckets[i.min(40)] += 1;
        }
        assert!(buckets.iter().all(|&n| n < 60), "{buckets:?}");
        let distinct: HashSet<Duration> = delays.into_iter().collect();
        assert!(distinct.len() > 990);
    }

    #[test]
    fn a_stable_connection_resets_a_short_one_does_not() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut b = Backoff::new(config());
        for _ in 0..5 {
            b.next_delay(&mut rng);
        }
        b.connection_ended(29_999 * MS);
        assert_eq!(b.attempt(), 5);
        let d = b.next_delay(&mut rng);
        assert!(d >= 1600 * MS, "still backing off: {d:?}");
        b.connection_ended(30_000 * MS);
        assert_eq!(b.attempt(), 0);
        let d = b.next_delay(&mut rng);
        assert!(d <= 100 * MS, "back to the base: {d:?}");
    }

    #[test]
    fn same_seed_same_schedule() {
        let schedule = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            let mut b = Backoff::new(config());
            (0..8).map(|_| b.next_delay(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(schedule(3), schedule(3));
        assert_ne!(schedule(3), schedule(4));
    }
}
