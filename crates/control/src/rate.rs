//! Per-token rate limits: a token bucket for each token, refilled at
//! `rate` requests a second up to `burst`. Blob uploads do not count (a
//! deploy sends one per file, and deploy limits bound them already).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

/// Past this many buckets, idle full ones are forgotten.
const PRUNE_AT: usize = 10_000;

impl RateLimiter {
    /// `rate` 0: no limit.
    pub(crate) fn new(rate: u32, burst: u32) -> RateLimiter {
        RateLimiter { rate: f64::from(rate), burst: f64::from(burst.max(1)), buckets: Mutex::default() }
    }

    /// Takes one request from `token`'s bucket: `Ok`, or how long until
    /// one is back.
    pub(crate) fn take(&self, token: &str) -> Result<(), Duration> {
        if self.rate <= 0.0 {
            return Ok(());
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > PRUNE_AT {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, (level, at)| *level + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (level, at) = buckets.entry(token.to_owned()).or_insert((self.burst, now));
        *level = (*level + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *level >= 1.0 {
            *level -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *level) / self.rate))
        }
    }

    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let limiter = RateLimiter::new(10, 3);
        for _ in 0..3 {
            assert!(limiter.take("a").is_ok());
        }
        let wait = limiter.take("a").unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO, "{wait:?}");
        assert!(limiter.take("b").is_ok(), "another token has its own bucket");
        std::thread::sleep(Duration::from_millis(120));
        assert!(limiter.take("a").is_ok());
        assert!(RateLimiter::new(0, 0).take("a").is_ok(), "0: no limit");
    }
}
