//! Rate limits: per source address (before authentication) and per operator
//! token (after). Keyed token buckets from `governor`; stale keys are
//! pruned periodically so memory stays bounded.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::ApiError;

/// Limits, as configured.
#[derive(Debug, Clone, Copy)]
pub struct LimitConfig {
    /// Requests per second per source address, and burst.
    pub per_ip_per_sec: u32,
    pub per_ip_burst: u32,
    /// Requests per second per operator token, and burst.
    pub per_token_per_sec: u32,
    pub per_token_burst: u32,
    /// Largest JSON request body.
    pub max_body_bytes: usize,
    /// Largest EST request body (a base64 CSR).
    pub max_est_body_bytes: usize,
    /// OTA artifact downloads served at once; more get 503 + Retry-After.
    pub max_concurrent_downloads: usize,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            per_ip_per_sec: 100,
            per_ip_burst: 200,
            per_token_per_sec: 50,
            per_token_burst: 100,
            max_body_bytes: 64 * 1024,
            max_est_body_bytes: 16 * 1024,
            max_concurrent_downloads: 64,
        }
    }
}

/// The live limiters.
#[derive(Clone)]
pub struct Limits {
    pub config: LimitConfig,
    per_ip: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    per_token: Arc<DefaultKeyedRateLimiter<String>>,
    /// Permits for OTA artifact downloads in flight.
    pub(crate) downloads: Arc<tokio::sync::Semaphore>,
}

fn quota(per_sec: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_sec.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

fn refused(not_until: governor::NotUntil<governor::clock::QuantaInstant>) -> ApiError {
    let wait = not_until.wait_time_from(DefaultClock::default().now());
    ApiError::rate_limited(wait.as_secs().max(1))
}

impl Limits {
    pub fn new(config: LimitConfig) -> Self {
        Self {
            config,
            per_ip: Arc::new(RateLimiter::keyed(quota(
                config.per_ip_per_sec,
                config.per_ip_burst,
            ))),
            per_token: Arc::new(RateLimiter::keyed(quota(
                config.per_token_per_sec,
                config.per_token_burst,
            ))),
            downloads: Arc::new(tokio::sync::Semaphore::new(
                config.max_concurrent_downloads.max(1),
            )),
        }
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        self.per_ip.check_key(&ip).map_err(refused)
    }

    pub fn check_token(&self, token_id: &str) -> Result<(), ApiError> {
        self.per_token
            .check_key(&token_id.to_string())
            .map_err(refused)
    }

    /// Drops the state of keys that are back to a full bucket, every minute.
    pub fn spawn_pruner(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                this.per_ip.retain_recent();
                this.per_token.retain_recent();
            }
        });
    }
}
