//! Per-source token buckets for unauthenticated TURN requests (and failed authentications),
//! bounded in memory.
//!
//! Control's join endpoint uses this limiter too, with its own numbers, keyed by address and by
//! room. Every source (an address unless said otherwise) gets a bucket of `burst` tokens refilled
//! at `per_second`; the table holds at most `sources_max` sources: when full, buckets that have
//! refilled completely are dropped, then new sources are refused until some do.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub burst: f64,
    pub per_second: f64,
    pub sources_max: usize,
}

impl Default for RateLimit {
    /// A browser behind one NAT address sends a 401-provoking request per TURN URL per
    /// participant, and a corporate NAT hides many participants: 200 at once, then 50 per second.
    fn default() -> Self {
        Self {
            burst: 200.0,
            per_second: 50.0,
            sources_max: 100_000,
        }
    }
}

pub struct RateLimiter<K = IpAddr> {
    limit: RateLimit,
    buckets: HashMap<K, Bucket>,
}

struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `source` at `now`; false means the request is to be refused.
    pub fn allow(&mut self, source: &K, now: Instant) -> bool {
        let limit = self.limit;
        let refill = |bucket: &mut Bucket| {
            let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
            bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(limit.burst);
            bucket.updated = now;
        };
        if !self.buckets.contains_key(source) && self.buckets.len() >= limit.sources_max {
            self.buckets.retain(|_, bucket| {
                refill(bucket);
                bucket.tokens < limit.burst
            });
            if self.buckets.len() >= limit.sources_max {
                return false;
            }
        }
        let bucket = self.buckets.entry(source.clone()).or_insert(Bucket {
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
    fn a_burst_then_the_refill_rate_and_a_bounded_table() {
        let mut limiter = RateLimiter::new(RateLimit {
            burst: 2.0,
            per_second: 1.0,
            sources_max: 3,
        });
        let t0 = Instant::now();
        assert!(limiter.allow(&ip(1), t0) && limiter.allow(&ip(1), t0));
        assert!(!limiter.allow(&ip(1), t0), "burst spent");
        assert!(limiter.allow(&ip(1), t0 + Duration::from_secs(1)));
        assert!(limiter.allow(&ip(2), t0) && limiter.allow(&ip(3), t0));
        assert!(!limiter.allow(&ip(4), t0), "table full of active sources");
        assert_eq!(limiter.tracked_sources(), 3);
        assert!(limiter.allow(&ip(4), t0 + Duration::from_secs(5)));
        assert!(limiter.tracked_sources() <= 3);
    }
}
