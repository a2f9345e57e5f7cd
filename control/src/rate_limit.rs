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
}

impl Default for JoinLimits {
    fn default() -> Self {
        Self {
            per_address: JOIN_LIMIT,
            per_room: ROOM_JOIN_LIMIT,
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
    };
}

pub const ROOM_JOIN_LIMIT: RateLimit = RateLimit {
    burst: 100.0,
    per_second: 20.0,
    sources_max: 100_000,
};
