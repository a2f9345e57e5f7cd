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
