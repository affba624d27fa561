//! Token-bucket rate limiting per user (or per IP for requests without a token), applied to
//! the endpoints the spec marks rate-limited. Answers 429 M_LIMIT_EXCEEDED with
//! `retry_after_ms`.

use super::error::MatrixError;
use crate::config::RateLimitConfig;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

pub struct RateLimiter {
    enabled: bool,
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Above this many keys, full buckets are forgotten (they hold no information).
const PRUNE_AT: usize = 10_000;

impl RateLimiter {
    pub fn new(c: &RateLimitConfig) -> RateLimiter {
        RateLimiter {
            enabled: c.enabled,
            per_second: c.per_second,
            burst: f64::from(c.burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from `key`'s bucket, or says how long to wait.
    pub fn check(&self, key: &str) -> Result<(), MatrixError> {
        if !self.enabled {
            return Ok(());
        }
        self.take(key, Instant::now()).map_err(|wait_ms| {
            MatrixError::new("M_LIMIT_EXCEEDED", "Too many requests")
                .with("retry_after_ms", wait_ms)
        })
    }

    fn take(&self, key: &str, now: Instant) -> Result<(), u64> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > PRUNE_AT {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        let refilled =
            (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if refilled >= 1.0 {
            *tokens = refilled - 1.0;
            Ok(())
        } else {
            *tokens = refilled;
            Err((((1.0 - refilled) / self.per_second) * 1000.0).ceil() as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bursts_then_refills() {
        let l = RateLimiter::new(&RateLimitConfig {
            enabled: true,
            per_second: 2.0,
            burst: 3,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(l.take("a", t0).is_ok());
        }
        let wait = l.take("a", t0).unwrap_err();
        assert_eq!(wait, 500);
        assert!(l.take("b", t0).is_ok(), "keys are independent");
        assert!(l.take("a", t0 + Duration::from_millis(500)).is_ok());
        assert!(l.take("a", t0 + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn disabled_never_limits() {
        let l = RateLimiter::new(&RateLimitConfig {
            enabled: false,
            per_second: 0.1,
            burst: 1,
        });
        for _ in 0..100 {
            assert!(l.check("a").is_ok());
        }
    }
}
