//! Per-source token buckets for unauthenticated requests, bounded in memory.
//!
//! Without a limit, anyone could fill every bridge's capacity with placements that never connect
//! (they are only forgotten after a minute). Each client address gets a bucket of `burst` tokens
//! refilled at `per_second`; the table holds at most `sources_max` addresses, and when it is full
//! the buckets that have refilled completely (they carry no information) are dropped first, then
//! new sources are refused until some do.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub burst: f64,
    pub per_second: f64,
    pub sources_max: usize,
}

impl Default for RateLimit {
    /// Generous for people (a page reload, a reconnect storm after a bridge restart), tight for a
    /// script: 20 joins at once, then 5 per second, per address.
    fn default() -> Self {
        Self {
            burst: 20.0,
            per_second: 5.0,
            sources_max: 100_000,
        }
    }
}

pub struct RateLimiter {
    limit: RateLimit,
    buckets: HashMap<IpAddr, Bucket>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl RateLimiter {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `source` at `now`; false means the request is to be refused.
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        let limit = self.limit;
        let refill = |bucket: &mut Bucket| {
            let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(limit.burst);
            bucket.updated = now;
        };
        if !self.buckets.contains_key(&source) && self.buckets.len() >= limit.sources_max {
            self.buckets.retain(|_, bucket| {
                refill(bucket);
                bucket.tokens < limit.burst
            });
            if self.buckets.len() >= limit.sources_max {
                return false;
            }
        }
        let bucket = self.buckets.entry(source).or_insert(Bucket {
            tokens: limit.burst,
            updated: now,
        });
        refill(bucket);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn tracked_sources(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn a_burst_then_the_refill_rate() {
        let mut limiter = RateLimiter::new(RateLimit {
            burst: 3.0,
            per_second: 2.0,
            sources_max: 10,
        });
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.allow(ip(1), t0)));
        assert!(!limiter.allow(ip(1), t0), "burst spent");
        assert!(limiter.allow(ip(2), t0), "another source has its own bucket");
        assert!(!limiter.allow(ip(1), t0 + Duration::from_millis(400)));
        assert!(
            limiter.allow(ip(1), t0 + Duration::from_millis(500)),
            "one token after 0.5 s at 2/s"
        );
        assert!(!limiter.allow(ip(1), t0 + Duration::from_millis(500)));
    }

    #[test]
    fn the_table_stays_bounded_and_forgets_idle_sources_first() {
        let mut limiter = RateLimiter::new(RateLimit {
            burst: 2.0,
            per_second: 1.0,
            sources_max: 4,
        });
        let t0 = Instant::now();
        for last in 1..=4 {
            assert!(limiter.allow(ip(last), t0));
        }
        assert!(
            !limiter.allow(ip(5), t0),
            "full of active sources: a new one is refused"
        );
        assert_eq!(limiter.tracked_sources(), 4);
        // A second later every bucket has refilled, so they can all be forgotten for a newcomer.
        assert!(limiter.allow(ip(5), t0 + Duration::from_secs(1)));
        assert!(limiter.tracked_sources() <= 4);
    }
}
