//! Back-off between attempts: exponential with jitter, and the
//! `Retry-After` header.

use std::time::Duration;

use time::OffsetDateTime;

use crate::config::RetryConfig;

/// The longest `Retry-After` honoured; a receiver asking for more gets
/// this (the sink's queue waits meanwhile).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// The wait after the `failed`-th failed attempt (1-based): the
/// exponential step `min(max, initial * 2^(failed-1))`, drawn uniformly from
/// its upper half so retrying sinks do not move in lock-step.
pub fn backoff(retry: &RetryConfig, failed: u32) -> Duration {
    let step = exponential(retry, failed);
    let ms = u64::try_from(step.as_millis()).unwrap_or(u64::MAX);
    let low = ms / 2;
    Duration::from_millis(if ms > low {
        rand::random_range(low..=ms)
    } else {
        ms
    })
}

fn exponential(retry: &RetryConfig, failed: u32) -> Duration {
    let shift = failed.saturating_sub(1).min(32);
    let ms = retry
        .initial_backoff_ms
        .saturating_mul(1u64 << shift)
        .min(retry.max_backoff_ms);
    Duration::from_millis(ms)
}

/// A `Retry-After` value: delta-seconds or an HTTP-date (IMF-fixdate),
/// capped at [`MAX_RETRY_AFTER`]; a date in the past means no wait.
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at =
            OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
        let secs = (at - now).whole_seconds();
        Duration::from_secs(u64::try_from(secs).unwrap_or(0))
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn exponential_steps_are_capped() {
        let r = RetryConfig {
            max_attempts: 10,
            initial_backoff_ms: 100,
            max_backoff_ms: 1000,
        };
        let steps: Vec<u128> = (1..=6).map(|n| exponential(&r, n).as_millis()).collect();
        assert_eq!(steps, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(exponential(&r, u32::MAX).as_millis(), 1000);
        for n in 1..=6 {
            let d = backoff(&r, n).as_millis();
            let step = exponential(&r, n).as_millis();
            assert!(d >= step / 2 && d <= step, "{n}: {d}");
        }
    }

    #[test]
    fn retry_after() {
        let now = datetime!(2026-01-02 03:04:05 UTC);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("99999", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("Fri, 02 Jan 2026 03:04:35 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Fri, 02 Jan 2026 03:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }
}
