//! The budget of the unauthenticated join endpoint. Without one, anyone could fill every bridge's
//! capacity with placements that never connect (they are only forgotten after a minute).
//!
//! The limiter is the bounded per-address token bucket TURN uses for its unauthenticated
//! requests (`bridgemesh_turn::rate_limit`); control brings its own numbers.

pub use bridgemesh_turn::rate_limit::{RateLimit, RateLimiter};

/// Generous for people (a page reload, a reconnect storm after a bridge restart), tight for a
/// script: 20 joins at once, then 5 per second, per address; 100,000 addresses tracked.
pub const JOIN_LIMIT: RateLimit = RateLimit {
    burst: 20.0,
    per_second: 5.0,
    sources_max: 100_000,
};

/// Joins into one room, from all addresses together, per control node: enough for a webinar's
/// audience arriving together (100 at once, then 20 per second), while a flood from many
/// addresses (a botnet, many IPv6 /64s) cannot churn one room's roster faster than that. Each
/// control node counts the joins it serves, so a cluster of three admits up to three times this.
/// The join endpoint's budgets; `Default` is the production numbers.
#[derive(Debug, Clone, Copy)]
pub struct JoinLimits {
    /// Per client address (resolved through the trusted proxies, an IPv6 /64 as one).
    pub per_address: RateLimit,
    /// Per room, whoever joins it.
    pub per_room: RateLimit,
    /// IPv6 prefix length one per-address budget covers (a subscriber's block).
    pub ipv6_prefix_len: u8,
}

/// A join budget that cannot work, named.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum JoinLimitsError {
    #[error("{0}: the burst must be at least 1 and the rate above 0 per second")]
    Budget(&'static str),
    #[error("join_ipv6_prefix_len must be between 32 and 128, not {0}")]
    Ipv6PrefixLen(u8),
}

impl JoinLimits {
    pub fn validate(&self) -> Result<(), JoinLimitsError> {
        for (limit, name) in [(self.per_address, "per address"), (self.per_room, "per room")] {
            if !(limit.burst >= 1.0 && limit.per_second > 0.0 && limit.per_second.is_finite()) {
                return Err(JoinLimitsError::Budget(name));
            }
        }
        if !(32..=128).contains(&self.ipv6_prefix_len) {
            return Err(JoinLimitsError::Ipv6PrefixLen(self.ipv6_prefix_len));
        }
        Ok(())
    }
}

impl Default for JoinLimits {
    fn default() -> Self {
        Self {
            per_address: JOIN_LIMIT,
            per_room: ROOM_JOIN_LIMIT,
            ipv6_prefix_len: crate::join_key::JOIN_IPV6_PREFIX_LEN,
        }
    }
}

impl JoinLimits {
    /// No budget worth the name: for tests that join faster than people do.
    pub const UNLIMITED: Self = Self {
        per_address: RateLimit {
            burst: 1e9,
            per_second: 1e9,
            sources_max: 16,
        },
        per_room: RateLimit {
            burst: 1e9,
            per_second: 1e9,
            sources_max: 16,
        },
        ipv6_prefix_len: crate::join_key::JOIN_IPV6_PREFIX_LEN,
    };
}

pub const ROOM_JOIN_LIMIT: RateLimit = RateLimit {
    burst: 100.0,
    per_second: 20.0,
    sources_max: 100_000,
};
